// Fully connected layer, nn.Linear: y[N, out] = x[N, in] * W[out, in]^T + b[out].
// Backward: dW += dy^T * x ; db += sum_n dy ; dx = dy * W.

public final class Linear: Layer {
    public let name: String
    public let inFeatures, outFeatures: Int
    public let weight: ParamHandle   // [out, in]
    public let bias: ParamHandle     // [out]
    private var input: Tensor?, out: Tensor?

    public init(_ ctx: ModelContext, name: String, inFeatures: Int, outFeatures: Int) {
        self.name = name; self.inFeatures = inFeatures; self.outFeatures = outFeatures
        weight = ctx.params.declare(joinName(name, "weight"), shape: [outFeatures, inFeatures])
        bias = ctx.params.declare(joinName(name, "bias"), shape: [outFeatures])
    }

    public var parameters: [ParamHandle] { [weight, bias] }
    public func outputShape(_ s: [Int]) -> [Int] { [s[0], outFeatures] }

    public func forward(_ x: Tensor, training: Bool) -> Tensor {
        precondition(x.rank == 2 && x.shape[1] == inFeatures, "\(name): input \(x.shape), expected (N,\(inFeatures))")
        input = x
        let n = x.shape[0]
        let y = Tensor.reuse(out, [n, outFeatures]); out = y
        for i in 0..<n { (y.data + i * outFeatures).update(from: bias.value, count: outFeatures) }
        gemm(transB: true, m: n, n: outFeatures, k: inFeatures, a: x.data, lda: inFeatures,
             b: weight.value, ldb: inFeatures, beta: 1, c: y.data, ldc: outFeatures)
        return y
    }

    public func backward(_ dy: Tensor) -> Tensor {
        guard let x = input else { preconditionFailure("\(name): backward before forward") }
        let n = x.shape[0]
        let d = GradientPool.take(x.shape)
        gemm(transA: true, m: outFeatures, n: inFeatures, k: n, a: dy.data, lda: outFeatures,
             b: x.data, ldb: inFeatures, beta: 1, c: weight.grad, ldc: inFeatures)
        for i in 0..<n { for o in 0..<outFeatures { bias.grad[o] += dy.data[i * outFeatures + o] } }
        gemm(m: n, n: inFeatures, k: outFeatures, a: dy.data, lda: outFeatures,
             b: weight.value, ldb: inFeatures, c: d.data, ldc: inFeatures)
        return d
    }
}
