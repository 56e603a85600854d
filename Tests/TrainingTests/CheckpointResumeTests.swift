// The Trainer's side of checkpoints, in-process: the resumability check (a model mismatch names
// the field), `resnet export` and the stored config `eval --checkpoint` reads. (The file format
// and the folder logic: CoordinatorTests/CheckpointStoreTests.)
import XCTest
import Foundation
import NN
import Coordinator
import TestSupport
@testable import Training

final class CheckpointResumeTests: XCTestCase {
    private static let dirs = RunDirectories(prefix: "ckpt-resume")

    override class func tearDown() {
        dirs.removeAll()
        super.tearDown()
    }

    /// A checkpoint of another model is refused, naming the field and both values.
    func testModelMismatchIsRefusedNamingTheField() throws {
        var saved = RunConfig()
        saved.model.width = 8
        let fields: [(String, (inout RunConfig) -> Void)] = [
            ("model.width", { $0.model.width = 16 }),
            ("model.depth", { $0.model.depth = 34 }),
            ("model.num_classes", { $0.model.numClasses = 100 }),
            ("model.in_channels", { $0.model.inChannels = 3 }),
            ("train.batch_size", { $0.train.batchSize = 128 }),
            ("train.seed", { $0.train.seed = 5 }),
        ]
        for (field, change) in fields {
            var current = saved
            change(&current)
            XCTAssertThrowsError(try Trainer.checkResumable(saved: saved, current: current, file: "ck.safetensors"), field) { error in
                let text = "\(error)"
                XCTAssertTrue(text.contains(field), "\(field): \(text)")
                XCTAssertTrue(text.contains("ck.safetensors"), "\(field): \(text)")
            }
        }
        var widthError = ""
        var w16 = saved
        w16.model.width = 16
        do { try Trainer.checkResumable(saved: saved, current: w16, file: "ck") } catch { widthError = "\(error)" }
        XCTAssertTrue(widthError.contains("8") && widthError.contains("16"), widthError)

        // Free to change.
        var free = saved
        free.train.maxSteps = 999; free.train.epochs = 7; free.checkpoint.everySteps = 3; free.checkpoint.keep = 9
        free.output.dir = "elsewhere"; free.train.logEvery = 1; free.train.threads = 2; free.train.bucketMB = 1
        XCTAssertNoThrow(try Trainer.checkResumable(saved: saved, current: free, file: "ck"))
    }

    /// `resnet export`: the weights and buffers, no optimizer state, values unchanged; refuses a
    /// corrupt checkpoint naming it (and writes nothing).
    func testExportDropsOptimizerStateAndRefusesCorruptFiles() throws {
        let dir = try Self.dirs.make("ckpt")
        let ckpt = dir + "/ckpt.safetensors"
        try writeFile(ckpt, Checkpoint.encode(CheckpointSamples.tensors(), metadata: CheckpointSamples.metadata))
        let n = try exportWeights(checkpoint: ckpt, to: dir + "/model.safetensors")
        let out = try SafeTensors.read(path: dir + "/model.safetensors")
        let expected = CheckpointSamples.tensors().filter { !$0.name.hasPrefix("optimizer.") }
        XCTAssertEqual(n, expected.count)
        XCTAssertEqual(Set(out.tensors.keys), Set(expected.map(\.name)))
        XCTAssertFalse(out.tensors.keys.contains { $0.hasPrefix("optimizer.") })
        for t in expected {
            XCTAssertEqual(out.tensors[t.name]?.values.map(\.bitPattern), t.values.map(\.bitPattern), t.name)
            XCTAssertEqual(out.tensors[t.name]?.type, t.type, t.name)
        }
        XCTAssertNil(out.metadata["format_name"], "an export must not look like a checkpoint")

        try flipByte(ckpt, at: -1)
        XCTAssertThrowsError(try exportWeights(checkpoint: ckpt, to: dir + "/bad.safetensors")) { error in
            XCTAssertTrue("\(error)".contains(ckpt) && "\(error)".contains("checksum"), "\(error)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/bad.safetensors"))
    }

    /// `resnet eval --checkpoint`: the stored config, with overrides on top.
    func testStoredConfigIsReadBackWithOverrides() throws {
        var config = RunConfig()
        config.model.width = 8
        config.train.batchSize = 64
        var meta = CheckpointSamples.metadata
        meta["config"] = config.yamlString()
        let dir = try Self.dirs.make("ckpt")
        let ckpt = dir + "/ckpt.safetensors"
        try writeFile(ckpt, Checkpoint.encode(CheckpointSamples.tensors(), metadata: meta))
        XCTAssertEqual(try checkpointConfig(ckpt, overrides: []), config)
        XCTAssertEqual(try checkpointConfig(ckpt, overrides: ["train.batch_size=32"]).train.batchSize, 32)
    }

    func writeFile(_ path: String, _ bytes: [UInt8]) throws {
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }

    /// Flips the bits of the byte at `offset` (negative: from the end).
    func flipByte(_ path: String, at offset: Int) throws {
        var b = try CheckpointStore.readFile(path)
        b[offset < 0 ? b.count + offset : offset] ^= 0xFF
        try writeFile(path, b)
    }
}
