// A checkpoint: what a run needs to continue exactly where it stopped, and the only code that
// knows the file's tensor names, prefixes, metadata fields and encoding (`CheckpointStore` only
// keeps the files of a run folder).
//
// The file is safetensors: parameters and BN buffers under the seed's PyTorch names (so the
// weights inside load into PyTorch directly), momentum under `optimizer.momentum.<name>`, with
// more than one rank every replica's own BN buffers under `replica.<rank>.<name>`, and
// everything else as strings in `__metadata__`. A CRC-32 over every byte of the file protects
// it: it lives in the metadata as "crc32:XXXXXXXX", computed over the whole file with that
// field holding "crc32:00000000" and then written in place (same length, so no offset moves);
// verifying repeats the computation. Any truncation or flipped bit is caught.
import NN
import CZlib

public struct CheckpointError: Error, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}

/// Where a run stands: the step, its place in the epoch, and the running sums of the epoch's
/// training loss, hits and images. Randomness needs no saved generator state: shuffling and
/// augmentation derive from (train.seed, epoch, image index).
public struct CheckpointPosition: Equatable, Sendable {
    public var globalStep: Int, epoch: Int, stepInEpoch: Int
    public var epochLossSum: Double, epochCorrect: Double, epochSeen: Double
    public init(globalStep: Int, epoch: Int, stepInEpoch: Int, epochLossSum: Double, epochCorrect: Double, epochSeen: Double) {
        self.globalStep = globalStep; self.epoch = epoch; self.stepInEpoch = stepInEpoch
        self.epochLossSum = epochLossSum; self.epochCorrect = epochCorrect; self.epochSeen = epochSeen
    }
}

public struct Checkpoint {
    public static let formatName = "resnet-swift-checkpoint"
    public static let formatVersion = "1"
    static let placeholder = "crc32:00000000"
    static let momentumPrefix = "optimizer.momentum."
    static let replicaPrefix = "replica."

    /// The file it was read from (named in every error).
    public let file: String
    public let tensors: [String: NamedTensor]
    public let metadata: [String: String]

    /// Decodes and verifies a checkpoint's bytes: header, format, checksum.
    public init(bytes: [UInt8], file: String) throws {
        (tensors, metadata) = try Checkpoint.verify(bytes, file: file)
        self.file = file
    }

    /// Reads and verifies the checkpoint file at `path`.
    public static func read(_ path: String) throws -> Checkpoint {
        try Checkpoint(bytes: try CheckpointStore.readFile(path), file: path)
    }

    // MARK: Writing

    /// The file's bytes: the model's parameters and BN buffers (rank-averaged), momentum, with
    /// more than one replica each one's own BN buffers, the position, the run's config (YAML) and
    /// metrics so far.
    public static func encode(model: ResNet, velocity: [Float], replicas: [[Float]], position p: CheckpointPosition,
                              seed: Int, worldSize: Int, config: String, metrics: String) -> [UInt8] {
        var tensors = SafeTensors.collect([model.params, model.buffers])
        if replicas.count > 1 {
            for (r, values) in replicas.enumerated() {
                for h in model.buffers.entries {
                    tensors.append(NamedTensor(name: "\(replicaPrefix)\(r).\(h.name)", shape: h.shape, type: h.type,
                                               values: Array(values[h.offset..<(h.offset + h.count)])))
                }
            }
        }
        for h in model.params.entries {
            tensors.append(NamedTensor(name: momentumPrefix + h.name, shape: h.shape, type: .float32,
                                       values: Array(velocity[h.offset..<(h.offset + h.count)])))
        }
        let meta: [String: String] = [
            "format": "pt",
            "global_step": "\(p.globalStep)", "epoch": "\(p.epoch)", "step_in_epoch": "\(p.stepInEpoch)",
            "lr_schedule_step": "\(p.globalStep)",
            "rng": "stateless: shuffling and augmentation derive from (train.seed, epoch, image index); seed \(seed)",
            "world_size": "\(worldSize)",
            // A Double written so that parsing it back gives the same bits.
            "epoch_loss_sum": "\(p.epochLossSum)", "epoch_correct": "\(p.epochCorrect)", "epoch_seen": "\(p.epochSeen)",
            "config": config,
            "metrics": metrics,
        ]
        return encode(tensors, metadata: meta)
    }

    /// Any tensors and metadata as a checkpoint file: format tag and checksum added.
    public static func encode(_ tensors: [NamedTensor], metadata: [String: String]) -> [UInt8] {
        var meta = metadata
        meta["format_name"] = formatName; meta["format_version"] = formatVersion
        meta["checksum"] = placeholder
        var bytes = SafeTensors.encode(tensors, metadata: meta)
        guard let at = find(Array(placeholder.utf8), in: bytes, limit: headerEnd(bytes)) else {
            preconditionFailure("checkpoint encoding lost its checksum placeholder")
        }
        let crc = crc32Of(bytes)
        let value = Array(("crc32:" + hex8(crc)).utf8)
        for i in 0..<value.count { bytes[at + i] = value[i] }
        return bytes
    }

    // MARK: Reading

    /// Decodes and checks a checkpoint: header, format, checksum. Errors name the file and the reason.
    public static func verify(_ bytes: [UInt8], file: String) throws -> (tensors: [String: NamedTensor], metadata: [String: String]) {
        let decoded: (tensors: [String: NamedTensor], order: [String], metadata: [String: String])
        do { decoded = try SafeTensors.decode(bytes, file: file) } catch {
            throw CheckpointError("\(file): bad header or layout: \(error)")
        }
        let meta = decoded.metadata
        guard isCheckpoint(meta) else {
            throw CheckpointError("\(file): not a checkpoint of this program (no '\(formatName)' format tag; a plain weights file? use train.init_weights for those)")
        }
        guard meta["format_version"] == formatVersion else {
            throw CheckpointError("\(file): checkpoint format version \(meta["format_version"].map { clippedForMessage($0, limit: 40) } ?? "?"), this program reads \(formatVersion)")
        }
        guard let stored = meta["checksum"], stored.hasPrefix("crc32:"), stored.utf8.count == placeholder.utf8.count,
              let at = find(Array(stored.utf8), in: bytes, limit: headerEnd(bytes)) else {
            throw CheckpointError("\(file): checksum missing from the metadata")
        }
        var copy = bytes
        let zero = Array(placeholder.utf8)
        for i in 0..<zero.count { copy[at + i] = zero[i] }
        let actual = "crc32:" + hex8(crc32Of(copy))
        guard actual == stored else {
            throw CheckpointError("\(file): checksum mismatch (stored \(stored), computed \(actual)): the file is corrupt or truncated")
        }
        return (decoded.tensors, meta)
    }

    /// Whether a safetensors file's metadata carries this program's checkpoint tag.
    public static func isCheckpoint(_ metadata: [String: String]) -> Bool { metadata["format_name"] == formatName }

    /// Whether a tensor of a checkpoint is training state (momentum, a replica's BN buffers)
    /// rather than a weight of the model.
    public static func isTrainingState(_ name: String) -> Bool {
        name.hasPrefix(momentumPrefix) || name.hasPrefix(replicaPrefix)
    }

    /// The run's config as it was written (YAML).
    public func storedConfig() throws -> String {
        guard let yaml = metadata["config"] else { throw CheckpointError("\(file): no config in the metadata") }
        return yaml
    }

    /// metrics.jsonl as it was when the checkpoint was written.
    public var metrics: String { metadata["metrics"] ?? "" }

    /// The plain weights (parameters and BN buffers under the PyTorch names), by name, and the
    /// metadata a weights file keeps (`resnet export`).
    public var weights: (tensors: [NamedTensor], metadata: [String: String]) {
        var keep: [String: String] = ["format": "pt"]
        for k in ["global_step", "epoch"] { keep[k] = metadata[k] }
        return (tensors.values.filter { !Checkpoint.isTrainingState($0.name) }.sorted { $0.name < $1.name }, keep)
    }

    /// The position, every number range-checked (the checksum proves the file is what was
    /// written, not that it was written by us): `globalSteps` and `epochs` bound those fields,
    /// and the step in the epoch must lie within an epoch of `stepsPerEpoch` steps.
    public func position(globalSteps: ClosedRange<Int>, epochs: ClosedRange<Int>, stepsPerEpoch: Int) throws -> CheckpointPosition {
        func int(_ k: String, _ r: ClosedRange<Int>) throws -> Int {
            guard let v = metadata[k].flatMap({ Int($0) }), r.contains(v) else {
                throw CheckpointError("\(file): metadata field \(k) is \(clippedForMessage(metadata[k] ?? "missing", limit: 40)), expected an integer in \(r.lowerBound)...\(r.upperBound)")
            }
            return v
        }
        func dbl(_ k: String) throws -> Double {
            guard let v = metadata[k].flatMap({ Double($0) }), v.isFinite, v >= 0, v <= 1e15 else {
                throw CheckpointError("\(file): metadata field \(k) is \(clippedForMessage(metadata[k] ?? "missing", limit: 40)), expected a finite number in 0...1e15")
            }
            return v
        }
        let globalStep = try int("global_step", globalSteps), epoch = try int("epoch", epochs)
        let stepInEpoch = try int("step_in_epoch", 0...globalStep)
        guard stepInEpoch <= stepsPerEpoch else {
            throw CheckpointError("\(file): step_in_epoch \(stepInEpoch) exceeds the \(stepsPerEpoch) steps of an epoch")
        }
        return CheckpointPosition(globalStep: globalStep, epoch: epoch, stepInEpoch: stepInEpoch,
                                  epochLossSum: try dbl("epoch_loss_sum"), epochCorrect: try dbl("epoch_correct"),
                                  epochSeen: try dbl("epoch_seen"))
    }

    /// Loads parameters and BN buffers into `model` (strict: every name, every shape); at the
    /// world size it was written at, rank `rank` gets its own running statistics back. Returns
    /// the momentum buffer, laid out as `model.params`.
    public func restore(into model: ResNet, rank: Int, worldSize: Int) throws -> [Float] {
        let momentumNames = Set(tensors.keys.filter { $0.hasPrefix(Checkpoint.momentumPrefix) })
        let replicaNames = Set(tensors.keys.filter { $0.hasPrefix(Checkpoint.replicaPrefix) })
        try SafeTensors.load(tensors, into: [model.params, model.buffers], file: file, ignoring: momentumNames.union(replicaNames))
        if metadata["world_size"] == "\(worldSize)" && worldSize > 1 {
            var own: [String: NamedTensor] = [:]
            let prefix = "\(Checkpoint.replicaPrefix)\(rank)."
            for name in replicaNames where name.hasPrefix(prefix) { own[String(name.dropFirst(prefix.count))] = tensors[name] }
            try SafeTensors.load(own, into: [model.buffers], file: file + " (rank \(rank)'s BN buffers)")
        }
        var velocity = [Float](repeating: 0, count: model.params.totalCount)
        for h in model.params.entries {
            let name = Checkpoint.momentumPrefix + h.name
            guard let t = tensors[name] else { throw CheckpointError("\(file): missing tensor \(name)") }
            guard t.shape == h.shape else { throw CheckpointError("\(file): tensor \(name) has shape \(t.shape), expected \(h.shape)") }
            for i in 0..<h.count { velocity[h.offset + i] = t.values[i] }
        }
        guard momentumNames.count == model.params.entries.count else {
            throw CheckpointError("\(file): \(momentumNames.count) momentum tensors, expected \(model.params.entries.count)")
        }
        if let bad = velocity.withUnsafeBufferPointer({ model.params.firstNonFinite(in: $0.baseAddress!) }) {
            throw CheckpointError("\(file): tensor \(Checkpoint.momentumPrefix)\(bad.name) holds \(bad.value) at element \(bad.index); a checkpoint must be finite")
        }
        return velocity
    }

    // MARK: Checksum

    static func headerEnd(_ b: [UInt8]) -> Int {
        guard b.count >= 8 else { return 0 }
        var n: UInt64 = 0
        for i in 0..<8 { n |= UInt64(b[i]) << (8 * UInt64(i)) }
        return Int(min(UInt64(b.count), 8 &+ min(n, UInt64(b.count))))
    }

    static func find(_ needle: [UInt8], in hay: [UInt8], limit: Int) -> Int? {
        guard needle.count > 0, limit >= needle.count else { return nil }
        var i = 8
        while i + needle.count <= limit {
            if hay[i] == needle[0] && Array(hay[i..<(i + needle.count)]) == needle { return i }
            i += 1
        }
        return nil
    }

    static func crc32Of(_ b: [UInt8]) -> UInt32 {
        b.withUnsafeBufferPointer { p in
            var crc = crc32(0, nil, 0)
            var off = 0
            while off < p.count {   // zlib takes a 32-bit length
                let n = min(p.count - off, 1 << 30)
                crc = crc32(crc, p.baseAddress! + off, UInt32(n))
                off += n
            }
            return UInt32(crc)
        }
    }

    static func hex8(_ v: UInt32) -> String {
        let s = String(v, radix: 16)
        return String(repeating: "0", count: 8 - s.count) + s
    }
}
