// The cluster fixture ClusterTests (launch/netns-cluster.sh) and SlurmTests
// (launch/slurm-cluster.sh) share: a test asks `upCluster` for a cluster, which is taken down when
// the test ends, also when it fails; `bringUp` holds the steps of bringing up either script's
// cluster, and each cluster type adds only its script, its settings and what it reads afterwards.
import Foundation
import XCTest
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// A cluster of one of the launch/*-cluster.sh scripts, named uniquely for this test process.
protocol TestCluster: AnyObject {
    /// The script; its `up NODES`, `down` and `reap` are what the fixture runs.
    static var script: String { get }
    /// How long the script's `up`, and its `down` after a test, may take (s).
    static var timeout: Double { get }
    /// The script's environment: this process's, without what the test alone sets, plus `extra`.
    static func environment(_ extra: [String: String]) -> [String: String]
    /// Brings up a cluster of `nodes` nodes (with `bringUp`), or skips the test.
    static func up(nodes: Int) throws -> Self
    /// The cluster's CLUSTER for the script.
    var name: String { get }
}

extension XCTestCase {
    /// A 2-node cluster for this test (mpirun required), taken down when the test ends, also when it fails.
    func upCluster<C: TestCluster>(_: C.Type) throws -> C {
        try requireMPI()
        let cluster = try C.up(nodes: 2)
        addTeardownBlock { cluster.down() }
        return cluster
    }
}

/// How many clusters this process has named, per name prefix.
private var clusterCounts: [String: Int] = [:]
private let clusterCountsLock = NSLock()

extension TestCluster {
    private static var scriptFile: String { URL(fileURLWithPath: script).lastPathComponent }

    /// Brings up a cluster of `nodes` nodes with the script and returns its name (`prefix`, the
    /// process id, a count; 8 characters at most). Skips the test when it cannot run: not root
    /// ("`what` needs root (`needs`)"), no `ip`, no `ip netns`, then `check`'s reasons, and a
    /// permission error from `up` ("`cannot`: ..."). First reaps the clusters whose CLUSTER_OWNER
    /// is gone and takes down a leftover of the same name; the cluster's owner is this process.
    static func bringUp(nodes: Int, prefix: String, what: String, needs: String, cannot: String,
                        check: () throws -> Void = {}) throws -> String {
        guard getuid() == 0 else { throw XCTSkip("\(what) needs root (\(needs)): running as uid \(getuid())") }
        guard let ip = findOnPath("ip") else { throw XCTSkip("\(what) needs `ip` (iproute2), not found on PATH") }
        let probe = runProcess(ip, ["netns", "list"], timeout: 10)
        guard probe.status == 0 else { throw XCTSkip("`ip netns` is unavailable here: \(probe.stderr.trimmingCharacters(in: .whitespacesAndNewlines))") }
        try check()
        clusterCountsLock.lock(); clusterCounts[prefix, default: 0] += 1; let n = clusterCounts[prefix]!; clusterCountsLock.unlock()
        let name = String("\(prefix)\(getpid() % 100000)\(n)".prefix(8)).lowercased()
        let env = environment(["CLUSTER": name, "CLUSTER_OWNER": String(getpid())])
        _ = runProcess("/bin/bash", [script, "reap"], environment: environment([:]), timeout: 120)   // clusters of killed test runs
        _ = runProcess("/bin/bash", [script, "down"], environment: env, timeout: 60)   // a leftover of a crashed run
        let r = runProcess("/bin/bash", [script, "up", String(nodes)], environment: env, timeout: timeout)
        if r.status != 0 || r.timedOut {
            _ = runProcess("/bin/bash", [script, "down"], environment: env, timeout: 60)
            let text = r.stdout + r.stderr
            if text.contains("Operation not permitted") || text.contains("Permission denied") {
                throw XCTSkip("\(cannot): \(text.trimmingCharacters(in: .whitespacesAndNewlines))")
            }
            throw TestFailure("launch/\(scriptFile) up \(nodes) failed (status \(r.status)):\n\(text)")
        }
        return name
    }

    /// Takes the cluster down (the script's `down`); says so when that fails.
    func down() {
        let r = runProcess("/bin/bash", [Self.script, "down"], environment: Self.environment(["CLUSTER": name]), timeout: Self.timeout)
        if r.status != 0 { print("[\(Self.self)] \(Self.scriptFile) down (\(name)) failed: \(r.stderr)") }
    }
}
