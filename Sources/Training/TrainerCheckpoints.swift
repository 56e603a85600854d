// Checkpoints of a Trainer: what goes in (parameters, BN buffers, momentum, position, config,
// world size, metrics so far), writing (rank 0, after the BN sync, all ranks agree on the
// outcome), and resuming (rank 0 picks and verifies the file, every rank gets the same bytes).
// Randomness needs no saved generator state: shuffling and augmentation derive from
// (train.seed, epoch, image index), so (seed, epoch, step in epoch) pins it exactly.
import Foundation
import NN
import Distributed
import Coordinator

/// `--resume auto` (the newest valid checkpoint of the run folder, or a fresh start) or a file.
public enum ResumeRequest: Equatable {
    case auto
    case file(String)
    public init(_ arg: String) { self = arg == "auto" ? .auto : .file(arg) }
}

extension Trainer {
    static let momentumPrefix = "optimizer.momentum."
    static let replicaPrefix = "replica."

    var checkpointStore: CheckpointStore {
        CheckpointStore(folder: runDir + "/checkpoints", keep: config.checkpoint.keep)
    }

    /// Syncs BN statistics, rank 0 writes the checkpoint, and every rank learns whether it
    /// worked before training goes on. Returns the path (on rank 0).
    @discardableResult
    func saveCheckpoint() throws -> String? {
        let replicas = try ReplicaSync.gatherBuffers(model, comm)
        var path: String?
        try ReplicaSync.withAveragedBuffers(model, comm) {
            try onRootAgreed { path = try checkpointStore.write(step: state.globalStep, bytes: checkpointBytes(replicas: replicas)) }
        }
        return path
    }

    /// Parameters and rank-averaged BN buffers under the PyTorch names, momentum, and (with more
    /// than one rank) every replica's own BN buffers under `replica.<rank>.`.
    func checkpointBytes(replicas: [[Float]]) -> [UInt8] {
        var tensors = SafeTensors.collect([model.params, model.buffers])
        if replicas.count > 1 {
            for (r, values) in replicas.enumerated() {
                for h in model.buffers.entries {
                    tensors.append(NamedTensor(name: "\(Trainer.replicaPrefix)\(r).\(h.name)", shape: h.shape, type: h.type,
                                               values: Array(values[h.offset..<(h.offset + h.count)])))
                }
            }
        }
        optimizer.velocity.withUnsafeBufferPointer { v in
            for h in model.params.entries {
                tensors.append(NamedTensor(name: Trainer.momentumPrefix + h.name, shape: h.shape, type: .float32,
                                           values: Array(v[h.offset..<(h.offset + h.count)])))
            }
        }
        let metricsText = (try? String(contentsOfFile: runDir + "/metrics.jsonl", encoding: .utf8)) ?? ""
        let meta: [String: String] = [
            "format": "pt",
            "global_step": "\(state.globalStep)", "epoch": "\(state.epoch)", "step_in_epoch": "\(state.stepInEpoch)",
            "lr_schedule_step": "\(state.globalStep)",
            "rng": "stateless: shuffling and augmentation derive from (train.seed, epoch, image index); seed \(config.train.seed)",
            "world_size": "\(comm.size)",
            "epoch_loss_sum": exactString(epochTotals.loss), "epoch_correct": exactString(epochTotals.correct),
            "epoch_seen": exactString(epochTotals.seen),
            "config": config.yamlString(),
            "metrics": metricsText,
        ]
        return CheckpointStore.encode(tensors, metadata: meta)
    }

    /// Resumes every rank from the same checkpoint. Returns a description of what happened.
    @discardableResult
    public func resume(_ request: ResumeRequest) throws -> String {
        resumeRequest = request
        try claimOutputFolder()   // lock output.dir before reading its checkpoints
        var payload: [UInt8] = []   // [0] = fresh start, [1] + path length (4) + path + file bytes
        if isRoot {
            switch request {
            case .auto:
                if let found = checkpointStore.newestValid(log: { print($0) }) {
                    payload = pack(path: found.path, bytes: found.bytes)
                } else {
                    payload = [0]
                }
            case .file(let path):
                let bytes = try CheckpointStore.readFile(path)
                _ = try CheckpointStore.verify(bytes, file: path)
                payload = pack(path: path, bytes: bytes)
            }
        }
        try comm.broadcast(&payload, root: 0)
        guard payload.first == 1, payload.count >= 5 else {
            let msg = "no valid checkpoint in \(runDir)/checkpoints: starting fresh"
            if isRoot { print(msg) }
            return msg
        }
        let n = Int(payload[1]) | Int(payload[2]) << 8 | Int(payload[3]) << 16 | Int(payload[4]) << 24
        let path = String(decoding: payload[5..<(5 + n)], as: UTF8.self)
        let bytes = Array(payload[(5 + n)...])
        try restore(bytes: bytes, file: path)
        let msg = "resumed from \(path) at step \(state.globalStep) (epoch \(state.epoch + 1), step \(state.stepInEpoch) of it)"
        if isRoot { print(msg) }
        return msg
    }

    private func pack(path: String, bytes: [UInt8]) -> [UInt8] {
        let p = Array(path.utf8)
        return [1, UInt8(p.count & 0xff), UInt8((p.count >> 8) & 0xff), UInt8((p.count >> 16) & 0xff), UInt8(p.count >> 24)] + p + bytes
    }

    func restore(bytes: [UInt8], file: String) throws {
        let (tensors, meta) = try CheckpointStore.verify(bytes, file: file)
        guard let yaml = meta["config"] else { throw CheckpointError("\(file): no config in the metadata") }
        let saved: RunConfig
        do { saved = try RunConfig.parse(yaml: yaml, file: file + " (stored config)") } catch {
            throw CheckpointError("\(file): stored config unreadable: \(error)")
        }
        try Trainer.checkResumable(saved: saved, current: config, file: file)
        // The checksum proves the file is what was written, not that it was written by us: every
        // number is range-checked before arithmetic uses it.
        func int(_ k: String, _ r: ClosedRange<Int>) throws -> Int {
            guard let v = meta[k].flatMap({ Int($0) }), r.contains(v) else {
                throw CheckpointError("\(file): metadata field \(k) is \(clippedForMessage(meta[k] ?? "missing", limit: 40)), expected an integer in \(r.lowerBound)...\(r.upperBound)")
            }
            return v
        }
        func dbl(_ k: String) throws -> Double {
            guard let v = meta[k].flatMap({ Double($0) }), v.isFinite, v >= 0, v <= 1e15 else {
                throw CheckpointError("\(file): metadata field \(k) is \(clippedForMessage(meta[k] ?? "missing", limit: 40)), expected a finite number in 0...1e15")
            }
            return v
        }
        var s = TrainState()
        s.globalStep = try int("global_step", ConfigLimits.maxSteps); s.epoch = try int("epoch", 0...ConfigLimits.epochs.upperBound)
        s.stepInEpoch = try int("step_in_epoch", 0...s.globalStep)
        guard s.stepInEpoch <= sampler.stepsPerEpoch else {
            throw CheckpointError("\(file): step_in_epoch \(s.stepInEpoch) exceeds the \(sampler.stepsPerEpoch) steps of an epoch")
        }
        let totals = (try dbl("epoch_loss_sum"), try dbl("epoch_correct"), try dbl("epoch_seen"))
        // Parameters and BN buffers (strict: every name, every shape), then the momentum buffer.
        let momentumNames = Set(tensors.keys.filter { $0.hasPrefix(Trainer.momentumPrefix) })
        let replicaNames = Set(tensors.keys.filter { $0.hasPrefix(Trainer.replicaPrefix) })
        try SafeTensors.load(tensors, into: [model.params, model.buffers], file: file, ignoring: momentumNames.union(replicaNames))
        // At the world size it was written at, each rank gets its own running statistics back.
        if meta["world_size"] == "\(comm.size)" && comm.size > 1 {
            var own: [String: NamedTensor] = [:]
            let prefix = "\(Trainer.replicaPrefix)\(comm.rank)."
            for name in replicaNames where name.hasPrefix(prefix) { own[String(name.dropFirst(prefix.count))] = tensors[name] }
            try SafeTensors.load(own, into: [model.buffers], file: file + " (rank \(comm.rank)'s BN buffers)")
        }
        var velocity = [Float](repeating: 0, count: model.params.totalCount)
        for h in model.params.entries {
            let name = Trainer.momentumPrefix + h.name
            guard let t = tensors[name] else { throw CheckpointError("\(file): missing tensor \(name)") }
            guard t.shape == h.shape else { throw CheckpointError("\(file): tensor \(name) has shape \(t.shape), expected \(h.shape)") }
            for i in 0..<h.count { velocity[h.offset + i] = t.values[i] }
        }
        guard momentumNames.count == model.params.entries.count else {
            throw CheckpointError("\(file): \(momentumNames.count) momentum tensors, expected \(model.params.entries.count)")
        }
        if let bad = velocity.withUnsafeBufferPointer({ model.params.firstNonFinite(in: $0.baseAddress!) }) {
            throw CheckpointError("\(file): tensor \(Trainer.momentumPrefix)\(bad.name) holds \(bad.value) at element \(bad.index); a checkpoint must be finite")
        }
        try StepEngine.checkFinite(model, source: file)
        optimizer.setVelocity(velocity)
        state = s
        epochTotals = totals
        restoredMetrics = meta["metrics"] ?? ""
        rebuildCurves(from: restoredMetrics ?? "")
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

/// A Double written so that parsing it back gives the same bits.
func exactString(_ v: Double) -> String { "\(v)" }
