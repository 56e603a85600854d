// The memory a run will need, estimated before anything large is allocated, and refused with
// the figure and the key to change when it exceeds what the machine has (instead of a trap
// inside an allocation, or the kernel's OOM killer 40 s into a run).
//
// Per rank:
//   parameters  P floats x 7: values, gradients, momentum, and the copies a checkpoint write makes
//               (tensors collected, encoded, written); BN buffers x 2
//   activations local batch x (input + what backward needs, and the pooled input gradients, at most
//               3 per distinct shape) floats (`ResNet.footprint` says which); evaluation reuses them
//   dataset     as loaded: IDX/CIFAR bytes (70 000 x 784 / 60 000 x 3072), synthetic images as
//               Float at their generated size (train + test = count x 5/4)
//   runtime     a fixed 200 MiB (Swift runtime, OpenBLAS and Open MPI buffers, the layers' scratch)
// The estimate against measured peak RSS is in docs/robustness.md: it errs on the high side.
import Foundation
import NN
import Data
#if canImport(Glibc)
import Glibc
#endif

public struct MemoryEstimate: CustomStringConvertible {
    public var parameterBytes: Double
    public var activationBytes: Double
    public var datasetBytes: Double
    public var runtimeBytes: Double = 200 * 1_048_576
    public var total: Double { parameterBytes + activationBytes + datasetBytes + runtimeBytes }
    /// What to change for each part, e.g. "model.width (64) or model.depth (18)".
    var parameterKeys = "", activationKeys = "", datasetKeys = ""

    public var description: String {
        "parameters and optimizer state \(formatBytes(parameterBytes)), activations \(formatBytes(activationBytes)), "
            + "dataset \(formatBytes(datasetBytes)), runtime \(formatBytes(runtimeBytes))"
    }

    /// The parts from largest to smallest with the keys that shrink them.
    var advice: String {
        [(parameterBytes, parameterKeys), (activationBytes, activationKeys), (datasetBytes, datasetKeys)]
            .filter { !$0.1.isEmpty }.sorted { $0.0 > $1.0 }.prefix(2)
            .map { "\($0.1) (\(formatBytes($0.0)))" }.joined(separator: ", or ")
    }
}

public enum ResourceCheck {
    /// The estimate for one rank holding `localBatch` images per step.
    public static func estimate(_ config: RunConfig, localBatch: Int) throws -> MemoryEstimate {
        let plan = try RunPlan(config)
        let spec = plan.spec, kind = plan.dataset, input = plan.inputShape
        guard let f = ResNet.footprint(spec, input: input) else {
            throw ConfigError("invalid data.image_size: images of \(input[1])x\(input[2]) shrink to nothing in ResNet-\(spec.depth) (a stride-2 stem, a max pool and three stride-2 stages): use at least 32")
        }
        var e = MemoryEstimate(parameterBytes: 4 * (7 * Double(f.parameters) + 2 * Double(f.buffers)),
                               activationBytes: 4 * Double(localBatch) * Double(f.activationsPerImage),
                               datasetBytes: 0)
        switch kind {
        case .fashionMNIST, .mnist: e.datasetBytes = 70_000 * 784
        case .cifar10: e.datasetBytes = 60_000 * 3072
        case .synthetic:
            let count = Double(config.data.syntheticCount) * (1 + 1 / Double(RunConfig.DataConfig.syntheticTestDivisor))   // both splits
            e.datasetBytes = 4 * count * Double(config.model.inChannels) * Double(input[1]) * Double(input[2])
            e.datasetKeys = "data.synthetic_count (\(config.data.syntheticCount))"
        }
        e.parameterKeys = "model.width (\(config.model.width)) or model.depth (\(config.model.depth))"
        e.activationKeys = "train.batch_size (\(config.train.batchSize), \(localBatch) per rank) or data.image_size (\(config.data.imageSize))"
        return e
    }

    /// Refuses a run whose ranks on this node would need more memory than the node has available.
    /// `what` names the source in the message ("config runs/x.yaml", "resnet bench options").
    public static func check(_ config: RunConfig, localBatch: Int, what: String) throws {
        let e = try estimate(config, localBatch: localBatch)
        let ranks = ranksOnThisNode()
        guard let (available, source) = availableMemory() else { return }
        guard e.total * Double(ranks) > available else { return }
        throw ConfigError("not enough memory for this run (\(what)): it needs about \(formatBytes(e.total)) per rank (\(e)), "
            + "\(ranks) rank(s) on this node, but \(formatBytes(available)) is available (\(source)); lower \(e.advice)")
    }

    /// Ranks sharing this node's memory (Open MPI and SLURM say; 1 without a launcher).
    static func ranksOnThisNode() -> Int {
        for key in ["OMPI_COMM_WORLD_LOCAL_SIZE", "SLURM_NTASKS_PER_NODE", "MPI_LOCALNRANKS"] {
            if let v = getenv(key).flatMap({ Int(String(cString: $0)) }), v > 0 { return v }
        }
        return 1
    }

    /// MemAvailable from /proc/meminfo, or a cgroup's memory.max less its usage when that is lower.
    /// nil where neither can be read (then nothing is refused).
    public static func availableMemory() -> (bytes: Double, source: String)? {
        var best: (Double, String)?
        if let text = readSmallFile("/proc/meminfo") {
            for line in text.split(separator: "\n") where line.hasPrefix("MemAvailable:") {
                let fields = line.split(separator: " ")
                if fields.count >= 2, let kb = Double(fields[1]) { best = (kb * 1024, "MemAvailable in /proc/meminfo") }
            }
        }
        if let maxText = readSmallFile("/sys/fs/cgroup/memory.max"), let limit = Double(maxText.trimmed),
           let usedText = readSmallFile("/sys/fs/cgroup/memory.current"), let used = Double(usedText.trimmed) {
            let free = max(limit - used, 0)
            if best == nil || free < best!.0 { best = (free, "the cgroup limit /sys/fs/cgroup/memory.max less its usage") }
        }
        return best
    }

    static func readSmallFile(_ path: String) -> String? {
        guard let f = fopen(path, "r") else { return nil }
        defer { fclose(f) }
        var buf = [UInt8](repeating: 0, count: 16384)
        let n = fread(&buf, 1, buf.count, f)
        return String(decoding: buf[0..<n], as: UTF8.self)
    }
}

/// 1536 -> "1.5 KiB", 3.2e12 -> "2.9 TiB".
public func formatBytes(_ b: Double) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]
    var v = b, i = 0
    while v >= 1024 && i < units.count - 1 { v /= 1024; i += 1 }
    return i == 0 ? "\(Int(v)) B" : String(format: "%.1f %@", v, units[i])
}

private extension String {
    var trimmed: String { String(self.filter { !$0.isWhitespace }) }
}
