// `resnet eval`: a weights file (PyTorch names, strict) on the config's test split.
import NN
import Data
import Distributed
import Coordinator

public func evaluateWeights(config: RunConfig, weights: String, comm: Communicator) throws -> (loss: Double, accuracy: Double, count: Int) {
    guard let kind = DatasetKind(rawValue: config.data.dataset) else {
        throw TrainingError("data.dataset: unknown dataset '\(config.data.dataset)'")
    }
    let size = config.data.imageSize
    let test = try loadDataset(kind: kind, root: config.data.root, split: .test,
                               syntheticCount: max(config.data.syntheticCount / 4, 1),
                               syntheticShape: (config.model.inChannels, size > 0 ? size : 28, size > 0 ? size : 28),
                               numClasses: config.model.numClasses, seed: UInt64(truncatingIfNeeded: config.train.seed))
    let model = ResNet(ResNetSpec(depth: config.model.depth, inChannels: config.model.inChannels,
                                  numClasses: config.model.numClasses, width: config.model.width))
    let file = try SafeTensors.read(path: weights)
    try SafeTensors.load(file.tensors, into: [model.params, model.buffers], file: weights)
    let loader = BatchLoader(dataset: test, transform: TransformConfig(
        imageSize: size > 0 ? size : nil,
        normalize: config.data.normalize ? (config.data.mean, config.data.std) : nil))
    let batch = max(config.train.batchSize / comm.size, 1)
    let r = try Evaluator.evaluate(model: model, loader: loader, batch: batch, comm: comm)
    return (r.loss, r.accuracy, test.count)
}
