// y = max(x, 0), NaN kept (as PyTorch's relu). Backward: dx = dy where y > 0, else 0 (NaN too).
// In place (`inPlace`): y overwrites x, for a ReLU whose input nothing else reads afterwards —
// in a ResNet every ReLU follows a batch norm, whose backward needs x-hat and dy, not its output
// (one tensor of the output's size less per conv-BN-ReLU group). Backward overwrites a donated dy.
// A ReLU fused into the batch norm before it (`BatchNorm2D.fuse`) only passes values through.

public final class ReLU: Layer {
    public let name: String
    public let inPlace: Bool
    private var out: Tensor?
    /// Set by `BatchNorm2D.fuse`: the batch norm before this layer applies it (forward and backward),
    /// and this layer passes its input and gradient through.
    public internal(set) var passThrough = false
    public init(name: String, inPlace: Bool = false) { self.name = name; self.inPlace = inPlace }
    public func outputShape(_ s: [Int]) -> [Int] { s }

    public func forward(_ x: Tensor, training: Bool) -> Tensor {
        if passThrough { out = x; return x }
        let y = inPlace ? x : Tensor.reuse(out, x.shape); out = y
        let (src, dst) = (x.data, y.data)
        Parallel.forRanges(x.count, minChunk: 1 << 14) { r in for i in r { dst[i] = src[i] <= 0 ? 0 : src[i] } }
        return y
    }

    public func backward(_ dy: Tensor) -> Tensor {
        guard let y = out else { preconditionFailure("\(name): backward before forward") }
        if passThrough { return dy }
        let d = GradientPool.take(dy.shape, replacing: dy)
        let (yv, g, dst) = (y.data, dy.data, d.data)
        Parallel.forRanges(dy.count, minChunk: 1 << 14) { r in reluMask(yv + r.lowerBound, g + r.lowerBound, dst + r.lowerBound, r.count) }
        return d
    }
}
