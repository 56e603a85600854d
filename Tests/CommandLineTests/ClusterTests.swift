// Across nodes for real (issue 10): a 2-node cluster of network namespaces on one bridge
// (launch/netns-cluster.sh; 1 core and 1 rank per node, TCP only), launched the way a cluster
// user launches (launch/hostfile.sh with the cluster's rsh agent and subnet):
//   a. 2 nodes x 1 rank over TCP train the same model as 2 local ranks, bit for bit;
//   b. a node's link goes down mid-run (while rank 0 writes a checkpoint): the job, watched for
//      8 s (well inside train.collective_timeout_s, 300 s by default, so it hangs), is ended from
//      outside, every process left in the namespaces is killed, and `--resume auto` on the
//      repaired cluster continues from the newest checkpoint, bit-identical to a run never cut;
//   c. the checkpoint being written when the link went down is complete and loads (never
//      half-written, never lost), and it is the newest;
//   e. launch/elastic.sh: a node's link down -> the job ends (watchdog), the run finishes on the
//      remaining node from the newest checkpoint, equal to a run restarted by hand there;
//   d. bad input to hostfile.sh (unknown host, a node whose link is down, a subnet matching no
//      interface, a binary missing) fails at once, with one line naming the host.
// They need root and `ip netns` (skipped with the reason otherwise; CI runs them as root), mpirun,
// the release binary ($RESNET_BIN) and Fashion-MNIST. Each test brings up its own cluster (a
// unique name, ClusterFixture.swift), taken down when the test ends — every process in its
// namespaces killed, every namespace, veth and bridge deleted — also when the test fails.
import Foundation
import XCTest
import NN
import Coordinator
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

final class ClusterTests: XCTestCase {

    // MARK: - a. 2 nodes x 1 rank == 2 local ranks

    func testTwoNodesOverTCPTrainTheSameModelAsTwoLocalRanks() throws {
        let cluster = try upCluster(NetnsCluster.self)
        let bin = try resnetBinary()
        let onCluster = try Self.reference(cluster: cluster, bin: bin, dirs: dirs)
        let local = try dirs.make("local")
        let r = runMPI(np: 2, executable: bin, args: trainArgs(dir: local, Self.args(maxSteps: 30)),
                       env: ["OPENBLAS_NUM_THREADS": "1"], timeout: 180, killMarker: local)
        killProcesses(withArgumentContaining: local)
        XCTAssertFalse(r.timedOut, "2 local ranks timed out")
        XCTAssertEqual(r.status, 0, "2 local ranks: status \(r.status)\n\(r.stdout.suffix(2000))\n\(r.stderr.suffix(2000))")
        XCTAssertTrue(onCluster.stdout.contains("2 rank(s)"), onCluster.stdout)
        try assertModelsBitIdentical(local, onCluster.dir, "2 nodes x 1 rank (TCP, netns) vs 2 local ranks")
    }

    // MARK: - b/c. Link down mid-run, resume; the checkpoint written during the fault

    func testResumeAutoAfterANodeFailureContinuesFromTheNewestCheckpoint() throws {
        let cluster = try upCluster(NetnsCluster.self)
        let bin = try resnetBinary()
        let reference = try Self.reference(cluster: cluster, bin: bin, dirs: dirs)
        let dir = try dirs.make("cut")
        let ckpts = dir + "/checkpoints"
        // Every checkpoint pauses 2 s between its temporary file and the rename (rank 0 is on the
        // head node and gets mpirun's environment): the link goes down inside the step-20 one.
        let job = try cluster.start(bin: bin, args: trainArgs(dir: dir, Self.args(maxSteps: 2000) + ["--set", "train.collective_timeout_s=5"]),
                                    env: ["RESNET_TEST_CHECKPOINT_PAUSE": "2"])
        defer { job.killEverything(matching: dir); _ = cluster.killAll() }
        let started = Date()
        while !listDir(ckpts).contains(where: { $0.hasPrefix(".ckpt-step-000000020.safetensors.tmp.") }) {
            guard job.isRunning else {
                throw TestFailure("the run ended before the step-20 checkpoint (status \(job.status)):\n\(job.stdout.suffix(2000))\n\(job.stderr.suffix(2000))")
            }
            guard Date().timeIntervalSince(started) < 120 else {
                throw TestFailure("no step-20 checkpoint after 120 s; files: \(listDir(ckpts))\n\(job.stdout.suffix(2000))")
            }
            usleep(20_000)
        }
        // Each node's rank runs on the node's own core.
        let ranks = rankProcesses(withArgumentContaining: dir)
        XCTAssertEqual(ranks.keys.sorted(), [0, 1], "rank processes: \(ranks)")
        if ProcessInfo.processInfo.activeProcessorCount >= 2, let r0 = ranks[0], let r1 = ranks[1] {
            XCTAssertEqual(Self.allowedCPUs(r0), cluster.cores[0], "rank 0's cores")
            XCTAssertEqual(Self.allowedCPUs(r1), cluster.cores[1], "rank 1's cores")
        }
        try cluster.link(1, up: false)
        let cut = Date()

        // c. The write under way completes: the step-20 checkpoint appears, whole.
        let final20 = ckpts + "/" + CheckpointStore.fileName(step: 20)
        while !FileManager.default.fileExists(atPath: final20) && Date().timeIntervalSince(cut) < 15 { usleep(50_000) }
        // The collective watchdog (train.collective_timeout_s 5) ends the job by itself: every
        // process on both nodes gone — the cut-off rank and its orted included — within the
        // timeout plus 30 s, mpirun non-zero, rank 0's line naming the step and the collective.
        let bound = 5.0 + 30
        let ended = job.wait(timeout: bound)
        var gone = false
        while Date().timeIntervalSince(cut) < bound {
            if cluster.processCount() == 0 { gone = true; break }
            usleep(200_000)
        }
        let took = Date().timeIntervalSince(cut)
        print("[ClusterTests] link of n1 down at step 20: job \(ended ? "ended by itself (status \(job.status))" : "still running"); \(String(format: "%.1f", took)) s; in the namespaces: \(cluster.processes())")
        XCTAssertTrue(ended, "mpirun still running \(bound) s after the link went down:\n\(job.stdout.suffix(1500))\n\(job.stderr.suffix(1500))")
        XCTAssertTrue(gone, "processes left in the namespaces \(bound) s after the cut: \(cluster.processes())")
        if ended { XCTAssertNotEqual(job.status, 0, "mpirun's status") }
        let line = (job.stdout + job.stderr).split(separator: "\n").first { $0.contains("not completed after") }.map(String.init) ?? ""
        XCTAssertTrue(line.range(of: #"^\[rank 0 on host [^\]]+\] step \d+: .+ not completed after 5 s"#, options: .regularExpression) != nil,
                      "rank 0's watchdog line: '\(line)'\n\((job.stdout + job.stderr).suffix(2000))")
        job.killEverything(matching: dir)
        let killed = cluster.killAll()
        print("[ClusterTests] \(killed)")
        XCTAssertEqual(cluster.processCount(), 0, "processes left in the namespaces")
        XCTAssertTrue(processIDs(withArgumentContaining: dir).isEmpty, "rank processes left: \(processIDs(withArgumentContaining: dir))")

        let store = CheckpointStore(folder: ckpts, keep: 3)
        let candidates = store.candidates()
        XCTAssertEqual(candidates.first, final20, "the newest checkpoint is the one written during the fault: \(listDir(ckpts))")
        for path in candidates {   // every file under a checkpoint's name is whole
            XCTAssertNoThrow(try Checkpoint.verify(try CheckpointStore.readFile(path), file: path), path)
        }
        let newest = store.newestValid(log: { XCTFail("unexpected: \($0)") })
        XCTAssertEqual(newest?.path, final20, "newest valid checkpoint")
        if let newest {
            let meta = try Checkpoint.verify(newest.bytes, file: newest.path).metadata
            XCTAssertEqual(meta["global_step"], "20")
        }

        // b. The node is back: `--resume auto` on the 2-node cluster continues from step 20 and
        // ends bit-identical to the run never cut.
        try cluster.link(1, up: true)
        let resumed = try cluster.run(bin: bin, args: trainArgs(dir: dir, Self.args(maxSteps: 30) + ["--resume", "auto"]),
                                      marker: dir, what: "--resume auto after the cut")
        XCTAssertTrue(resumed.stdout.contains("resumed from \(final20) at step 20"), "did not resume from step 20:\n\(resumed.stdout.suffix(2000))")
        try assertModelsBitIdentical(reference.dir, dir, "cut at step 20 + resumed vs never cut (2 nodes)")
    }

    // MARK: - e. Elastic restart

    /// launch/elastic.sh on the 2-node cluster; n1's link goes down after the step-20 checkpoint:
    /// the watchdog ends the job, elastic.sh finds n1 silent, relaunches 1 rank on n0 with
    /// `--resume auto`, and the run finishes; metrics.jsonl records the restart. The model equals
    /// a run restarted by hand at the same step (2 nodes to that step, then 1 rank from its checkpoint).
    func testElasticRestartFinishesOnTheRemainingNode() throws {
        let cluster = try upCluster(NetnsCluster.self)
        let bin = try resnetBinary()
        let dir = try dirs.make("elastic")
        let extra = ["--set", "train.collective_timeout_s=5"]
        let job = try cluster.startElastic(bin: bin, args: trainArgs(dir: dir, Self.args(maxSteps: 40) + extra),
                                           env: ["MAX_RESTARTS": "2", "RESTART_DELAY": "1"])
        defer { job.killEverything(matching: dir); _ = cluster.killAll() }
        let started = Date(), ckpt20 = dir + "/checkpoints/" + CheckpointStore.fileName(step: 20)
        while !FileManager.default.fileExists(atPath: ckpt20) {
            guard job.isRunning, Date().timeIntervalSince(started) < 180 else {
                throw TestFailure("no step-20 checkpoint (status \(job.status)):\n\(job.stdout.suffix(2000))\n\(job.stderr.suffix(2000))")
            }
            usleep(20_000)
        }
        try cluster.link(1, up: false)
        XCTAssertTrue(job.wait(timeout: 300), "elastic.sh still running:\n\(job.stdout.suffix(2000))\n\(job.stderr.suffix(2000))")
        XCTAssertEqual(job.status, 0, "elastic.sh status:\n\(job.stdout.suffix(2000))\n\(job.stderr.suffix(3000))")
        let output = job.stdout + job.stderr
        XCTAssertTrue(output.contains("[elastic] restart 1 of 2: 1 of 2 host(s) answer (lost: \(cluster.address(1))); world size 2 -> 1"), output.suffix(3000).description)
        guard let r = output.range(of: #"resumed from \S+ckpt-step-(\d+)\.safetensors at step (\d+)"#, options: .regularExpression),
              let step = Int(output[r].split(separator: " ").last ?? "") else {
            return XCTFail("no resume line:\n\(output.suffix(3000))")
        }
        XCTAssertGreaterThanOrEqual(step, 20)
        let restarts = try metricsLines(dir).filter { $0["kind"] as? String == "restart" }
        XCTAssertEqual(restarts.count, 1, "restart records")
        XCTAssertEqual(restarts.first?["ranks"] as? Int, 1)
        XCTAssertEqual(restarts.first?["step"] as? Int, step)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/model.safetensors"))
        // By hand: the link back, 2 nodes to `step`, then 1 rank on n0 from that checkpoint.
        try cluster.link(1, up: true)
        let hand = try dirs.make("by-hand")
        try cluster.run(bin: bin, args: trainArgs(dir: hand, Self.args(maxSteps: step) + extra), marker: hand, what: "2 nodes to \(step)")
        let n0 = try dirs.make("hosts") + "/n0"
        try "\(cluster.address(0)) slots=1\n".write(toFile: n0, atomically: true, encoding: .utf8)
        try cluster.run(bin: bin, args: trainArgs(dir: hand, Self.args(maxSteps: 40) + extra + ["--resume", "auto"]), marker: hand,
                        what: "1 rank from \(step)", ranks: 1, hosts: n0)
        try assertModelsBitIdentical(hand, dir, "elastic restart vs restarted by hand at step \(step)")
    }

    // MARK: - d. Bad input fails fast, naming the host

    func testBadInputToHostfileLauncherFailsAtOnceNamingTheHost() throws {
        let cluster = try upCluster(NetnsCluster.self)
        let bin = try resnetBinary()
        let train = trainArgs(dir: try dirs.make("bad"), Self.args(maxSteps: 2))
        let badHosts = try dirs.make("hosts") + "/hosts"
        try "\(cluster.address(0)) slots=1\n10.213.0.99 slots=1\n".write(toFile: badHosts, atomically: true, encoding: .utf8)

        func expectFailure(_ hostfile: String, env: [String: String], naming host: String, _ needle: String, _ what: String) {
            let started = Date()
            let r = cluster.launch(hostfile: hostfile, bin: env["RESNET_BIN"] ?? bin, args: train, env: env, timeout: 30)
            let seconds = Date().timeIntervalSince(started)
            let lines = r.stderr.split(separator: "\n").filter { $0.contains(host) && $0.contains(needle) }
            XCTAssertFalse(r.timedOut, "\(what): hung")
            XCTAssertNotEqual(r.status, 0, "\(what): exit 0\n\(r.stdout)\n\(r.stderr)")
            XCTAssertLessThan(seconds, 20, "\(what): took \(seconds) s")
            XCTAssertEqual(lines.count, 1, "\(what): expected one line naming \(host) and '\(needle)':\n\(r.stderr)")
            XCTAssertFalse(r.stdout.contains("training ResNet"), "\(what): training started")
            print("[ClusterTests] \(what): \(lines.first.map(String.init) ?? r.stderr) (\(String(format: "%.2f", seconds)) s)")
        }
        expectFailure(badHosts, env: [:], naming: "10.213.0.99", "unreachable", "a host that is no node")
        try cluster.link(1, up: false)
        expectFailure(cluster.hostfile, env: [:], naming: cluster.address(1), "unreachable", "a node whose link is down")
        try cluster.link(1, up: true)
        let oneNode = badHosts + ".one"
        try "\(cluster.address(1)) slots=1\n".write(toFile: oneNode, atomically: true, encoding: .utf8)
        expectFailure(oneNode, env: ["SUBNET": "10.99.0.0/24"], naming: cluster.address(1), "no interface in subnet 10.99.0.0/24",
                      "a subnet matching no interface")
        expectFailure(oneNode, env: ["RESNET_BIN": "/nonexistent/resnet"], naming: cluster.address(1), "/nonexistent/resnet",
                      "a binary missing on the node")
        // A setting of the launcher itself: refused before mpirun, naming the variable and the value.
        let keepalive = cluster.launch(hostfile: cluster.hostfile, bin: bin, args: train, env: ["OOB_KEEPALIVE": "60:10"], timeout: 30)
        let message = "OOB_KEEPALIVE must be TIME:INTERVAL:PROBES (seconds, seconds, count) or 0, got '60:10'"
        XCTAssertFalse(keepalive.timedOut, "OOB_KEEPALIVE=60:10: hung")
        XCTAssertEqual(keepalive.status, 2, "OOB_KEEPALIVE=60:10: status\n\(keepalive.stdout)\n\(keepalive.stderr)")
        XCTAssertTrue(keepalive.stderr.contains(message), "expected '\(message)' in:\n\(keepalive.stderr)")
        XCTAssertFalse(keepalive.stdout.contains("training ResNet"), "OOB_KEEPALIVE=60:10: training started")
        XCTAssertEqual(cluster.processCount(), 0, "processes left in the namespaces")
    }

    // MARK: - e. A cluster whose test process was killed is reaped

    /// `netns-cluster.sh reap` takes down a cluster whose CLUSTER_OWNER process is gone (a test
    /// run SIGKILLed mid-way cannot tear down its own) and leaves one whose owner lives.
    func testReapTakesDownClustersWhoseOwnerIsGone() throws {
        _ = try upCluster(NetnsCluster.self)   // skips where namespaces cannot be made
        let gone = runProcess("/bin/sh", ["-c", "echo $$"], timeout: 10)
        guard let deadPID = Int32(gone.stdout.trimmingCharacters(in: .whitespacesAndNewlines)), kill(deadPID, 0) != 0 else {
            throw TestFailure("no exited process id to own the cluster: \(gone.stdout)")
        }
        let orphan = "rp\(getpid() % 10000)a", owned = "rp\(getpid() % 10000)b"
        defer { for c in [orphan, owned] { _ = runProcess("/bin/bash", [NetnsCluster.script, "down"], environment: NetnsCluster.environment(["CLUSTER": c]), timeout: 60) } }
        for (c, owner) in [(orphan, deadPID), (owned, getpid())] {
            let r = runProcess("/bin/bash", [NetnsCluster.script, "up", "2"],
                               environment: NetnsCluster.environment(["CLUSTER": c, "CLUSTER_OWNER": String(owner), "CLUSTER_SUBNET": "10.214.0.0/24"]), timeout: 60)
            XCTAssertEqual(r.status, 0, "up \(c): \(r.stdout)\n\(r.stderr)")
        }
        let r = runProcess("/bin/bash", [NetnsCluster.script, "reap"], environment: NetnsCluster.environment([:]), timeout: 120)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("cluster '\(orphan)' outlived its owner (pid \(deadPID))"), r.stdout)
        let spaces = runProcess("/bin/sh", ["-c", "ip netns list"], timeout: 10).stdout
        XCTAssertFalse(spaces.contains("\(orphan)-"), "namespaces of the reaped cluster left: \(spaces)")
        XCTAssertFalse(FileManager.default.fileExists(atPath: "/run/resnet-netns/\(orphan)"))
        XCTAssertTrue(spaces.contains("\(owned)-sw"), "the cluster of a live owner was taken down: \(spaces)")
    }

    // MARK: - Runs

    /// Smoke config (ResNet-18 width 8, 28x28 Fashion-MNIST, batch 64), shuffle + augment, a
    /// checkpoint every 10 steps, 1 worker thread per rank on both sides of every comparison.
    static func args(maxSteps: Int) -> [String] {
        ["--set", "data.augment=true", "--set", "data.shuffle=true", "--set", "checkpoint.every_steps=10",
         "--set", "train.threads=1", "--set", "train.log_every=1", "--set", "train.max_steps=\(maxSteps)"]
    }

    /// 30 steps on a 2-node cluster, run once per test process.
    static func reference(cluster: NetnsCluster, bin: String, dirs: RunDirectories) throws -> (dir: String, stdout: String) {
        try references.value(for: "30") {
            let dir = try dirs.make("reference")
            let r = try cluster.run(bin: bin, args: trainArgs(dir: dir, args(maxSteps: 30)), marker: dir, what: "2 nodes, 30 steps")
            return (dir, r.stdout)
        }
    }

    private static let references = RunCache<(dir: String, stdout: String)>()
    private static let runDirs = RunDirectories(prefix: "resnet-cluster")
    private var dirs: RunDirectories { Self.runDirs }

    override class func tearDown() {
        runDirs.removeAll(keep: ProcessInfo.processInfo.environment["CLUSTER_TESTS_KEEP"] != nil)
        references.removeAll()
        super.tearDown()
    }

    /// Cpus_allowed_list of a process, as a list of core numbers ("0-1,3" -> [0, 1, 3]).
    static func allowedCPUs(_ pid: pid_t) -> [Int] {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("Cpus_allowed_list:") }) else { return [] }
        return parseCPUList(String(line.dropFirst("Cpus_allowed_list:".count)))
    }

    static func parseCPUList(_ s: String) -> [Int] {
        s.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ",").flatMap { part -> [Int] in
            let ends = part.split(separator: "-").compactMap { Int($0) }
            if ends.count == 2 { return Array(ends[0]...ends[1]) }
            return ends
        }
    }

    func assertModelsBitIdentical(_ a: String, _ b: String, _ label: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let ta = try SafeTensors.read(path: a + "/model.safetensors").tensors
        let tb = try SafeTensors.read(path: b + "/model.safetensors").tensors
        XCTAssertFalse(ta.isEmpty, "\(label): no tensors", file: file, line: line)
        XCTAssertEqual(Set(ta.keys), Set(tb.keys), "\(label): tensor names", file: file, line: line)
        let differing = ta.keys.sorted().filter { name in
            guard let x = ta[name], let y = tb[name] else { return true }
            return x.shape != y.shape || x.values.map(\.bitPattern) != y.values.map(\.bitPattern)
        }
        XCTAssertTrue(differing.isEmpty, "\(label): \(differing.count) tensor(s) differ: \(differing.prefix(8).map { "\($0) (relative \(relativeDifference(ta[$0]?.values ?? [], tb[$0]?.values ?? [])))" })",
                      file: file, line: line)
        XCTAssertTrue(FileManager.default.contents(atPath: a + "/model.safetensors") == FileManager.default.contents(atPath: b + "/model.safetensors"),
                      "\(label): model.safetensors differ byte-wise", file: file, line: line)
    }
}

/// One cluster of launch/netns-cluster.sh, named uniquely for this test process.
final class NetnsCluster: TestCluster {
    static let script = packageRoot + "/launch/netns-cluster.sh"
    static let hostfileScript = packageRoot + "/launch/hostfile.sh"
    static let timeout = 60.0

    let name: String
    let stateDir: String
    let cores: [[Int]]
    var hostfile: String { stateDir + "/hostfile" }

    /// Creates the cluster and reads each node's cores, or skips the test (not root, no `ip`, no
    /// network namespaces).
    static func up(nodes: Int) throws -> NetnsCluster {
        let name = try bringUp(nodes: nodes, prefix: "ct", what: "the netns cluster", needs: "network namespaces, veth, bridge",
                               cannot: "network namespaces cannot be created here")
        let state = "/run/resnet-netns/\(name)"
        let cores = (0..<nodes).map { i in
            ClusterTests.parseCPUList((try? String(contentsOfFile: "\(state)/cores-n\(i)", encoding: .utf8)) ?? "")
        }
        return NetnsCluster(name: name, stateDir: state, cores: cores)
    }

    private init(name: String, stateDir: String, cores: [[Int]]) {
        self.name = name; self.stateDir = stateDir; self.cores = cores
    }

    static func environment(_ env: [String: String]) -> [String: String] {
        var e = ProcessInfo.processInfo.environment.filter { !isLauncherVariable($0.key) }
        for key in ["RESNET_TEST_CHECKPOINT_PAUSE", "STATE_DIR", "CLUSTER_SUBNET", "RATE", "CORES", "AGENT", "SUBNET", "CHECK", "OOB_KEEPALIVE", "MPIRUN_ARGS"] {
            e.removeValue(forKey: key)   // the fixture's and hostfile.sh's settings come from the test alone
        }
        e.merge(env) { _, new in new }
        return e
    }

    private var env: [String: String] { ["CLUSTER": name] }

    func address(_ node: Int) -> String { "10.213.0.\(10 + node)" }

    /// The arguments of `netns-cluster.sh run -- hostfile.sh HOSTFILE RANKS BIN-ARGS` (on node 0).
    private func launchArguments(hostfile: String, ranks: Int = 2, args: [String]) -> [String] {
        [Self.script, "run", "--", "/bin/bash", Self.hostfileScript, hostfile, String(ranks)] + args
    }

    private func launchEnvironment(bin: String, _ extra: [String: String]) -> [String: String] {
        var e = Self.environment(env)
        e["RESNET_BIN"] = bin
        e["OPENBLAS_NUM_THREADS"] = "1"
        e["CHECK_TIMEOUT"] = "5"
        e.merge(extra) { _, new in new }
        return mpirunEnvironment(base: e)
    }

    /// hostfile.sh on node 0, waited for at most `timeout` s (then killed, with whatever it left
    /// in the namespaces).
    func launch(hostfile: String, bin: String, args: [String], env extra: [String: String] = [:], timeout: Double) -> ProcessResult {
        let r = runProcess("/bin/bash", launchArguments(hostfile: hostfile, args: args),
                           environment: launchEnvironment(bin: bin, extra), timeout: timeout)
        if r.timedOut { _ = killAll() }
        return r
    }

    /// A job of `ranks` ranks (hostfile.sh on node 0, on `hosts`, default every node) that must
    /// succeed; leftovers are killed afterwards.
    @discardableResult
    func run(bin: String, args: [String], marker: String, what: String, ranks: Int = 2, hosts: String? = nil) throws -> ProcessResult {
        let r = runProcess("/bin/bash", launchArguments(hostfile: hosts ?? hostfile, ranks: ranks, args: args),
                           environment: launchEnvironment(bin: bin, [:]), timeout: 180, killMarker: marker)
        _ = killAll()
        if r.timedOut || r.status != 0 {
            throw TestFailure("\(what): hostfile.sh \(args.joined(separator: " ")) on cluster \(name): \(r.timedOut ? "timed out" : "status \(r.status)")\nstdout:\n\(r.stdout.suffix(3000))\nstderr:\n\(r.stderr.suffix(3000))")
        }
        return r
    }

    /// launch/elastic.sh on node 0 over the cluster's hostfile, watched while it runs.
    func startElastic(bin: String, args: [String], env extra: [String: String]) throws -> BackgroundJob {
        try BackgroundJob(executable: "/bin/bash", args: [Self.script, "run", "--", "/bin/bash", packageRoot + "/launch/elastic.sh", hostfile] + args,
                          environment: launchEnvironment(bin: bin, extra))
    }

    /// A 2-rank job watched while it runs (`exec` all the way down: the job's pid is mpirun's).
    func start(bin: String, args: [String], env extra: [String: String]) throws -> BackgroundJob {
        try BackgroundJob(executable: "/bin/bash", args: launchArguments(hostfile: hostfile, args: args),
                          environment: launchEnvironment(bin: bin, extra))
    }

    func link(_ node: Int, up: Bool) throws {
        let r = runProcess("/bin/bash", [Self.script, "link", "n\(node)", up ? "up" : "down"], environment: Self.environment(env), timeout: 30)
        guard r.status == 0 else { throw TestFailure("link n\(node) \(up ? "up" : "down"): \(r.stderr)") }
    }

    /// Kills every process in the cluster's namespaces; returns what the script said.
    @discardableResult
    func killAll() -> String {
        let r = runProcess("/bin/bash", [Self.script, "kill"], environment: Self.environment(env), timeout: 30)
        return (r.stdout + r.stderr).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The processes in the cluster's namespaces, as "node:pid:name" (name from /proc/PID/comm).
    func processes() -> [String] {
        guard let ip = findOnPath("ip") else { return [] }
        return cores.indices.flatMap { i in
            runProcess(ip, ["netns", "pids", "\(name)-n\(i)"], timeout: 10).stdout.split(separator: "\n").map { pid in
                let comm = (try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8))?
                    .trimmingCharacters(in: .whitespacesAndNewlines) ?? "?"
                return "n\(i):\(pid):\(comm)"
            }
        }
    }

    /// How many processes run in the cluster's namespaces.
    func processCount() -> Int {
        guard let ip = findOnPath("ip") else { return 0 }
        let spaces = ["\(name)-sw"] + cores.indices.map { "\(name)-n\($0)" }
        return spaces.reduce(0) { n, ns in
            n + runProcess(ip, ["netns", "pids", ns], timeout: 10).stdout.split(separator: "\n").count
        }
    }
}
