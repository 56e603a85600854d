// What a run shows to the tools users look at, through the release binary: TensorBoard event files
// (read back by TensorBoard's own EventAccumulator, the figures equal to metrics.jsonl's) and the
// `--trace` timeline of two ranks (every rank and step present, allreduces overlapping backward);
// and the refusals of a bad trace window or path before any step.
import Foundation
import XCTest
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

final class RunObservabilityTests: XCTestCase {
    private func runDir(_ tag: String) -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("obs-\(tag)-\(UUID().uuidString)").path
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        return dir
    }

    func testTensorBoardEventsMatchTheMetrics() throws {
        let dir = runDir("tb")
        let r = runProcess(try resnetBinary(), trainArgs(dir: dir, ["--set", "train.max_steps=6", "--set", "train.log_every=1"]),
                           environment: singleProcessEnvironment(), timeout: 300)
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        let files = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasPrefix("events.out.tfevents.") }
        XCTAssertEqual(files.count, 1, "event files in \(dir): \(files)")
        let scalars = try tensorBoardScalars(dir)
        let records = try metricsLines(dir)
        let steps = records.filter { $0["kind"] as? String == "step" }
        XCTAssertEqual(steps.count, 6)
        for (tag, key) in [("train/loss", "loss"), ("train/accuracy", "accuracy"), ("train/lr", "lr"), ("train/images_per_s", "images_per_s")] {
            let want = steps.map { ($0["step"] as! Int, Double(Float($0[key] as! Double))) }
            XCTAssertEqual(scalars[tag]?.map(\.step), want.map(\.0), "steps of \(tag)")
            XCTAssertEqual(scalars[tag]?.map(\.value), want.map(\.1), "values of \(tag)")
        }
        let evals = records.filter { ["epoch", "eval"].contains($0["kind"] as? String) }
        XCTAssertEqual(scalars["test/accuracy"]?.map(\.step), evals.map { $0["step"] as! Int })
        XCTAssertEqual(scalars["test/accuracy"]?.map(\.value), evals.map { Double(Float($0["test_accuracy"] as! Double)) })
    }

    func testTraceOfTwoRanks() throws {
        #if os(Linux)
        guard mpirunPath() != nil else { throw XCTSkip("mpirun not found on PATH") }
        let dir = runDir("trace")
        let file = dir + "-trace.json"
        addTeardownBlock { try? FileManager.default.removeItem(atPath: file) }
        // Small buckets, so allreduces start while backward still runs. (Worker-thread rows: one worker
        // per rank here, 2 ranks on 2 cores; NNTests' TraceTests checks them with two.)
        let args = trainArgs(dir: dir, ["--set", "train.max_steps=5", "--set", "train.trace_steps=2-3",
                                        "--set", "train.bucket_mb=0.02", "--trace", file])
        let r = runMPI(np: 2, executable: try resnetBinary(), args: args, env: singleProcessEnvironment(), timeout: 300, killMarker: dir)
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("wrote the trace of steps 2-3 (2 rank(s)) to \(file)"), r.stdout)
        let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: file))) as? [String: Any])
        let events = try XCTUnwrap(object["traceEvents"] as? [[String: Any]])
        struct Span { let name, cat: String; let ts, dur: Double; let pid, tid: Int }
        let spans = events.filter { $0["ph"] as? String == "X" }.map {
            Span(name: $0["name"] as! String, cat: $0["cat"] as! String, ts: $0["ts"] as! Double, dur: $0["dur"] as! Double,
                 pid: $0["pid"] as! Int, tid: $0["tid"] as! Int)
        }
        for rank in 0..<2 {
            let mine = spans.filter { $0.pid == rank }
            XCTAssertEqual(mine.filter { $0.cat == "step" }.map(\.name).sorted(), ["step 2", "step 3"], "rank \(rank)")
            for cat in ["data", "forward", "backward", "allreduce", "wait", "optimizer"] {
                XCTAssertFalse(mine.filter { $0.cat == cat }.isEmpty, "rank \(rank): no \(cat) span")
            }
            // An allreduce in flight while backward still computes: the overlap DDP is built for.
            let backward = mine.filter { $0.cat == "backward" }, allreduce = mine.filter { $0.cat == "allreduce" }
            XCTAssertTrue(allreduce.contains { a in backward.contains { b in a.ts < b.ts + b.dur && b.ts < a.ts + a.dur } },
                          "rank \(rank): no allreduce span overlaps a backward span")
            let names = events.filter { $0["name"] as? String == "process_name" && $0["pid"] as? Int == rank }
            XCTAssertEqual(names.count, 1)
        }
        #else
        throw XCTSkip("needs Linux")
        #endif
    }

    func testBadTraceWindowOrPathIsRefusedBeforeTraining() throws {
        let dir = runDir("trace-bad")
        try expectRefusal(trainArgs(dir: dir, ["--set", "train.max_steps=4", "--set", "train.trace_steps=10-12", "--trace", dir + "-t.json"]),
                          mentions: ["train.trace_steps 10-12", "outside this run's steps 1...4"], absent: [dir + "-t.json", dir + "/metrics.jsonl"])
        try expectRefusal(trainArgs(dir: dir, ["--set", "train.max_steps=4", "--trace", "/nonexistent-folder/t.json"]),
                          mentions: ["--trace /nonexistent-folder/t.json", "does not exist"], absent: [dir + "/metrics.jsonl"])
        try expectRefusal(trainArgs(dir: dir, ["--set", "train.trace_steps=3-x"]), mentions: ["train.trace_steps", "'3-x'"])
    }
}
