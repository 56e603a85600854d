// Global average pooling, nn.AdaptiveAvgPool2d((1, 1)): (N, C, H, W) -> (N, C, 1, 1).
// Backward: dx[n, c, :, :] = dy[n, c] / (H * W).

public final class GlobalAvgPool: Layer {
    public let name: String
    private var out: Tensor?
    private var inShape: [Int] = []
    public init(name: String) { self.name = name }
    public func outputShape(_ s: [Int]) -> [Int] { [s[0], s[1], 1, 1] }

    public func forward(_ x: Tensor, training: Bool) -> Tensor {
        inShape = x.shape
        let y = Tensor.reuse(out, outputShape(x.shape)); out = y
        let hw = x.shape[2] * x.shape[3]
        for pl in 0..<(x.shape[0] * x.shape[1]) {
            y.data[pl] = sumFloats(x.data + pl * hw, hw) / Float(hw)
        }
        return y
    }

    public func backward(_ dy: Tensor) -> Tensor {
        let d = GradientPool.take(inShape)
        let hw = inShape[2] * inShape[3]
        for pl in 0..<(inShape[0] * inShape[1]) {
            let g = dy.data[pl] / Float(hw)
            (d.data + pl * hw).update(repeating: g, count: hw)
        }
        return d
    }
}
