// Checkpoints of a Trainer: writing (rank 0, after the BN sync, all ranks agree on the outcome)
// and resuming (rank 0 picks and verifies the file, every rank gets the same bytes, the config
// must allow it). What a checkpoint holds and how it is encoded: Coordinator/Checkpoint.swift.
import Foundation
import NN
import Distributed
import Coordinator
import Trace

/// `--resume auto` (the newest valid checkpoint of the run folder, or a fresh start) or a file.
public enum ResumeRequest: Equatable {
    case auto
    case file(String)
    public init(_ arg: String) { self = arg == "auto" ? .auto : .file(arg) }
}

extension Trainer {
    var checkpointStore: CheckpointStore {
        CheckpointStore(folder: runDir + "/checkpoints", keep: config.checkpoint.keep)
    }

    /// Syncs BN statistics, rank 0 writes the checkpoint, and every rank learns whether it
    /// worked before training goes on. Returns the path (on rank 0).
    @discardableResult
    func saveCheckpoint() throws -> String? {
        try Trace.span("checkpoint", "checkpoint") { try saveCheckpointUntraced() }
    }

    private func saveCheckpointUntraced() throws -> String? {
        let replicas = try ReplicaSync.gatherBuffers(model, comm)
        var path: String?
        try ReplicaSync.withAveragedBuffers(model, comm) {
            try onRootAgreed { path = try checkpointStore.write(step: state.globalStep, bytes: checkpointBytes(replicas: replicas)) }
        }
        return path
    }

    /// This run's checkpoint, its BN buffers as they are now (rank-averaged) and `replicas`
    /// each rank's own.
    func checkpointBytes(replicas: [[Float]]) -> [UInt8] {
        let position = CheckpointPosition(globalStep: state.globalStep, epoch: state.epoch, stepInEpoch: state.stepInEpoch,
                                          epochLossSum: epochTotals.loss, epochCorrect: epochTotals.correct,
                                          epochSeen: epochTotals.seen)
        return Checkpoint.encode(model: model, velocity: optimizer.velocity, replicas: replicas, position: position,
                                 seed: config.train.seed, worldSize: comm.size, config: config.yamlString(),
                                 metrics: (try? String(contentsOfFile: runDir + "/metrics.jsonl", encoding: .utf8)) ?? "")
    }

    /// Resumes every rank from the same checkpoint. Returns a description of what happened.
    @discardableResult
    public func resume(_ request: ResumeRequest) throws -> String {
        resumeRequest = request
        try claimOutputFolder()   // lock output.dir before reading its checkpoints
        var found: (path: String, bytes: [UInt8])?
        if isRoot {
            switch request {
            case .auto:
                found = checkpointStore.newestValid(log: { print($0) })
            case .file(let path):
                let bytes = try CheckpointStore.readFile(path)
                _ = try Checkpoint.verify(bytes, file: path)
                found = (path, bytes)
            }
        }
        guard let (path, bytes) = try ReplicaSync.broadcastCheckpoint(found, comm) else {
            let msg = "no valid checkpoint in \(runDir)/checkpoints: starting fresh"
            if isRoot { print(msg) }
            return msg
        }
        try restore(try Checkpoint(bytes: bytes, file: path))
        let msg = "resumed from \(path) at step \(state.globalStep) (epoch \(state.epoch + 1), step \(state.stepInEpoch) of it)"
        if isRoot { print(msg) }
        return msg
    }

    func restore(_ checkpoint: Checkpoint) throws {
        let file = checkpoint.file
        let saved: RunConfig
        let yaml = try checkpoint.storedConfig()
        do { saved = try RunConfig.parse(yaml: yaml, file: file + " (stored config)") } catch {
            throw CheckpointError("\(file): stored config unreadable: \(error)")
        }
        try Trainer.checkResumable(saved: saved, current: config, file: file)
        let p = try checkpoint.position(globalSteps: ConfigLimits.maxSteps, epochs: 0...ConfigLimits.epochs.upperBound,
                                        stepsPerEpoch: sampler.stepsPerEpoch)
        let velocity = try checkpoint.restore(into: model, rank: comm.rank, worldSize: comm.size)
        try StepEngine.checkFinite(model, source: file)
        optimizer.setVelocity(velocity)
        state.globalStep = p.globalStep; state.epoch = p.epoch; state.stepInEpoch = p.stepInEpoch
        epochTotals = (p.epochLossSum, p.epochCorrect, p.epochSeen)
        restoredMetrics = checkpoint.metrics
        rebuildCurves(from: checkpoint.metrics)
    }

    /// Refuses a resume whose config differs from the checkpoint's in a key that is not
    /// `RunConfig.resumableKeys` (the world size may change too, whenever it divides train.batch_size).
    static func checkResumable(saved: RunConfig, current: RunConfig, file: String) throws {
        let old = Dictionary(uniqueKeysWithValues: saved.flatValues())
        for (key, value) in current.flatValues() where !RunConfig.resumableKeys.contains(key) && old[key] != value {
            let was = old[key] ?? "(absent)"
            if key.hasPrefix("model.") {
                throw CheckpointError("\(file): checkpoint model differs from the config: \(key) is \(was) in the checkpoint, \(value) in the config")
            }
            throw CheckpointError("\(file): \(key) is \(was) in the checkpoint but \(value) now; it changes the run's arithmetic and cannot change on resume (free to change: \(RunConfig.resumableKeys.sorted().joined(separator: ", ")))")
        }
    }

    func rebuildCurves(from metricsText: String) {
        stepCurve = []; history = []
        for line in metricsText.split(separator: "\n") {
            guard let obj = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { continue }
            func d(_ k: String) -> Double { (obj[k] as? NSNumber)?.doubleValue ?? .nan }
            switch obj["kind"] as? String {
            case "step": stepCurve.append((Int(d("step")), d("loss"), d("accuracy")))
            case "epoch", "eval": history.append(EpochRecord(epoch: Int(d("epoch")), step: Int(d("step")), trainLoss: d("train_loss"),
                                                     trainAcc: d("train_accuracy"), testLoss: d("test_loss"), testAcc: d("test_accuracy")))
            default: break
            }
        }
    }
}

