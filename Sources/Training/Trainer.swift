// The training loop. It talks to a `Communicator` only, so one process (a world of one) and
// N ranks under mpirun run the same code. Each step:
//   load this rank's slice of the global batch -> forward/backward (loss normalized by the
//   GLOBAL batch; each finished gradient bucket starts its allreduce) -> wait for all buckets
//   -> SGD step on the flat buffers (identical on every rank).
import NN
import Data
import Distributed
import Coordinator
#if canImport(Glibc)
import Glibc
#endif

public struct TrainingError: Error, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}

/// Where the run is: everything that changes from step to step besides the buffers.
public struct TrainState: Equatable, Sendable {
    public var globalStep = 0
    public var epoch = 0
    /// Steps already done inside `epoch`.
    public var stepInEpoch = 0
    public init() {}
}

/// Per-epoch figures (rank 0 keeps them for the plot).
public struct EpochRecord: Sendable {
    public var epoch: Int, step: Int
    public var trainLoss: Double, trainAcc: Double
    public var testLoss: Double, testAcc: Double
}

public final class Trainer {
    public let config: RunConfig
    public let comm: Communicator
    public let model: ResNet
    public let optimizer: SGD
    public let sampler: ShardedSampler
    public let schedule: LRSchedule
    public var state = TrainState()
    public internal(set) var history: [EpochRecord] = []
    /// Step-level (step, loss, acc) for the plot.
    public internal(set) var stepCurve: [(step: Int, loss: Double, acc: Double)] = []

    /// Running sums of the current epoch's training loss, hits and images (for its epoch record).
    var epochTotals = (loss: 0.0, correct: 0.0, seen: 0.0)
    /// metrics.jsonl as it was when the checkpoint we resumed from was written.
    var restoredMetrics: String?
    /// How this run relates to what output.dir already holds: set by `resume` (continue it) or
    /// by the caller (`overwrite`: delete it first). Neither: the folder must hold no run.
    var resumeRequest: ResumeRequest?
    public var overwrite = false
    /// Rank 0's lock on output.dir, held until the trainer goes away.
    var folder: RunFolder?
    /// Whether the (collective) claim of output.dir has been made, on every rank.
    var folderClaimed = false

    let trainLoader: BatchLoader
    let testLoader: BatchLoader
    let buckets: GradientBuckets
    let runDir: String
    let isRoot: Bool
    var metrics: MetricsLog?
    var bucketError: Error?
    var firstNonFinite: String?
    private var x: Tensor
    private var labels: [Int32]

    public init(config: RunConfig, comm: Communicator) throws {
        self.config = config; self.comm = comm
        isRoot = comm.rank == 0
        runDir = config.output.dir
        let seed = UInt64(truncatingIfNeeded: config.train.seed)

        // Memory first: a run that cannot fit is refused before anything large is allocated.
        try ResourceCheck.check(config, localBatch: (config.train.batchSize + comm.size - 1) / comm.size,
                                what: "this config")

        // Data: every rank reads the files itself (they are small next to the model).
        guard let kind = DatasetKind(rawValue: config.data.dataset) else {
            throw TrainingError("data.dataset: unknown dataset '\(config.data.dataset)', expected one of \(DatasetKind.allCases.map(\.rawValue))")
        }
        let size = config.data.imageSize
        let synthShape = (c: config.model.inChannels, h: kind.side(imageSize: size), w: kind.side(imageSize: size))
        let train = try loadDataset(kind: kind, root: config.data.root, split: .train,
                                    syntheticCount: config.data.syntheticCount, syntheticShape: synthShape,
                                    numClasses: config.model.numClasses, seed: seed)
        let test = try loadDataset(kind: kind, root: config.data.root, split: .test,
                                   syntheticCount: max(config.data.syntheticCount / 4, 1), syntheticShape: synthShape,
                                   numClasses: config.model.numClasses, seed: seed)
        try Trainer.checkSplits(train: train, test: test, config: config)
        guard train.channels == config.model.inChannels else {
            throw TrainingError("model.in_channels is \(config.model.inChannels) but \(config.data.dataset) images have \(train.channels) channel(s)")
        }
        guard train.numClasses <= config.model.numClasses else {
            throw TrainingError("model.num_classes is \(config.model.numClasses) but \(config.data.dataset) has \(train.numClasses) classes")
        }
        let transform = { (augment: Bool) in
            TransformConfig(imageSize: size > 0 ? size : nil,
                            normalize: config.data.normalize ? (config.data.mean, config.data.std) : nil,
                            randomCropPadding: augment ? 4 : 0, horizontalFlip: augment)
        }
        trainLoader = BatchLoader(dataset: train, transform: transform(config.data.augment))
        testLoader = BatchLoader(dataset: test, transform: transform(false))

        sampler = try ShardedSampler(datasetCount: train.count, globalBatch: config.train.batchSize,
                                     rank: comm.rank, worldSize: comm.size, shuffle: config.data.shuffle, seed: seed)
        var total = sampler.stepsPerEpoch * config.train.epochs
        if config.train.maxSteps > 0 { total = min(total, config.train.maxSteps) }
        schedule = LRSchedule(kind: config.schedule.kind,
                              baseLR: config.optimizer.lr, warmupEpochs: config.schedule.warmupEpochs,
                              stepsPerEpoch: sampler.stepsPerEpoch, totalSteps: total,
                              stepEpochs: config.schedule.stepEpochs, gamma: config.schedule.gamma,
                              minLR: config.schedule.minLR)

        // Model: rank 0's initial state (random or init_weights) is broadcast to every rank.
        model = ResNet(ResNetSpec(depth: config.model.depth, inChannels: config.model.inChannels,
                                  numClasses: config.model.numClasses, width: config.model.width), seed: seed)
        if let path = config.train.initWeights, isRoot {
            let file = try SafeTensors.read(path: path)
            do { try SafeTensors.load(file.tensors, into: [model.params, model.buffers], file: path) } catch {
                throw TrainingError("train.init_weights: \(error)")
            }
            try Trainer.checkFinite(model, source: "train.init_weights \(path)")
        }
        try ReplicaSync.checkConfigAgreement(config.flatValues(), comm)
        try ReplicaSync.checkAgreement(layoutHash: model.params.layoutHash ^ model.buffers.layoutHash, comm)
        try ReplicaSync.broadcastInitialState(model, comm)
        if config.train.syncBN { ReplicaSync.installSyncBN(model, comm) }

        optimizer = SGD(count: model.params.totalCount, momentum: Float(config.optimizer.momentum),
                        weightDecay: Float(config.optimizer.weightDecay), nesterov: config.optimizer.nesterov)
        buckets = GradientBuckets(buffer: model.params.grads, total: model.params.totalCount,
                                  bucketBytes: max(Int(config.train.bucketMB * 1_048_576), 4096), communicator: comm)
        let out = trainLoader.outputShape
        x = Tensor(shape: [sampler.localBatch, out.c, out.h, out.w])
        labels = [Int32](repeating: 0, count: sampler.localBatch)

        if comm.size > 1 {
            model.ctx.onGradientReady = { [unowned self] h in
                // Mark the tensor final (a full bucket starts its allreduce), then let MPI progress
                // the reductions in flight while backward goes on.
                do {
                    try self.buckets.markReady(lo: h.offset, hi: h.offset + h.count)
                    try self.buckets.poll()
                } catch {
                    if self.bucketError == nil { self.bucketError = error }
                }
            }
        }
        if config.train.debug {
            model.ctx.inspector = { [unowned self] layer, what, values in
                guard self.firstNonFinite == nil else { return }
                for v in values where !v.isFinite {
                    self.firstNonFinite = "layer \(layer.isEmpty ? "<model>" : layer) (\(what)): first non-finite value \(v)"
                    return
                }
            }
        }
    }

    // MARK: Running

    public func run() throws {
        try claimOutputFolder()
        if isRoot { try prepareRunDir() }
        let spe = sampler.stepsPerEpoch
        let maxSteps = config.train.maxSteps
        let totalSteps = schedule.totalSteps
        // Under mpirun every rank's stdout is a pty even when the job's output goes to a log file,
        // so launched runs print plain lines; the redrawn bar is for single-process runs.
        let terminal = ProgressReporter.stdoutIsTerminal && !Launch.underMPILauncher
        let progress = isRoot ? ProgressReporter(total: totalSteps, isTerminal: terminal,
                                                 every: max(config.train.logEvery, 1)) : nil
        if isRoot {
            print(BLASKernel.summary)
            print("training ResNet-\(config.model.depth) (width \(config.model.width), \(model.params.totalCount) parameters) on \(config.data.dataset): \(comm.size) rank(s), global batch \(config.train.batchSize) (\(sampler.localBatch) per rank), \(spe) steps/epoch, \(totalSteps) steps")
        }
        var stopped = false, preempted = false
        let every = config.checkpoint.everySteps
        while state.epoch < config.train.epochs && !stopped {
            let perm = sampler.permutation(epoch: state.epoch)
            while state.stepInEpoch < spe {
                if maxSteps > 0 && state.globalStep >= maxSteps { stopped = true; break }
                let r = try trainStep(perm: perm)
                epochTotals.loss += r.loss * Double(config.train.batchSize); epochTotals.correct += r.correct
                epochTotals.seen += Double(config.train.batchSize)
                progress?.update(step: state.globalStep, epoch: state.epoch, loss: r.loss,
                                 acc: r.correct / Double(config.train.batchSize), lr: r.lr, imagesPerSecond: r.imagesPerSecond)
                if r.stopRequested { stopped = true; preempted = true; break }
                if every > 0 && state.globalStep % every == 0 && state.stepInEpoch < spe { try saveCheckpoint() }
            }
            if state.stepInEpoch >= spe {
                let last = state.epoch + 1 >= config.train.epochs || (maxSteps > 0 && state.globalStep >= maxSteps)
                try endEpoch(trainLoss: epochTotals.loss / max(epochTotals.seen, 1),
                             trainAcc: epochTotals.correct / max(epochTotals.seen, 1),
                             evaluate: config.train.evalEveryEpoch || last)
                epochTotals = (0, 0, 0)
                state.epoch += 1; state.stepInEpoch = 0
                if !preempted && !last && (config.checkpoint.everyEpoch || (every > 0 && state.globalStep % every == 0)) {
                    try saveCheckpoint()
                }
            }
        }
        progress?.finish()
        if preempted {   // finish the step, write a checkpoint, exit 0 (SLURM's SIGTERM before the time limit)
            let path = try saveCheckpoint()
            if isRoot { print("stopped by signal after step \(state.globalStep); checkpoint written to \(path ?? "?"); resume with --resume auto") }
            return
        }
        if stopped && state.stepInEpoch > 0 && epochTotals.seen > 0 {   // stopped mid-epoch: still report the test figures
            try endEpoch(trainLoss: epochTotals.loss / epochTotals.seen, trainAcc: epochTotals.correct / epochTotals.seen,
                         partial: true)
        }
        try saveCheckpoint()
        try ReplicaSync.averageBuffers(model, comm)   // the run is over: the weights file gets the averages
        if isRoot { try writeFinalOutputs() }
        if TestSeam.dumpAllRanks {   // tests: every replica's weights, after the BN sync
            try SafeTensors.write(SafeTensors.collect([model.params, model.buffers]), metadata: [:],
                                  to: runDir + "/rank\(comm.rank).safetensors")
        }
    }

    struct StepResult { var loss: Double; var correct: Double; var lr: Double; var imagesPerSecond: Double; var stopRequested: Bool }

    func trainStep(perm: [Int]) throws -> StepResult {
        let t0 = monotonicSeconds()
        let indices = sampler.localIndices(perm, step: state.stepInEpoch)
        labels.withUnsafeMutableBufferPointer { lb in
            trainLoader.fill(indices: indices, x: x, labels: lb.baseAddress!, augment: config.data.augment,
                             seed: UInt64(truncatingIfNeeded: config.train.seed), epoch: state.epoch)
        }
        model.params.zeroGrad()
        let r = labels.withUnsafeBufferPointer { model.trainStep(x, labels: $0.baseAddress!, normalizer: config.train.batchSize) }
        if let bad = firstNonFinite { throw TrainingError("--debug: step \(state.globalStep): \(bad)") }
        if let e = bucketError { throw e }
        let wait = try buckets.finish()
        // Loss and hits of the global batch, and whether any rank was asked to stop (one tiny
        // allreduce: every rank sees the stop request after the same step).
        var stats = [r.loss, Double(r.correct), Preemption.requested ? 1 : 0]
        try stats.withUnsafeMutableBufferPointer { try comm.allreduceSum($0.baseAddress!, count: 3) }
        let lr = schedule.lr(at: state.globalStep)
        if !stats[0].isFinite {   // every rank sees the same allreduced loss, so all stop here together
            throw TrainingError("step \(state.globalStep + 1): the training loss is \(stats[0].isNaN ? "NaN" : "\(stats[0])"): the run diverged at learning rate \(lr) "
                + "(optimizer.lr \(config.optimizer.lr)); lower optimizer.lr or add schedule.warmup_epochs"
                + (config.train.debug ? "" : ", and rerun with --debug to name the first layer that produces a NaN or Inf")
                + "; checkpoints written so far (\(runDir)/checkpoints) hold finite states to resume from")
        }
        optimizer.step(params: model.params.values, grads: model.params.grads, count: model.params.totalCount, lr: Float(lr))
        let dt = monotonicSeconds() - t0
        let ips = Double(config.train.batchSize) / dt
        state.globalStep += 1; state.stepInEpoch += 1
        if isRoot {
            stepCurve.append((state.globalStep, stats[0], stats[1] / Double(config.train.batchSize)))
            try metrics?.write(["kind": .string("step"), "step": .int(state.globalStep), "epoch": .int(state.epoch),
                                "loss": .double(stats[0]), "accuracy": .double(stats[1] / Double(config.train.batchSize)),
                                "lr": .double(lr), "images_per_s": .double(ips), "step_s": .double(dt),
                                "comm_wait_s": .double(wait)])
        }
        return StepResult(loss: stats[0], correct: stats[1], lr: lr, imagesPerSecond: ips, stopRequested: stats[2] > 0)
    }

    /// Evaluates and records an epoch; `partial` for a run stopped by max_steps inside an epoch
    /// (recorded as kind "eval", so a resumed run does not list the epoch twice).
    /// Without `evaluate` (train.eval_every_epoch: false, not the last epoch) the test figures are NaN
    /// (null in metrics.jsonl).
    func endEpoch(trainLoss: Double, trainAcc: Double, partial: Bool = false, evaluate runEval: Bool = true) throws {
        let (testLoss, testAcc) = runEval ? try evaluate() : (Double.nan, Double.nan)
        let rec = EpochRecord(epoch: state.epoch, step: state.globalStep, trainLoss: trainLoss, trainAcc: trainAcc,
                              testLoss: testLoss, testAcc: testAcc)
        history.append(rec)
        if isRoot {
            try metrics?.write(["kind": .string(partial ? "eval" : "epoch"), "epoch": .int(state.epoch), "step": .int(state.globalStep),
                                "train_loss": .double(trainLoss), "train_accuracy": .double(trainAcc),
                                "test_loss": .double(testLoss), "test_accuracy": .double(testAcc)])
            print(String(format: "epoch %d  step %d  train loss %.4f acc %.4f  test loss %.4f acc %.4f",
                         state.epoch + 1, state.globalStep, trainLoss, trainAcc, testLoss, testAcc))
        }
    }

    /// Test loss and top-1 accuracy over the whole test split, each image once across ranks.
    public func evaluate() throws -> (loss: Double, accuracy: Double) {
        try ReplicaSync.withAveragedBuffers(model, comm) {
            try Evaluator.evaluate(model: model, loader: testLoader, batch: sampler.localBatch, comm: comm)
        }
    }

    /// Non-empty splits whose images have one shape (a test image of another size than the
    /// training images would be resized differently or not at all).
    static func checkSplits(train: ImageDataset, test: ImageDataset, config: RunConfig) throws {
        let kind = DatasetKind(rawValue: config.data.dataset)
        let from = kind == .synthetic ? "the synthetic set" : "\(config.data.dataset) in \(kind?.root(config.data.root) ?? config.data.root)"
        guard train.count > 0 else { throw TrainingError("\(from): the training split is empty (0 images)") }
        guard test.count > 0 else { throw TrainingError("\(from): the test split is empty (0 images); evaluation needs at least one") }
        let a = (train.channels, train.height, train.width), b = (test.channels, test.height, test.width)
        guard a == b else {
            throw TrainingError("\(from): test images are \(b.0)x\(b.1)x\(b.2) but training images are \(a.0)x\(a.1)x\(a.2); both splits must have one shape")
        }
    }

    /// Refuses weights holding a NaN or an infinity, naming the tensor (a model that starts from
    /// them trains to nonsense and evaluates to numbers that look real).
    static func checkFinite(_ model: ResNet, source: String) throws {
        for store in [model.params, model.buffers] {
            if let bad = store.firstNonFinite() {
                throw TrainingError("\(source): tensor \(bad.name) holds \(bad.value) at element \(bad.index); weights must be finite")
            }
        }
    }

    // MARK: Outputs (rank 0)

    /// Runs `body` on rank 0 only; then every rank learns whether it threw, and all throw rank 0's
    /// error together (so no rank goes on to a collective the others never reach).
    func onRootAgreed(_ body: () throws -> Void) throws {
        var status: [UInt8] = [0]
        if isRoot {
            do { try body() } catch { status = [1] + Array("\(error)".utf8) }
        }
        try comm.broadcast(&status, root: 0)
        if status.first != 0 { throw TrainingError(String(decoding: status.dropFirst(), as: UTF8.self)) }
    }

    /// Rank 0 locks output.dir and checks what it holds against how the run was started; every
    /// rank learns the outcome, so a refused run ends on all ranks with rank 0's reason.
    func claimOutputFolder() throws {
        guard !folderClaimed else { return }
        folderClaimed = true
        try onRootAgreed {
            let f = try RunFolder(locking: runDir)
            let earlier = f.earlierRun()
            if overwrite {
                try f.clearEarlierRun()
            } else if !earlier.isEmpty {
                let inside: Bool
                switch resumeRequest {
                case .auto?: inside = true
                case .file(let p)?: inside = RunFolder.sameFolder(p, runDir + "/checkpoints")
                case nil: inside = false
                }
                if !inside {
                    let how = resumeRequest == nil ? "" : " and the checkpoint resumed from is not one of its own"
                    throw TrainingError("output.dir \(runDir) already holds a run (\(earlier.joined(separator: ", ")))\(how); continue it with --resume auto, start over with --overwrite (deletes that run's metrics, weights and checkpoints), or choose another output.dir")
                }
            }
            folder = f
        }
    }

    func prepareRunDir() throws {
        try makeDirectories(runDir)
        let yaml = config.yamlString()
        try writeTextFile(runDir + "/config.yaml", yaml)
        if let text = restoredMetrics { try writeTextFile(runDir + "/metrics.jsonl", text) }
        metrics = try MetricsLog(path: runDir + "/metrics.jsonl", append: restoredMetrics != nil)
        // Where this (part of the) run ran: every start and resume adds one line.
        try metrics?.write(["kind": .string("system"), "step": .int(state.globalStep), "cpu": .string(BLASKernel.cpuModel),
                            "cpu_level": .string(BLASKernel.levelName(BLASKernel.level(of: BLASKernel.cpuFeatures))),
                            "blas": .string("OpenBLAS \(BLASKernel.openBLASVersion)"), "blas_kernel": .string(BLASKernel.coreInUse),
                            "blas_kernel_choice": .string(BLASKernel.choice), "ranks": .int(comm.size),
                            "threads_per_rank": .int(Parallel.workers)])
    }

    func writeFinalOutputs() throws {
        let weights = runDir + "/model.safetensors"
        try SafeTensors.write(SafeTensors.collect([model.params, model.buffers]),
                              metadata: ["format": "pt", "model": "resnet\(config.model.depth)",
                                         "width": "\(config.model.width)", "in_channels": "\(config.model.inChannels)",
                                         "num_classes": "\(config.model.numClasses)"], to: weights)
        let svg = CurvesPlot.svg(trainLoss: stepCurve.map { (Double($0.step), $0.loss) },
                                 testLoss: history.map { (Double($0.step), $0.testLoss) },
                                 trainAcc: stepCurve.map { (Double($0.step), $0.acc) },
                                 testAcc: history.map { (Double($0.step), $0.testAcc) }, xLabel: "step")
        try writeTextFile(runDir + "/curves.svg", svg)
        if let last = history.last {
            print(String(format: "final test accuracy %.4f (loss %.4f) after %d steps", last.testAcc, last.testLoss, state.globalStep))
        }
        print("wrote \(weights), \(runDir)/metrics.jsonl, \(runDir)/curves.svg")
    }
}

extension Trainer {
    /// Runs `n` training steps from the current position (the bench's timed loop); returns the
    /// wall time and the time spent waiting on gradient communication.
    public func runSteps(_ n: Int) throws -> (seconds: Double, commWait: Double) {
        var wait = 0.0
        var perm = sampler.permutation(epoch: state.epoch)
        let t0 = monotonicSeconds()
        for _ in 0..<n {
            if state.stepInEpoch >= sampler.stepsPerEpoch {
                state.epoch += 1; state.stepInEpoch = 0
                perm = sampler.permutation(epoch: state.epoch)
            }
            _ = try trainStep(perm: perm)
            wait += buckets.communicationWaitSeconds
        }
        return (monotonicSeconds() - t0, wait)
    }
}
