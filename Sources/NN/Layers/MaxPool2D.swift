// Max pooling (PyTorch's nn.MaxPool2d: padding is -inf, floor mode).
// Backward: dx[argmax] += dy (ties go to the first maximum, a NaN wins). The argmax of each window
// is found again from the input (kept by the layer before) rather than stored per output.

public final class MaxPool2D: Layer {
    public let name: String
    public let kernel, stride, padding: Int
    private var out: Tensor?
    private var input: Tensor?           // (N, C, H, W), for backward

    public init(name: String, kernel: Int = 3, stride: Int = 2, padding: Int = 1) {
        precondition(padding * 2 <= kernel, "padding must be at most half the kernel (as in PyTorch)")
        self.name = name; self.kernel = kernel; self.stride = stride; self.padding = padding
    }

    public func outputShape(_ s: [Int]) -> [Int] {
        [s[0], s[1], (s[2] + 2 * padding - kernel) / stride + 1, (s[3] + 2 * padding - kernel) / stride + 1]
    }

    /// (max, index in the plane) of the window of output (oy, ox) over plane xp (h x w).
    @inline(__always)
    private func window(_ xp: UnsafePointer<Float>, h: Int, w: Int, oy: Int, ox: Int) -> (Float, Int) {
        let y0 = max(oy * stride - padding, 0), y1 = min(oy * stride - padding + kernel, h)
        let x0 = max(ox * stride - padding, 0), x1 = min(ox * stride - padding + kernel, w)
        var best = -Float.infinity, bi = y0 * w + x0
        for iy in y0..<y1 { for ix in x0..<x1 {
            let v = xp[iy * w + ix]
            if v > best || v.isNaN { best = v; bi = iy * w + ix }
        }}
        return (best, bi)
    }

    public func forward(_ x: Tensor, training: Bool) -> Tensor {
        input = x
        let os = outputShape(x.shape)
        let y = Tensor.reuse(out, os); out = y
        let (planes, h, w, ho, wo) = (x.shape[0] * x.shape[1], x.shape[2], x.shape[3], os[2], os[3])
        Parallel.forRanges(planes) { range in for pl in range {
            let xp = x.data + pl * h * w, yp = y.data + pl * ho * wo
            for oy in 0..<ho { for ox in 0..<wo { yp[oy * wo + ox] = self.window(xp, h: h, w: w, oy: oy, ox: ox).0 } }
        }}
        return y
    }

    public func backward(_ dy: Tensor) -> Tensor {
        guard let x = input else { preconditionFailure("\(name): backward before forward") }
        let d = GradientPool.take(x.shape, zeroed: true)
        let (h, w, ho, wo) = (x.shape[2], x.shape[3], dy.shape[2], dy.shape[3])
        Parallel.forRanges(dy.shape[0] * dy.shape[1]) { range in for pl in range {
            let xp = x.data + pl * h * w, dp = d.data + pl * h * w, gp = dy.data + pl * ho * wo
            for oy in 0..<ho { for ox in 0..<wo {
                dp[self.window(xp, h: h, w: w, oy: oy, ox: ox).1] += gp[oy * wo + ox]
            }}
        }}
        return d
    }
}
