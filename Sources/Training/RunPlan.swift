// The one place that turns a `RunConfig` into the objects of a run: the model spec, the
// datasets and their loaders, the sampler, the schedule, the optimizer and the bucket size.
// `train` (Trainer, StepEngine), `eval` (evaluateWeights), `summary`, `bench` and the memory
// estimate (ResourceCheck) all build from here.
import NN
import Data
import Distributed
import Coordinator

public struct RunPlan {
    public let config: RunConfig
    public let dataset: DatasetKind
    public let spec: ResNetSpec

    /// Fails on a dataset name that is not a `DatasetKind` (a validated config never has one).
    public init(_ config: RunConfig) throws {
        guard let kind = config.data.kind else {
            throw TrainingError("data.dataset: unknown dataset '\(config.data.dataset)', expected one of \(DatasetKind.allCases.map(\.rawValue))")
        }
        self.config = config
        dataset = kind
        spec = ResNetSpec(depth: config.model.depth, inChannels: config.model.inChannels,
                          numClasses: config.model.numClasses, width: config.model.width)
    }

    /// The seed of initialisation, shuffling, augmentation and the synthetic images.
    public var seed: UInt64 { UInt64(truncatingIfNeeded: config.train.seed) }

    /// Side of the (square) images the net sees: data.image_size, or the dataset's native side.
    public var imageSide: Int { dataset.side(imageSize: config.data.imageSize) }

    /// The input of one image, [channels, side, side].
    public var inputShape: [Int] { [config.model.inChannels, imageSide, imageSide] }

    // MARK: Data

    /// One split in memory (the synthetic test split holds 1/`syntheticTestDivisor` of the images).
    public func load(_ split: Split) throws -> ImageDataset {
        let count = config.data.syntheticCount
        return try loadDataset(kind: dataset, root: config.data.root, split: split,
                               syntheticCount: split == .train ? count : max(count / RunConfig.DataConfig.syntheticTestDivisor, 1),
                               syntheticShape: (config.model.inChannels, imageSide, imageSide),
                               numClasses: config.model.numClasses, seed: seed)
    }

    /// Resizing and normalisation as configured; `augment` adds the random crop and flip.
    public func transform(augment: Bool) -> TransformConfig {
        let size = config.data.imageSize
        return TransformConfig(imageSize: size > 0 ? size : nil,
                               normalize: config.data.normalize ? (config.data.mean, config.data.std) : nil,
                               randomCropPadding: augment ? config.data.cropPadding : 0, horizontalFlip: augment)
    }

    /// The training split (augmented as configured), checked against the model.
    public func trainLoader() throws -> BatchLoader {
        let train = try load(.train)
        try checkAgainstModel(train)
        return BatchLoader(dataset: train, transform: transform(augment: config.data.augment))
    }

    /// Both splits: non-empty, one image shape, matching the model.
    public func loaders() throws -> (train: BatchLoader, test: BatchLoader) {
        let train = try load(.train), test = try load(.test)
        try checkSplits(train: train, test: test)
        try checkAgainstModel(train)
        return (BatchLoader(dataset: train, transform: transform(augment: config.data.augment)),
                BatchLoader(dataset: test, transform: transform(augment: false)))
    }

    /// Non-empty splits whose images have one shape (a test image of another size than the
    /// training images would be resized differently or not at all).
    func checkSplits(train: ImageDataset, test: ImageDataset) throws {
        let from = dataset == .synthetic ? "the synthetic set" : "\(config.data.dataset) in \(config.data.resolvedRoot)"
        guard train.count > 0 else { throw TrainingError("\(from): the training split is empty (0 images)") }
        guard test.count > 0 else { throw TrainingError("\(from): the test split is empty (0 images); evaluation needs at least one") }
        let a = (train.channels, train.height, train.width), b = (test.channels, test.height, test.width)
        guard a == b else {
            throw TrainingError("\(from): test images are \(b.0)x\(b.1)x\(b.2) but training images are \(a.0)x\(a.1)x\(a.2); both splits must have one shape")
        }
    }

    func checkAgainstModel(_ train: ImageDataset) throws {
        guard train.channels == config.model.inChannels else {
            throw TrainingError("model.in_channels is \(config.model.inChannels) but \(config.data.dataset) images have \(train.channels) channel(s)")
        }
        guard train.numClasses <= config.model.numClasses else {
            throw TrainingError("model.num_classes is \(config.model.numClasses) but \(config.data.dataset) has \(train.numClasses) classes")
        }
    }

    // MARK: Steps

    /// This rank's share of every global batch.
    public func sampler(datasetCount: Int, comm: Communicator) throws -> ShardedSampler {
        try ShardedSampler(datasetCount: datasetCount, globalBatch: config.train.batchSize,
                           rank: comm.rank, worldSize: comm.size, shuffle: config.data.shuffle, seed: seed)
    }

    /// The learning rate per step: epochs x steps per epoch, cut at train.max_steps.
    public func schedule(stepsPerEpoch: Int) -> LRSchedule {
        var total = stepsPerEpoch * config.train.epochs
        if config.train.maxSteps > 0 { total = min(total, config.train.maxSteps) }
        return LRSchedule(kind: config.schedule.kind, baseLR: config.baseLR, warmupEpochs: config.schedule.warmupEpochs,
                          stepsPerEpoch: stepsPerEpoch, totalSteps: total, stepEpochs: config.schedule.stepEpochs,
                          gamma: config.schedule.gamma, minLR: config.schedule.minLR)
    }

    /// The model at its random initialisation (from `seed`).
    public func makeModel() -> ResNet {
        let model = ResNet(spec, seed: seed)
        model.labelSmoothing = Float(config.train.labelSmoothing)
        return model
    }

    public func optimizer(parameterCount: Int) -> SGD {
        SGD(count: parameterCount, momentum: Float(config.optimizer.momentum),
            weightDecay: Float(config.optimizer.weightDecay), nesterov: config.optimizer.nesterov)
    }

    /// Bytes of one gradient allreduce bucket (at least 4 KiB).
    public var bucketBytes: Int { max(Int(config.train.bucketMB * 1_048_576), 4096) }

    /// Images per rank per step when every test image is evaluated once across the ranks.
    public func evaluationBatch(worldSize: Int) -> Int { max(config.train.batchSize / worldSize, 1) }
}
