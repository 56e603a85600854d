// nn.Flatten: (N, C, H, W) -> (N, C*H*W). Backward: dx = dy reshaped back.

public final class Flatten: Layer {
    public let name: String
    private var out: Tensor?
    private var inShape: [Int] = []
    public init(name: String) { self.name = name }
    public func outputShape(_ s: [Int]) -> [Int] { [s[0], s.dropFirst().reduce(1, *)] }

    public func forward(_ x: Tensor, training: Bool) -> Tensor {
        inShape = x.shape
        let y = Tensor.reuse(out, outputShape(x.shape)); out = y
        y.data.update(from: x.data, count: x.count)
        return y
    }

    public func backward(_ dy: Tensor) -> Tensor {
        let d = GradientPool.take(inShape)
        d.data.update(from: dy.data, count: dy.count)
        return d
    }
}
