import XCTest
import Foundation
@testable import Training

final class ConfigTests: XCTestCase {
    private var tempDir: String!

    override func setUpWithError() throws {
        tempDir = NSTemporaryDirectory() + "config-tests-\(getpid())-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: tempDir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: tempDir)
    }

    private func file(_ yaml: String, name: String = "run.yaml") throws -> String {
        let path = tempDir + "/" + name
        try yaml.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// Asserts that `body` throws a ConfigError whose message contains every fragment.
    private func assertConfigError(_ fragments: [String], file: StaticString = #filePath, line: UInt = #line,
                                   _ body: () throws -> Void) {
        do {
            try body()
            XCTFail("expected a ConfigError containing \(fragments)", file: file, line: line)
        } catch let e as ConfigError {
            for f in fragments {
                XCTAssertTrue(e.description.contains(f), "'\(e.description)' does not contain '\(f)'", file: file, line: line)
            }
        } catch {
            XCTFail("unexpected error type \(error)", file: file, line: line)
        }
    }

    // MARK: Defaults and parsing

    func testDefaults() throws {
        let c = RunConfig.default
        XCTAssertEqual(c.model.depth, 18); XCTAssertEqual(c.model.inChannels, 1)
        XCTAssertEqual(c.model.numClasses, 10); XCTAssertEqual(c.model.width, 64)
        XCTAssertEqual(c.data.dataset, "fashion-mnist"); XCTAssertEqual(c.data.root, "")
        XCTAssertEqual(c.data.imageSize, 96); XCTAssertTrue(c.data.shuffle); XCTAssertFalse(c.data.augment)
        XCTAssertFalse(c.data.normalize); XCTAssertEqual(c.data.mean, [0.2860]); XCTAssertEqual(c.data.std, [0.3530])
        XCTAssertEqual(c.data.syntheticCount, 1024)
        XCTAssertEqual(c.train.batchSize, 256); XCTAssertEqual(c.train.epochs, 10); XCTAssertEqual(c.train.maxSteps, 0)
        XCTAssertEqual(c.train.seed, 0); XCTAssertNil(c.train.initWeights); XCTAssertFalse(c.train.syncBN)
        XCTAssertEqual(c.train.bucketMB, 4.0); XCTAssertEqual(c.train.threads, 0); XCTAssertFalse(c.train.debug)
        XCTAssertTrue(c.train.evalEveryEpoch); XCTAssertEqual(c.train.logEvery, 10)
        XCTAssertEqual(c.optimizer.lr, 0.05); XCTAssertEqual(c.optimizer.momentum, 0.9)
        XCTAssertEqual(c.optimizer.weightDecay, 0); XCTAssertFalse(c.optimizer.nesterov)
        XCTAssertEqual(c.schedule.kind, .constant); XCTAssertEqual(c.schedule.warmupEpochs, 0)
        XCTAssertEqual(c.schedule.stepEpochs, 30); XCTAssertEqual(c.schedule.gamma, 0.1); XCTAssertEqual(c.schedule.minLR, 0)
        XCTAssertEqual(c.checkpoint.everySteps, 0); XCTAssertTrue(c.checkpoint.everyEpoch); XCTAssertEqual(c.checkpoint.keep, 3)
        XCTAssertEqual(c.output.dir, "runs/default")
        XCTAssertNoThrow(try c.validate())
        XCTAssertEqual(try RunConfig.load(path: nil, overrides: []), c)
    }

    func testEmptyFileAndEmptySectionGiveDefaults() throws {
        XCTAssertEqual(try RunConfig.load(path: try file(""), overrides: []), .default)
        XCTAssertEqual(try RunConfig.load(path: try file("# just a comment\n"), overrides: []), .default)
        XCTAssertEqual(try RunConfig.load(path: try file("model:\ntrain:\n"), overrides: []), .default)
    }

    func testFullFileParsed() throws {
        let yaml = """
        model: {depth: 50, in_channels: 3, num_classes: 100, width: 32}
        data:
          dataset: cifar10
          root: /data/cifar
          image_size: 0
          shuffle: false
          augment: true
          normalize: true
          mean: [0.4914, 0.4822, 0.4465]
          std: [0.247, 0.243, 0.261]
          synthetic_count: 64
        train:
          batch_size: 128
          epochs: 3
          max_steps: 100
          seed: 42
          init_weights: weights/init.safetensors
          sync_bn: true
          bucket_mb: 8
          threads: 2
          debug: true
          eval_every_epoch: false
          log_every: 5
        optimizer: {lr: 0.1, momentum: 0.0, weight_decay: 5e-4, nesterov: false}
        schedule: {kind: cosine, warmup_epochs: 0.5, step_epochs: 7, gamma: 0.5, min_lr: 0.001}
        checkpoint: {every_steps: 50, every_epoch: false, keep: 1}
        output: {dir: runs/cifar}
        """
        let c = try RunConfig.load(path: try file(yaml), overrides: [])
        XCTAssertEqual(c.model.depth, 50); XCTAssertEqual(c.model.inChannels, 3); XCTAssertEqual(c.model.numClasses, 100)
        XCTAssertEqual(c.model.width, 32)
        XCTAssertEqual(c.data.dataset, "cifar10"); XCTAssertEqual(c.data.root, "/data/cifar"); XCTAssertEqual(c.data.imageSize, 0)
        XCTAssertFalse(c.data.shuffle); XCTAssertTrue(c.data.augment); XCTAssertTrue(c.data.normalize)
        XCTAssertEqual(c.data.mean, [0.4914, 0.4822, 0.4465]); XCTAssertEqual(c.data.std, [0.247, 0.243, 0.261])
        XCTAssertEqual(c.data.syntheticCount, 64)
        XCTAssertEqual(c.train.batchSize, 128); XCTAssertEqual(c.train.epochs, 3); XCTAssertEqual(c.train.maxSteps, 100)
        XCTAssertEqual(c.train.seed, 42); XCTAssertEqual(c.train.initWeights, "weights/init.safetensors")
        XCTAssertTrue(c.train.syncBN); XCTAssertEqual(c.train.bucketMB, 8); XCTAssertEqual(c.train.threads, 2)
        XCTAssertTrue(c.train.debug); XCTAssertFalse(c.train.evalEveryEpoch); XCTAssertEqual(c.train.logEvery, 5)
        XCTAssertEqual(c.optimizer.lr, 0.1); XCTAssertEqual(c.optimizer.momentum, 0); XCTAssertEqual(c.optimizer.weightDecay, 5e-4)
        XCTAssertEqual(c.schedule.kind, .cosine); XCTAssertEqual(c.schedule.warmupEpochs, 0.5); XCTAssertEqual(c.schedule.stepEpochs, 7)
        XCTAssertEqual(c.schedule.gamma, 0.5); XCTAssertEqual(c.schedule.minLR, 0.001)
        XCTAssertEqual(c.checkpoint.everySteps, 50); XCTAssertFalse(c.checkpoint.everyEpoch); XCTAssertEqual(c.checkpoint.keep, 1)
        XCTAssertEqual(c.output.dir, "runs/cifar")
    }

    func testMissingKeysTakeDefaults() throws {
        let c = try RunConfig.load(path: try file("train:\n  epochs: 2\n"), overrides: [])
        var expected = RunConfig.default
        expected.train.epochs = 2
        XCTAssertEqual(c, expected)
    }

    // MARK: File errors

    func testMissingFile() {
        let path = tempDir + "/nope.yaml"
        assertConfigError(["not found", path]) { _ = try RunConfig.load(path: path, overrides: []) }
    }

    func testInvalidYAML() throws {
        let path = try file("model: [depth: 18\n")
        assertConfigError([path, "invalid YAML"]) { _ = try RunConfig.load(path: path, overrides: []) }
    }

    func testTopLevelNotAMapping() throws {
        let path = try file("- 1\n- 2\n")
        assertConfigError([path, "top level"]) { _ = try RunConfig.load(path: path, overrides: []) }
    }

    func testUnknownTopLevelKey() throws {
        let path = try file("modle:\n  depth: 18\n")
        assertConfigError([path, "unknown key 'modle'", "did you mean 'model'",
                           "model, data, train, optimizer, schedule, checkpoint, output"]) {
            _ = try RunConfig.load(path: path, overrides: [])
        }
    }

    func testUnknownNestedKeyNamesDottedKeyAndValidKeys() throws {
        let path = try file("model:\n  dept: 34\n")
        assertConfigError([path, "unknown key 'model.dept'", "depth, in_channels, num_classes, width"]) {
            _ = try RunConfig.load(path: path, overrides: [])
        }
        let path2 = try file("schedule:\n  kind: step\n  warmup: 1\n", name: "b.yaml")
        assertConfigError([path2, "'schedule.warmup'", "kind, warmup_epochs, step_epochs, gamma, min_lr"]) {
            _ = try RunConfig.load(path: path2, overrides: [])
        }
    }

    func testWrongTypes() throws {
        let cases: [(String, [String])] = [
            ("model:\n  depth: abc\n", ["model.depth", "expected an integer", "'abc'"]),
            ("model:\n  depth: 18.5\n", ["model.depth", "expected an integer", "'18.5'"]),
            ("model:\n  depth: \"18\"\n", ["model.depth", "expected an integer"]),
            ("data:\n  shuffle: maybe\n", ["data.shuffle", "expected a boolean", "'maybe'"]),
            ("data:\n  mean: {a: 1}\n", ["data.mean", "expected a list of numbers", "a mapping"]),
            ("data:\n  mean: [0.1, x]\n", ["data.mean", "expected a list of numbers", "'x'"]),
            ("data:\n  root: [a, b]\n", ["data.root", "expected a string", "a list"]),
            ("optimizer:\n  lr: fast\n", ["optimizer.lr", "expected a number", "'fast'"]),
            ("schedule:\n  kind: linear\n", ["schedule.kind", "one of constant, step, cosine", "'linear'"]),
            ("train:\n  batch_size:\n    a: 1\n", ["train.batch_size", "expected an integer", "a mapping"]),
            ("train:\n  batch_size: null\n", ["train.batch_size", "expected an integer", "null"]),
            ("model: 18\n", ["model", "expected a mapping", "'18'"]),
        ]
        for (i, (yaml, fragments)) in cases.enumerated() {
            let path = try file(yaml, name: "t\(i).yaml")
            assertConfigError([path] + fragments) { _ = try RunConfig.load(path: path, overrides: []) }
        }
    }

    // MARK: Overrides

    func testOverridesApplied() throws {
        let path = try file("train:\n  epochs: 2\n  init_weights: a.safetensors\n")
        let c = try RunConfig.load(path: path, overrides: [
            "train.epochs=7", "model.depth=34", "optimizer.lr=0.2", "data.normalize=true",
            "data.mean=[0.5]", "data.std=0.25", "schedule.kind=step", "output.dir=runs/x y",
            "train.init_weights=null", "data.dataset=synthetic", "train.epochs=8",
        ])
        XCTAssertEqual(c.train.epochs, 8)     // later overrides win
        XCTAssertEqual(c.model.depth, 34)
        XCTAssertEqual(c.optimizer.lr, 0.2)
        XCTAssertTrue(c.data.normalize)
        XCTAssertEqual(c.data.mean, [0.5]); XCTAssertEqual(c.data.std, [0.25])
        XCTAssertEqual(c.schedule.kind, .step)
        XCTAssertEqual(c.output.dir, "runs/x y")
        XCTAssertNil(c.train.initWeights)
        XCTAssertEqual(c.data.dataset, "synthetic")
    }

    func testBadSetSyntax() {
        for bad in ["train.epochs", "epochs=5", "train.epochs.x=5", ".epochs=5", "train.=5", "=5"] {
            assertConfigError(["--set \(bad)", "section.key=value"]) { _ = try RunConfig.load(path: nil, overrides: [bad]) }
        }
    }

    func testSetUnknownKeyAndSection() {
        assertConfigError(["--set train.epoch=3", "unknown key 'train.epoch'", "did you mean 'epochs'", "batch_size, epochs"]) {
            _ = try RunConfig.load(path: nil, overrides: ["train.epoch=3"])
        }
        assertConfigError(["--set trian.epochs=3", "unknown key 'trian.epochs'", "did you mean 'train'"]) {
            _ = try RunConfig.load(path: nil, overrides: ["trian.epochs=3"])
        }
    }

    func testSetWrongTypeAndBadValue() {
        assertConfigError(["--set train.epochs=many", "train.epochs", "expected an integer", "'many'"]) {
            _ = try RunConfig.load(path: nil, overrides: ["train.epochs=many"])
        }
        assertConfigError(["--set data.mean=[1, 2", "cannot parse value"]) {
            _ = try RunConfig.load(path: nil, overrides: ["data.mean=[1, 2"])
        }
        assertConfigError(["--set train.sync_bn=", "train.sync_bn", "expected a boolean"]) {
            _ = try RunConfig.load(path: nil, overrides: ["train.sync_bn="])
        }
    }

    // MARK: Validation

    func testValidationErrors() {
        let cases: [([String], [String])] = [
            (["model.depth=20"], ["model.depth", "18, 34, 50", "20"]),
            (["model.in_channels=0"], ["model.in_channels", "1...1024"]),
            (["model.num_classes=1"], ["model.num_classes"]),
            (["model.width=0"], ["model.width", "1...4096"]),
            (["model.width=100000"], ["model.width", "1...4096", "100000"]),
            (["data.dataset=imagenet"], ["data.dataset", "fashion-mnist, mnist, cifar10, synthetic", "imagenet"]),
            (["data.root=/a/\(String(repeating: "x", count: 300))/b"], ["data.root", "at most 255 bytes", "…"]),
            (["data.image_size=-1"], ["data.image_size"]),
            (["data.normalize=true", "model.in_channels=3"], ["data.mean", "3 value(s)", "in_channels"]),
            (["data.normalize=true", "data.std=[0.1, 0.2]"], ["data.std", "1 value(s)"]),
            (["data.std=[0]"], ["data.std", "1e-06...1000000.0"]),
            (["data.image_size=4097"], ["data.image_size", "0...4096"]),
            (["data.crop_padding=-1"], ["data.crop_padding", "0...64"]),
            (["data.crop_padding=65"], ["data.crop_padding", "0...64"]),
            (["data.synthetic_count=1000000000"], ["data.synthetic_count", "1...100000000"]),
            (["data.synthetic_count=0"], ["data.synthetic_count"]),
            (["train.batch_size=0"], ["train.batch_size", "1...1000000", "0"]),
            (["train.epochs=0"], ["train.epochs", "1...1000000"]),
            (["train.epochs=9223372036854775807"], ["train.epochs", "1...1000000", "9223372036854775807"]),
            (["train.max_steps=-1"], ["train.max_steps"]),
            (["train.seed=-3"], ["train.seed"]),
            (["train.bucket_mb=0"], ["train.bucket_mb", "0.001...4096.0"]),
            (["train.bucket_mb=1e300"], ["train.bucket_mb", "0.001...4096.0", "1e+300"]),
            (["train.threads=-1"], ["train.threads"]),
            (["train.log_every=0"], ["train.log_every"]),
            (["train.init_weights=''"], ["train.init_weights"]),
            (["train.accumulate_steps=0"], ["train.accumulate_steps", "1...1000000"]),
            (["train.accumulate_steps=3"], ["train.accumulate_steps", "a divisor of train.batch_size (256)", "3"]),
            (["train.label_smoothing=1"], ["train.label_smoothing", "[0, 1)", "1.0"]),
            (["train.label_smoothing=-0.1"], ["train.label_smoothing", "[0, 1)"]),
            (["train.collective_timeout_s=-5"], ["train.collective_timeout_s", "0 = no watchdog", "-5"]),
            (["train.collective_timeout_s=.inf"], ["train.collective_timeout_s", "finite"]),
            (["train.trace_steps=5-3"], ["train.trace_steps", "A <= B", "5-3"]),
            (["train.trace_steps=0"], ["train.trace_steps", "from 1"]),
            (["train.trace_steps=ten"], ["train.trace_steps", "'ten'"]),
            (["optimizer.lr_per_256=-1"], ["optimizer.lr_per_256", "0.0...1000.0"]),
            (["optimizer.lr_per_256=900", "train.batch_size=1024"], ["optimizer.lr_per_256", "after scaling by batch_size / 256 (1024 / 256)", "3600"]),
            (["optimizer.lr_per_256=0.1", "schedule.kind=cosine", "schedule.min_lr=0.5"], ["schedule.min_lr", "the lr optimizer.lr_per_256 gives (0.1)"]),
            (["optimizer.lr=-0.1"], ["optimizer.lr", "0.0...1000.0"]),
            (["optimizer.lr=1e308"], ["optimizer.lr", "0.0...1000.0", "1e+308"]),
            (["optimizer.lr=.nan"], ["optimizer.lr", "finite"]),
            (["optimizer.momentum=1"], ["optimizer.momentum", "[0, 1)"]),
            (["optimizer.momentum=-0.5"], ["optimizer.momentum", "[0, 1)"]),
            (["optimizer.weight_decay=-1e-4"], ["optimizer.weight_decay"]),
            (["optimizer.nesterov=true", "optimizer.momentum=0"], ["optimizer.nesterov"]),
            (["schedule.warmup_epochs=-1"], ["schedule.warmup_epochs"]),
            (["schedule.warmup_epochs=1e300"], ["schedule.warmup_epochs", "0.0...1000000.0"]),
            (["schedule.step_epochs=0"], ["schedule.step_epochs"]),
            (["schedule.gamma=0"], ["schedule.gamma", "1e-12...1000.0"]),
            (["schedule.min_lr=-1"], ["schedule.min_lr"]),
            (["schedule.kind=cosine", "schedule.min_lr=1"], ["schedule.min_lr", "optimizer.lr"]),
            (["checkpoint.every_steps=-1"], ["checkpoint.every_steps"]),
            (["checkpoint.keep=0"], ["checkpoint.keep", "1...1000000"]),
            (["output.dir=''"], ["output.dir"]),
            (["output.dir=runs/\(String(repeating: "y", count: 256))"], ["output.dir", "at most 255 bytes"]),
            (["output.dir=/\(String(repeating: "d/", count: 2100))"], ["output.dir", "shorter than 4096 bytes"]),
        ]
        for (overrides, fragments) in cases {
            assertConfigError(["invalid"] + fragments) { _ = try RunConfig.load(path: nil, overrides: overrides) }
        }
    }

    /// A key or value of megabytes is quoted clipped: the message stays short.
    func testLongUserInputIsClippedInMessages() {
        let long = String(repeating: "x", count: 100_000)
        for o in ["model.\(long)=3", "\(long).depth=3", "train.epochs=\(long)", "data.dataset=\(long)"] {
            do { _ = try RunConfig.load(path: nil, overrides: [o]); XCTFail("accepted \(o.prefix(40))") } catch {
                let text = "\(error)"
                XCTAssertLessThan(text.utf8.count, 1000, "\(o.prefix(40)): a message of \(text.utf8.count) bytes")
                XCTAssertTrue(text.contains("xxxx") && text.contains("…"), text)
            }
        }
    }

    /// A "billion laughs" alias bomb inside a valid key is refused by the expansion limit before
    /// Yams builds anything (it took 75 s, 300 MB and printed a 128 MiB error).
    func testYAMLAliasBombIsRefusedByTheExpansionLimit() {
        var yaml = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
        for i in 1...9 { yaml += "a\(i): &a\(i) [" + Array(repeating: "*a\(i - 1)", count: 10).joined(separator: ", ") + "]\n" }
        let inKey = "data:\n  mean: " + yaml.split(separator: "\n").map { "\n    - " + $0 }.joined() + "\n"
        for (text, label) in [(yaml, "top level"), (inKey, "inside data.mean")] {
            do { _ = try RunConfig.parse(yaml: text, file: "bomb.yaml"); XCTFail("alias bomb accepted (\(label))") } catch {
                let m = "\(error)"
                XCTAssertTrue(m.contains("bomb.yaml") && m.contains("alias"), "\(label): \(m)")
                XCTAssertLessThan(m.utf8.count, 2000, "\(label): a message of \(m.utf8.count) bytes")
            }
        }
        let set = "data.mean=[&a [1,1,1,1,1,1,1,1,1,1], &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a], &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b], [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]]"
        assertConfigError(["--set data.mean", "alias"]) { _ = try RunConfig.load(path: nil, overrides: [set]) }
    }

    /// Characters YAML treats specially inside quotes (U+0085 is a line break there; C1 controls
    /// and U+FFFE are refused raw) round-trip through the printed config (found by fuzzing).
    func testPrintedConfigRoundTripsControlCharacters() throws {
        var c = RunConfig.default
        for root in ["/data/a\u{85}b", "/data/\u{80}\u{9f}", "/data/\u{2028}\u{2029}", "/data/\u{fffe}\u{ffff}", "/data/\u{7f}"] {
            c.data.root = root
            XCTAssertEqual(try RunConfig.parse(yaml: c.yamlString()).data.root, root, c.yamlString())
        }
    }

    func testValidationNamesFile() throws {
        let path = try file("train:\n  batch_size: 0\n")
        assertConfigError(["train.batch_size", path]) { _ = try RunConfig.load(path: path, overrides: []) }
    }

    // MARK: YAML output

    func testYamlStringRoundTrips() throws {
        var c = RunConfig.default
        XCTAssertEqual(try RunConfig.parse(yaml: c.yamlString()), c)

        c.model.depth = 50; c.model.inChannels = 3
        c.data.dataset = "cifar10"; c.data.root = "/tmp/odd \"path\"\\with: colon # and hash"
        c.data.imageSize = 0; c.data.normalize = true
        c.data.mean = [0.4914, 0.48215827, 1e-7]; c.data.std = [0.1, 0.3, 3e5]
        c.train.initWeights = "w.safetensors"; c.train.bucketMB = 0.1 + 0.2; c.train.seed = 123_456_789
        c.optimizer.lr = 1e-5; c.optimizer.weightDecay = 5e-4; c.optimizer.nesterov = true
        c.schedule.kind = .step; c.schedule.warmupEpochs = 2.5; c.schedule.gamma = 1.0 / 3.0
        c.checkpoint.everySteps = 1000; c.output.dir = "runs/ünïcode\ttab"
        let yaml = c.yamlString()
        let back = try RunConfig.parse(yaml: yaml)
        XCTAssertEqual(back, c, yaml)
        XCTAssertEqual(back.yamlString(), yaml)
        XCTAssertEqual(back.canonicalHash(), c.canonicalHash())
        XCTAssertNotEqual(c.canonicalHash(), RunConfig.default.canonicalHash())

        // Through a file too.
        XCTAssertEqual(try RunConfig.load(path: try file(yaml), overrides: []), c)
    }

    func testYamlStringListsEveryKey() {
        let yaml = RunConfig.default.yamlString()
        for (section, keys) in RunConfig.schemaKeys {
            XCTAssertTrue(yaml.contains("\(section):\n"))
            for k in keys { XCTAssertTrue(yaml.contains("  \(k): "), "missing \(section).\(k)") }
        }
        XCTAssertTrue(yaml.contains("init_weights: null"))
        XCTAssertEqual(RunConfig.default.canonicalHash(), RunConfig().canonicalHash())
    }

    func testCodableUsesSnakeCase() throws {
        let data = try JSONEncoder().encode(RunConfig.default)
        let text = String(decoding: data, as: UTF8.self)
        XCTAssertTrue(text.contains("\"batch_size\""))
        XCTAssertEqual(try JSONDecoder().decode(RunConfig.self, from: data), .default)
    }

    // MARK: One source of truth

    /// Each dataset's default folder comes from the dataset: `--set data.dataset=mnist` reads
    /// MNIST's folder, not Fashion-MNIST's (their IDX file names are the same); a root given is kept.
    func testResolvedRootFollowsTheDataset() throws {
        let mnist = try RunConfig.load(path: nil, overrides: ["data.dataset=mnist"])
        XCTAssertEqual(mnist.data.resolvedRoot, "/usr/share/datasets/mnist")
        let fashion = try RunConfig.load(path: nil, overrides: [])
        XCTAssertEqual(fashion.data.resolvedRoot, "/usr/share/datasets/fashion-mnist")
        let cifar = try RunConfig.load(path: try file("data:\n  dataset: cifar10\n"), overrides: [])
        XCTAssertEqual(cifar.data.resolvedRoot, "/usr/share/datasets/cifar10")
        for dataset in ["mnist", "fashion-mnist", "cifar10"] {
            let given = try RunConfig.load(path: nil, overrides: ["data.dataset=\(dataset)", "data.root=/data/mine"])
            XCTAssertEqual(given.data.resolvedRoot, "/data/mine", dataset)
        }
    }

    /// The README's table of config keys is the one the schema makes (`resnet config-reference`
    /// prints it; paste it between the README's config-reference markers).
    func testREADMEConfigTableMatchesTheSchema() throws {
        let readme = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("README.md").path
        let text = try String(contentsOfFile: readme, encoding: .utf8)
        let begin = "<!-- config-reference: begin -->\n", end = "<!-- config-reference: end -->"
        guard let a = text.range(of: begin), let b = text.range(of: end, range: a.upperBound..<text.endIndex) else {
            return XCTFail("README.md has no config-reference markers")
        }
        XCTAssertEqual(String(text[a.upperBound..<b.lowerBound]), RunConfig.referenceTable,
                       "README.md's config table differs from the schema: regenerate it with `resnet config-reference`")
        for (section, keys) in RunConfig.schemaKeys {
            for k in keys { XCTAssertTrue(RunConfig.referenceTable.contains("`\(k)`"), "\(section).\(k) missing from the table") }
        }
    }

    /// optimizer.lr_per_256 scales with the global batch (the linear scaling rule) and replaces
    /// optimizer.lr; the trace window parses "A-B" and "A"; label smoothing reaches the model.
    func testLinearScalingTraceWindowAndLabelSmoothing() throws {
        var c = RunConfig.default
        XCTAssertEqual(c.baseLR, c.optimizer.lr)
        c.optimizer.lrPer256 = 0.1; c.train.batchSize = 1024
        XCTAssertEqual(c.baseLR, 0.4, accuracy: 1e-12)
        c.train.traceSteps = "7"; XCTAssertEqual(c.train.traceWindow, 7...7)
        c.train.traceSteps = " 2 - 9 "; XCTAssertEqual(c.train.traceWindow, 2...9)
        c.train.traceSteps = "2-"; XCTAssertNil(c.train.traceWindow)
        var s = RunConfig.default
        s.data.dataset = "synthetic"; s.data.imageSize = 8; s.model.width = 2; s.train.labelSmoothing = 0.2
        let plan = try RunPlan(s)
        XCTAssertEqual(plan.makeModel().labelSmoothing, 0.2)
        XCTAssertEqual(plan.schedule(stepsPerEpoch: 4).lr(at: 0), s.optimizer.lr)
        s.optimizer.lrPer256 = 0.2; s.train.batchSize = 128
        XCTAssertEqual(try RunPlan(s).schedule(stepsPerEpoch: 4).lr(at: 0), 0.1, accuracy: 1e-12)
    }

    /// data.crop_padding reaches the training transform (augment on), not the test one.
    func testCropPaddingReachesTheTransform() throws {
        var s = RunConfig.default
        s.data.dataset = "synthetic"; s.data.imageSize = 8; s.model.width = 2
        XCTAssertEqual(try RunPlan(s).transform(augment: true).randomCropPadding, 4)
        s.data.cropPadding = 2
        XCTAssertEqual(try RunPlan(s).transform(augment: true).randomCropPadding, 2)
        XCTAssertEqual(try RunPlan(s).transform(augment: false).randomCropPadding, 0)
    }

    /// The resumable keys are the schema's; a key outside the schema cannot be one.
    func testResumableKeysComeFromTheSchema() {
        let all = Set(RunConfig.schemaKeys.flatMap { s in s.keys.map { "\(s.section).\($0)" } })
        XCTAssertTrue(RunConfig.resumableKeys.isSubset(of: all))
        XCTAssertEqual(RunConfig.resumableKeys, [
            "train.epochs", "train.max_steps", "train.log_every", "train.debug", "train.threads",
            "train.bucket_mb", "train.eval_every_epoch", "data.root",
            "checkpoint.every_steps", "checkpoint.every_epoch", "checkpoint.keep", "output.dir",
            "train.collective_timeout_s", "train.trace_steps", "output.tensorboard",
        ])
        XCTAssertEqual(RunConfig.default.flatValues().map(\.key).count, all.count)
    }
}
