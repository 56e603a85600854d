// User errors on the command line end with a non-zero status and a message that names the
// option or field — never a crash or a hang. (Runs the release binary, single process.)
import XCTest
import Foundation

final class CommandLineErrorTests: XCTestCase {
    func expectFailure(_ args: [String], mentions needles: [String], file: StaticString = #filePath, line: UInt = #line) throws {
        let r = runProcess(try resnetBinary(), args, environment: singleProcessEnvironment(), timeout: 60)
        let text = r.stdout + r.stderr
        XCTAssertFalse(r.timedOut, "hung: \(args)", file: file, line: line)
        XCTAssertNotEqual(r.status, 0, "accepted: \(args)\n\(text)", file: file, line: line)
        XCTAssertLessThan(r.status, 128, "crashed (signal) on \(args):\n\(text)", file: file, line: line)
        for n in needles { XCTAssertTrue(text.contains(n), "no '\(n)' in the output of \(args):\n\(text)", file: file, line: line) }
    }

    func testBadBenchOptionsAreRefusedNamingTheField() throws {
        try expectFailure(["bench", "--depth", "20", "--steps", "1"], mentions: ["model.depth", "18, 34, 50"])
        try expectFailure(["bench", "--batch", "0", "--steps", "1"], mentions: ["--batch must be an integer in 1...1000000"])
        try expectFailure(["bench", "--steps", "0"], mentions: ["--steps must be an integer in 1...1000000"])
    }

    func testBadSummaryInputIsRefused() throws {
        try expectFailure(["summary", "--input", "1x2"], mentions: ["--input", "CxHxW"])
        try expectFailure(["summary", "--input", "3x224x224"], mentions: ["model.in_channels"])
    }

    func testMissingFilesAreNamed() throws {
        try expectFailure(["train", "--config", "/nonexistent/run.yaml"], mentions: ["/nonexistent/run.yaml"])
        try expectFailure(["eval", "--weights", "/nonexistent/w.safetensors"], mentions: ["/nonexistent/w.safetensors"])
        try expectFailure(["export", "/nonexistent/c.safetensors", "--out", NSTemporaryDirectory() + "/x.safetensors"],
                          mentions: ["/nonexistent/c.safetensors"])
        try expectFailure(["eval"], mentions: ["--weights", "--checkpoint"])
    }
}
