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

    /// With stride 2 the windows are scanned 8 at a time in SIMD lanes (`maxPoolScanStride2`,
    /// Sources/Kernels), in the same order with the same rule as `window`, so the same index wins.
    /// Other strides use `window`.
    private struct Rows {
        let h, w, ho, wo, bw: Int
        var bufferCount: Int { h * bw }
    }

    private func rows(_ x: [Int], _ o: [Int]) -> Rows {
        Rows(h: x[2], w: x[3], ho: o[2], wo: o[3], bw: max(x[3] + 2 * padding, 2 * o[3] + kernel) + 16)
    }

    /// Maximum (into vals, if non-nil) and its index in the plane (into idx) of every window of plane
    /// xp; `buf` is scratch of `r.bufferCount` floats. `row(oy)` is called after each output row.
    private func scan(_ xp: UnsafePointer<Float>, _ r: Rows, _ buf: UnsafeMutablePointer<Float>,
                      _ vals: UnsafeMutablePointer<Float>?, _ idx: UnsafeMutablePointer<Int32>, row: (Int) -> Void) {
        let (h, w, wo, bw) = (r.h, r.w, r.wo, r.bw)
        guard stride == 2 else {
            for oy in 0..<r.ho {
                for ox in 0..<wo {
                    let (v, i) = window(xp, h: h, w: w, oy: oy, ox: ox)
                    vals?[oy * wo + ox] = v; idx[ox] = Int32(i)
                }
                row(oy)
            }
            return
        }
        maxPoolScanStride2(xp, h: h, w: w, ho: r.ho, wo: wo, bw: bw, kernel: kernel, padding: padding, buf, vals, idx, row: row)
    }

    public func forward(_ x: Tensor, training: Bool) -> Tensor {
        input = x
        let os = outputShape(x.shape)
        let y = Tensor.reuse(out, os); out = y
        let r = rows(x.shape, os), planes = x.shape[0] * x.shape[1]
        Parallel.forRanges(planes) { range in
            withUnsafeTemporaryAllocation(of: Float.self, capacity: r.bufferCount) { buf in
                withUnsafeTemporaryAllocation(of: Int32.self, capacity: r.wo) { idx in
                    for pl in range {
                        self.scan(x.data + pl * r.h * r.w, r, buf.baseAddress!, y.data + pl * r.ho * r.wo, idx.baseAddress!) { _ in }
                    }
                }
            }
        }
        return y
    }

    public func backward(_ dy: Tensor) -> Tensor {
        guard let x = input else { preconditionFailure("\(name): backward before forward") }
        let d = GradientPool.take(x.shape)   // each plane zeroed just before its winners are added (in cache)
        let r = rows(x.shape, dy.shape), planes = x.shape[0] * x.shape[1]
        Parallel.forRanges(planes) { range in
            withUnsafeTemporaryAllocation(of: Float.self, capacity: r.bufferCount) { buf in
                withUnsafeTemporaryAllocation(of: Int32.self, capacity: r.wo) { ib in
                    let idx = ib.baseAddress!
                    for pl in range {
                        let dp = d.data + pl * r.h * r.w, gp = dy.data + pl * r.ho * r.wo
                        dp.update(repeating: 0, count: r.h * r.w)
                        self.scan(x.data + pl * r.h * r.w, r, buf.baseAddress!, nil, idx) { oy in
                            for ox in 0..<r.wo { dp[Int(idx[ox])] += gp[oy * r.wo + ox] }
                        }
                    }
                }
            }
        }
        return d
    }
}
