// A residual block: y = relu(main(x) + shortcut(x)), shortcut = identity when nil.
// Backward: g = dy * [y > 0] flows back through both paths; dx = dx_main + dx_shortcut.
// When the main path ends in a batch norm (whose backward does not read its output), that batch
// norm writes y itself, relu(bn(h) + shortcut) in its normalizing pass (`BatchNorm2D.residual`):
// one pass over the block's output and one tensor less per block, the same bits.
// The two block kinds (the seed's basic block, He et al.'s bottleneck) are builders below
// and in Bottleneck.swift.

public final class ResidualBlock: Layer {
    public let name: String
    public let main: [Layer]
    public let shortcut: Layer?
    private let ctx: ModelContext
    private var out: Tensor?
    /// Whether blocks whose main path ends in a batch norm let it add the shortcut and apply the
    /// ReLU (on by default; off only to compare against the sum done apart).
    nonisolated(unsafe) public static var fusesSum = true

    public init(_ ctx: ModelContext, name: String, main: [Layer], shortcut: Layer?) {
        self.ctx = ctx; self.name = name; self.main = main; self.shortcut = shortcut
        fuseBatchNorms(main)
    }

    /// The batch norm ending the main path that adds the shortcut and applies the ReLU, if any.
    public var summingBatchNorm: BatchNorm2D? {
        guard ResidualBlock.fusesSum, let bn = main.last as? BatchNorm2D, !bn.fusedReLU, bn.fusedPool == nil else { return nil }
        return bn
    }

    public var leaves: [Layer] { (shortcut?.leaves ?? []) + main.flatMap { $0.leaves } }
    public func outputShape(_ s: [Int]) -> [Int] { main.reduce(s) { $1.outputShape($0) } }

    public func forward(_ x: Tensor, training: Bool) -> Tensor {
        var h = x
        if let bn = summingBatchNorm {   // shortcut first, then the batch norm writes relu(bn(h) + s)
            for l in main.dropLast() { h = ctx.forward(l, h, training: training) }
            let s = shortcut.map { ctx.forward($0, x, training: training) } ?? x
            bn.residual = s
            let y = ctx.forward(bn, h, training: training)
            out = y
            return y
        }
        for l in main { h = ctx.forward(l, h, training: training) }
        let s = shortcut.map { ctx.forward($0, x, training: training) } ?? x
        precondition(s.shape == h.shape, "\(name): shortcut \(s.shape) vs main path \(h.shape)")
        let overwrite = main.last is BatchNorm2D && h !== x && h !== s
        let y = overwrite ? h : Tensor.reuse(out, h.shape); out = y
        let (hv, sv, yv) = (h.data, s.data, y.data)
        Parallel.forRanges(y.count, minChunk: 1 << 14) { r in for i in r { let v = hv[i] + sv[i]; yv[i] = v <= 0 ? 0 : v } }
        return y
    }

    public func backward(_ dy: Tensor) -> Tensor {
        guard let y = out else { preconditionFailure("\(name): backward before forward") }
        let g = GradientPool.take(dy.shape, replacing: dy)
        let (yv, dv, gv) = (y.data, dy.data, g.data)
        Parallel.forRanges(g.count, minChunk: 1 << 14) { r in reluMask(yv + r.lowerBound, dv + r.lowerBound, gv + r.lowerBound, r.count) }
        var h = g
        for l in main.reversed() {
            if h !== g { ctx.gradients.donate(h) }   // g is read again by the shortcut
            let next = ctx.backward(l, h)
            if h !== g && h !== next { ctx.gradients.give(h) }
            h = next
        }
        // dx = dx_main + dx_shortcut, summed in place into the main path's gradient (ours now), or
        // into a copy of g when the main path is empty.
        let d: Tensor
        if h !== g { d = h } else { d = GradientPool.take(h.shape); d.data.update(from: h.data, count: h.count) }
        let s = shortcut.map { ctx.backward($0, g) } ?? g
        let (dd, sv) = (d.data, s.data)
        Parallel.forRanges(d.count, minChunk: 1 << 14) { r in for i in r { dd[i] += sv[i] } }
        if s !== g { ctx.gradients.give(s) }
        ctx.gradients.give(g)   // ours, also when it is a donated dy we overwrote
        return d
    }

    /// The seed's (d2l) `Residual`: conv1 3x3 (stride) -> bn1 -> relu -> conv2 3x3 -> bn2,
    /// shortcut `conv3` 1x1 (stride) when `use1x1`. Conv biases on, as nn.Conv2d's default.
    public static func basic(_ ctx: ModelContext, name: String, inChannels: Int, outChannels: Int,
                             use1x1: Bool = false, stride: Int = 1) -> ResidualBlock {
        // The shortcut is declared first: the reverse layout then matches the order backward finishes.
        let conv3 = use1x1 ? Conv2D(ctx, name: joinName(name, "conv3"), inChannels: inChannels,
                                    outChannels: outChannels, kernel: 1, stride: stride) : nil
        let main: [Layer] = [
            Conv2D(ctx, name: joinName(name, "conv1"), inChannels: inChannels, outChannels: outChannels,
                   kernel: 3, stride: stride, padding: 1),
            BatchNorm2D(ctx, name: joinName(name, "bn1"), channels: outChannels),
            ReLU(name: joinName(name, "relu"), inPlace: true),
            Conv2D(ctx, name: joinName(name, "conv2"), inChannels: outChannels, outChannels: outChannels,
                   kernel: 3, padding: 1),
            BatchNorm2D(ctx, name: joinName(name, "bn2"), channels: outChannels),
        ]
        return ResidualBlock(ctx, name: name, main: main, shortcut: conv3)
    }
}
