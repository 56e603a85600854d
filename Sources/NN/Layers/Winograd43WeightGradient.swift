// Weight gradient of a 3x3 stride-1 padding-1 convolution with Winograd F(4x4, 3x3), the adjoint of
// Winograd43.swift's forward (y_t = A^T [(G g G^T) ⊙ (B^T d_t B)] A per 4x4 output tile t):
//   dL/dg = G^T [ Σ_t (A dY_t A^T) ⊙ (B^T d_t B) ] G
// With V[36][Cin][T] = B^T d B (the forward's input transform) and DY[36][Cout][T] = A dY A^T
// (dY_t the 4x4 output-gradient block of tile t, zero beyond H x W):
//   Mw[xi][co][ci] = Σ_t DY[xi][co][t] * V[xi][ci][t]     (36 gemms [Cout x T] x [T x Cin]^T, accumulated over blocks)
//   dW[co][ci] += G^T Mw[co][ci] G                          (once, on the sum of the workers' Mw)
// A = [1 0 0 0; 1 1 1 1; 1 -1 1 -1; 1 2 4 8; 1 -2 4 -8; 0 0 0 1] (A^T of the forward, transposed);
// G^T = [1/4 -1/6 -1/6 1/24 1/24 0; 0 -1/6 1/6 1/12 -1/12 0; 0 -1/6 -1/6 1/6 1/6 1].

/// Tiles (gemm K) per block; 0 = automatic, max(32, 32768 / (Cin + Cout)): V and DY of a block then
/// take about 4.5 MiB. Each worker needs 36 * ((Cin + Cout) * T + Cin * Cout) floats of scratch.
nonisolated(unsafe) public var winograd43WeightGradientTargetTiles = 0

/// Per-worker scratch of this pass (V, DY, Mw and the two padded planes).
private let winograd43DWScratch = WinogradScratch()

/// Adds dL/dW (weight [Cout, Cin, 3, 3]) from images `images` of x (N, Cin, H, W) and dy (N, Cout, H, W)
/// into dw (Cout*Cin*9 floats; ADDS). Callable concurrently with distinct `worker` ids and disjoint image ranges.
/// (Conv2D splits the two halves below over its workers instead: partial sums per worker, then the
/// transform per range of kernels.)
public func winograd43WeightGradient(x: UnsafePointer<Float>, dy: UnsafePointer<Float>, dw: UnsafeMutablePointer<Float>,
                                     cin: Int, cout: Int, h: Int, w: Int, images: Range<Int>, worker: Int) {
    guard let mw = winograd43WeightGradientPartial(x: x, dy: dy, cin: cin, cout: cout, h: h, w: w, images: images, worker: worker)
    else { return }
    winograd43AddKernelGradients([mw], cin: cin, cout: cout, dw: dw, kernels: 0..<(cout * cin))
}

/// Mw[36][Cout][Cin] = Σ over the images' tiles of DY ⊙ V, in `worker`'s scratch (valid until its next
/// call; planes cout * cin + 16 apart), or nil for no images.
public func winograd43WeightGradientPartial(x: UnsafePointer<Float>, dy: UnsafePointer<Float>,
                                            cin: Int, cout: Int, h: Int, w: Int, images: Range<Int>, worker: Int) -> UnsafePointer<Float>? {
    if images.isEmpty || h <= 0 || w <= 0 || cin <= 0 || cout <= 0 { return nil }
    let th = (h + 3) / 4, tw = (w + 3) / 4, tpi = th * tw
    let lw = tw + 8
    let padded = (4 * th + 2) * 4 * lw     // x, zero-bordered, phase layout (as in the forward)
    let paddedDY = 4 * th * 4 * lw         // dY, zero beyond H x W, phase layout without the border
    let total = images.count * tpi
    let target = winograd43WeightGradientTargetTiles > 0 ? winograd43WeightGradientTargetTiles : max(32, 32768 / (cin + cout))
    let blocks = max(1, (total + target / 2) / target)
    let tmax = (total + blocks - 1) / blocks
    let vPlaneMax = cin * tmax + 16, dPlaneMax = cout * tmax + 16, mPlane = cout * cin + 16
    let scratch = winograd43DWScratch.buffer(worker: worker, count: 36 * (vPlaneMax + dPlaneMax + mPlane) + padded + paddedDY)
    let v = scratch, dt = v + 36 * vPlaneMax, mw = dt + 36 * dPlaneMax
    let pbuf = mw + 36 * mPlane, qbuf = pbuf + padded
    pbuf.update(repeating: 0, count: padded)
    qbuf.update(repeating: 0, count: paddedDY)
    let geo = Winograd43Geometry(h: h, w: w, tw: tw, tpi: tpi, lw: lw)
    var t0 = 0, firstBlock = true
    while t0 < total {
        let nt = min(tmax, total - t0)
        let first = images.lowerBound * tpi + t0
        let vPlane = cin * nt + 16, dPlane = cout * nt + 16
        winograd43InputTransform(x, v, pbuf, geo, plane: vPlane, cin: cin, first: first, nt: nt)
        outputGradientTransform(dy, dt, qbuf, geo, plane: dPlane, cout: cout, first: first, nt: nt)
        for xi in 0..<36 {
            gemm(transB: true, m: cout, n: cin, k: nt, a: dt + xi * dPlane, lda: nt,
                 b: v + xi * vPlane, ldb: nt, beta: firstBlock ? 0 : 1, c: mw + xi * mPlane, ldc: cin)
        }
        firstBlock = false
        t0 += nt
    }
    return UnsafePointer(mw)
}

/// Four values to A y (six).
@inline(__always)
private func gradientRows(_ y0: SIMD8<Float>, _ y1: SIMD8<Float>, _ y2: SIMD8<Float>, _ y3: SIMD8<Float>)
    -> Six {
    let s02 = y0 + y2, s13 = y1 + y3
    let a = y0 + 4 * y2, b = 2 * y1 + 8 * y3
    return (y0, s02 + s13, s02 - s13, a + b, a - b, y3)
}

/// DY[xi][co][t] = (A dY_t A^T)[xi] for the block's tiles, 8 tiles of a tile row at a time. dY's
/// rows go into `qbuf` in phase layout (column 4l + j of row r at (r * 4 + j) * lw + l); what lies
/// beyond H x W stays zero.
private func outputGradientTransform(_ dy: UnsafePointer<Float>, _ d: UnsafeMutablePointer<Float>,
                                     _ qbuf: UnsafeMutablePointer<Float>, _ geo: Winograd43Geometry,
                                     plane: Int, cout: Int, first: Int, nt: Int, channels: Range<Int>? = nil, ld: Int? = nil) {
    let (h, w, tw, tpi, lw) = (geo.h, geo.w, geo.tw, geo.tpi, geo.lw)
    let rowStride = ld ?? nt   // DY[xi][c] rows this far apart
    for c in channels ?? 0..<cout {
        var t = 0
        while t < nt {
            let g = first + t, img = g / tpi, ka = g % tpi, kb = min(tpi, ka + (nt - t))
            let yc = dy + (img * cout + c) * h * w
            for iy in 4 * (ka / tw)..<min(h, 4 * ((kb - 1) / tw) + 4) {
                let row = qbuf + iy * 4 * lw, src = yc + iy * w
                splitPhases(src, count: w, into: row, lw: lw, offset: 0)
            }
            var k = ka
            while k < kb {
                let ty = k / tw, tx = k - ty * tw
                let n = min(8, kb - k, tw - tx)
                let base = qbuf + 4 * ty * 4 * lw + tx
                @inline(__always) func load(_ r: Int, _ col: Int) -> SIMD8<Float> {
                    UnsafeRawPointer(base + (r * 4 + col) * lw).loadUnaligned(as: SIMD8<Float>.self)
                }
                // A dY: six rows of four (one column of dY at a time), then each row times A^T
                let c0 = gradientRows(load(0, 0), load(1, 0), load(2, 0), load(3, 0))
                let c1 = gradientRows(load(0, 1), load(1, 1), load(2, 1), load(3, 1))
                let c2 = gradientRows(load(0, 2), load(1, 2), load(2, 2), load(3, 2))
                let c3 = gradientRows(load(0, 3), load(1, 3), load(2, 3), load(3, 3))
                let dst = UnsafeMutableRawPointer(d + c * rowStride + t + (k - ka)), ps = plane * 4
                @inline(__always) func store(_ i: Int, _ r: Six) { storeRow(dst, ps, i, r) }
                // extra lanes of a partial group land on tiles written later or in the plane's padding
                store(0, gradientRows(c0.0, c1.0, c2.0, c3.0))
                store(1, gradientRows(c0.1, c1.1, c2.1, c3.1))
                store(2, gradientRows(c0.2, c1.2, c2.2, c3.2))
                store(3, gradientRows(c0.3, c1.3, c2.3, c3.3))
                store(4, gradientRows(c0.4, c1.4, c2.4, c3.4))
                store(5, gradientRows(c0.5, c1.5, c2.5, c3.5))
                k += n
            }
            t += kb - ka
        }
    }
}

/// Six values to G^T m (three).
@inline(__always)
private func kernelRows(_ m0: SIMD8<Float>, _ m1: SIMD8<Float>, _ m2: SIMD8<Float>,
                        _ m3: SIMD8<Float>, _ m4: SIMD8<Float>, _ m5: SIMD8<Float>)
    -> (SIMD8<Float>, SIMD8<Float>, SIMD8<Float>) {
    let s12 = (m1 + m2) * (1 / 6), s34 = m3 + m4
    return (m0 * 0.25 - s12 + s34 * (1 / 24), (m2 - m1) * (1 / 6) + (m3 - m4) * (1 / 12), s34 * (1 / 6) - s12 + m5)
}

/// dw[q*9 ..< q*9+9] += G^T M_q G for kernels q (= co * Cin + ci) in `kernels`, M_q the sum of the
/// partials' Mw[.][q] (in their order); 8 kernels at a time in SIMD8 lanes.
public func winograd43AddKernelGradients(_ partials: [UnsafePointer<Float>], cin: Int, cout: Int,
                                         dw: UnsafeMutablePointer<Float>, kernels: Range<Int>) {
    addKernelGradients43(partials, plane: cout * cin + 16, dw: dw, kernels: kernels)
}

/// The same with the partials' planes `plane` floats apart.
func addKernelGradients43(_ partials: [UnsafePointer<Float>], plane: Int, dw: UnsafeMutablePointer<Float>, kernels: Range<Int>) {
    addKernelGradients(partials, planes: 36, plane: plane, dw: dw, kernels: kernels) { s in
        @inline(__always) func ld(_ k: Int) -> SIMD8<Float> { s.loadUnaligned(fromByteOffset: k * kernelChunk * 4, as: SIMD8<Float>.self) }
        // G^T M: three rows of six (one column of M at a time), then each row times G
        let c0 = kernelRows(ld(0), ld(6), ld(12), ld(18), ld(24), ld(30))
        let c1 = kernelRows(ld(1), ld(7), ld(13), ld(19), ld(25), ld(31))
        let c2 = kernelRows(ld(2), ld(8), ld(14), ld(20), ld(26), ld(32))
        let c3 = kernelRows(ld(3), ld(9), ld(15), ld(21), ld(27), ld(33))
        let c4 = kernelRows(ld(4), ld(10), ld(16), ld(22), ld(28), ld(34))
        let c5 = kernelRows(ld(5), ld(11), ld(17), ld(23), ld(29), ld(35))
        let r0 = kernelRows(c0.0, c1.0, c2.0, c3.0, c4.0, c5.0)
        let r1 = kernelRows(c0.1, c1.1, c2.1, c3.1, c4.1, c5.1)
        let r2 = kernelRows(c0.2, c1.2, c2.2, c3.2, c4.2, c5.2)
        return (r0.0, r0.1, r0.2, r1.0, r1.1, r1.2, r2.0, r2.1, r2.2)
    }
}

/// dW for layers with few tiles and many channels (the deep stages at a small batch), where the
/// per-worker partial sums Mw[36][Cout][Cin] outweigh the tiles: the batch as one block, the input
/// transform split over the workers by input channels and DY's by output channels; then each worker
/// takes chunks of `rows` output channels, multiplies their DY rows by all of V into a chunk of Mw
/// that stays in cache, and transforms it back into the gradient. No partial sums are written or
/// read back. Each Mw value is one dot product over all the batch's tiles (split by images, the sum
/// of the workers' dot products). ADDS into dw.
public func winograd43WeightGradientByChannels(x: UnsafePointer<Float>, dy: UnsafePointer<Float>, dw: UnsafeMutablePointer<Float>,
                                               cin: Int, cout: Int, h: Int, w: Int, n: Int, workers: Int, rows: Int) {
    if n <= 0 || h <= 0 || w <= 0 || cin <= 0 || cout <= 0 { return }
    let th = (h + 3) / 4, tw = (w + 3) / 4, tpi = th * tw
    let lw = tw + 8, padded = (4 * th + 2) * 4 * lw, paddedDY = 4 * th * 4 * lw
    let nt = winograd43Columns(n: n, h: h, w: w), ld = (nt + 15) / 8 * 8   // an 8-lane store past a row's end stays in the row
    let vPlane = cin * ld + 16, dPlane = cout * ld + 16
    let cPlane = max(1, min(rows, cout)) * cin + 16
    let v = winograd43DWShared.buffer(worker: 0, count: 36 * (vPlane + dPlane))
    let dt = v + 36 * vPlane
    let geo = Winograd43Geometry(h: h, w: w, tw: tw, tpi: tpi, lw: lw)
    let parts = max(1, min(workers, cout))
    Parallel.forRanges(parts) { ws in for wk in ws {
        let scratch = winograd43DWScratch.buffer(worker: wk, count: padded + paddedDY + 36 * cPlane)
        let pbuf = scratch, qbuf = pbuf + padded
        pbuf.update(repeating: 0, count: padded)
        qbuf.update(repeating: 0, count: paddedDY)
        winograd43InputTransform(x, v, pbuf, geo, plane: vPlane, cin: cin, first: 0, nt: nt,
                                 channels: cin * wk / parts ..< cin * (wk + 1) / parts, ld: ld)
        outputGradientTransform(dy, dt, qbuf, geo, plane: dPlane, cout: cout, first: 0, nt: nt,
                                channels: cout * wk / parts ..< cout * (wk + 1) / parts, ld: ld)
    }}
    weightGradientByOutputChunks(dt: dt, dPlane: dPlane, v: v, vPlane: vPlane, ld: ld, k: nt, planes: 36, cin: cin, cout: cout,
                                 rows: rows, parts: parts, dw: dw,
                                 scratch: { winograd43DWScratch.buffer(worker: $0, count: padded + paddedDY + 36 * cPlane) + padded + paddedDY },
                                 add: { addKernelGradients43($0, plane: $1, dw: $2, kernels: $3) })
}

/// V and DY of `winograd43WeightGradientByChannels`, shared by the workers.
private let winograd43DWShared = WinogradScratch()
