// The run loop around the step engine (StepEngine.swift): epochs, evaluation, metrics,
// progress, checkpoints (TrainerCheckpoints.swift) and the run folder's outputs. It talks to a
// `Communicator` only, so one process (a world of one) and N ranks under mpirun run the same code.
import NN
import Data
import Distributed
import Coordinator
import TensorBoard
import Trace
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
    /// Data -> forward/backward -> gradient buckets -> SGD, one step at a time.
    public let engine: StepEngine
    public var model: ResNet { engine.model }
    public var optimizer: SGD { engine.optimizer }
    public var sampler: ShardedSampler { engine.sampler }
    public var schedule: LRSchedule { engine.schedule }
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
    /// `--trace FILE`: the steps of train.trace_steps as a Chrome trace (rank 0 writes it).
    public var traceFile: String?
    /// Why this launch is a restart (launch/elastic.sh): written to metrics.jsonl as a "restart" record.
    public var restartNote: String?
    var trace: TraceSession?
    /// Rank 0's lock on output.dir, held until the trainer goes away.
    var folder: RunFolder?
    /// Whether the (collective) claim of output.dir has been made, on every rank.
    var folderClaimed = false

    let testLoader: BatchLoader
    let runDir: String
    let isRoot: Bool
    var metrics: MetricsLog?
    /// The same figures as TensorBoard event files (output.tensorboard), rank 0.
    var tensorboard: EventFileWriter?

    public init(config: RunConfig, comm: Communicator) throws {
        self.config = config; self.comm = comm
        isRoot = comm.rank == 0
        runDir = config.output.dir

        // Every wait on other ranks from here on has a deadline (train.collective_timeout_s).
        if let mpi = comm as? MPICommunicator, mpi.size > 1, config.train.collectiveTimeoutS > 0 {
            mpi.startWatchdog(timeout: config.train.collectiveTimeoutS,
                              startupTimeout: config.train.collectiveTimeoutS * RunConfig.Train.startupTimeoutFactor)
        }
        // Memory first: a run that cannot fit is refused before anything large is allocated.
        try ResourceCheck.check(config, localBatch: max(1, (config.train.batchSize + comm.size - 1) / comm.size / config.train.accumulateSteps),
                                what: "this config")
        // Data: every rank reads the files itself (they are small next to the model).
        let plan = try RunPlan(config)
        let loaders = try plan.loaders()
        testLoader = loaders.test
        engine = try StepEngine(plan: plan, trainLoader: loaders.train, comm: comm)
    }

    // MARK: Running

    public func run() throws {
        let totalSteps = schedule.totalSteps
        if let file = traceFile {   // before anything is written: a window outside the run, or a path that cannot be written
            let window = config.train.traceWindow!
            if window.lowerBound > totalSteps || window.upperBound <= state.globalStep {
                throw TrainingError("train.trace_steps \(config.train.traceSteps): outside this run's steps \(state.globalStep + 1)...\(totalSteps)")
            }
            try onRootAgreed { try TraceSession.checkWritable(file) }
            trace = TraceSession(path: file, comm: comm)
        }
        try claimOutputFolder()
        if isRoot { try prepareRunDir() }
        let spe = sampler.stepsPerEpoch
        let maxSteps = config.train.maxSteps
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
        if let t = trace, t.recording { try t.finish(what: "steps \(config.train.traceSteps)") }
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

    /// One step of the engine at the current position; moves the position on and logs the step.
    func trainStep(perm: [Int]) throws -> StepEngine.StepResult {
        if let t = trace, let window = config.train.traceWindow {   // the window's steps, with the evaluation and checkpoints among them
            if window.contains(state.globalStep + 1) { t.start() }
            else if t.recording { try t.finish(what: "steps \(config.train.traceSteps)") }
        }
        let r = try engine.step(perm: perm, at: state)
        state.globalStep += 1; state.stepInEpoch += 1
        if isRoot {
            stepCurve.append((state.globalStep, r.loss, r.correct / Double(config.train.batchSize)))
            try metrics?.write(["kind": .string("step"), "step": .int(state.globalStep), "epoch": .int(state.epoch),
                                "loss": .double(r.loss), "accuracy": .double(r.correct / Double(config.train.batchSize)),
                                "lr": .double(r.lr), "images_per_s": .double(r.imagesPerSecond), "step_s": .double(r.seconds),
                                "comm_wait_s": .double(r.commWait)])
            try tensorboard?.add(step: state.globalStep, scalars: [
                ("train/loss", r.loss), ("train/accuracy", r.correct / Double(config.train.batchSize)), ("train/lr", r.lr),
                ("train/images_per_s", r.imagesPerSecond), ("train/comm_wait_s", r.commWait)])
        }
        return r
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
            try tensorboard?.add(step: state.globalStep, scalars: [
                ("epoch/train_loss", trainLoss), ("epoch/train_accuracy", trainAcc), ("test/loss", testLoss), ("test/accuracy", testAcc),
            ].filter { $0.1.isFinite })
            print(String(format: "epoch %d  step %d  train loss %.4f acc %.4f  test loss %.4f acc %.4f",
                         state.epoch + 1, state.globalStep, trainLoss, trainAcc, testLoss, testAcc))
        }
    }

    /// Test loss and top-1 accuracy over the whole test split, each image once across ranks.
    public func evaluate() throws -> (loss: Double, accuracy: Double) {
        try Trace.span("evaluation", "eval") {
            try ReplicaSync.withAveragedBuffers(model, comm) {
                try Evaluator.evaluate(model: model, loader: testLoader, batch: sampler.localBatch, comm: comm)
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
        if config.output.tensorboard { tensorboard = try EventFileWriter(directory: runDir) }
        // Where this (part of the) run ran: every start and resume adds one line.
        try metrics?.write(["kind": .string("system"), "step": .int(state.globalStep), "cpu": .string(BLASKernel.cpuModel),
                            "cpu_level": .string(BLASKernel.levelName(BLASKernel.level(of: BLASKernel.cpuFeatures))),
                            "blas": .string("OpenBLAS \(BLASKernel.openBLASVersion)"), "blas_kernel": .string(BLASKernel.coreInUse),
                            "blas_kernel_choice": .string(BLASKernel.choice), "kernels": .string(KernelSet.active.rawValue), "kernels_choice": .string(KernelSet.choice), "ranks": .int(comm.size),
                            "threads_per_rank": .int(Parallel.workers)])
        if let note = restartNote {
            try metrics?.write(["kind": .string("restart"), "step": .int(state.globalStep), "ranks": .int(comm.size), "note": .string(note)])
        }
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
