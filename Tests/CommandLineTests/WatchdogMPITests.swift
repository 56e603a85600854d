// The collective watchdog end to end: 2 ranks under mpirun, rank 1 frozen (SIGSTOP) after a few
// steps, train.collective_timeout_s 4. Rank 0's next allreduce cannot complete: within the
// timeout plus 30 s every process is gone, mpirun exits non-zero, and rank 0's one line names its
// rank, host, step and collective. The checkpoint written before the freeze still verifies.
import Foundation
import XCTest
import Coordinator
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

final class WatchdogMPITests: XCTestCase {
    func testFrozenRankEndsTheJobWithinTheBound() throws {
        #if os(Linux)
        try requireMPI()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("watchdog-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let timeout = 4.0
        let args = trainArgs(dir: dir, ["--set", "train.log_every=1", "--set", "train.max_steps=100000", "--set", "train.epochs=1000",
                                        "--set", "checkpoint.every_steps=2", "--set", "train.collective_timeout_s=\(Int(timeout))"])
        var environment = singleProcessEnvironment()
        environment["OPENBLAS_NUM_THREADS"] = "1"
        let job = try BackgroundJob(mpiNP: 2, executable: try resnetBinary(), args: args, environment: mpirunEnvironment(base: environment))
        var frozen: pid_t?
        defer {
            if let pid = frozen { kill(pid, SIGKILL) }
            job.killEverything(matching: dir)
        }
        // Past the first step (startup has the longer deadline) and past a checkpoint.
        let started = Date()
        while stepsLogged(dir) < 4 {
            guard job.isRunning, Date().timeIntervalSince(started) < 120 else {
                return XCTFail("fewer than 4 steps logged (status \(job.status)):\n\(job.stdout.suffix(2000))\n\(job.stderr.suffix(2000))")
            }
            Thread.sleep(forTimeInterval: 0.1)
        }
        let ranks = rankProcesses(withArgumentContaining: dir)
        guard let victim = ranks[1], ranks[0] != nil else { return XCTFail("rank processes found: \(ranks)") }
        XCTAssertEqual(kill(victim, SIGSTOP), 0)
        frozen = victim
        let stoppedAt = Date()
        XCTAssertTrue(job.wait(timeout: timeout + 30), "mpirun still running \(timeout + 30) s after rank 1 froze:\n\(job.stdout.suffix(1500))\n\(job.stderr.suffix(1500))")
        let took = Date().timeIntervalSince(stoppedAt)
        XCTAssertGreaterThanOrEqual(took, timeout - 0.5, "ended before the deadline")
        XCTAssertNotEqual(job.status, 0, "mpirun's exit status")
        let output = job.stdout + job.stderr
        let line = output.split(separator: "\n").first { $0.contains("not completed after") }.map(String.init) ?? ""
        XCTAssertTrue(line.hasPrefix("[rank 0 on host "), "the watchdog's line: '\(line)'\n\(output.suffix(3000))")
        XCTAssertTrue(line.range(of: #"\] step \d+: .+ not completed after 4 s \(collective timeout\); ending the job$"#, options: .regularExpression) != nil,
                      "the line names step, collective and timeout: '\(line)'")
        // No rank process of this job is left (the frozen one is SIGKILLed by mpirun's abort).
        Thread.sleep(forTimeInterval: 1)
        let left = processIDs(withArgumentContaining: dir).filter { !isZombie($0) }
        XCTAssertEqual(left, [], "processes left behind")
        // The newest checkpoint is whole.
        let store = CheckpointStore(folder: dir + "/checkpoints", keep: 3)
        let newest = try XCTUnwrap(store.newestValid { _ in }, "no valid checkpoint")
        XCTAssertNoThrow(try Checkpoint.verify(newest.bytes, file: newest.path))
        #else
        throw XCTSkip("needs /proc (Linux)")
        #endif
    }

    private func stepsLogged(_ dir: String) -> Int {
        ((try? metricsLines(dir)) ?? []).filter { $0["kind"] as? String == "step" }.count
    }
}
