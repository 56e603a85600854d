// In-process training runs (a world of one): the loss goes down, the schedule follows its
// definition, and the run folder gets its files. (The sampler: CoordinatorTests.)
import XCTest
import Foundation
import NN
import Data
import Distributed
import Coordinator
@testable import Training

final class TrainingRunTests: XCTestCase {
    func tinyConfig(_ dir: String) -> RunConfig {
        var c = RunConfig.default
        c.model.width = 4; c.model.numClasses = 4
        c.data.dataset = "synthetic"; c.data.imageSize = 16; c.data.syntheticCount = 256
        c.train.batchSize = 32; c.train.epochs = 6; c.train.logEvery = 1000
        c.optimizer.lr = 0.05; c.optimizer.momentum = 0.9
        c.checkpoint.everyEpoch = false
        c.output.dir = dir
        return c
    }

    func tempDir() -> String {
        let d = NSTemporaryDirectory() + "/train-run-\(UUID().uuidString)"
        addTeardownBlock { try? FileManager.default.removeItem(atPath: d) }
        return d
    }

    func testLossGoesDownAndOutputsAreWritten() throws {
        let dir = tempDir()
        let trainer = try Trainer(config: tinyConfig(dir), comm: LocalCommunicator())
        try trainer.run()
        let steps = trainer.stepCurve
        XCTAssertEqual(steps.count, 6 * (256 / 32))
        let first = steps.prefix(8).map(\.loss).reduce(0, +) / 8
        let last = steps.suffix(8).map(\.loss).reduce(0, +) / 8
        XCTAssertLessThan(last, 0.7 * first, "mean loss of the last epoch \(last) vs first \(first)")
        XCTAssertEqual(trainer.history.count, 6)
        XCTAssertGreaterThan(trainer.history.last!.testAcc, 0.5, "4 classes: chance is 0.25")
        for f in ["metrics.jsonl", "curves.svg", "model.safetensors", "config.yaml"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/" + f), f)
        }
        let records = try MetricsLog.readRecords(path: dir + "/metrics.jsonl")
        XCTAssertEqual(records.filter { $0["kind"] as? String == "step" }.count, 48)
        XCTAssertEqual(records.filter { $0["kind"] as? String == "epoch" }.count, 6)
        let step = try XCTUnwrap(records.first { $0["kind"] as? String == "step" })
        for key in ["step", "epoch", "loss", "accuracy", "lr", "images_per_s", "comm_wait_s"] {
            XCTAssertNotNil(step[key], "step record lacks \(key)")
        }
        // The first record says where the run ran: CPU and the BLAS kernel in use.
        XCTAssertEqual(records[0]["kind"] as? String, "system")
        for key in ["cpu", "cpu_level", "blas", "blas_kernel", "blas_kernel_choice", "ranks", "threads_per_rank"] {
            XCTAssertNotNil(records[0][key], "system record lacks \(key)")
        }
        // The weights file holds exactly the model's tensors.
        let w = try SafeTensors.read(path: dir + "/model.safetensors")
        XCTAssertEqual(Set(w.tensors.keys), Set(trainer.model.params.entries.map(\.name) + trainer.model.buffers.entries.map(\.name)))
    }

    /// The step engine alone (what `resnet bench` times) does the arithmetic of a training run and
    /// touches no file: 11 steps across an epoch boundary (8 steps an epoch) give the weights a
    /// Trainer stopped by max_steps writes, bit for bit, and output.dir is never created.
    func testStepEngineAloneMatchesATrainingRunAndWritesNothing() throws {
        var c = tinyConfig(tempDir()); c.train.maxSteps = 11; c.data.augment = true
        let trainer = try Trainer(config: c, comm: LocalCommunicator())
        try trainer.run()
        var alone = c; alone.output.dir = tempDir() + "/never-created"
        let plan = try RunPlan(alone)
        let engine = try StepEngine(plan: plan, trainLoader: try plan.trainLoader(), comm: LocalCommunicator())
        var position = TrainState()
        let timing = try engine.runSteps(11, from: &position)
        XCTAssertEqual(position.globalStep, 11); XCTAssertEqual(position.epoch, 1); XCTAssertEqual(position.stepInEpoch, 3)
        XCTAssertGreaterThan(timing.seconds, 0)
        XCTAssertEqual(Array(engine.model.params.valueBuffer).map(\.bitPattern), Array(trainer.model.params.valueBuffer).map(\.bitPattern))
        XCTAssertEqual(engine.optimizer.velocity.map(\.bitPattern), trainer.optimizer.velocity.map(\.bitPattern))
        XCTAssertFalse(FileManager.default.fileExists(atPath: alone.output.dir))
    }

    func testEvalEveryEpochOffEvaluatesOnlyAtTheEnd() throws {
        var c = tinyConfig(tempDir()); c.train.evalEveryEpoch = false; c.train.epochs = 3
        let t = try Trainer(config: c, comm: LocalCommunicator())
        try t.run()
        XCTAssertEqual(t.history.count, 3)
        XCTAssertTrue(t.history[0].testAcc.isNaN && t.history[1].testAcc.isNaN, "epochs 1-2 were evaluated")
        XCTAssertTrue(t.history[2].testAcc.isFinite, "the last epoch must be evaluated")
    }

    func testInitWeightsStartsFromTheFile() throws {
        let dirA = tempDir()
        var c = tinyConfig(dirA); c.train.maxSteps = 3; c.train.epochs = 1
        let a = try Trainer(config: c, comm: LocalCommunicator())
        try a.run()
        var c2 = tinyConfig(tempDir()); c2.train.initWeights = dirA + "/model.safetensors"; c2.train.seed = 99
        let b = try Trainer(config: c2, comm: LocalCommunicator())
        XCTAssertEqual(b.model.params.values[0], a.model.params.values[0])
        XCTAssertEqual(Array(b.model.params.valueBuffer), Array(a.model.params.valueBuffer))
        XCTAssertEqual(Array(b.model.buffers.valueBuffer), Array(a.model.buffers.valueBuffer))
        // A mis-shaped file is refused naming the tensor and both shapes.
        var c3 = tinyConfig(tempDir()); c3.model.width = 8; c3.train.initWeights = dirA + "/model.safetensors"
        XCTAssertThrowsError(try Trainer(config: c3, comm: LocalCommunicator())) { e in
            let s = "\(e)"
            XCTAssertTrue(s.contains("train.init_weights") && s.contains("0.0.weight") && s.contains("[4, 1, 7, 7]") && s.contains("[8, 1, 7, 7]"), s)
        }
    }

    func testDebugNamesTheFirstLayerWithANaN() throws {
        var c = tinyConfig(tempDir()); c.train.debug = true; c.train.maxSteps = 2
        let t = try Trainer(config: c, comm: LocalCommunicator())
        t.model.params["3.0.bn1.weight"]!.value[0] = .nan
        XCTAssertThrowsError(try t.run()) { e in
            XCTAssertTrue("\(e)".contains("layer 3.0.bn1 (output)"), "\(e)")
        }
    }

    func testScheduleShapes() {
        let warm = LRSchedule(kind: .constant, baseLR: 0.1, warmupEpochs: 1, stepsPerEpoch: 10, totalSteps: 100)
        XCTAssertEqual(warm.lr(at: 0), 0.01, accuracy: 1e-12)
        XCTAssertEqual(warm.lr(at: 9), 0.1, accuracy: 1e-12)
        XCTAssertEqual(warm.lr(at: 50), 0.1, accuracy: 1e-12)
        let step = LRSchedule(kind: .step, baseLR: 1, warmupEpochs: 0, stepsPerEpoch: 10, totalSteps: 100, stepEpochs: 3, gamma: 0.5)
        XCTAssertEqual(step.lr(at: 29), 1, accuracy: 1e-12)
        XCTAssertEqual(step.lr(at: 30), 0.5, accuracy: 1e-12)
        XCTAssertEqual(step.lr(at: 60), 0.25, accuracy: 1e-12)
        let cos = LRSchedule(kind: .cosine, baseLR: 1, warmupEpochs: 0, stepsPerEpoch: 10, totalSteps: 101, minLR: 0.1)
        XCTAssertEqual(cos.lr(at: 0), 1, accuracy: 1e-12)
        XCTAssertEqual(cos.lr(at: 50), 0.55, accuracy: 1e-12)
        XCTAssertEqual(cos.lr(at: 100), 0.1, accuracy: 1e-12)
    }

    func testSGDMatchesTorchSemantics() {
        // torch.optim.SGD(lr, momentum m, weight_decay wd, nesterov): g = grad + wd*p;
        // buf = m*buf + g (buf = g at first); p -= lr * (nesterov ? g + m*buf : buf).
        for nesterov in [false, true] {
            var p: [Float] = [1, -2], v: [Float] = [0, 0]
            let grads: [Float] = [0.5, 0.25]
            let sgd = SGD(count: 2, momentum: 0.9, weightDecay: 0.1, nesterov: nesterov)
            for _ in 0..<3 {
                var expected = p
                for i in 0..<2 {
                    let g = grads[i] + 0.1 * p[i]
                    v[i] = 0.9 * v[i] + g
                    expected[i] = p[i] - 0.2 * (nesterov ? g + 0.9 * v[i] : v[i])
                }
                p.withUnsafeMutableBufferPointer { sgd.step(params: $0.baseAddress!, grads: grads, count: 2, lr: 0.2) }
                XCTAssertEqual(p, expected)
            }
        }
    }

    func testModelAndDatasetMustAgree() {
        var c = tinyConfig(tempDir()); c.model.inChannels = 3; c.data.dataset = "fashion-mnist"; c.data.imageSize = 28
        XCTAssertThrowsError(try Trainer(config: c, comm: LocalCommunicator())) {
            XCTAssertTrue("\($0)".contains("model.in_channels"), "\($0)")
        }
        var d = tinyConfig(tempDir()); d.data.dataset = "fashion-mnist"; d.data.root = "/nonexistent/fm"
        XCTAssertThrowsError(try Trainer(config: d, comm: LocalCommunicator())) {
            XCTAssertTrue("\($0)".contains("/nonexistent/fm") && "\($0)".contains("dataset-fashion-mnist"), "\($0)")
        }
    }
}
