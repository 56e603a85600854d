// User errors on the command line end with a non-zero status and a message that names the
// option or field — never a crash or a hang (`expectRefusal`, shared with HostileInputTests).
// (Runs the release binary, single process.)
import XCTest
import TestSupport
import Foundation

final class CommandLineErrorTests: XCTestCase {
    func testBadBenchOptionsAreRefusedNamingTheField() throws {
        try expectRefusal(["bench", "--depth", "20", "--steps", "1"], mentions: ["model.depth", "18, 34, 50"])
        try expectRefusal(["bench", "--batch", "0", "--steps", "1"], mentions: ["--batch must be an integer in 1...1000000"])
        try expectRefusal(["bench", "--steps", "0"], mentions: ["--steps must be an integer in 1...1000000"])
    }

    func testBadSummaryInputIsRefused() throws {
        try expectRefusal(["summary", "--input", "1x2"], mentions: ["--input", "CxHxW"])
        try expectRefusal(["summary", "--input", "3x224x224"], mentions: ["model.in_channels"])
    }

    func testMissingFilesAreNamed() throws {
        try expectRefusal(["train", "--config", "/nonexistent/run.yaml"], mentions: ["/nonexistent/run.yaml"])
        try expectRefusal(["eval", "--weights", "/nonexistent/w.safetensors"], mentions: ["/nonexistent/w.safetensors"])
        try expectRefusal(["export", "/nonexistent/c.safetensors", "--out", NSTemporaryDirectory() + "/x.safetensors"],
                          mentions: ["/nonexistent/c.safetensors"])
        try expectRefusal(["eval"], mentions: ["--weights", "--checkpoint"])
    }

    /// `config-show` prints resolved values (what launch/elastic.sh reads the global batch with);
    /// an unknown key is refused by name.
    func testConfigShow() throws {
        let r = runProcess(try resnetBinary(), ["config-show", "--config", packageRoot + "/configs/quickstart.yaml",
                                                "--set", "optimizer.lr_per_256=0.2", "train.batch_size", "optimizer.lr_per_256", "train.accumulate_steps"],
                           environment: singleProcessEnvironment(), timeout: 60)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stdout, "128\n0.2\n1\n")
        try expectRefusal(["config-show", "train.batch_sise"], mentions: ["unknown config key 'train.batch_sise'"])
    }
}
