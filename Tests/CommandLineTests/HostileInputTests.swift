// A careless or hostile user, case by case (issue 7): every case ends with a non-zero exit
// status below 128 (no trap, no signal), within a bound (no hang), with a message naming the
// key, option, file, rank or step and what was expected, and with no file created, changed or
// lost. Runs the release binary on tiny synthetic models (seconds each).
import XCTest
import TestSupport
import Foundation
import NN
import Coordinator
#if canImport(Glibc)
import Glibc
#endif

final class HostileInputTests: XCTestCase {
    private static let dirs = RunDirectories(prefix: "resnet-hostile")
    override class func tearDown() { dirs.removeAll(); super.tearDown() }

    // MARK: Fixtures

    /// A ResNet-18 of width 4 on 64 synthetic 28x28 images, batch 16: 4 steps per epoch.
    func tinyArgs(_ dir: String, epochs: Int = 1, _ extra: [String] = []) -> [String] {
        ["train", "--set", "model.width=4", "--set", "data.dataset=synthetic", "--set", "data.synthetic_count=64",
         "--set", "data.image_size=0", "--set", "train.batch_size=16", "--set", "train.epochs=\(epochs)",
         "--set", "output.dir=\(dir)"] + extra
    }

    func run(_ args: [String], timeout: Double = 120, file: StaticString = #filePath, line: UInt = #line) throws -> String {
        let r = runProcess(try resnetBinary(), args, environment: singleProcessEnvironment(), timeout: timeout)
        XCTAssertEqual(r.status, 0, "\(args) failed:\n\(r.stdout)\n\(r.stderr)", file: file, line: line)
        return r.stdout + r.stderr
    }

    /// A trained tiny run in a fresh folder (checkpoint at every epoch end and at the end).
    func trainedRun(_ tag: String, epochs: Int = 1) throws -> String {
        let dir = try Self.dirs.make(tag)
        _ = try run(tinyArgs(dir, epochs: epochs))
        return dir
    }

    func newestCheckpoint(_ dir: String) throws -> String {
        guard let p = CheckpointStore(folder: dir + "/checkpoints", keep: 1).candidates().first else {
            throw TestFailure("no checkpoint in \(dir)")
        }
        return p
    }

    /// A checkpoint re-encoded (valid checksum) after `edit` changed its tensors or metadata.
    func forgedCheckpoint(from path: String, to out: String,
                          edit: (inout [String: NamedTensor], inout [String: String]) -> Void) throws {
        var (tensors, meta) = try Checkpoint.verify(try CheckpointStore.readFile(path), file: path)
        edit(&tensors, &meta)
        let bytes = Checkpoint.encode(tensors.values.sorted { $0.name < $1.name }, metadata: meta)
        try Data(bytes).write(to: URL(fileURLWithPath: out))
    }

    /// An IDX (MNIST-format) dataset folder with `train` and `test` images of the given sides.
    func idxRoot(train: (n: Int, side: Int), test: (n: Int, side: Int)) throws -> String {
        let root = try Self.dirs.make("idx")
        func write(_ name: String, _ n: Int, _ side: Int) throws {
            func be(_ v: Int) -> [UInt8] { [UInt8(v >> 24 & 0xff), UInt8(v >> 16 & 0xff), UInt8(v >> 8 & 0xff), UInt8(v & 0xff)] }
            let images = [0, 0, 8, 3] + be(n) + be(side) + be(side) + (0..<(n * side * side)).map { UInt8($0 % 251) }
            let labels = [0, 0, 8, 1] + be(n) + (0..<n).map { UInt8($0 % 10) }
            try Data(images).write(to: URL(fileURLWithPath: "\(root)/\(name)-images-idx3-ubyte"))
            try Data(labels).write(to: URL(fileURLWithPath: "\(root)/\(name)-labels-idx1-ubyte"))
        }
        try write("train", train.n, train.side)
        try write("t10k", test.n, test.side)
        return root
    }

    // MARK: Values that used to trap

    func testOutOfRangeValuesAreRefusedBeforeAnythingIsWritten() throws {
        let base = try Self.dirs.make("range")
        let out = base + "/run"
        for (set, needles) in [
            ("model.width=100000", ["model.width", "1...4096", "100000"]),
            ("data.synthetic_count=1000000000", ["data.synthetic_count", "1...100000000"]),
            ("train.epochs=9223372036854775807", ["train.epochs", "1...1000000"]),
            ("schedule.warmup_epochs=1e300", ["schedule.warmup_epochs", "0.0...1000000.0"]),
            ("train.bucket_mb=1e300", ["train.bucket_mb", "0.001...4096.0"]),
            ("optimizer.lr=1e308", ["optimizer.lr", "0.0...1000.0"]),
        ] {
            try expectRefusal(tinyArgs(out, ["--set", set]), mentions: needles, absent: [out])
        }
    }

    func testRunsThatCannotFitInMemoryAreRefusedWithTheFigureAndTheKey() throws {
        let base = try Self.dirs.make("memory")
        let out = base + "/run"
        try expectRefusal(["train", "--set", "data.image_size=4096", "--set", "output.dir=\(out)"],
                          mentions: ["not enough memory", "TiB", "data.image_size (4096)", "available"], absent: [out])
        try expectRefusal(tinyArgs(out, ["--set", "data.synthetic_count=100000000", "--set", "data.image_size=2048"]),
                          mentions: ["not enough memory", "data.synthetic_count (100000000)"], absent: [out])
        try expectRefusal(["bench", "--batch", "100000000"], mentions: ["--batch must be an integer in 1...1000000", "100000000"])
        try expectRefusal(["bench", "--batch", "1000000", "--steps", "1"], mentions: ["not enough memory", "train.batch_size"])
        try expectRefusal(["summary", "--input", "1x9223372036854775807x9223372036854775807"], mentions: ["--input", "at most 65536"])
    }

    /// The checksum proves the bytes are what was written, not that the numbers make sense.
    func testCheckpointWithAValidChecksumButAbsurdOrNonFiniteContentIsRefused() throws {
        let src = try trainedRun("forge-src")
        let ckpt = try newestCheckpoint(src)
        let dir = try Self.dirs.make("forge")
        let absurd = dir + "/absurd.safetensors", nan = dir + "/nan.safetensors"
        try forgedCheckpoint(from: ckpt, to: absurd) { _, meta in meta["global_step"] = "9223372036854775807" }
        try forgedCheckpoint(from: ckpt, to: nan) { tensors, _ in
            var t = tensors["1.0.conv1.weight"]!
            t.values[5] = .nan
            tensors["1.0.conv1.weight"] = t
        }
        let out = dir + "/run"
        try expectRefusal(tinyArgs(out, ["--resume", absurd]), mentions: [absurd, "global_step", "expected an integer in 0..."],
                          unchanged: [src], absent: [out + "/model.safetensors", out + "/metrics.jsonl"])
        try expectRefusal(tinyArgs(out, ["--resume", nan]), mentions: [nan, "1.0.conv1.weight", "nan", "element 5"],
                          unchanged: [src], absent: [out + "/model.safetensors", out + "/metrics.jsonl"])
        try expectRefusal(["eval", "--checkpoint", nan], mentions: ["1.0.conv1.weight", "nan"])
    }

    func testNonFiniteInitialWeightsAreRefusedNamingTheTensor() throws {
        let dir = try Self.dirs.make("initnan")
        let model = ResNet(ResNetSpec(width: 4))
        var tensors = SafeTensors.collect([model.params, model.buffers])
        let i = tensors.firstIndex { $0.name == "4.1.bn2.running_var" }!
        tensors[i].values[2] = .infinity
        let weights = dir + "/w.safetensors"
        try SafeTensors.write(tensors, metadata: [:], to: weights)
        let out = dir + "/run"
        try expectRefusal(tinyArgs(out, ["--set", "train.init_weights=\(weights)"]),
                          mentions: ["train.init_weights", "4.1.bn2.running_var", "inf", "element 2"],
                          absent: [out + "/model.safetensors", out + "/metrics.jsonl"])
        try expectRefusal(["eval", "--weights", weights, "--set", "model.width=4", "--set", "data.dataset=synthetic"],
                          mentions: ["4.1.bn2.running_var", "inf"])
    }

    func testADivergingRunStopsNamingTheStep() throws {
        let dir = try Self.dirs.make("diverge")
        let text = try expectRefusal(tinyArgs(dir, epochs: 5, ["--set", "optimizer.lr=1000"]),
                                     mentions: ["step ", "the training loss is", "optimizer.lr 1000.0"],
                                     absent: [dir + "/model.safetensors"])
        XCTAssertFalse(text.contains("final test accuracy"), text)
    }

    // MARK: Data

    func testEachDatasetHasItsOwnDefaultFolder() throws {
        guard !FileManager.default.fileExists(atPath: "/usr/share/datasets/mnist") else {
            throw XCTSkip("/usr/share/datasets/mnist exists here: the missing-dataset message cannot be provoked")
        }
        let out = try Self.dirs.make("mnist") + "/run"
        try expectRefusal(["train", "--set", "data.dataset=mnist", "--set", "output.dir=\(out)"],
                          mentions: ["MNIST not found", "/usr/share/datasets/mnist/train-images-idx3-ubyte"], absent: [out])
    }

    func testEmptySplitsAndTestImagesOfAnotherShapeAreErrors() throws {
        let out = try Self.dirs.make("splits") + "/run"
        let common = ["--set", "model.width=4", "--set", "data.dataset=mnist", "--set", "data.image_size=0",
                      "--set", "train.batch_size=4", "--set", "output.dir=\(out)"]
        let empty = try idxRoot(train: (8, 28), test: (0, 28))
        try expectRefusal(["train", "--set", "data.root=\(empty)"] + common, mentions: [empty, "0 images"], absent: [out])
        let other = try idxRoot(train: (8, 28), test: (4, 14))
        try expectRefusal(["train", "--set", "data.root=\(other)"] + common,
                          mentions: [other, "test images are 1x14x14", "training images are 1x28x28"], absent: [out])
        try expectRefusal(["eval", "--weights", "/nonexistent.safetensors", "--set", "data.root=\(empty)"] + common.dropLast(2),
                          mentions: ["/nonexistent.safetensors"])
    }

    /// Bounded input through the binary: a 1 KB YAML alias bomb in a config file and a gzip bomb
    /// (a valid IDX header for 8 images, then 64 MiB of zeros: 64 KB compressed) are refused by
    /// their limits with short messages, before anything is written.
    func testYAMLAndGzipBombsAreRefusedByTheirLimits() throws {
        let dir = try Self.dirs.make("bombs")
        var yaml = "data:\n  mean:\n"
        yaml += "    - &a0 [0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]\n"
        for i in 1...8 { yaml += "    - &a\(i) [" + Array(repeating: "*a\(i - 1)", count: 10).joined(separator: ", ") + "]\n" }
        XCTAssertLessThan(yaml.utf8.count, 1200)
        try yaml.write(toFile: dir + "/bomb.yaml", atomically: true, encoding: .utf8)
        try expectRefusal(["train", "--config", dir + "/bomb.yaml", "--set", "output.dir=\(dir)/run"],
                          mentions: [dir + "/bomb.yaml", "alias"], absent: [dir + "/run"], timeout: 30)

        let root = try idxRoot(train: (8, 28), test: (4, 28))
        let header = "printf '\\000\\000\\010\\003\\000\\000\\000\\010\\000\\000\\000\\034\\000\\000\\000\\034'"
        let make = "(\(header); head -c 67108864 /dev/zero) | gzip -c > \(root)/train-images-idx3-ubyte.gz && rm \(root)/train-images-idx3-ubyte"
        let r = runProcess("/bin/sh", ["-c", make], timeout: 60)
        XCTAssertEqual(r.status, 0, r.stderr)
        try expectRefusal(["train", "--set", "data.dataset=mnist", "--set", "data.root=\(root)", "--set", "model.width=4",
                           "--set", "data.image_size=0", "--set", "train.batch_size=4", "--set", "output.dir=\(dir)/run2"],
                          mentions: ["train-images-idx3-ubyte.gz", "header says 8 images of 28x28", "the rest was not read"],
                          absent: [dir + "/run2"], timeout: 30)
    }

    func testARootThatIsAFileIsNamedAsSuch() throws {
        let dir = try Self.dirs.make("rootfile")
        let file = dir + "/not-a-folder"
        _ = FileManager.default.createFile(atPath: file, contents: Data("x".utf8))
        try expectRefusal(["train", "--set", "data.root=\(file)", "--set", "output.dir=\(dir)/run"],
                          mentions: ["data.root \(file) is a file, not a folder"], absent: [dir + "/run"])
    }

    // MARK: One run per folder, nothing lost

    func testAFreshRunIntoAFolderHoldingARunIsRefusedUnlessOverwriteIsGiven() throws {
        let dir = try trainedRun("fresh", epochs: 3)   // checkpoints at steps 4, 8, 12
        let text = try expectRefusal(tinyArgs(dir), mentions: ["already holds a run", "config.yaml", "--resume auto", "--overwrite"],
                                     unchanged: [dir])
        XCTAssertTrue(text.contains("3 checkpoints"), text)
        // A checkpoint of another run is not this folder's: refused the same way.
        let other = try trainedRun("fresh-other")
        try expectRefusal(tinyArgs(dir, ["--resume", try newestCheckpoint(other)]), mentions: ["not one of its own"], unchanged: [dir, other])
        try expectRefusal(tinyArgs(dir, ["--resume", "auto", "--overwrite"]), mentions: ["--overwrite and --resume cannot apply together"],
                          unchanged: [dir])
        // --overwrite starts over: the old run's later checkpoints are gone, the new run's are kept.
        _ = try run(tinyArgs(dir, ["--overwrite"]))
        XCTAssertEqual(CheckpointStore(folder: dir + "/checkpoints", keep: 1).candidates().map { ($0 as NSString).lastPathComponent },
                       [CheckpointStore.fileName(step: 4)])
        let metrics = try String(contentsOfFile: dir + "/metrics.jsonl", encoding: .utf8)
        XCTAssertFalse(metrics.contains("\"step\":8"), "metrics of the old run survived --overwrite:\n\(metrics)")
    }

    func testASecondRunOnTheSameFolderIsRefusedNamingTheHolder() throws {
        let dir = try Self.dirs.make("lock")
        let first = try BackgroundJob(executable: try resnetBinary(), args: tinyArgs(dir, epochs: 100_000),
                                      environment: singleProcessEnvironment())
        defer { first.killEverything(matching: dir) }
        let deadline = Date().addingTimeInterval(60)
        while !FileManager.default.fileExists(atPath: dir + "/metrics.jsonl") && Date() < deadline && first.isRunning { usleep(100_000) }
        XCTAssertTrue(first.isRunning, "the first run ended:\n\(first.stdout)\n\(first.stderr)")
        try expectRefusal(tinyArgs(dir, ["--resume", "auto"]), mentions: ["is in use by another run", "pid \(first.pid)"])
        try expectRefusal(tinyArgs(dir, ["--overwrite"]), mentions: ["is in use by another run", "pid \(first.pid)"])
        XCTAssertTrue(first.isRunning, "the refused runs disturbed the first one")
    }

    func testExportNeverOverwritesItsInput() throws {
        let dir = try trainedRun("export")
        let ckpt = try newestCheckpoint(dir)
        try expectRefusal(["export", ckpt, "--out", ckpt], mentions: ["is the checkpoint being exported"], unchanged: [dir])
        let viaOtherName = dir + "/checkpoints/../checkpoints/" + (ckpt as NSString).lastPathComponent
        try expectRefusal(["export", ckpt, "--out", viaOtherName], mentions: ["is the checkpoint being exported"], unchanged: [dir])
        try expectRefusal(["export", ckpt, "--out", ""], mentions: ["--out", "expected the path of the weights file"], unchanged: [dir])
        try expectRefusal(["export", ckpt, "--out", dir], mentions: ["is a folder"], unchanged: [dir])
    }

    // MARK: Options that cannot apply together, vague cases

    func testEvalOptionsThatCannotApplyTogether() throws {
        let dir = try trainedRun("evalopts")
        try expectRefusal(["eval", "--checkpoint", try newestCheckpoint(dir), "--config", packageRoot + "/configs/smoke.yaml"],
                          mentions: ["--config cannot be used with --checkpoint", "--set"])
        // Weights of a width-4 model, no --config: say which model to build.
        try expectRefusal(["eval", "--weights", dir + "/model.safetensors"],
                          mentions: ["holds a ResNet-18 of width 4", "default model is a ResNet-18 of width 64", "--set model.width=4"])
        XCTAssertTrue(try run(["eval", "--weights", dir + "/model.safetensors", "--config", dir + "/config.yaml"]).contains("test loss"))
    }

    func testAVeryLongOutputDirIsRefusedLeavingNoFolders() throws {
        let base = try Self.dirs.make("long")
        let out = base + "/a/" + String(repeating: "x", count: 300) + "/b"
        try expectRefusal(tinyArgs(out), mentions: ["output.dir", "at most 255 bytes", "one has 300"], absent: [base + "/a"])
    }

    /// MPMD: one rank `train`, the other `eval` — refused at once instead of waiting forever.
    func testRanksRunningDifferentCommandsAreRefused() throws {
        let bin = try resnetBinary()
        try requireMPI()
        let dir = try trainedRun("mpmd")
        let out = try Self.dirs.make("mpmd-out")
        let a = tinyArgs(out)
        let b = ["eval", "--weights", dir + "/model.safetensors", "--config", dir + "/config.yaml"]
        let r = runProcess("/usr/bin/mpirun", ["--oversubscribe", "-np", "1", bin] + a + [":", "-np", "1", bin] + b,
                           environment: mpirunEnvironment(["OPENBLAS_NUM_THREADS": "1"]), timeout: 60, killMarker: out)
        let text = r.stdout + r.stderr
        XCTAssertFalse(r.timedOut, "an MPMD train + eval launch hung")
        XCTAssertNotEqual(r.status, 0, text)
        XCTAssertTrue(text.contains("rank 1 runs 'resnet eval' but rank 0 runs 'resnet train'"), text)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out + "/metrics.jsonl"))
    }
}
