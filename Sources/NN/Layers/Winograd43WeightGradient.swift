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
/// call; planes cout * cin + 16 apart), or nil for no images. With `u` (the forward's U[36][Cout][Cin])
/// and `dx`, also the images' dX (OVERWRITTEN), as the exact adjoint of the forward sharing DY:
/// M[xi] = U[xi]^T · DY[xi] (36 gemms [Cin x Cout] x [Cout x T]), dX = Σ_t B M_t B^T on each tile's
/// 6x6 input patch; the blocks then hold whole images (an image's patches overlap).
public func winograd43WeightGradientPartial(x: UnsafePointer<Float>, dy: UnsafePointer<Float>,
                                            u: UnsafePointer<Float>? = nil, dx: UnsafeMutablePointer<Float>? = nil,
                                            cin: Int, cout: Int, h: Int, w: Int, images: Range<Int>, worker: Int) -> UnsafePointer<Float>? {
    if images.isEmpty || h <= 0 || w <= 0 || cin <= 0 || cout <= 0 { return nil }
    let th = (h + 3) / 4, tw = (w + 3) / 4, tpi = th * tw
    let lw = tw + 8
    let padded = (4 * th + 2) * 4 * lw     // x (and dX), zero-bordered, phase layout (as in the forward)
    let paddedDY = 4 * th * 4 * lw         // dY, zero beyond H x W, phase layout without the border
    let withDX = u != nil && dx != nil
    let total = images.count * tpi
    let target = winograd43WeightGradientTargetTiles > 0 ? winograd43WeightGradientTargetTiles : max(32, 32768 / (cin + cout))
    let blocks = max(1, (total + target / 2) / target)
    // Tiles per block: about `target`, in whole images when dX is summed too.
    let tmax = withDX ? max(1, (target + tpi / 2) / tpi) * tpi : (total + blocks - 1) / blocks
    let vPlaneMax = cin * tmax + 16, dPlaneMax = cout * tmax + 16, mPlane = cout * cin + 16
    let scratch = winograd43DWScratch.buffer(worker: worker, count: 36 * (vPlaneMax + dPlaneMax + mPlane) + 2 * padded + paddedDY)
    let v = scratch, dt = v + 36 * vPlaneMax, mw = dt + 36 * dPlaneMax
    let pbuf = mw + 36 * mPlane, qbuf = pbuf + padded, rbuf = qbuf + paddedDY
    pbuf.update(repeating: 0, count: 2 * padded + paddedDY)   // pbuf, qbuf and rbuf
    let geo = Winograd43Geometry(h: h, w: w, tw: tw, tpi: tpi, lw: lw)
    var t0 = 0, firstBlock = true
    while t0 < total {
        let nt = min(tmax, total - t0)
        let first = images.lowerBound * tpi + t0
        let vPlane = cin * nt + 16, dPlane = cout * nt + 16
        winograd43InputTransform(x, v, pbuf, geo, plane: vPlane, cin: cin, first: first, nt: nt)
        winograd43OutputGradientTransform(dy, dt, qbuf, geo, plane: dPlane, cout: cout, first: first, nt: nt)
        for xi in 0..<36 {
            gemm(transB: true, m: cout, n: cin, k: nt, a: dt + xi * dPlane, lda: nt,
                 b: v + xi * vPlane, ldb: nt, beta: firstBlock ? 0 : 1, c: mw + xi * mPlane, ldc: cin)
        }
        firstBlock = false
        if let u, let dx {   // M[xi] = U[xi]^T · DY[xi] into V's planes (read for the last time above)
            for xi in 0..<36 {
                gemm(transA: true, m: cin, n: nt, k: cout, a: u + xi * cout * cin, lda: cin, b: dt + xi * dPlane, ldb: nt,
                     c: v + xi * vPlane, ldc: nt)
            }
            let img0 = first / tpi
            winograd43InputGradientTransform(v, dx, rbuf, geo, plane: vPlane, cin: cin, images: img0 ..< img0 + nt / tpi, ld: nt)
        }
        t0 += nt
    }
    return UnsafePointer(mw)
}

/// dw[q*9 ..< q*9+9] += G^T M_q G for kernels q (= co * Cin + ci) in `kernels`, M_q the sum of the
/// partials' Mw[.][q] (in their order); 8 kernels at a time in SIMD8 lanes.
public func winograd43AddKernelGradients(_ partials: [UnsafePointer<Float>], cin: Int, cout: Int,
                                         dw: UnsafeMutablePointer<Float>, kernels: Range<Int>) {
    addKernelGradients43(partials, plane: cout * cin + 16, dw: dw, kernels: kernels)
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
        winograd43OutputGradientTransform(dy, dt, qbuf, geo, plane: dPlane, cout: cout, first: 0, nt: nt,
                                channels: cout * wk / parts ..< cout * (wk + 1) / parts, ld: ld)
    }}
    weightGradientByOutputChunks(dt: dt, dPlane: dPlane, v: v, vPlane: vPlane, ld: ld, k: nt, planes: 36, cin: cin, cout: cout,
                                 rows: rows, parts: parts, dw: dw,
                                 scratch: { winograd43DWScratch.buffer(worker: $0, count: padded + paddedDY + 36 * cPlane) + padded + paddedDY },
                                 add: { addKernelGradients43($0, plane: $1, dw: $2, kernels: $3) })
}

/// V and DY of `winograd43WeightGradientByChannels`, shared by the workers.
private let winograd43DWShared = WinogradScratch()
