// The Chrome trace text TraceSession writes: valid JSON, every span once with its rank as pid,
// the process named (quotes in a host name escaped) and the thread rows named.
import Foundation
import XCTest
import Trace
@testable import Training

final class TraceFileTests: XCTestCase {
    func testChromeTraceParses() throws {
        let recorder = TraceRecorder()
        let t0 = TraceRecorder.now()
        recorder.add("1.0.conv1 forward", "forward", start: t0, end: t0 + 120, thread: recorder.mainThread)
        recorder.add("allreduce bucket 1/3", "allreduce", start: t0 + 50, end: t0 + 400, thread: TraceRecorder.communicationThread)
        recorder.add("1.0.conv1 forward", "worker", start: t0 + 1, end: t0 + 100, thread: recorder.mainThread + 1000)
        let text = TraceRecorder.chromeTrace(recorder.chromeEvents(rank: 2, host: "node \"a\"") + recorder.chromeEvents(rank: 3, host: "b"))
        let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        let events = try XCTUnwrap(object["traceEvents"] as? [[String: Any]])
        let spans = events.filter { $0["ph"] as? String == "X" }
        XCTAssertEqual(spans.count, 6)
        XCTAssertEqual(Set(spans.compactMap { $0["pid"] as? Int }), [2, 3])
        let allreduce = try XCTUnwrap(spans.first { $0["cat"] as? String == "allreduce" })
        XCTAssertEqual(allreduce["dur"] as? Double ?? 0, 350, accuracy: 0.01)
        XCTAssertEqual(allreduce["tid"] as? Int, Int(TraceRecorder.communicationThread))
        let names = events.filter { $0["name"] as? String == "process_name" }.compactMap { ($0["args"] as? [String: Any])?["name"] as? String }
        XCTAssertEqual(names, ["rank 2 (node \"a\")", "rank 3 (b)"])
        let threads = events.filter { $0["name"] as? String == "thread_name" && $0["pid"] as? Int == 2 }
            .compactMap { ($0["args"] as? [String: Any])?["name"] as? String }
        XCTAssertEqual(threads, ["main", "communication", "worker 1"])
    }
}
