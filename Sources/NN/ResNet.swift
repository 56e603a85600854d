// The ResNet builder. ResNet-18 is exactly the seed's (d2l) model:
//   net = nn.Sequential(b1, b2, b3, b4, b5, nn.AdaptiveAvgPool2d((1,1)), nn.Flatten(), nn.Linear(512, classes))
//   b1 = conv 7x7/2 (pad 3) + BN + ReLU + maxpool 3/2 (pad 1); b2..b5 = stages of residual blocks.
// ResNet-34 uses basic blocks [3,4,6,3], ResNet-50 bottleneck blocks [3,4,6,3] (He et al., Table 1).
// Channels scale with `width` (64 in the paper).

public struct ResNetSpec: Equatable, Sendable {
    public var depth: Int
    public var inChannels: Int
    public var numClasses: Int
    public var width: Int
    public init(depth: Int = 18, inChannels: Int = 1, numClasses: Int = 10, width: Int = 64) {
        self.depth = depth; self.inChannels = inChannels; self.numClasses = numClasses; self.width = width
    }
    public static let supportedDepths = [18, 34, 50]

    var stageBlocks: [Int] {
        switch depth {
        case 18: return [2, 2, 2, 2]
        case 34, 50: return [3, 4, 6, 3]
        default: preconditionFailure("unsupported depth \(depth)")
        }
    }
    var bottleneck: Bool { depth == 50 }
    public var featureCount: Int { width * 8 * (bottleneck ? ResidualBlock.bottleneckExpansion : 1) }
}

public final class ResNet {
    public let spec: ResNetSpec
    public let ctx: ModelContext
    public let net: Sequential
    private let lossFn = SoftmaxCrossEntropy()
    /// Label smoothing ε of the training loss (torch's CrossEntropyLoss(label_smoothing=)); 0 = none.
    public var labelSmoothing: Float {
        get { lossFn.labelSmoothing }
        set { lossFn.labelSmoothing = newValue }
    }

    public init(_ spec: ResNetSpec, seed: UInt64 = 0) {
        self.spec = spec
        (ctx, net) = ResNet.build(spec)
        ctx.finalize()
        initialize(seed: seed)
    }

    /// The layer tree, its tensors declared on a fresh context but not yet allocated.
    static func build(_ spec: ResNetSpec) -> (ModelContext, Sequential) {
        precondition(ResNetSpec.supportedDepths.contains(spec.depth), "depth \(spec.depth) not in \(ResNetSpec.supportedDepths)")
        let ctx = ModelContext()
        let w = spec.width
        let stem = Conv2D(ctx, name: "0.0", inChannels: spec.inChannels, outChannels: w, kernel: 7, stride: 2, padding: 3)
        stem.needsInputGradient = false   // nothing consumes the gradient of the images
        let b1 = Sequential(ctx, name: "0", [
            stem,
            BatchNorm2D(ctx, name: "0.1", channels: w),
            ReLU(name: "0.2", inPlace: true),   // after the stem BN
            MaxPool2D(name: "0.3", kernel: 3, stride: 2, padding: 1),
        ])
        var stages: [Layer] = []
        var cin = w
        for (s, blocks) in spec.stageBlocks.enumerated() {
            let stage = "\(s + 1)"
            let cmid = w << s
            var layers: [Layer] = []
            for b in 0..<blocks {
                let name = "\(stage).\(b)"
                let stride = (b == 0 && s > 0) ? 2 : 1
                if spec.bottleneck {
                    layers.append(ResidualBlock.bottleneck(ctx, name: name, inChannels: cin, midChannels: cmid, stride: stride))
                    cin = cmid * ResidualBlock.bottleneckExpansion
                } else {
                    // d2l: the first block of stages 2..4 halves the size and uses the 1x1 shortcut.
                    layers.append(ResidualBlock.basic(ctx, name: name, inChannels: cin, outChannels: cmid,
                                                      use1x1: b == 0 && s > 0, stride: stride))
                    cin = cmid
                }
            }
            stages.append(Sequential(ctx, name: stage, layers))
        }
        let net = Sequential(ctx, name: "", [b1] + stages + [
            GlobalAvgPool(name: "5"), Flatten(name: "6"),
            Linear(ctx, name: "7", inFeatures: spec.featureCount, outFeatures: spec.numClasses),
        ])
        return (ctx, net)
    }

    /// What a model of this spec holds, without allocating it: parameter and BN-buffer counts,
    /// and the activation floats one training step keeps per image at `input` (C, H, W): every
    /// leaf's output but an in-place ReLU's and a batch norm's that pools as it normalizes (max
    /// pooling's 1.5 times: its UInt16 argmax), and a residual block's sum unless its main path's
    /// last batch norm writes it; and the
    /// input gradients, which come from one
    /// `GradientPool` and are alive at most three at a time per shape (a residual block's g, its
    /// main path's current and next gradient; the elementwise layers overwrite donated ones), so
    /// three per distinct shape bound them.
    /// Shapes that shrink to nothing give nil.
    public static func footprint(_ spec: ResNetSpec, input: [Int]) -> (parameters: Int, buffers: Int, activationsPerImage: Int)? {
        let (ctx, net) = build(spec)
        let parameters = ctx.params.entries.reduce(0) { $0 + $1.count }
        let buffers = ctx.buffers.entries.reduce(0) { $0 + $1.count }
        var kept = input.reduce(1, *)
        var gradientShapes = Set<[Int]>()
        func visit(_ layer: Layer, _ shape: [Int]) -> [Int]? {
            if let block = layer as? ResidualBlock {
                var s = shape
                for l in block.main { guard let next = visit(l, s) else { return nil }; s = next }
                if let sc = block.shortcut, visit(sc, shape) == nil { return nil }
                if !(block.main.last is BatchNorm2D) { kept += s.reduce(1, *) }   // the block's sum (its ReLU mask)
                gradientShapes.insert(s)
                return s
            }
            if let seq = layer as? Sequential {
                var s = shape
                for c in seq.children { guard let next = visit(c, s) else { return nil }; s = next }
                return s
            }
            let out = layer.outputShape(shape)
            guard out.allSatisfy({ $0 > 0 }) else { return nil }
            // an in-place ReLU reuses its input; max pooling keeps its argmax too (UInt16, half of y; the
            // Int32 form of rows over 32K floats wide is not counted); a batch norm that pools as it
            // normalizes keeps no output of its own
            let halves = (layer as? ReLU)?.inPlace == true || (layer as? BatchNorm2D)?.fusedPool != nil ? 0
                : layer is MaxPool2D ? 3 : 2   // in halves of the output's size
            kept += halves * out.reduce(1, *) / 2
            gradientShapes.insert(shape)
            return out
        }
        guard visit(net, [1] + input) != nil else { return nil }
        return (parameters, buffers, kept + 3 * gradientShapes.reduce(0) { $0 + $1.reduce(1, *) })
    }

    public var params: ParameterStore { ctx.params }
    public var buffers: ParameterStore { ctx.buffers }
    public var leaves: [Layer] { net.leaves }

    /// PyTorch's default initialization: conv/linear weights and biases uniform in
    /// +-1/sqrt(fan_in) (kaiming_uniform with a = sqrt(5)), BN gamma 1, beta 0, stats 0/1.
    public func initialize(seed: UInt64) {
        var rng = SplitMix64(seed: mixSeed(seed, 0x1417))
        for layer in leaves {
            if let bn = layer as? BatchNorm2D { bn.resetParameters(); continue }
            for p in layer.parameters {
                let fanIn = (layer as? Conv2D).map { $0.inChannels * $0.kernel * $0.kernel }
                    ?? (layer as? Linear)?.inFeatures ?? 1
                let bound = 1 / Float(fanIn).squareRoot()
                for i in 0..<p.count { p.value[i] = rng.uniform(-bound, bound) }
            }
        }
    }

    public func forward(_ x: Tensor, training: Bool) -> Tensor { net.forward(x, training: training) }

    /// Forward, loss, backward for one (local) batch; gradients are ADDED to the flat gradient buffer.
    public func trainStep(_ x: Tensor, labels: UnsafePointer<Int32>, normalizer: Int) -> SoftmaxCrossEntropy.Result {
        let logits = net.forward(x, training: true)
        let r = ctx.timed("SoftmaxCrossEntropy") { lossFn.forward(logits: logits, labels: labels, normalizer: normalizer) }
        ctx.gradients.give(ctx.backward(net, lossFn.gradient()))   // the images' gradient: nobody consumes it
        return r
    }

    /// Loss (summed, not averaged) and top-1 hits in eval mode.
    public func evaluate(_ x: Tensor, labels: UnsafePointer<Int32>) -> (lossSum: Double, correct: Int) {
        let logits = net.forward(x, training: false)
        let r = lossFn.forward(logits: logits, labels: labels, normalizer: 1, gradient: false)
        return (r.loss, r.correct)
    }

    /// The seed's shape table: (name, type, output shape without the batch dimension) for each
    /// top-level block, as d2l prints it.
    public func summary(input: [Int]) -> [(name: String, type: String, shape: [Int])] {
        ResNet.summaryRows(net, input: input)
    }

    /// The shape table of a spec without allocating its tensors (any width the config allows).
    public static func summary(_ spec: ResNetSpec, input: [Int]) -> [(name: String, type: String, shape: [Int])] {
        summaryRows(build(spec).1, input: input)
    }

    private static func summaryRows(_ net: Sequential, input: [Int]) -> [(name: String, type: String, shape: [Int])] {
        var s = [1] + input
        var rows: [(String, String, [Int])] = []
        for c in net.children {
            s = c.outputShape(s)
            rows.append((c.name, c.typeName == "Sequential" ? "Sequential" : c.typeName, Array(s.dropFirst())))
        }
        return rows
    }
}
