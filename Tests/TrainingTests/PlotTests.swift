import XCTest
import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
@testable import Training

final class PlotTests: XCTestCase {
    // MARK: CurvesPlot

    func testSVGHasPanelsPolylinesAndNoNaN() {
        let trainLoss: [(x: Double, y: Double)] = (0..<50).map { i -> (x: Double, y: Double) in
            let t = Double(i)
            return (x: t / 10, y: 2.3 * exp(-t / 20))
        }
        let testLoss: [(Double, Double)] = (1...5).map { i -> (Double, Double) in (Double(i), 1.0 / Double(i)) }
        let trainAcc: [(Double, Double)] = (0..<50).map { i -> (Double, Double) in
            let t = Double(i)
            return (t / 10, 0.1 + 0.8 * t / 50)
        }
        let testAcc: [(Double, Double)] = (1...5).map { i -> (Double, Double) in
            let t = Double(i)
            return (t, 0.5 + 0.08 * t)
        }
        let svg = CurvesPlot.svg(trainLoss: trainLoss, testLoss: testLoss, trainAcc: trainAcc, testAcc: testAcc,
                                 xLabel: "epoch <&>")
        XCTAssertTrue(svg.hasPrefix("<svg"))
        XCTAssertTrue(svg.hasSuffix("</svg>\n"))
        XCTAssertEqual(svg.components(separatedBy: "<polyline").count - 1, 4)
        XCTAssertTrue(svg.contains(">loss<")); XCTAssertTrue(svg.contains(">accuracy<"))
        XCTAssertTrue(svg.contains(">train<")); XCTAssertTrue(svg.contains(">test<"))
        XCTAssertTrue(svg.contains("epoch &lt;&amp;&gt;"))
        XCTAssertFalse(svg.lowercased().contains("nan"))
        XCTAssertFalse(svg.lowercased().contains("inf"))
        XCTAssertTrue(isWellFormedXML(svg))
    }

    func testSVGHandlesEmptySinglePointAndNonFinite() {
        let empty = CurvesPlot.svg(trainLoss: [], testLoss: [], trainAcc: [], testAcc: [], xLabel: "step")
        XCTAssertTrue(empty.contains("no data"))
        XCTAssertFalse(empty.lowercased().contains("nan"))
        XCTAssertTrue(isWellFormedXML(empty))

        let single = CurvesPlot.svg(trainLoss: [(x: 3, y: 0.7)], testLoss: [(3, 0.7)], trainAcc: [(3, 0.5)], testAcc: [],
                                    xLabel: "step")
        XCTAssertTrue(single.contains("<polyline"))
        XCTAssertTrue(single.contains("<circle"))
        XCTAssertFalse(single.lowercased().contains("nan"))
        XCTAssertTrue(isWellFormedXML(single))

        let weird = CurvesPlot.svg(trainLoss: [(x: 0, y: .nan), (x: 1, y: .infinity), (x: 2, y: 5), (x: 3, y: 5)],
                                   testLoss: [(0, 0), (0, 0)], trainAcc: [(1e9, 1e-9), (2e9, 2e-9)], testAcc: [(-1, -5)],
                                   xLabel: "step")
        XCTAssertTrue(weird.contains("<polyline"))
        XCTAssertFalse(weird.lowercased().contains("nan"))
        XCTAssertFalse(weird.lowercased().contains("inf"))
        XCTAssertTrue(isWellFormedXML(weird))
    }

    func testNiceTicks() {
        let t = CurvesPlot.ticks(0, 1)
        XCTAssertEqual(t.step, 0.2, accuracy: 1e-12)
        XCTAssertEqual(t.values.first, 0); XCTAssertEqual(t.values.last!, 1, accuracy: 1e-12)
        let u = CurvesPlot.ticks(3, 3)
        XCTAssertEqual(u.values, [3])
        XCTAssertEqual(CurvesPlot.label(0.30000000000000004, 0.1), "0.3")
        XCTAssertEqual(CurvesPlot.label(-1e-17, 0.1), "0.0")
    }

    private func isWellFormedXML(_ s: String) -> Bool {
        let parser = XMLParser(data: Data(s.utf8))
        return parser.parse()
    }

    // MARK: MetricsLog

    private func tempPath(_ name: String) -> String {
        NSTemporaryDirectory() + "metrics-\(UUID().uuidString)/" + name
    }

    func testMetricsLogWritesSortedJSONLines() throws {
        let path = tempPath("metrics.jsonl")
        defer { try? FileManager.default.removeItem(atPath: (path as NSString).deletingLastPathComponent) }
        let log = try MetricsLog(path: path, append: false)
        try log.write(["step": 1, "loss": 2.5, "split": "train", "eval": false])
        try log.write(["step": .int(2), "loss": .double(.nan), "lr": .double(.infinity), "note": "a \"q\"\n"])
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let lines = text.split(separator: "\n")
        XCTAssertEqual(lines.count, 2)
        XCTAssertEqual(String(lines[0]), #"{"eval":false,"loss":2.5,"split":"train","step":1}"#)
        XCTAssertEqual(String(lines[1]), #"{"loss":null,"lr":null,"note":"a \"q\"\n","step":2}"#)

        let records = try MetricsLog.readRecords(path: path)
        XCTAssertEqual(records.count, 2)
        XCTAssertEqual(records[0]["loss"] as? Double, 2.5)
        XCTAssertEqual(records[0]["split"] as? String, "train")
        XCTAssertTrue(records[1]["loss"] is NSNull)
        XCTAssertEqual(records[1]["note"] as? String, "a \"q\"\n")
    }

    func testMetricsLogAppendAndTruncatedLastLine() throws {
        let path = tempPath("m.jsonl")
        defer { try? FileManager.default.removeItem(atPath: (path as NSString).deletingLastPathComponent) }
        do {
            let log = try MetricsLog(path: path, append: false)
            try log.write(["step": 1])
        }
        // Simulate a crash in the middle of a line.
        let h = try XCTUnwrap(FileHandle(forWritingAtPath: path))
        h.seekToEndOfFile(); h.write(Data(#"{"step":"#.utf8)); h.closeFile()
        XCTAssertEqual(try MetricsLog.readRecords(path: path).count, 1)   // partial last line skipped

        let log = try MetricsLog(path: path, append: true)
        try log.write(["step": 2, "x": 1e-5])
        log.close()
        let records = try MetricsLog.readRecords(path: path)
        XCTAssertEqual(records.map { $0["step"] as? Int }, [1, 2])
        XCTAssertEqual(records[1]["x"] as? Double, 1e-5)

        // Truncating mode starts over; a corrupt middle line is an error naming file and line.
        let fresh = try MetricsLog(path: path, append: false)
        try fresh.write(["a": true])
        XCTAssertEqual(try MetricsLog.readRecords(path: path).count, 1)
        try "{\"a\":1}\nnot json\n{\"a\":2}\n".write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try MetricsLog.readRecords(path: path)) { XCTAssertTrue("\($0)".contains("m.jsonl:2")) }
    }

    func testJSONNumbers() {
        XCTAssertEqual(MetricValue.double(3).json, "3.0")
        XCTAssertEqual(MetricValue.double(-0.125).json, "-0.125")
        XCTAssertEqual(MetricValue.double(-.infinity).json, "null")
        XCTAssertEqual(MetricValue.double(1e300).json, "1e+300")
        XCTAssertEqual(MetricValue.int(-4).json, "-4")
        XCTAssertEqual(MetricValue.bool(true).json, "true")
    }

    // MARK: ProgressReporter

    func testProgressPlainLines() {
        var out: [String] = []
        let p = ProgressReporter(total: 10, isTerminal: false, every: 4) { out.append($0) }
        for s in 1...10 { p.update(step: s, epoch: 1, loss: 0.5, acc: 0.75, lr: 0.05, imagesPerSecond: 1000) }
        p.finish()
        XCTAssertEqual(out.count, 3)  // steps 4, 8 and the last
        XCTAssertTrue(out[0].hasPrefix("step 4/10 "))
        XCTAssertTrue(out[2].hasPrefix("step 10/10 "))
        XCTAssertTrue(out.allSatisfy { $0.hasSuffix("\n") && !$0.contains("\r") })
        XCTAssertTrue(out[0].contains("loss 0.5000")); XCTAssertTrue(out[0].contains("acc 75.00%"))
    }

    func testProgressTerminalRedrawsOneLine() {
        var out: [String] = []
        let p = ProgressReporter(total: 4, isTerminal: true, every: 100) { out.append($0) }
        p.update(step: 1, epoch: 0, loss: 2.3, acc: 0.1, lr: 0.1, imagesPerSecond: 10)
        p.update(step: 4, epoch: 0, loss: .nan, acc: 0.2, lr: 0.1, imagesPerSecond: 10)
        p.finish()
        XCTAssertEqual(out.count, 3)
        XCTAssertTrue(out[0].hasPrefix("\r[")); XCTAssertTrue(out[0].contains(" 25% 1/4"))
        XCTAssertTrue(out[1].contains("100% 4/4"))
        XCTAssertEqual(out[2], "\n")
        XCTAssertFalse(out.joined().contains("\n\r"))

        var none: [String] = []
        let q = ProgressReporter(total: 0, isTerminal: true, every: 1) { none.append($0) }
        q.finish()
        XCTAssertTrue(none.isEmpty)
        _ = ProgressReporter.stdoutIsTerminal
        XCTAssertEqual(ProgressReporter.duration(3725), "1:02:05")
        XCTAssertEqual(ProgressReporter.duration(65), "1:05")
    }
}
