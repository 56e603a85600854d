// `resnet eval`: a weights file (PyTorch names, strict) on the config's test split.
import NN
import Data
import Distributed
import Coordinator

public func evaluateWeights(config: RunConfig, weights: String, comm: Communicator) throws -> (loss: Double, accuracy: Double, count: Int) {
    guard let kind = DatasetKind(rawValue: config.data.dataset) else {
        throw TrainingError("data.dataset: unknown dataset '\(config.data.dataset)'")
    }
    try ResourceCheck.check(config, localBatch: max(config.train.batchSize / comm.size, 1), what: "this config")
    let size = config.data.imageSize
    let test = try loadDataset(kind: kind, root: config.data.root, split: .test,
                               syntheticCount: max(config.data.syntheticCount / 4, 1),
                               syntheticShape: (config.model.inChannels, size > 0 ? size : 28, size > 0 ? size : 28),
                               numClasses: config.model.numClasses, seed: UInt64(truncatingIfNeeded: config.train.seed))
    let model = ResNet(ResNetSpec(depth: config.model.depth, inChannels: config.model.inChannels,
                                  numClasses: config.model.numClasses, width: config.model.width))
    // A plain weights file, or a checkpoint (verified; its optimizer state is skipped).
    let file = try SafeTensors.read(path: weights)
    var skip = Set<String>()
    if file.metadata["format_name"] == CheckpointStore.formatName {
        _ = try CheckpointStore.verify(try CheckpointStore.readFile(weights), file: weights)
        skip = Set(file.tensors.keys.filter { $0.hasPrefix(Trainer.momentumPrefix) || $0.hasPrefix(Trainer.replicaPrefix) })
    }
    try SafeTensors.load(file.tensors, into: [model.params, model.buffers], file: weights, ignoring: skip)
    try Trainer.checkFinite(model, source: weights)
    guard test.count > 0 else { throw TrainingError("\(config.data.dataset): the test split is empty (0 images); nothing to evaluate") }
    let loader = BatchLoader(dataset: test, transform: TransformConfig(
        imageSize: size > 0 ? size : nil,
        normalize: config.data.normalize ? (config.data.mean, config.data.std) : nil))
    let batch = max(config.train.batchSize / comm.size, 1)
    let r = try Evaluator.evaluate(model: model, loader: loader, batch: batch, comm: comm)
    return (r.loss, r.accuracy, test.count)
}

/// The config stored in a checkpoint (verified), with --set overrides applied.
public func checkpointConfig(_ path: String, overrides: [String]) throws -> RunConfig {
    let (_, meta) = try CheckpointStore.verify(try CheckpointStore.readFile(path), file: path)
    guard let yaml = meta["config"] else { throw CheckpointError("\(path): no config in the metadata") }
    return try RunConfig.parse(yaml: yaml, file: path + " (stored config)", overrides: overrides)
}

/// `resnet export`: the parameters and BN buffers of a checkpoint, without optimizer state.
public func exportWeights(checkpoint: String, to out: String) throws -> Int {
    let (tensors, meta) = try CheckpointStore.verify(try CheckpointStore.readFile(checkpoint), file: checkpoint)
    let plain = tensors.values.filter { !$0.name.hasPrefix(Trainer.momentumPrefix) && !$0.name.hasPrefix(Trainer.replicaPrefix) }
        .sorted { $0.name < $1.name }
    var keep: [String: String] = ["format": "pt"]
    for k in ["global_step", "epoch"] { keep[k] = meta[k] }
    try SafeTensors.write(plain, metadata: keep, to: out)
    return plain.count
}
