// `resnet eval`: a weights file (PyTorch names, strict) on the config's test split.
import NN
import Data
import Distributed
import Coordinator
#if canImport(Glibc)
import Glibc
#endif

public func evaluateWeights(config: RunConfig, weights: String, comm: Communicator) throws -> (loss: Double, accuracy: Double, count: Int) {
    let plan = try RunPlan(config)
    let batch = plan.evaluationBatch(worldSize: comm.size)
    try ResourceCheck.check(config, localBatch: batch, what: "this config")
    let test = try plan.load(.test)
    let model = ResNet(plan.spec)
    // A plain weights file, or a checkpoint (verified; its optimizer state is skipped).
    let file = try SafeTensors.read(path: weights)
    var skip = Set<String>()
    if Checkpoint.isCheckpoint(file.metadata) {
        _ = try Checkpoint.read(weights)
        skip = Set(file.tensors.keys.filter(Checkpoint.isTrainingState))
    }
    try SafeTensors.load(file.tensors, into: [model.params, model.buffers], file: weights, ignoring: skip)
    try StepEngine.checkFinite(model, source: weights)
    guard test.count > 0 else { throw TrainingError("\(config.data.dataset): the test split is empty (0 images); nothing to evaluate") }
    let loader = BatchLoader(dataset: test, transform: plan.transform(augment: false))
    let r = try Evaluator.evaluate(model: model, loader: loader, batch: batch, comm: comm)
    return (r.loss, r.accuracy, test.count)
}

/// The config stored in a checkpoint (verified), with --set overrides applied.
public func checkpointConfig(_ path: String, overrides: [String]) throws -> RunConfig {
    let yaml = try Checkpoint.read(path).storedConfig()
    return try RunConfig.parse(yaml: yaml, file: path + " (stored config)", overrides: overrides)
}

/// `resnet export`: the parameters and BN buffers of a checkpoint, without optimizer state.
public func exportWeights(checkpoint: String, to out: String) throws -> Int {
    // Never overwrite the input: the export of a checkpoint onto itself would replace it by plain weights.
    var a = stat(), b = stat()
    if stat(out, &b) == 0 {
        if (b.st_mode & S_IFMT) == S_IFDIR { throw TrainingError("--out \(out) is a folder; expected the path of the weights file to write") }
        if stat(checkpoint, &a) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino {
            throw TrainingError("--out \(out) is the checkpoint being exported; choose another file (e.g. model.safetensors)")
        }
    }
    if let problem = pathProblem(out) { throw TrainingError("--out: expected \(problem), got '\(clippedForMessage(out))'") }
    let (plain, keep) = try Checkpoint.read(checkpoint).weights
    try SafeTensors.write(plain, metadata: keep, to: out)
    return plain.count
}

/// The ResNet a weights file holds, read from its tensor shapes (stem `0.0.weight` [width, C, 7, 7],
/// classifier `7.weight` [classes, features], blocks of stage 3 and bottleneck `conv3`s for the depth).
public func inferredSpec(_ tensors: [String: NamedTensor]) -> ResNetSpec? {
    guard let stem = tensors["0.0.weight"], stem.shape.count == 4, let fc = tensors["7.weight"], fc.shape.count == 2 else { return nil }
    let bottleneck = tensors.keys.contains { $0.hasPrefix("1.0.conv3.") }
    let stage3Blocks = Set(tensors.keys.compactMap { name -> Int? in
        let parts = name.split(separator: ".")
        return parts.count > 2 && parts[0] == "3" ? Int(parts[1]) : nil
    }).count
    let depth = bottleneck ? 50 : (stage3Blocks >= 6 ? 34 : 18)
    return ResNetSpec(depth: depth, inChannels: stem.shape[1], numClasses: fc.shape[0], width: stem.shape[0])
}

/// `eval --weights`: refuses a config whose model is not the one the weights hold, saying which
/// model that is and how to build it (instead of a list of shape mismatches).
public func checkWeightsMatchModel(_ path: String, config: RunConfig, configGiven: Bool) throws {
    let file = try SafeTensors.read(path: path)
    guard let held = inferredSpec(file.tensors) else { return }   // not a ResNet of ours: the strict load names what is wrong
    let m = config.model
    var differences: [String] = []
    if held.depth != m.depth { differences.append("model.depth=\(held.depth)") }
    if held.width != m.width { differences.append("model.width=\(held.width)") }
    if held.inChannels != m.inChannels { differences.append("model.in_channels=\(held.inChannels)") }
    if held.numClasses != m.numClasses { differences.append("model.num_classes=\(held.numClasses)") }
    guard !differences.isEmpty else { return }
    let built = "ResNet-\(m.depth) of width \(m.width), in_channels \(m.inChannels), num_classes \(m.numClasses)"
    let source = configGiven ? "the config builds" : "without --config the default model is"
    throw TrainingError("\(path) holds a ResNet-\(held.depth) of width \(held.width), in_channels \(held.inChannels), num_classes \(held.numClasses), "
        + "but \(source) a \(built): pass the config of the run that wrote it (--config RUN/config.yaml) or "
        + differences.map { "--set \($0)" }.joined(separator: " "))
}
