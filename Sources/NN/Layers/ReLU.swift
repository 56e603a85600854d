// y = max(x, 0). Backward: dx = dy where y > 0, else 0.

public final class ReLU: Layer {
    public let name: String
    private var out: Tensor?, dx: Tensor?
    public init(name: String) { self.name = name }
    public func outputShape(_ s: [Int]) -> [Int] { s }

    public func forward(_ x: Tensor, training: Bool) -> Tensor {
        let y = Tensor.reuse(out, x.shape); out = y
        for i in 0..<x.count { y.data[i] = max(x.data[i], 0) }
        return y
    }

    public func backward(_ dy: Tensor) -> Tensor {
        guard let y = out else { preconditionFailure("\(name): backward before forward") }
        let d = Tensor.reuse(dx, dy.shape); dx = d
        for i in 0..<dy.count { d.data[i] = y.data[i] > 0 ? dy.data[i] : 0 }
        return d
    }
}
