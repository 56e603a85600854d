// Process infrastructure shared by the tests that launch processes (DistributedTests' ShimTests,
// and CommandLineTests, which run the `resnet` binary): one background-job type (ShimTests'
// plain runs, TrainingMPITests and ResumeTests watch jobs with it while they run), the /proc
// helpers that find a job's rank processes, and, for the end-to-end tests of `resnet`, the
// release binary, the run environment, temporary run folders and runs cached per test process.
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What a finished (or killed) process left: exit status, output, and whether it overran.
public typealias ProcessResult = (status: Int32, stdout: String, stderr: String, timedOut: Bool)

/// An error with a message (a failed run, a missing binary).
public struct TestFailure: Error, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}

// MARK: - Jobs

/// A child process whose output goes to temporary files (so a chatty child never blocks on a
/// pipe); it can be inspected, signalled and waited for while it runs.
public final class BackgroundJob {
    public let process = Process()
    private let exited = DispatchSemaphore(value: 0)
    private let outURL: URL, errURL: URL
    private var done = false

    /// Starts `executable args` in `directory` (nil: this process's) with `environment` (nil: inherit).
    public init(executable: String, args: [String], environment: [String: String]?, directory: String? = nil) throws {
        let fm = FileManager.default
        let stamp = "\(getpid())-\(UInt64.random(in: 0 ... .max))"
        outURL = fm.temporaryDirectory.appendingPathComponent("job-\(stamp).out")
        errURL = fm.temporaryDirectory.appendingPathComponent("job-\(stamp).err")
        _ = fm.createFile(atPath: outURL.path, contents: nil)
        _ = fm.createFile(atPath: errURL.path, contents: nil)
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = args
        if let environment { process.environment = environment }
        if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
        process.standardInput = FileHandle.nullDevice
        let out = try FileHandle(forWritingTo: outURL), err = try FileHandle(forWritingTo: errURL)
        process.standardOutput = out
        process.standardError = err
        process.terminationHandler = { [exited] _ in exited.signal() }
        defer { try? out.close(); try? err.close() }   // the child keeps its own copies
        try process.run()
    }

    /// `mpirun -np N --oversubscribe [--mca name value]... executable args` in `environment`
    /// (build it with mpirunEnvironment). Skips the test when mpirun is not on PATH.
    public convenience init(mpiNP np: Int, executable: String, args: [String], extraMCA: [String] = [],
                     environment: [String: String]) throws {
        guard let mpirun = mpirunPath() else { throw XCTSkip("mpirun not found on PATH") }
        try self.init(executable: mpirun,
                      args: mpirunArguments(np: np, executable: executable, args: args, extraMCA: extraMCA),
                      environment: environment)
    }

    deinit {
        try? FileManager.default.removeItem(at: outURL)
        try? FileManager.default.removeItem(at: errURL)
    }

    public var pid: pid_t { process.processIdentifier }
    public var isRunning: Bool { !done && process.isRunning }
    public var status: Int32 { process.isRunning ? -1 : process.terminationStatus }
    public var reason: String { process.isRunning ? "running" : (process.terminationReason == .exit ? "exit" : "signal") }
    public var stdout: String { (try? String(contentsOf: outURL, encoding: .utf8)) ?? "" }
    public var stderr: String { (try? String(contentsOf: errURL, encoding: .utf8)) ?? "" }

    /// True when the process exited within `timeout` seconds.
    public func wait(timeout: Double) -> Bool {
        if done { return true }
        if exited.wait(timeout: .now() + timeout) == .timedOut { return false }
        done = true
        return true
    }

    /// Ends the process if it still runs: SIGTERM (mpirun forwards it and cleans up its ranks;
    /// `resnet` checkpoints and exits), then after 5 s SIGKILL to it and its process group
    /// (Foundation starts the child in its own group). Then SIGKILLs any leftover process whose
    /// arguments contain `marker` — the ranks of an MPI job, which Open MPI puts in process groups
    /// of their own; pass something unique to this job, such as its run folder.
    public func killEverything(matching marker: String? = nil) {
        if !done && process.isRunning {
            kill(pid, SIGTERM)
            if !wait(timeout: 5) {
                kill(-pid, SIGKILL)
                kill(pid, SIGKILL)
                _ = wait(timeout: 10)
            }
        }
        if let marker { killProcesses(withArgumentContaining: marker) }
    }
}

/// Runs one process in `directory` (nil: this process's) with `environment` (nil: inherit) and
/// waits at most `timeout` seconds. On overrun the process is ended as BackgroundJob.killEverything
/// does, with every process whose arguments contain `killMarker` (when given); the result then
/// has timedOut == true.
public func runProcess(_ executable: String, _ arguments: [String], environment: [String: String]? = nil,
                directory: String? = nil, timeout: Double, killMarker: String? = nil) -> ProcessResult {
    let job: BackgroundJob
    do {
        job = try BackgroundJob(executable: executable, args: arguments, environment: environment, directory: directory)
    } catch {
        return (127, "", "cannot launch \(executable): \(error)", false)
    }
    let finished = job.wait(timeout: timeout)
    if !finished { job.killEverything(matching: killMarker) }
    return (job.status, job.stdout, job.stderr, !finished)
}

// MARK: - /proc (Linux; the lookups find nothing elsewhere)

/// PIDs of the processes with an argument containing `needle`.
public func processIDs(withArgumentContaining needle: String) -> [pid_t] {
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
    return entries.compactMap { name -> pid_t? in
        guard let pid = pid_t(name),
              let data = FileManager.default.contents(atPath: "/proc/\(name)/cmdline"), !data.isEmpty else { return nil }
        let args = data.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        return args.contains { $0.contains(needle) } ? pid : nil
    }
}

/// SIGKILLs the processes (never this one) with an argument containing `marker`.
public func killProcesses(withArgumentContaining marker: String) {
    for pid in processIDs(withArgumentContaining: marker) where pid != getpid() { kill(pid, SIGKILL) }
}

/// The environment `pid` was started with (/proc/PID/environ).
public func processEnvironment(of pid: pid_t) -> [String: String] {
    guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/environ") else { return [:] }
    var env: [String: String] = [:]
    for entry in data.split(separator: 0) {
        let s = String(decoding: entry, as: UTF8.self)
        if let eq = s.firstIndex(of: "=") { env[String(s[..<eq])] = String(s[s.index(after: eq)...]) }
    }
    return env
}

/// The rank processes of the MPI job whose arguments contain `marker` (e.g. its run folder):
/// rank -> pid, from OMPI_COMM_WORLD_RANK in their environment.
public func rankProcesses(withArgumentContaining marker: String) -> [Int: pid_t] {
    var ranks: [Int: pid_t] = [:]
    for pid in processIDs(withArgumentContaining: marker) {
        if let r = processEnvironment(of: pid)["OMPI_COMM_WORLD_RANK"].flatMap({ Int($0) }) { ranks[r] = pid }
    }
    return ranks
}

/// The files mapped into `pid` (shared libraries and plugins).
public func mappedFiles(of pid: pid_t) -> [String] {
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/maps", encoding: .utf8) else { return [] }
    return Array(Set(text.split(separator: "\n").compactMap { line -> String? in
        guard let slash = line.firstIndex(of: "/") else { return nil }
        return String(line[slash...])
    })).sorted()
}

public func isZombie(_ pid: pid_t) -> Bool {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let close = stat.lastIndex(of: ")") else { return false }
    return stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).hasPrefix("Z")
}

/// Whether `signal` is pending (not yet delivered) for `pid` (/proc/PID/status SigPnd, ShdPnd).
public func signalPending(_ signal: Int32, pid: pid_t) -> Bool {
    signalInMask(signal, pid: pid, fields: ["SigPnd:", "ShdPnd:"])
}

/// Whether the main thread of process `pid` blocks `signal` (SigBlk of /proc/PID/status).
public func signalBlocked(_ signal: Int32, pid: pid_t) -> Bool {
    signalInMask(signal, pid: pid, fields: ["SigBlk:"])
}

private func signalInMask(_ signal: Int32, pid: pid_t, fields: [String]) -> Bool {
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return false }
    let bit = UInt64(1) << UInt64(signal - 1)
    for line in text.split(separator: "\n") where fields.contains(where: { line.hasPrefix($0) }) {
        if let mask = UInt64(line.split(separator: ":")[1].trimmingCharacters(in: .whitespaces), radix: 16), mask & bit != 0 {
            return true
        }
    }
    return false
}

// MARK: - The release `resnet` (end-to-end tests)

/// The package root, from this file's path: <package>/Sources/TestSupport/ProcessSupport.swift.
public let packageRoot: String = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent().path

/// The release `resnet` (debug builds are far too slow to train): $RESNET_BIN, else
/// <package>/.build/release/resnet, built (once per test process) with
/// `swift build -c release --product resnet` when missing. Another build may be relinking it
/// right now: a missing binary is waited for briefly, and a failed build (lock held, link race)
/// is retried. Skips the test when the Fashion-MNIST data the runs train on is not installed.
public func resnetBinary() throws -> String {
    if !FileManager.default.fileExists(atPath: "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz") {
        throw XCTSkip("Fashion-MNIST not found in /usr/share/datasets/fashion-mnist")
    }
    return try ReleaseProduct.located("resnet")
}

/// A release executable of this package (<package>/.build/release/NAME), built once per test
/// process when missing, as `resnetBinary` does for `resnet`.
public func releaseProduct(_ name: String) throws -> String { try ReleaseProduct.located(name) }

private enum ReleaseProduct {
    private static let lock = NSLock()
    private static var results: [String: Result<String, Error>] = [:]

    static func located(_ name: String) throws -> String {
        lock.lock(); defer { lock.unlock() }
        if let result = results[name] { return try result.get() }
        let r = Result<String, Error> { try locateOrBuild(name) }
        results[name] = r
        return try r.get()
    }

    private static func locateOrBuild(_ name: String) throws -> String {
        let fm = FileManager.default
        if name == "resnet", let env = ProcessInfo.processInfo.environment["RESNET_BIN"], !env.isEmpty {
            guard fm.isExecutableFile(atPath: env) else { throw TestFailure("RESNET_BIN=\(env) is not an executable file") }
            return env
        }
        let path = packageRoot + "/.build/release/" + name
        for _ in 0..<10 {   // briefly missing while someone else relinks it
            if fm.isExecutableFile(atPath: path) { return path }
            usleep(500_000)
        }
        guard let swift = findOnPath("swift") else { throw TestFailure("\(path) is missing and `swift` is not on PATH to build it") }
        var log = ""
        for attempt in 1...3 {
            let r = runProcess(swift, ["build", "-c", "release", "--product", name], environment: ProcessInfo.processInfo.environment,
                               directory: packageRoot, timeout: 1800)
            if r.status == 0 && !r.timedOut && fm.isExecutableFile(atPath: path) { return path }
            log = "attempt \(attempt): status \(r.status)\(r.timedOut ? " (timed out)" : "")\n\(String(r.stdout.suffix(2000)))\n\(String(r.stderr.suffix(2000)))"
            if fm.isExecutableFile(atPath: path) { return path }   // the other build finished it
            sleep(10)
        }
        throw TestFailure("cannot build \(path) with `swift build -c release --product \(name)`:\n\(log)")
    }
}

// MARK: - Refusals

/// Every file under `dir` (but the lock file) with its bytes.
public func snapshot(_ dir: String) -> [String: Data] {
    var out: [String: Data] = [:]
    guard let e = FileManager.default.enumerator(atPath: dir) else { return out }
    while let rel = e.nextObject() as? String {
        let path = dir + "/" + rel
        var isDir: ObjCBool = false
        if rel.hasSuffix(".lock") || !FileManager.default.fileExists(atPath: path, isDirectory: &isDir) || isDir.boolValue { continue }
        out[rel] = FileManager.default.contents(atPath: path)
    }
    return out
}

/// Runs `resnet args` single-process, expecting a refusal that mentions every needle and leaves
/// `unchanged` folders exactly as they were and `absent` paths not created.
@discardableResult
public func expectRefusal(_ args: [String], mentions needles: [String], unchanged: [String] = [], absent: [String] = [],
                   timeout: Double = 60, file: StaticString = #filePath, line: UInt = #line) throws -> String {
    let before = unchanged.map(snapshot)
    let r = runProcess(try resnetBinary(), args, environment: singleProcessEnvironment(), timeout: timeout)
    let text = r.stdout + r.stderr
    XCTAssertFalse(r.timedOut, "hung: \(args)", file: file, line: line)
    XCTAssertNotEqual(r.status, 0, "accepted: \(args)\n\(text)", file: file, line: line)
    XCTAssertLessThan(r.status, 128, "crashed (signal) on \(args):\n\(text)", file: file, line: line)
    XCTAssertFalse(text.contains("Swift runtime failure") || text.contains("Backtracing"), "trapped on \(args):\n\(text)", file: file, line: line)
    XCTAssertLessThan(text.utf8.count, 8192, "a message of \(text.utf8.count) bytes for \(args)", file: file, line: line)
    for n in needles { XCTAssertTrue(text.contains(n), "no '\(n)' in the output of \(args):\n\(text)", file: file, line: line) }
    for (dir, old) in zip(unchanged, before) {
        XCTAssertEqual(snapshot(dir), old, "\(args) changed files in \(dir)", file: file, line: line)
    }
    for path in absent {
        XCTAssertFalse(FileManager.default.fileExists(atPath: path), "\(args) created \(path)", file: file, line: line)
    }
    return text
}

/// `resnet train` on the smoke config (ResNet-18 width 8 on 28x28 Fashion-MNIST), `extra`
/// settings, writing into `dir`.
public func trainArgs(dir: String, _ extra: [String]) -> [String] {
    ["train", "--config", packageRoot + "/configs/smoke.yaml"] + extra + ["--set", "output.dir=\(dir)"]
}

public func requireMPI() throws {
    guard mpirunPath() != nil else { throw XCTSkip("mpirun not found on PATH") }
}

public func isLauncherVariable(_ name: String) -> Bool {
    ["OMPI_", "PMIX_", "PMI_", "SLURM_"].contains { name.hasPrefix($0) }
}

/// This process's environment without any launcher variable or test hook
/// (RESNET_TEST_CHECKPOINT_PAUSE), with one BLAS thread.
public func singleProcessEnvironment() -> [String: String] {
    var env = ProcessInfo.processInfo.environment.filter { !isLauncherVariable($0.key) }
    env["OPENBLAS_NUM_THREADS"] = "1"
    env.removeValue(forKey: "RESNET_TEST_CHECKPOINT_PAUSE")
    return env
}

/// max |a - b| / max |a| (max |a - b| alone when a is all zeros); infinity for different
/// lengths or a NaN difference.
public func relativeDifference(_ a: [Float], _ b: [Float]) -> Double {
    guard a.count == b.count else { return .infinity }
    var diff = 0.0, scale = 0.0
    for (x, y) in zip(a, b) {
        diff = max(diff, abs(Double(x) - Double(y)))
        scale = max(scale, abs(Double(x)))
    }
    if diff.isNaN { return .infinity }
    return scale > 0 ? diff / scale : diff
}

public func listDir(_ dir: String) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted()
}

// MARK: - Run folders and cached runs

/// Temporary folders named <prefix>-<tag>-<UUID>, removed together (at a test class's tearDown).
public final class RunDirectories {
    private let prefix: String
    private let lock = NSLock()
    private var created: [String] = []

    public init(prefix: String) { self.prefix = prefix }

    public func make(_ tag: String) throws -> String {
        lock.lock(); defer { lock.unlock() }
        let dir = FileManager.default.temporaryDirectory
            .appendingPathComponent("\(prefix)-\(tag)-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        created.append(dir)
        return dir
    }

    /// Removes every folder made so far (`keep`: forgets them but leaves them on disk).
    public func removeAll(keep: Bool = false) {
        lock.lock(); defer { lock.unlock() }
        if !keep {
            for dir in created { try? FileManager.default.removeItem(atPath: dir) }
        }
        created = []
    }
}

/// Runs several tests compare against, made once per test process: a value is made on first
/// request; a failure is remembered too and thrown again (with its message) without running
/// again. A skip is not remembered.
public final class RunCache<Value> {
    public init() {}
    private var values: [String: Value] = [:]
    private var failures: [String: String] = [:]
    private let lock = NSRecursiveLock()

    public func value(for key: String, _ make: () throws -> Value) throws -> Value {
        lock.lock(); defer { lock.unlock() }
        if let value = values[key] { return value }
        if let failure = failures[key] { throw TestFailure(failure) }
        do {
            let value = try make()
            values[key] = value
            return value
        } catch let skip as XCTSkip {
            throw skip
        } catch {
            failures[key] = "\(error)"
            throw error
        }
    }

    public func removeAll() {
        lock.lock(); defer { lock.unlock() }
        values = [:]
        failures = [:]
    }
}

/// The records of `dir`/metrics.jsonl; a last line cut short by a killed run is skipped, any other
/// line that is not a JSON object is an error.
public func metricsLines(_ dir: String) throws -> [[String: Any]] {
    let text = try String(contentsOfFile: dir + "/metrics.jsonl", encoding: .utf8)
    let lines = text.split(separator: "\n")
    return try lines.enumerated().compactMap { i, line in
        if let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] { return object }
        if i == lines.count - 1 && !text.hasSuffix("\n") { return nil }
        throw TestFailure("metrics.jsonl line \(i + 1): not a JSON object: \(line)")
    }
}
