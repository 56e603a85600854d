// The run configuration: every knob of a training run, as read from YAML (snake_case keys)
// and `--set section.key=value` overrides. The defaults are the initial values below; the
// YAML keys, what they mean and whether they may change on resume are in `ConfigSchema`
// (ConfigLoader.swift), which reads, prints, encodes and documents the config.
import NN
import Data

public struct RunConfig: Equatable, Sendable {
    public struct Model: Equatable, Sendable {
        /// ResNet depth: 18, 34 (basic blocks) or 50 (bottlenecks).
        public var depth: Int = 18
        public var inChannels: Int = 1
        public var numClasses: Int = 10
        /// Channels of the stem and first stage (64 in the paper).
        public var width: Int = 64
        public init() {}
    }

    public struct DataConfig: Equatable, Sendable {
        /// The raw value of a `DatasetKind`: "fashion-mnist", "mnist", "cifar10", "synthetic".
        public var dataset: String = "fashion-mnist"
        /// Folder of the dataset's files; "" = the dataset's own default folder
        /// (`DatasetKind.defaultRoot`: /usr/share/datasets/fashion-mnist, .../mnist, .../cifar10).
        public var root: String = ""
        /// Side of the (square) images fed to the net after resizing; 0 keeps the native size.
        public var imageSize: Int = 96
        public var shuffle: Bool = true
        /// Random crop with padding `cropPadding` plus horizontal flip (training only).
        public var augment: Bool = false
        /// Padding of `augment`'s random crop (pixels on each side, zeros).
        public var cropPadding: Int = 4
        public var normalize: Bool = false
        /// Per-channel mean and std used when `normalize` is on (one entry per input channel).
        public var mean: [Float] = [0.2860]
        public var std: [Float] = [0.3530]
        /// Number of training images of the "synthetic" dataset.
        public var syntheticCount: Int = 1024
        public init() {}

        /// The synthetic test split holds `syntheticCount / syntheticTestDivisor` images (at least one).
        public static let syntheticTestDivisor = 4
    }

    public struct Train: Equatable, Sendable {
        /// The GLOBAL batch; each rank takes batchSize / worldSize.
        public var batchSize: Int = 256
        public var epochs: Int = 10
        /// Stop after this many optimizer steps (0 = no limit).
        public var maxSteps: Int = 0
        public var seed: Int = 0
        /// A safetensors file whose weights replace the random initialisation.
        public var initWeights: String? = nil
        public var syncBN: Bool = false
        /// Size of one gradient allreduce bucket, in MiB.
        public var bucketMB: Double = 4.0
        /// Worker threads per rank for the layers (0 = auto: cores / ranks on the node).
        public var threads: Int = 0
        public var debug: Bool = false
        public var evalEveryEpoch: Bool = true
        /// Log a metrics line every this many steps.
        public var logEvery: Int = 10
        /// Label smoothing ε of the training loss, torch's CrossEntropyLoss(label_smoothing=) (0 = none).
        public var labelSmoothing: Double = 0
        /// Seconds a collective may take before the watchdog ends the job (0 = no watchdog);
        /// startup and the first step get `startupTimeoutFactor` times as long.
        public var collectiveTimeoutS: Double = 300
        /// Micro-batches per optimizer step: each rank's share of the global batch goes through
        /// forward/backward in this many parts whose gradients add up; one allreduce per step.
        public var accumulateSteps: Int = 1
        /// Global steps (1-based, inclusive) `--trace FILE` records, "A-B" or "A".
        public var traceSteps: String = "3-4"
        public init() {}

        /// Startup and the first step get this many times `collectiveTimeoutS`.
        public static let startupTimeoutFactor = 3.0

        /// The window of `traceSteps` (nil when it is not "A-B" or "A" with 1 <= A <= B).
        public var traceWindow: ClosedRange<Int>? {
            let parts = traceSteps.split(separator: "-", omittingEmptySubsequences: false).map { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard (1...2).contains(parts.count), let a = parts.first ?? nil, let b = parts.last ?? nil, a >= 1, a <= b else { return nil }
            return a...b
        }
    }

    public struct Optimizer: Equatable, Sendable {
        /// The base learning rate (ignored when `lrPer256` is set).
        public var lr: Double = 0.05
        /// The linear scaling rule (Goyal et al. 2017): lr = lrPer256 × global batch / 256.
        public var lrPer256: Double? = nil
        public var momentum: Double = 0.9
        public var weightDecay: Double = 0.0
        public var nesterov: Bool = false
        public init() {}
    }

    public struct Schedule: Equatable, Sendable {
        public var kind: LRSchedule.Kind = .constant
        /// Linear warm-up from 0 to lr over this many epochs (fractions allowed).
        public var warmupEpochs: Double = 0.0
        /// "step": multiply the lr by gamma every stepEpochs epochs.
        public var stepEpochs: Int = 30
        public var gamma: Double = 0.1
        /// "cosine": the lr at the end of training.
        public var minLR: Double = 0.0
        public init() {}
    }

    public struct Checkpoint: Equatable, Sendable {
        /// Write a checkpoint every this many steps (0 = off).
        public var everySteps: Int = 0
        public var everyEpoch: Bool = true
        /// How many checkpoints to keep (oldest are deleted).
        public var keep: Int = 3
        public init() {}
    }

    public struct Output: Equatable, Sendable {
        public var dir: String = "runs/default"
        /// Also write the metrics as TensorBoard event files in `dir` (rank 0).
        public var tensorboard: Bool = true
        public init() {}
    }

    public var model = Model()
    public var data = DataConfig()
    public var train = Train()
    public var optimizer = Optimizer()
    public var schedule = Schedule()
    public var checkpoint = Checkpoint()
    public var output = Output()

    public init() {}

    /// Every field at its default.
    public static var `default`: RunConfig { RunConfig() }
}

extension RunConfig {
    /// The base learning rate of the run: optimizer.lr, or by the linear scaling rule from
    /// optimizer.lr_per_256 and the global batch.
    public var baseLR: Double { optimizer.lrPer256.map { $0 * Double(train.batchSize) / 256 } ?? optimizer.lr }
}

extension RunConfig.DataConfig {
    /// The dataset `dataset` names (nil when it names none; `validate` refuses that).
    public var kind: DatasetKind? { DatasetKind(rawValue: dataset) }

    /// The folder the data is read from: `root`, or the named dataset's own default folder when
    /// `root` is empty (so `--set data.dataset=mnist` reads MNIST's folder, not Fashion-MNIST's).
    public var resolvedRoot: String { kind?.root(root) ?? root }
}

/// The ranges of the numeric keys (and of `resnet bench`'s options, which build a config).
/// They keep every derived quantity (steps = epochs x steps/epoch, warm-up steps, bucket bytes,
/// tensor sizes) far from Int's limits, so no value from outside can trap the program; whether a
/// run within them fits in memory is checked separately (`ResourceCheck`).
public enum ConfigLimits {
    public static let width = 1...4096
    public static let inChannels = 1...1024
    public static let numClasses = 2...1_000_000
    public static let imageSize = 0...4096
    public static let cropPadding = 0...64
    public static let syntheticCount = 1...100_000_000
    public static let batchSize = 1...1_000_000
    public static let epochs = 1...1_000_000
    public static let maxSteps = 0...1_000_000_000_000
    public static let seed = 0...Int.max
    public static let threads = 0...1024
    public static let logEvery = 1...1_000_000_000
    public static let everySteps = 0...1_000_000_000_000
    public static let keep = 1...1_000_000
    public static let stepEpochs = 1...1_000_000
    public static let bucketMB: ClosedRange<Double> = 0.001...4096
    public static let lr: ClosedRange<Double> = 0...1000
    public static let accumulateSteps = 1...1_000_000
    public static let labelSmoothing: ClosedRange<Double> = 0...0.999_999
    public static let collectiveTimeoutS: ClosedRange<Double> = 0...1_000_000
    public static let weightDecay: ClosedRange<Double> = 0...1000
    public static let warmupEpochs: ClosedRange<Double> = 0...1_000_000
    public static let gamma: ClosedRange<Double> = 1e-12...1000
    public static let mean: ClosedRange<Float> = -1e6...1e6
    public static let std: ClosedRange<Float> = 1e-6...1e6
}
