// 2-D convolution, NCHW, weight [Cout, Cin, kH, kW] (PyTorch's nn.Conv2d), optional bias [Cout].
// Forward: im2col of a group of images into one workspace, then one gemm per group:
//   Y[Cout, g*Ho*Wo] = W[Cout, Cin*kH*kW] * cols[Cin*kH*kW, g*Ho*Wo]
// Backward: dW += dY * cols^T ; db += sum(dY) ; dcols = W^T * dY, then col2im gives dX.

public final class Conv2D: Layer {
    public let name: String
    public let inChannels, outChannels, kernel, stride, padding: Int
    public let weight: ParamHandle          // [Cout, Cin, k, k]
    public let bias: ParamHandle?           // [Cout]
    private let ctx: ModelContext
    private var input: Tensor?              // (N, Cin, H, W), kept for backward
    private var out: Tensor?                // (N, Cout, Ho, Wo)
    private var dx: Tensor?                 // (N, Cin, H, W)
    private var cols: [Float] = []          // (K, g*Ho*Wo) workspace
    private var yg: [Float] = []            // (Cout, g*Ho*Wo) workspace

    public init(_ ctx: ModelContext, name: String, inChannels: Int, outChannels: Int,
                kernel: Int, stride: Int = 1, padding: Int = 0, bias: Bool = true) {
        self.ctx = ctx; self.name = name
        self.inChannels = inChannels; self.outChannels = outChannels
        self.kernel = kernel; self.stride = stride; self.padding = padding
        weight = ctx.params.declare(joinName(name, "weight"), shape: [outChannels, inChannels, kernel, kernel])
        self.bias = bias ? ctx.params.declare(joinName(name, "bias"), shape: [outChannels]) : nil
    }

    public var parameters: [ParamHandle] { [weight] + (bias.map { [$0] } ?? []) }
    /// Shape of the last forward's output (for FLOP counts).
    public var lastOutputShape: [Int]? { out?.shape }

    public func outputShape(_ s: [Int]) -> [Int] {
        [s[0], outChannels, (s[2] + 2 * padding - kernel) / stride + 1, (s[3] + 2 * padding - kernel) / stride + 1]
    }

    /// Images per gemm: enough columns for an efficient gemm, a bounded workspace.
    private func groupSize(_ n: Int, _ hw: Int) -> Int { max(1, min(n, 4096 / max(hw, 1))) }

    public func forward(_ x: Tensor, training: Bool) -> Tensor {
        precondition(x.rank == 4 && x.shape[1] == inChannels, "\(name): input \(x.shape), expected (N,\(inChannels),H,W)")
        input = x
        let os = outputShape(x.shape)
        let y = Tensor.reuse(out, os); out = y
        let (n, h, w, ho, wo) = (x.shape[0], x.shape[2], x.shape[3], os[2], os[3])
        let hw = ho * wo, kdim = inChannels * kernel * kernel
        let g = groupSize(n, hw)
        if cols.count < kdim * g * hw { cols = [Float](repeating: 0, count: kdim * g * hw) }
        if yg.count < outChannels * g * hw { yg = [Float](repeating: 0, count: outChannels * g * hw) }
        let inImage = inChannels * h * w, outImage = outChannels * hw
        cols.withUnsafeMutableBufferPointer { colsP in
        yg.withUnsafeMutableBufferPointer { ygP in
            var n0 = 0
            while n0 < n {
                let gi = min(g, n - n0), ncols = gi * hw
                for i in 0..<gi {
                    im2col(x.data + (n0 + i) * inImage, h, w, ho, wo, colsP.baseAddress!, ld: ncols, col0: i * hw)
                }
                gemm(m: outChannels, n: ncols, k: kdim, a: weight.value, lda: kdim,
                     b: colsP.baseAddress!, ldb: ncols, c: ygP.baseAddress!, ldc: ncols)
                // Scatter (Cout, g, HoWo) -> (g, Cout, HoWo), adding the bias.
                for i in 0..<gi {
                    let dst = y.data + (n0 + i) * outImage
                    for c in 0..<outChannels {
                        let b = bias?.value[c] ?? 0
                        let src = ygP.baseAddress! + c * ncols + i * hw, d = dst + c * hw
                        for j in 0..<hw { d[j] = src[j] + b }
                    }
                }
                n0 += gi
            }
        }}
        return y
    }

    public func backward(_ dy: Tensor) -> Tensor {
        guard let x = input else { preconditionFailure("\(name): backward before forward") }
        let d = Tensor.reuse(dx, x.shape, zeroed: true); dx = d
        let (n, h, w, ho, wo) = (x.shape[0], x.shape[2], x.shape[3], dy.shape[2], dy.shape[3])
        let hw = ho * wo, kdim = inChannels * kernel * kernel
        let g = groupSize(n, hw)
        let inImage = inChannels * h * w, outImage = outChannels * hw
        if let b = bias {   // db[c] += sum over n, hw of dY
            for i in 0..<n { for c in 0..<outChannels {
                let p = dy.data + i * outImage + c * hw
                var s: Float = 0
                for j in 0..<hw { s += p[j] }
                b.grad[c] += s
            }}
        }
        cols.withUnsafeMutableBufferPointer { colsP in
        yg.withUnsafeMutableBufferPointer { ygP in
            var n0 = 0
            while n0 < n {
                let gi = min(g, n - n0), ncols = gi * hw
                for i in 0..<gi {   // gather dY (g, Cout, HoWo) -> (Cout, g*HoWo)
                    let src = dy.data + (n0 + i) * outImage
                    for c in 0..<outChannels {
                        (ygP.baseAddress! + c * ncols + i * hw).update(from: src + c * hw, count: hw)
                    }
                    im2col(x.data + (n0 + i) * inImage, h, w, ho, wo, colsP.baseAddress!, ld: ncols, col0: i * hw)
                }
                // dW[Cout, K] += dY[Cout, cols] * cols[K, cols]^T
                gemm(transB: true, m: outChannels, n: kdim, k: ncols, a: ygP.baseAddress!, lda: ncols,
                     b: colsP.baseAddress!, ldb: ncols, beta: 1, c: weight.grad, ldc: kdim)
                // dcols[K, cols] = W^T * dY
                gemm(transA: true, m: kdim, n: ncols, k: outChannels, a: weight.value, lda: kdim,
                     b: ygP.baseAddress!, ldb: ncols, c: colsP.baseAddress!, ldc: ncols)
                for i in 0..<gi {
                    col2im(colsP.baseAddress!, ld: ncols, col0: i * hw, h, w, ho, wo, d.data + (n0 + i) * inImage)
                }
                n0 += gi
            }
        }}
        return d
    }

    /// cols[(c*k + ki)*k + kj, col0 + oy*wo + ox] = x[c, oy*s - p + ki, ox*s - p + kj] (0 outside).
    private func im2col(_ x: UnsafePointer<Float>, _ h: Int, _ w: Int, _ ho: Int, _ wo: Int,
                        _ cols: UnsafeMutablePointer<Float>, ld: Int, col0: Int) {
        let k = kernel, s = stride, p = padding
        if k == 1 && s == 1 && p == 0 {
            for c in 0..<inChannels { (cols + c * ld + col0).update(from: x + c * h * w, count: h * w) }
            return
        }
        for c in 0..<inChannels {
            let xc = x + c * h * w
            for ki in 0..<k { for kj in 0..<k {
                let row = cols + ((c * k + ki) * k + kj) * ld + col0
                for oy in 0..<ho {
                    let iy = oy * s - p + ki
                    let r = row + oy * wo
                    if iy < 0 || iy >= h { r.update(repeating: 0, count: wo); continue }
                    let xr = xc + iy * w
                    if s == 1 {
                        // ix = ox - p + kj, valid for ox in [p-kj, w+p-kj)
                        let lo = max(0, p - kj), hi = min(wo, w + p - kj)
                        if lo > 0 { r.update(repeating: 0, count: min(lo, wo)) }
                        if hi > lo { (r + lo).update(from: xr + (lo - p + kj), count: hi - lo) }
                        if hi < wo { (r + max(hi, 0)).update(repeating: 0, count: wo - max(hi, 0)) }
                    } else {
                        for ox in 0..<wo {
                            let ix = ox * s - p + kj
                            r[ox] = (ix >= 0 && ix < w) ? xr[ix] : 0
                        }
                    }
                }
            }}
        }
    }

    /// dx[c, iy, ix] += dcols[row, col] — the adjoint of im2col.
    private func col2im(_ cols: UnsafePointer<Float>, ld: Int, col0: Int, _ h: Int, _ w: Int,
                        _ ho: Int, _ wo: Int, _ dx: UnsafeMutablePointer<Float>) {
        let k = kernel, s = stride, p = padding
        for c in 0..<inChannels {
            let dxc = dx + c * h * w
            for ki in 0..<k { for kj in 0..<k {
                let row = cols + ((c * k + ki) * k + kj) * ld + col0
                for oy in 0..<ho {
                    let iy = oy * s - p + ki
                    if iy < 0 || iy >= h { continue }
                    let r = row + oy * wo, dr = dxc + iy * w
                    if s == 1 {
                        let lo = max(0, p - kj), hi = min(wo, w + p - kj)
                        if hi > lo {
                            let off = lo - p + kj
                            for ox in lo..<hi { dr[ox - lo + off] += r[ox] }
                        }
                    } else {
                        for ox in 0..<wo {
                            let ix = ox * s - p + kj
                            if ix >= 0 && ix < w { dr[ix] += r[ox] }
                        }
                    }
                }
            }}
        }
    }
}
