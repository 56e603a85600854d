// Max pooling (PyTorch's nn.MaxPool2d: padding is -inf, floor mode). Forward records the
// argmax of every window. Backward: dx[argmax] += dy (ties go to the first maximum).

public final class MaxPool2D: Layer {
    public let name: String
    public let kernel, stride, padding: Int
    private var out: Tensor?
    private var argmax: [Int32] = []     // (N, C, Ho, Wo): index into the input plane
    private var inShape: [Int] = []

    public init(name: String, kernel: Int = 3, stride: Int = 2, padding: Int = 1) {
        precondition(padding * 2 <= kernel, "padding must be at most half the kernel (as in PyTorch)")
        self.name = name; self.kernel = kernel; self.stride = stride; self.padding = padding
    }

    public func outputShape(_ s: [Int]) -> [Int] {
        [s[0], s[1], (s[2] + 2 * padding - kernel) / stride + 1, (s[3] + 2 * padding - kernel) / stride + 1]
    }

    public func forward(_ x: Tensor, training: Bool) -> Tensor {
        inShape = x.shape
        let os = outputShape(x.shape)
        let y = Tensor.reuse(out, os); out = y
        let (planes, h, w, ho, wo) = (x.shape[0] * x.shape[1], x.shape[2], x.shape[3], os[2], os[3])
        if argmax.count != y.count { argmax = [Int32](repeating: 0, count: y.count) }
        argmax.withUnsafeMutableBufferPointer { am in
            let amBase = am.baseAddress!
            Parallel.forRanges(planes) { range in for pl in range {
                let xp = x.data + pl * h * w, yp = y.data + pl * ho * wo, ap = amBase + pl * ho * wo
                for oy in 0..<ho {
                    let y0 = max(oy * stride - padding, 0), y1 = min(oy * stride - padding + kernel, h)
                    for ox in 0..<wo {
                        let x0 = max(ox * stride - padding, 0), x1 = min(ox * stride - padding + kernel, w)
                        var best = -Float.infinity, bi = y0 * w + x0
                        for iy in y0..<y1 { for ix in x0..<x1 {
                            let v = xp[iy * w + ix]
                            if v > best || v.isNaN { best = v; bi = iy * w + ix }
                        }}
                        yp[oy * wo + ox] = best; ap[oy * wo + ox] = Int32(bi)
                    }
                }
            }}
        }
        return y
    }

    public func backward(_ dy: Tensor) -> Tensor {
        let d = GradientPool.take(inShape, zeroed: true)
        let plane = inShape[2] * inShape[3], oplane = dy.shape[2] * dy.shape[3]
        argmax.withUnsafeBufferPointer { am in
            let amBase = am.baseAddress!
            Parallel.forRanges(dy.shape[0] * dy.shape[1]) { range in
                for pl in range {
                    let dp = d.data + pl * plane, gp = dy.data + pl * oplane
                    for j in 0..<oplane { dp[Int(amBase[pl * oplane + j])] += gp[j] }
                }
            }
        }
        return d
    }
}
