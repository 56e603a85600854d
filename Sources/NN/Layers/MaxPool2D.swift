// Max pooling (PyTorch's nn.MaxPool2d: padding is -inf, floor mode).
// Backward: dx[argmax] += dy (ties go to the first maximum, a NaN wins). A training forward keeps
// each window's argmax as its offset from the window's first element (row-major in the plane,
// UInt16 per output: half the size of y; the plane index, Int32, where a window spans more than
// 65535 floats); backward adds dy there, plane by plane, without reading x again.

public final class MaxPool2D: Layer {
    public let name: String
    public let kernel, stride, padding: Int
    private var out: Tensor?
    private var inputShape: [Int] = []   // (N, C, H, W) of the last training forward, for backward; [] after eval
    private var argmax: UnsafeMutableRawPointer?   // [N, C, Ho, Wo]: UInt16 offsets (or Int32 indices, `wideArgmax`)
    private var argmaxBytes = 0
    private var wideArgmax = false
    private var planeRows = Rows(h: 0, w: 0, ho: 0, wo: 0, bw: 0)   // the geometry `begin` set up for `pool`

    public init(name: String, kernel: Int = 3, stride: Int = 2, padding: Int = 1) {
        precondition(padding * 2 <= kernel, "padding must be at most half the kernel (as in PyTorch)")
        self.name = name; self.kernel = kernel; self.stride = stride; self.padding = padding
    }
    deinit { argmax?.deallocate() }

    /// Index in the plane of the first element of output row oy's first window (negative in the
    /// padding); window ox starts `ox * stride` further on.
    @inline(__always)
    private func rowStart(_ oy: Int, w: Int) -> Int { (oy * stride - padding) * w - padding }

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

    /// A plane's geometry for `scan`: input h x w, output ho x wo, bw the row length of scan's
    /// -inf-bordered copy of the plane.
    private struct Rows {
        let h, w, ho, wo, bw: Int
        var bufferCount: Int { h * bw }
    }

    private func rows(_ x: [Int], _ o: [Int]) -> Rows {
        Rows(h: x[2], w: x[3], ho: o[2], wo: o[3], bw: max(x[3] + 2 * padding, 2 * o[3] + kernel) + 16)
    }

    /// Maximum (into vals) and its index in the plane (into idx) of every window of plane
    /// xp; `buf` is scratch of `r.bufferCount` floats. `row(oy)` is called after each output row.
    /// With stride 2 the windows are scanned 8 at a time in SIMD lanes (`maxPoolScanStride2`,
    /// Sources/Kernels), in the same order with the same rule as `window`, so the same index wins.
    /// Other strides use `window`.
    private func scan(_ xp: UnsafePointer<Float>, _ r: Rows, _ buf: UnsafeMutablePointer<Float>,
                      _ vals: UnsafeMutablePointer<Float>, _ idx: UnsafeMutablePointer<Int32>, row: (Int) -> Void) {
        let (h, w, wo, bw) = (r.h, r.w, r.wo, r.bw)
        guard stride == 2 else {
            for oy in 0..<r.ho {
                for ox in 0..<wo {
                    let (v, i) = window(xp, h: h, w: w, oy: oy, ox: ox)
                    vals[oy * wo + ox] = v; idx[ox] = Int32(i)
                }
                row(oy)
            }
            return
        }
        maxPoolScanStride2(xp, h: h, w: w, ho: r.ho, wo: wo, bw: bw, kernel: kernel, padding: padding, buf, vals, idx, row: row)
    }

    public func forward(_ x: Tensor, training: Bool) -> Tensor {
        if passThrough { return x }
        let y = begin(x.shape, training: training), planes = x.shape[0] * x.shape[1], hw = x.shape[2] * x.shape[3]
        let scratch = planeScratch(x.shape)
        Parallel.forRanges(planes) { range in
            withUnsafeTemporaryAllocation(of: Float.self, capacity: scratch) { buf in
                for pl in range { self.pool(x.data + pl * hw, plane: pl, into: y, scratch: buf.baseAddress!) }
            }
        }
        return y
    }

    public func backward(_ dy: Tensor) -> Tensor {
        if passThrough { return dy }
        guard !inputShape.isEmpty else { preconditionFailure("\(name): backward needs a training forward") }
        precondition(dy.shape == outputShape(inputShape), "\(name): dy \(dy.shape), expected \(outputShape(inputShape))")
        let d = GradientPool.take(inputShape)   // each plane zeroed just before its winners are added (in cache)
        let hw = inputShape[2] * inputShape[3], planes = inputShape[0] * inputShape[1]
        Parallel.forRanges(planes) { range in
            for pl in range { self.unpool(dy, plane: pl, into: d.data + pl * hw) }
        }
        return d
    }

    // MARK: Plane by plane (the layer's own passes above, and a batch norm's that pools as it
    // normalizes: BatchNorm2D.fuse(pool:))

    /// Set by `BatchNorm2D.fuse(pool:)`: the batch norm before this layer (and the ReLU between)
    /// pools each plane as it normalizes it, and this layer passes values and gradients through.
    public internal(set) var passThrough = false

    /// The output for input shape x (the layer's own tensor, reused); a training pass also keeps
    /// room for the argmax of every output, for `unpool`.
    func begin(_ x: [Int], training: Bool) -> Tensor {
        let os = outputShape(x)
        let y = Tensor.reuse(out, os); out = y
        planeRows = rows(x, os)
        if training {
            wideArgmax = (kernel - 1) * (x[3] + 1) > Int(UInt16.max)
            let bytes = y.count * (wideArgmax ? 4 : 2)
            if argmaxBytes < bytes {
                argmax?.deallocate()
                argmax = .allocate(byteCount: bytes, alignment: 64); argmaxBytes = bytes
            }
            if wideArgmax { argmax!.bindMemory(to: Int32.self, capacity: y.count) }
            else { argmax!.bindMemory(to: UInt16.self, capacity: y.count) }
            inputShape = x
        } else {
            inputShape = []   // no argmax kept: backward refuses
        }
        return y
    }

    /// Floats of scratch `pool` needs for input shape x.
    func planeScratch(_ x: [Int]) -> Int { let r = rows(x, outputShape(x)); return r.bufferCount + r.wo }

    /// Pools input plane `pl` (h x w at src) into plane pl of y (from `begin`), keeping its argmax
    /// after a training `begin`. Planes may be pooled concurrently with distinct scratch.
    func pool(_ src: UnsafePointer<Float>, plane pl: Int, into y: Tensor, scratch: UnsafeMutablePointer<Float>) {
        let g = planeRows
        let keep = inputShape.isEmpty ? nil : argmax, wide = wideArgmax   // a training `begin` keeps the argmax
        (scratch + g.bufferCount).withMemoryRebound(to: Int32.self, capacity: g.wo) { idx in
            scan(src, g, scratch, y.data + pl * g.ho * g.wo, idx) { oy in
                guard let keep else { return }
                let at = pl * g.ho * g.wo + oy * g.wo
                if wide { (keep.assumingMemoryBound(to: Int32.self) + at).update(from: idx, count: g.wo); return }
                let o = keep.assumingMemoryBound(to: UInt16.self) + at, first = self.rowStart(oy, w: g.w)
                for ox in 0..<g.wo { o[ox] = UInt16(truncatingIfNeeded: Int(idx[ox]) - first - ox * self.stride) }
            }
        }
    }

    /// dst (h x w) = the input gradient of plane `pl`: zeros, with dy's values added at the argmax
    /// kept by the last training pass.
    func unpool(_ dy: Tensor, plane pl: Int, into dst: UnsafeMutablePointer<Float>) {
        guard !inputShape.isEmpty, let argmax else { preconditionFailure("\(name): backward needs a training forward") }
        let hw = inputShape[2] * inputShape[3], howo = dy.shape[2] * dy.shape[3]
        let (wo, w) = (dy.shape[3], inputShape[3])
        let gp = dy.data + pl * howo
        dst.update(repeating: 0, count: hw)
        if wideArgmax {
            let ip = argmax.assumingMemoryBound(to: Int32.self) + pl * howo
            for o in 0..<howo { dst[Int(ip[o])] += gp[o] }
        } else {
            let op = argmax.assumingMemoryBound(to: UInt16.self) + pl * howo
            for oy in 0..<howo / wo {
                let first = rowStart(oy, w: w), o = oy * wo
                for ox in 0..<wo { dst[first + ox * stride + Int(op[o + ox])] += gp[o + ox] }
            }
        }
    }
}
