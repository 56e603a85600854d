// A deadline on every wait for other ranks. A collective that does not complete in time (a rank
// stopped, a link down, a node gone) would otherwise block forever: MPI has no timeouts. While a
// collective runs, a monitor thread watches the clock; when the deadline passes it prints one line
// naming the rank, host, step and collective, tries MPI_Abort (which ends the job everywhere mpirun
// still reaches), and, since MPI_Abort cannot be trusted to return when the network is gone, ends
// this process itself a few seconds later — also a rank cut off from every other one, whose own
// collective never completes; a parent orted or mpirun still waiting for an unreachable peer is
// ended too. So every process exits non-zero within the timeout plus the grace (10 s) plus 3 s.
//
//   [rank 1 on host node-b] step 142: allreduce of gradient bucket 3/12 not completed after 60 s
//
// Startup and the first step may take longer (loading data, first allocations, ranks starting at
// different times): until `firstStepCompleted()` the deadline is `startupTimeout`.
// Main thread: `watch` / `describing` (the communicator and gradient buckets call them); the monitor
// thread only reads the state under the lock.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

public final class CollectiveWatchdog: @unchecked Sendable {
    /// The process's watchdog, when one was started (MPI runs with a timeout); nil: no deadlines.
    nonisolated(unsafe) public private(set) static var shared: CollectiveWatchdog?
    /// Exit status of a process the watchdog ends (as timeout(1)).
    public static let exitStatus: Int32 = 124

    public let timeout: Double
    public let startupTimeout: Double
    /// "[rank 1 on host node-b]"
    public let who: String
    /// Called once, on the monitor thread, with the message when a deadline passes. The default
    /// (`start`) prints it, tries MPI_Abort and then ends the process.
    private let expire: (String) -> Void

    private let condition = NSCondition()
    private var step: Int?
    private var firstStepDone = false
    private var current: (what: String, began: Double)?
    private var purposes: [String] = []
    private var fired = false
    private var stopped = false

    /// A watchdog with its own monitor thread; `expire` gets the message (tests; `start` for real runs).
    public init(timeout: Double, startupTimeout: Double, rank: Int, host: String, expire: @escaping (String) -> Void) {
        precondition(timeout > 0 && startupTimeout > 0, "watchdog timeouts must be positive")
        self.timeout = timeout
        self.startupTimeout = startupTimeout
        who = "[rank \(rank) on host \(host)]"
        self.expire = expire
        let thread = Thread { [unowned self] in self.monitor() }
        thread.name = "collective-watchdog"
        thread.start()
    }

    /// Starts the process-wide watchdog: on expiry it prints the message to stderr, starts a
    /// reaper that ends a parent Open MPI daemon or launcher still there `grace` seconds later
    /// (SIGTERM, then SIGKILL), calls `abort` (MPI_Abort) on a thread of its own, and ends the
    /// process with `exitStatus` after `grace` seconds whatever MPI did — so neither a cut-off
    /// node's orted nor a mpirun waiting for it outlives the job.
    @discardableResult
    public static func start(timeout: Double, startupTimeout: Double, rank: Int, host: String, grace: Double = 10,
                             abort: @escaping @Sendable () -> Void) -> CollectiveWatchdog {
        let watchdog = CollectiveWatchdog(timeout: timeout, startupTimeout: startupTimeout, rank: rank, host: host) { message in
            FileHandle.standardError.write(Data((message + "\n").utf8))
            fflush(stdout)
            startParentReaper(after: grace)
            let aborting = Thread { abort() }
            aborting.start()
            Thread.sleep(forTimeInterval: grace)
            _exit(CollectiveWatchdog.exitStatus)
        }
        install(watchdog)
        return watchdog
    }

    /// Makes `watchdog` the process's (the communicator and gradient buckets report to it),
    /// stopping the previous one.
    public static func install(_ watchdog: CollectiveWatchdog) {
        if let old = shared, old !== watchdog { old.stop() }
        shared = watchdog
    }

    /// Stops the monitor thread (end of a run); later collectives have no deadline.
    public func stop() {
        condition.lock(); stopped = true; condition.signal(); condition.unlock()
        if CollectiveWatchdog.shared === self { CollectiveWatchdog.shared = nil }
    }

    /// The training step named in messages (the run loop sets it at the start of each step).
    public func setStep(_ step: Int) {
        condition.lock(); self.step = step; condition.unlock()
    }

    /// From now on collectives get `timeout` instead of `startupTimeout`.
    public func firstStepCompleted() {
        condition.lock(); firstStepDone = true; condition.signal(); condition.unlock()
    }

    /// Runs `body` (one blocking collective or wait) under the deadline. The message names the
    /// innermost `describing` purpose if there is one, else `operation`.
    public func watch<T>(_ operation: @autoclosure () -> String, _ body: () throws -> T) rethrows -> T {
        condition.lock()
        let nested = current != nil
        if !nested { current = (purposes.last ?? operation(), now()); condition.signal() }
        condition.unlock()
        defer {
            if !nested { condition.lock(); current = nil; condition.unlock() }
        }
        return try body()
    }

    /// Names what the collectives inside `body` are for ("allreduce of gradient bucket 3/12").
    public static func describing<T>(_ purpose: @autoclosure () -> String, _ body: () throws -> T) rethrows -> T {
        guard let w = shared else { return try body() }
        w.condition.lock(); w.purposes.append(purpose()); w.condition.unlock()
        defer { w.condition.lock(); w.purposes.removeLast(); w.condition.unlock() }
        return try body()
    }

    private func now() -> Double {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
    }

    private func monitor() {
        condition.lock()
        while !stopped && !fired {
            guard let c = current else {
                condition.wait()
                continue
            }
            let limit = firstStepDone ? timeout : startupTimeout
            let left = c.began + limit - now()
            if left > 0 {
                _ = condition.wait(until: Date(timeIntervalSinceNow: min(left, 1)))
                continue
            }
            fired = true
            let when = step.map { "step \($0)" } ?? "startup"
            let message = "\(who) \(when): \(c.what) not completed after \(Self.seconds(limit))"
                + " (collective timeout\(firstStepDone ? "" : " of startup and the first step")); ending the job"
            condition.unlock()
            expire(message)
            return
        }
        condition.unlock()
    }

    static func seconds(_ s: Double) -> String {
        s == s.rounded() ? "\(Int(s)) s" : String(format: "%.1f s", s)
    }
}

/// Open MPI's per-node daemon (orted; prted in Open MPI 5) or launcher (the ranks' parent on the head node).
private let openMPIParents: Set<String> = ["orted", "prted", "mpirun", "mpiexec", "orterun", "prterun"]

/// Starts a detached `sh` that, `delay` seconds from now, ends this rank's parent if that is still
/// Open MPI's daemon or launcher (SIGTERM, 3 s, SIGKILL; each only while /proc says it is that
/// process). A process of its own, because MPI_Abort usually makes the local daemon kill this rank
/// first — seen on the netns cluster with a link down: both ranks died by MPI_Abort, then mpirun
/// waited for ever for the cut-off node's orted, which waited for mpirun and ignored SIGTERM.
private func startParentReaper(after delay: Double) {
    let parent = getppid()
    guard parent > 1, let name = try? String(contentsOfFile: "/proc/\(parent)/comm", encoding: .utf8) else { return }
    let command = name.trimmingCharacters(in: .whitespacesAndNewlines)
    guard openMPIParents.contains(command) else { return }
    let script = "sleep \(Int(delay.rounded(.up))); for s in TERM KILL; do "
        + "[ \"$(cat /proc/\(parent)/comm 2>/dev/null)\" = \(command) ] || exit 0; kill -$s \(parent); sleep 3; done"
    let reaper = Process()
    reaper.executableURL = URL(fileURLWithPath: "/bin/sh")
    reaper.arguments = ["-c", script]
    reaper.standardInput = FileHandle.nullDevice
    reaper.standardOutput = FileHandle.nullDevice
    reaper.standardError = FileHandle.nullDevice
    try? reaper.run()
}
