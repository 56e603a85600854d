// One training step and the machinery it needs, nothing of the run around it (epochs,
// evaluation, metrics, checkpoints: Trainer). Each step:
//   load this rank's slice of the global batch -> forward/backward (loss normalized by the
//   GLOBAL batch; each finished gradient bucket starts its allreduce) -> wait for all buckets
//   -> SGD step on the flat buffers (identical on every rank).
// It talks to a `Communicator` only, so one process (a world of one) and N ranks under mpirun
// run the same code. `resnet bench` times it alone.
import NN
import Data
import Distributed
import Coordinator
import Trace

public final class StepEngine {
    public let plan: RunPlan
    public let comm: Communicator
    public let model: ResNet
    public let optimizer: SGD
    public let sampler: ShardedSampler
    public let schedule: LRSchedule
    let trainLoader: BatchLoader
    let buckets: GradientBuckets
    var bucketError: Error?
    var firstNonFinite: String?
    private var x: Tensor
    private var labels: [Int32]
    /// Images per forward/backward: the rank's batch over train.accumulate_steps.
    public let microBatch: Int
    /// True during every micro-batch but the last: their gradients stay local (no bucket starts).
    private var accumulating = false
    /// With accumulation: the sum of the earlier micro-batches' gradients. Each micro-batch's
    /// gradient is computed alone (as one rank computes its batch) and added here, so 1 rank x 2
    /// micro-batches sums exactly what an allreduce of 2 ranks sums.
    private let accumulated: UnsafeMutablePointer<Float>?

    /// What one step did: global-batch loss and hits, the rate used, timings, and whether any
    /// rank was asked to stop (SIGTERM/SIGINT).
    public struct StepResult {
        public var loss: Double, correct: Double, lr: Double
        public var seconds: Double, commWait: Double, imagesPerSecond: Double
        public var stopRequested: Bool
    }

    /// Builds the sampler, schedule, model (rank 0's initial state, random or train.init_weights,
    /// broadcast to every rank after the ranks agree on config and layout), optimizer and buckets.
    public init(plan: RunPlan, trainLoader: BatchLoader, comm: Communicator) throws {
        let config = plan.config
        self.plan = plan; self.comm = comm; self.trainLoader = trainLoader
        sampler = try plan.sampler(datasetCount: trainLoader.dataset.count, comm: comm)
        schedule = plan.schedule(stepsPerEpoch: sampler.stepsPerEpoch)

        model = plan.makeModel()
        if let path = config.train.initWeights, comm.rank == 0 {
            let file = try SafeTensors.read(path: path)
            do { try SafeTensors.load(file.tensors, into: [model.params, model.buffers], file: path) } catch {
                throw TrainingError("train.init_weights: \(error)")
            }
            try StepEngine.checkFinite(model, source: "train.init_weights \(path)")
        }
        try ReplicaSync.checkConfigAgreement(config.flatValues(), comm)
        try ReplicaSync.checkAgreement(layoutHash: model.params.layoutHash ^ model.buffers.layoutHash, comm)
        try ReplicaSync.broadcastInitialState(model, comm)
        if config.train.syncBN { ReplicaSync.installSyncBN(model, comm) }

        optimizer = plan.optimizer(parameterCount: model.params.totalCount)
        buckets = GradientBuckets(buffer: model.params.grads, total: model.params.totalCount,
                                  bucketBytes: plan.bucketBytes, communicator: comm)
        let parts = config.train.accumulateSteps
        guard sampler.localBatch % parts == 0 else {
            throw TrainingError("train.accumulate_steps \(parts): each rank's batch, \(sampler.localBatch) (train.batch_size \(config.train.batchSize) over \(comm.size) rank(s)), is not a multiple of it")
        }
        microBatch = sampler.localBatch / parts
        accumulated = parts > 1 ? .allocate(capacity: model.params.totalCount) : nil
        let out = trainLoader.outputShape
        x = Tensor(shape: [microBatch, out.c, out.h, out.w])
        labels = [Int32](repeating: 0, count: microBatch)

        if comm.size > 1 {
            model.ctx.onGradientReady = { [unowned self] h in
                // Mark the tensor final (a full bucket starts its allreduce), then let MPI progress
                // the reductions in flight while backward goes on. Only in the last micro-batch:
                // the allreduce runs once per optimizer step, overlapped with that backward.
                guard !self.accumulating else { return }
                if let acc = self.accumulated {   // this tensor's final gradient: the earlier micro-batches' plus this one's
                    let g = self.model.params.grads
                    for i in h.offset..<(h.offset + h.count) { g[i] = acc[i] + g[i] }
                }
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

    deinit { accumulated?.deallocate() }

    /// The step at `position` (global step, epoch, step in epoch) of the epoch's permutation `perm`.
    public func step(perm: [Int], at position: TrainState) throws -> StepResult {
        try Trace.span("step \(position.globalStep + 1)", "step") { try stepUntraced(perm: perm, at: position) }
    }

    private func stepUntraced(perm: [Int], at position: TrainState) throws -> StepResult {
        let config = plan.config
        CollectiveWatchdog.shared?.setStep(position.globalStep + 1)
        let t0 = monotonicSeconds()
        let indices = sampler.localIndices(perm, step: position.stepInEpoch)
        var loss = 0.0, correct = 0
        let parts = config.train.accumulateSteps
        let grads = model.params.grads, count = model.params.totalCount
        for m in 0..<parts {   // micro-batches: each gradient alone, summed in `accumulated`
            model.params.zeroGrad()
            let part = indices.dropFirst(m * microBatch).prefix(microBatch)
            Trace.span("load batch", "data") {
                labels.withUnsafeMutableBufferPointer { lb in
                    trainLoader.fill(indices: part, x: x, labels: lb.baseAddress!, augment: config.data.augment,
                                     seed: plan.seed, epoch: position.epoch)
                }
            }
            accumulating = m < parts - 1
            let r = labels.withUnsafeBufferPointer { model.trainStep(x, labels: $0.baseAddress!, normalizer: config.train.batchSize) }
            loss += r.loss; correct += r.correct
            if let bad = firstNonFinite { throw TrainingError("--debug: step \(position.globalStep): \(bad)") }
            if let acc = accumulated, m < parts - 1 {
                if m == 0 { acc.update(from: grads, count: count) }
                else { Parallel.forRanges(count, minChunk: 1 << 16) { r in for i in r { acc[i] = acc[i] + grads[i] } } }
            }
        }
        if let acc = accumulated, comm.size == 1 {   // (with more ranks the gradient hook added it before each bucket started)
            Parallel.forRanges(count, minChunk: 1 << 16) { r in for i in r { grads[i] = acc[i] + grads[i] } }
        }
        accumulating = false
        let r = (loss: loss, correct: correct)
        if let e = bucketError { throw e }
        let wait = try buckets.finish()
        // Loss and hits of the global batch, and whether any rank was asked to stop (one tiny
        // allreduce: every rank sees the stop request after the same step).
        var stats = [r.loss, Double(r.correct), Preemption.requested ? 1 : 0]
        try Trace.span("allreduce loss and hits", "wait") {
            try stats.withUnsafeMutableBufferPointer { try comm.allreduceSum($0.baseAddress!, count: 3) }
        }
        let lr = schedule.lr(at: position.globalStep)
        if !stats[0].isFinite {   // every rank sees the same allreduced loss, so all stop here together
            throw TrainingError("step \(position.globalStep + 1): the training loss is \(stats[0].isNaN ? "NaN" : "\(stats[0])"): the run diverged at learning rate \(lr) "
                + "(optimizer.lr \(config.optimizer.lr)); lower optimizer.lr or add schedule.warmup_epochs"
                + (config.train.debug ? "" : ", and rerun with --debug to name the first layer that produces a NaN or Inf")
                + "; checkpoints written so far (\(config.output.dir)/checkpoints) hold finite states to resume from")
        }
        Trace.span("SGD step", "optimizer") {
            optimizer.step(params: model.params.values, grads: model.params.grads, count: model.params.totalCount, lr: Float(lr))
        }
        CollectiveWatchdog.shared?.firstStepCompleted()
        let dt = monotonicSeconds() - t0
        return StepResult(loss: stats[0], correct: stats[1], lr: lr, seconds: dt, commWait: wait,
                          imagesPerSecond: Double(config.train.batchSize) / dt, stopRequested: stats[2] > 0)
    }

    /// Runs `n` steps from `position`, moving it on (the bench's timed loop); returns the wall
    /// time and the time spent waiting on gradient communication.
    public func runSteps(_ n: Int, from position: inout TrainState) throws -> (seconds: Double, commWait: Double) {
        var wait = 0.0
        var perm = sampler.permutation(epoch: position.epoch)
        let t0 = monotonicSeconds()
        for _ in 0..<n {
            if position.stepInEpoch >= sampler.stepsPerEpoch {
                position.epoch += 1; position.stepInEpoch = 0
                perm = sampler.permutation(epoch: position.epoch)
            }
            wait += try step(perm: perm, at: position).commWait
            position.globalStep += 1; position.stepInEpoch += 1
        }
        return (monotonicSeconds() - t0, wait)
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
}
