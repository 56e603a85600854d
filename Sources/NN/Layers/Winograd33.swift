// Winograd F(3x3, 3x3) (Lavin & Gray 2016; interpolation points 0, 1, -1, 2, ∞) for 3x3 stride-1
// padding-1 convolutions on small maps, where one or two 3x3 output tiles cover a side exactly
// (3x3, 5x5, 6x6, 9x9: 25 multiplications per channel pair and tile, against 4·16 = 64 for F(2x2)
// on a 3x3 map and 9·16 = 144 on 5x5 and 6x6).
//   weights: U = G g G^T     (5x5 per (cout, cin)), stored U[25][Cout][Cin]
//   input:   V = B^T d B     (5x5 per (cin, tile)), stored V[25][Cin][T]
//   product: M[xi] = U[xi] · V[xi]   (25 gemms [Cout x Cin] x [Cin x T])
//   output:  Y (3x3) = A^T M A
//   dW:      dg = G^T [ Σ_t (A dY_t A^T) ⊙ V_t ] G, the exact adjoint (as in WinogradWeightGradient.swift)
//   A^T = [1 1 1 1 0; 0 1 -1 2 0; 0 1 1 4 1]
//   G   = [1/2 0 0; -1/2 -1/2 -1/2; -1/6 1/6 -1/6; 1/6 1/3 2/3; 0 0 1]
//   B^T = [2 -1 -2 1 0; 0 -2 -1 1 0; 0 2 -3 1 0; 0 -1 0 1 0; 0 2 -1 -2 1]
// Tile k = (ty, tx) of an image reads rows and columns 3ty-1 ..< 3ty+4 (zero outside the map) and
// writes outputs 3ty ..< 3ty+3 (dropped beyond H x W). Small maps have few tiles per channel, so the
// transforms run in SIMD8 lanes across 8 images (same channel, same tile): a block's columns are
// ordered [tile][image], its image count rounded up to a multiple of 8 with zero columns.
import Foundation
import Kernels

/// Tiles (gemm columns) per block of the forward; 0 = automatic, as F(2x2): min(160, 65536 / (Cin + Cout)), at least 32.
nonisolated(unsafe) public var winograd33TargetTiles = 0
/// Tiles (gemm K) per block of the weight gradient; 0 = automatic: max(32, 32768 / (Cin + Cout)).
nonisolated(unsafe) public var winograd33WeightGradientTargetTiles = 0

private typealias V8 = SIMD8<Float>
private typealias Five = (V8, V8, V8, V8, V8)
private typealias Three = (V8, V8, V8)

// The five one-dimensional transforms; each 2-D transform applies one along columns, then rows.
@inline(__always) private func inputTransform(_ d: Five) -> Five {   // B^T d
    let two = V8(repeating: 2), three = V8(repeating: 3)
    return (two * (d.0 - d.2) - d.1 + d.3, d.3 - two * d.1 - d.2, two * d.1 - three * d.2 + d.3,
            d.3 - d.1, two * (d.1 - d.3) - d.2 + d.4)
}
@inline(__always) private func outputTransform(_ m: Five) -> Three {   // A^T m
    let two = V8(repeating: 2), four = V8(repeating: 4)
    return (m.0 + m.1 + m.2 + m.3, m.1 - m.2 + two * m.3, m.1 + m.2 + four * m.3 + m.4)
}
@inline(__always) private func outputGradientTransform(_ y: Three) -> Five {   // A y, the adjoint of A^T
    let two = V8(repeating: 2), four = V8(repeating: 4)
    return (y.0, y.0 + y.1 + y.2, y.0 - y.1 + y.2, y.0 + two * y.1 + four * y.2, y.2)
}
@inline(__always) private func kernelTransform(_ g: Three) -> Five {   // G g
    let half = V8(repeating: 0.5), sixth = V8(repeating: 1 / 6), two = V8(repeating: 2), four = V8(repeating: 4)
    return (half * g.0, -half * (g.0 + g.1 + g.2), sixth * (g.1 - g.0 - g.2), sixth * (g.0 + two * g.1 + four * g.2), g.2)
}
@inline(__always) private func kernelGradientTransform(_ m: Five) -> Three {   // G^T m, the adjoint of G
    let half = V8(repeating: 0.5), sixth = V8(repeating: 1 / 6), two = V8(repeating: 2), four = V8(repeating: 4)
    return (half * (m.0 - m.1) + sixth * (m.3 - m.2), sixth * (m.2 + two * m.3) - half * m.1,
            sixth * (four * m.3 - m.2) - half * m.1 + m.4)
}

/// Gemm columns of a whole batch in F(3x3) form: tiles per image times the images rounded up to 8
/// (the transforms gather 8 images per SIMD lane group).
public func winograd33Columns(n: Int, h: Int, w: Int) -> Int { Geometry33(h: h, w: w).tpi * ((n + 7) / 8 * 8) }

/// Tiles of one map and how a block of images is laid out in the gemm columns.
private struct Geometry33 {
    let h, w, tw, tpi: Int
    init(h: Int, w: Int) { self.h = h; self.w = w; tw = (w + 2) / 3; tpi = ((h + 2) / 3) * tw }
    /// Images per block (a multiple of 8) for about `target` columns.
    func blockImages(target: Int) -> Int { max(8, (target / tpi) / 8 * 8) }
}

/// 8 values p[0], p[stride], ... (lanes ≥ n zero).
@inline(__always) private func gather(_ p: UnsafePointer<Float>, _ stride: Int, _ n: Int) -> V8 {
    if n == 8 { return V8(p[0], p[stride], p[2 * stride], p[3 * stride], p[4 * stride], p[5 * stride], p[6 * stride], p[7 * stride]) }
    var r = V8()
    for l in 0..<n { r[l] = p[l * stride] }
    return r
}

/// V[xi][c][k * nb8 + i] = (B^T d B)[xi] for tile k of image img0 + i (i < nb; columns nb ..< nb8 get zeros).
private func transformInput(_ x: UnsafePointer<Float>, _ v: UnsafeMutablePointer<Float>, plane: Int, _ geo: Geometry33,
                            cin: Int, img0: Int, nb: Int, nb8: Int, _ d: UnsafeMutablePointer<V8>, channels: Range<Int>? = nil) {
    let (h, w, hw) = (geo.h, geo.w, geo.h * geo.w)
    let cols = geo.tpi * nb8, lane = cin * hw
    for c in channels ?? 0..<cin {
        for k in 0..<geo.tpi {
            let iy0 = 3 * (k / geo.tw) - 1, ix0 = 3 * (k % geo.tw) - 1
            var i = 0
            while i < nb8 {
                let n = max(0, min(8, nb - i))
                let base = x + ((img0 + i) * cin + c) * hw
                for r in 0..<5 {
                    let iy = iy0 + r
                    for s in 0..<5 {
                        let ix = ix0 + s
                        d[r * 5 + s] = iy < 0 || iy >= h || ix < 0 || ix >= w || n == 0 ? V8() : gather(base + iy * w + ix, lane, n)
                    }
                }
                for s in 0..<5 {   // columns: B^T d
                    let e = inputTransform((d[s], d[5 + s], d[10 + s], d[15 + s], d[20 + s]))
                    d[s] = e.0; d[5 + s] = e.1; d[10 + s] = e.2; d[15 + s] = e.3; d[20 + s] = e.4
                }
                let o = UnsafeMutableRawPointer(v + c * cols + k * nb8 + i), ps = plane * 4
                for r in 0..<5 {   // rows: (B^T d) B
                    let q = inputTransform((d[r * 5], d[r * 5 + 1], d[r * 5 + 2], d[r * 5 + 3], d[r * 5 + 4]))
                    o.storeBytes(of: q.0, toByteOffset: (r * 5) * ps, as: V8.self)
                    o.storeBytes(of: q.1, toByteOffset: (r * 5 + 1) * ps, as: V8.self)
                    o.storeBytes(of: q.2, toByteOffset: (r * 5 + 2) * ps, as: V8.self)
                    o.storeBytes(of: q.3, toByteOffset: (r * 5 + 3) * ps, as: V8.self)
                    o.storeBytes(of: q.4, toByteOffset: (r * 5 + 4) * ps, as: V8.self)
                }
                i += 8
            }
        }
    }
}

/// y[img0 + i][co] 3x3 block of tile k = A^T M A (+ bias), M[xi] = m[xi * plane + co * cols + k * nb8 + i].
private func transformOutput(_ m: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ bias: UnsafePointer<Float>?,
                             plane: Int, _ geo: Geometry33, cout: Int, img0: Int, nb: Int, nb8: Int, _ t: UnsafeMutablePointer<V8>,
                             channels: Range<Int>? = nil) {
    let (h, w, hw) = (geo.h, geo.w, geo.h * geo.w)
    let cols = geo.tpi * nb8, lane = cout * hw
    for co in channels ?? 0..<cout {
        let b = bias?[co] ?? 0
        for k in 0..<geo.tpi {
            let oy0 = 3 * (k / geo.tw), ox0 = 3 * (k % geo.tw)
            var i = 0
            while i < nb {
                let n = min(8, nb - i)
                let p = UnsafeRawPointer(m + co * cols + k * nb8 + i), ps = plane * 4
                @inline(__always) func ld(_ xi: Int) -> V8 { p.loadUnaligned(fromByteOffset: xi * ps, as: V8.self) }
                for r in 0..<5 {   // rows: M A, 5x3
                    let q = outputTransform((ld(r * 5), ld(r * 5 + 1), ld(r * 5 + 2), ld(r * 5 + 3), ld(r * 5 + 4)))
                    t[r * 3] = q.0; t[r * 3 + 1] = q.1; t[r * 3 + 2] = q.2
                }
                let bv = V8(repeating: b)
                for j in 0..<3 where ox0 + j < w {   // columns: A^T (M A)
                    let col = outputTransform((t[j], t[3 + j], t[6 + j], t[9 + j], t[12 + j]))
                    t[15] = col.0 + bv; t[16] = col.1 + bv; t[17] = col.2 + bv
                    let dst = y + ((img0 + i) * cout + co) * hw + oy0 * w + ox0 + j
                    for a in 0..<min(3, h - oy0) {
                        let val = t[15 + a]
                        for l in 0..<n { dst[l * lane + a * w] = val[l] }
                    }
                }
                i += 8
            }
        }
    }
}

/// U[25][Cout][Cin] = G g G^T, or for dX (W'[ci][co] = W[co][ci] rotated 180°) U'[25][Cin][Cout];
/// `rows` limits the work to rows (Cout, or Cin for dX) of U.
public func winograd33TransformWeights(_ w: UnsafePointer<Float>, cout: Int, cin: Int, into u: UnsafeMutablePointer<Float>,
                                       forInputGradient: Bool, rows: Range<Int>, band: Int? = nil) {
    let plane = band ?? cout * cin, firstRow = band == nil ? 0 : rows.lowerBound
    let (inner, innerStride) = forInputGradient ? (cout, cin * 9) : (cin, 9)   // the other index and its stride in w
    let tmp = UnsafeMutablePointer<Float>.allocate(capacity: 25 * 64 + 8)   // [25][64], room for a last 8-lane store
    defer { tmp.deallocate() }
    for row in rows {
        let g0 = forInputGradient ? w + row * 9 : w + row * cin * 9
        var c0 = 0
        while c0 < inner {
            let nc = min(64, inner - c0)
            var j = 0
            while j < nc {   // 8 kernels in SIMD8 lanes
                let n = min(8, nc - j), g = g0 + (c0 + j) * innerStride
                @inline(__always) func tap(_ e: Int) -> V8 {   // element e (row-major) of the 8 kernels, rotated for dX
                    gather(g + (forInputGradient ? 8 - e : e), innerStride, n)
                }
                let c0 = kernelTransform((tap(0), tap(3), tap(6))), c1 = kernelTransform((tap(1), tap(4), tap(7)))
                let c2 = kernelTransform((tap(2), tap(5), tap(8)))   // G g, by columns
                let r = UnsafeMutableRawPointer(tmp + j)
                @inline(__always) func row(_ i: Int, _ a: V8, _ b: V8, _ c: V8) {   // (G g) G^T, by rows
                    let q = kernelTransform((a, b, c))
                    r.storeBytes(of: q.0, toByteOffset: (i * 5) * 256, as: V8.self)
                    r.storeBytes(of: q.1, toByteOffset: (i * 5 + 1) * 256, as: V8.self)
                    r.storeBytes(of: q.2, toByteOffset: (i * 5 + 2) * 256, as: V8.self)
                    r.storeBytes(of: q.3, toByteOffset: (i * 5 + 3) * 256, as: V8.self)
                    r.storeBytes(of: q.4, toByteOffset: (i * 5 + 4) * 256, as: V8.self)
                }
                row(0, c0.0, c1.0, c2.0); row(1, c0.1, c1.1, c2.1); row(2, c0.2, c1.2, c2.2)
                row(3, c0.3, c1.3, c2.3); row(4, c0.4, c1.4, c2.4)
                j += 8
            }
            spreadRuns(tmp, planes: 25, count: nc, into: u + (row - firstRow) * inner + c0, plane: plane)
            c0 += nc
        }
    }
}

/// Forward for images of x (N, Cin, H, W) -> y (N, Cout, H, W), adding bias if non-nil; `u` is
/// winograd33TransformWeights' output. Also dX, with dY for x and U' (as the other Winograd passes).
/// Safe to call concurrently for disjoint image ranges with distinct `worker` ids.
public func winograd33Forward(x: UnsafePointer<Float>, u: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                              y: UnsafeMutablePointer<Float>, cin: Int, cout: Int, h: Int, w: Int,
                              images: Range<Int>, worker: Int) {
    if images.isEmpty || h <= 0 || w <= 0 { return }
    let geo = Geometry33(h: h, w: w)
    let target = winograd33TargetTiles > 0 ? winograd33TargetTiles : max(32, min(160, 65536 / (cin + cout)))
    let nbMax = min(geo.blockImages(target: target), (images.count + 7) / 8 * 8)
    let tmax = geo.tpi * nbMax
    let vPlaneMax = cin * tmax + 16, mPlaneMax = cout * tmax + 16   // planes padded by a cache line
    let scratch = WinogradScratch.shared.buffer(worker: worker, count: 25 * (vPlaneMax + mPlaneMax))
    let v = scratch, m = v + 25 * vPlaneMax
    withUnsafeTemporaryAllocation(of: V8.self, capacity: 25) { tmp in   // one tile's 5x5 values, aligned
        let d = tmp.baseAddress!
        var img0 = images.lowerBound
        while img0 < images.upperBound {
            let nb = min(nbMax, images.upperBound - img0), nb8 = (nb + 7) / 8 * 8, cols = geo.tpi * nb8
            let vPlane = cin * cols + 16, mPlane = cout * cols + 16
            transformInput(x, v, plane: vPlane, geo, cin: cin, img0: img0, nb: nb, nb8: nb8, d)
            for xi in 0..<25 {
                gemmInBands(m: cout, n: cols, k: cin, a: u + xi * cout * cin, lda: cin, b: v + xi * vPlane, ldb: cols,
                     c: m + xi * mPlane, ldc: cols)
            }
            transformOutput(m, y, bias, plane: mPlane, geo, cout: cout, img0: img0, nb: nb, nb8: nb8, d)
            img0 += nb
        }
    }
}

/// Forward (or dX) by output-channel chunks with each chunk's weights transformed in cache, as
/// `winograd43ForwardByChannels` (stage 4 of ResNet-18 at 96x96, batch 64: 64 columns, 512 x 512
/// channels): the batch as one block (its images rounded up to 8 with zero columns), V split over
/// the workers by input channels, then chunks of `rows` output channels. `w` is the layer's weight.
public func winograd33ForwardByChannels(x: UnsafePointer<Float>, w: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                                        y: UnsafeMutablePointer<Float>, cin: Int, cout: Int, h: Int, w width: Int, n: Int,
                                        forInputGradient: Bool, workers: Int, rows: Int) {
    if n <= 0 || h <= 0 || width <= 0 || cin <= 0 || cout <= 0 { return }
    let geo = Geometry33(h: h, w: width)
    let nb8 = (n + 7) / 8 * 8, cols = winograd33Columns(n: n, h: h, w: width)
    let vPlane = cin * cols + 16
    let v = winograd33ForwardShared.buffer(worker: 0, count: 25 * vPlane)
    let parts = max(1, min(workers, cout))
    let (layerOut, layerIn) = forInputGradient ? (cin, cout) : (cout, cin)   // the layer's weight is [Cout, Cin]
    Parallel.forRanges(parts) { ws in for wk in ws {
        withUnsafeTemporaryAllocation(of: V8.self, capacity: 25) { tmp in
            transformInput(x, v, plane: vPlane, geo, cin: cin, img0: 0, nb: n, nb8: nb8, tmp.baseAddress!,
                           channels: cin * wk / parts ..< cin * (wk + 1) / parts)
        }
    }}
    forwardByOutputChunks(v: v, vPlane: vPlane, ld: cols, k: cols, planes: 25, cin: cin, cout: cout, rows: rows, parts: parts,
                          transformWeights: { band, u, uPlane in
                              winograd33TransformWeights(w, cout: layerOut, cin: layerIn, into: u, forInputGradient: forInputGradient,
                                                         rows: band, band: uPlane) },
                          transformOutput: { m, mPlane, band in
                              withUnsafeTemporaryAllocation(of: V8.self, capacity: 25) { tmp in
                                  transformOutput(m, y, bias, plane: mPlane, geo, cout: cout, img0: 0, nb: n, nb8: nb8,
                                                  tmp.baseAddress!, channels: band)
                              } })
}

/// V of `winograd33ForwardByChannels`, shared by the workers.
private let winograd33ForwardShared = WinogradScratch()

/// Adds dL/dW (weight [Cout, Cin, 3, 3]) from images of x (N, Cin, H, W) and dy (N, Cout, H, W)
/// into dw (ADDS). Concurrent calls need distinct `worker` ids. (Conv2D splits the two halves below
/// over its workers instead: partial sums per worker, then the transform per range of kernels.)
public func winograd33WeightGradient(x: UnsafePointer<Float>, dy: UnsafePointer<Float>, dw: UnsafeMutablePointer<Float>,
                                     cin: Int, cout: Int, h: Int, w: Int, images: Range<Int>, worker: Int) {
    guard let mw = winograd33WeightGradientPartial(x: x, dy: dy, cin: cin, cout: cout, h: h, w: w, images: images, worker: worker)
    else { return }
    winograd33AddKernelGradients([mw], cin: cin, cout: cout, dw: dw, kernels: 0..<(cout * cin))
}

/// Mw[25][Cout][Cin] = Σ over the images' tiles of DY ⊙ V, in `worker`'s scratch (valid until its next
/// call; planes cout * cin + 16 apart), or nil for no images.
public func winograd33WeightGradientPartial(x: UnsafePointer<Float>, dy: UnsafePointer<Float>,
                                            cin: Int, cout: Int, h: Int, w: Int, images: Range<Int>, worker: Int) -> UnsafePointer<Float>? {
    if images.isEmpty || h <= 0 || w <= 0 || cin <= 0 || cout <= 0 { return nil }
    let geo = Geometry33(h: h, w: w)
    let target = winograd33WeightGradientTargetTiles > 0 ? winograd33WeightGradientTargetTiles : max(32, 32768 / (cin + cout))
    let nbMax = min(geo.blockImages(target: target), (images.count + 7) / 8 * 8)
    let tmax = geo.tpi * nbMax
    let vPlaneMax = cin * tmax + 16, dPlaneMax = cout * tmax + 16, mPlane = cout * cin + 16
    let scratch = winogradDWScratch.buffer(worker: worker, count: 25 * (vPlaneMax + dPlaneMax + mPlane))
    let mw = scratch, v = mw + 25 * mPlane, dt = v + 25 * vPlaneMax
    withUnsafeTemporaryAllocation(of: V8.self, capacity: 25) { buffer in   // one tile's 5x5 values, aligned
        let tmp = buffer.baseAddress!
        var img0 = images.lowerBound, first = true
        while img0 < images.upperBound {
            let nb = min(nbMax, images.upperBound - img0), nb8 = (nb + 7) / 8 * 8, cols = geo.tpi * nb8
            let vPlane = cin * cols + 16, dPlane = cout * cols + 16
            transformInput(x, v, plane: vPlane, geo, cin: cin, img0: img0, nb: nb, nb8: nb8, tmp)
            transformOutputGradient(dy, dt, plane: dPlane, geo, cout: cout, img0: img0, nb: nb, nb8: nb8)
            for xi in 0..<25 {   // Mw[xi] (+)= DY[xi] · V[xi]^T
                gemm(transB: true, m: cout, n: cin, k: cols, a: dt + xi * dPlane, lda: cols, b: v + xi * vPlane, ldb: cols,
                     beta: first ? 0 : 1, c: mw + xi * mPlane, ldc: cin)
            }
            first = false
            img0 += nb
        }
    }
    return UnsafePointer(mw)
}

/// DY[xi][co][k * nb8 + i] = (A dY_t A^T)[xi], dY_t the 3x3 block of tile k of image img0 + i (zero
/// beyond H x W, and for i ≥ nb).
private func transformOutputGradient(_ dy: UnsafePointer<Float>, _ dt: UnsafeMutablePointer<Float>, plane: Int,
                                     _ geo: Geometry33, cout: Int, img0: Int, nb: Int, nb8: Int, channels: Range<Int>? = nil) {
    let (h, w, hw) = (geo.h, geo.w, geo.h * geo.w)
    let cols = geo.tpi * nb8, lane = cout * hw
    for co in channels ?? 0..<cout {
        for k in 0..<geo.tpi {
            let oy0 = 3 * (k / geo.tw), ox0 = 3 * (k % geo.tw)
            var i = 0
            while i < nb8 {
                let n = max(0, min(8, nb - i))
                let base = dy + ((img0 + i) * cout + co) * hw
                @inline(__always) func at(_ a: Int, _ b: Int) -> V8 {
                    oy0 + a < h && ox0 + b < w && n > 0 ? gather(base + (oy0 + a) * w + ox0 + b, lane, n) : V8()
                }
                // P = dY A^T (3x5) by rows, then A P (5x5) by columns
                let p0 = outputGradientTransform((at(0, 0), at(0, 1), at(0, 2)))
                let p1 = outputGradientTransform((at(1, 0), at(1, 1), at(1, 2)))
                let p2 = outputGradientTransform((at(2, 0), at(2, 1), at(2, 2)))
                let o = UnsafeMutableRawPointer(dt + co * cols + k * nb8 + i), ps = plane * 4
                @inline(__always) func column(_ j: Int, _ a: V8, _ b: V8, _ c: V8) {
                    let q = outputGradientTransform((a, b, c))
                    o.storeBytes(of: q.0, toByteOffset: j * ps, as: V8.self)
                    o.storeBytes(of: q.1, toByteOffset: (5 + j) * ps, as: V8.self)
                    o.storeBytes(of: q.2, toByteOffset: (10 + j) * ps, as: V8.self)
                    o.storeBytes(of: q.3, toByteOffset: (15 + j) * ps, as: V8.self)
                    o.storeBytes(of: q.4, toByteOffset: (20 + j) * ps, as: V8.self)
                }
                column(0, p0.0, p1.0, p2.0); column(1, p0.1, p1.1, p2.1); column(2, p0.2, p1.2, p2.2)
                column(3, p0.3, p1.3, p2.3); column(4, p0.4, p1.4, p2.4)
                i += 8
            }
        }
    }
}

/// dw[q*9 ..< q*9+9] += G^T M_q G for kernels q (= co * Cin + ci) in `kernels`, M_q the sum of the
/// partials' Mw[.][q] (in their order); 8 kernels at a time in SIMD8 lanes.
public func winograd33AddKernelGradients(_ partials: [UnsafePointer<Float>], cin: Int, cout: Int,
                                         dw: UnsafeMutablePointer<Float>, kernels: Range<Int>) {
    addKernelGradients33(partials, plane: cout * cin + 16, dw: dw, kernels: kernels)
}

/// The same with the partials' planes `plane` floats apart.
func addKernelGradients33(_ partials: [UnsafePointer<Float>], plane: Int, dw: UnsafeMutablePointer<Float>, kernels: Range<Int>) {
    addKernelGradients(partials, planes: 25, plane: plane, dw: dw, kernels: kernels) { s, stride in
        @inline(__always) func ld(_ xi: Int) -> V8 { s.loadUnaligned(fromByteOffset: xi * stride, as: V8.self) }
        // Q = G^T M (3x5) by columns, then R = Q G (3x3) by rows
        @inline(__always) func column(_ j: Int) -> Three { kernelGradientTransform((ld(j), ld(5 + j), ld(10 + j), ld(15 + j), ld(20 + j))) }
        let c0 = column(0), c1 = column(1), c2 = column(2), c3 = column(3), c4 = column(4)
        let r0 = kernelGradientTransform((c0.0, c1.0, c2.0, c3.0, c4.0))
        let r1 = kernelGradientTransform((c0.1, c1.1, c2.1, c3.1, c4.1))
        let r2 = kernelGradientTransform((c0.2, c1.2, c2.2, c3.2, c4.2))
        return (r0.0, r0.1, r0.2, r1.0, r1.1, r1.2, r2.0, r2.1, r2.2)
    }
}

/// dW for layers with few tiles and many channels, as `winograd43WeightGradientByChannels`: the batch
/// as one block (its images rounded up to 8 with zero columns), V split over the workers by input
/// channels and DY by output channels, then chunks of `rows` output channels each multiplied by all
/// of V into a chunk of Mw that stays in cache and transformed back into the gradient. ADDS into dw.
public func winograd33WeightGradientByChannels(x: UnsafePointer<Float>, dy: UnsafePointer<Float>, dw: UnsafeMutablePointer<Float>,
                                               cin: Int, cout: Int, h: Int, w: Int, n: Int, workers: Int, rows: Int) {
    if n <= 0 || h <= 0 || w <= 0 || cin <= 0 || cout <= 0 { return }
    let geo = Geometry33(h: h, w: w)
    let nb8 = (n + 7) / 8 * 8, cols = winograd33Columns(n: n, h: h, w: w)
    let vPlane = cin * cols + 16, dPlane = cout * cols + 16
    let cPlane = max(1, min(rows, cout)) * cin + 16
    let v = winograd33DWShared.buffer(worker: 0, count: 25 * (vPlane + dPlane))
    let dt = v + 25 * vPlane
    let parts = max(1, min(workers, cout))
    Parallel.forRanges(parts) { ws in for wk in ws {
        withUnsafeTemporaryAllocation(of: V8.self, capacity: 25) { tmp in
            transformInput(x, v, plane: vPlane, geo, cin: cin, img0: 0, nb: n, nb8: nb8, tmp.baseAddress!,
                           channels: cin * wk / parts ..< cin * (wk + 1) / parts)
        }
        transformOutputGradient(dy, dt, plane: dPlane, geo, cout: cout, img0: 0, nb: n, nb8: nb8,
                                channels: cout * wk / parts ..< cout * (wk + 1) / parts)
    }}
    weightGradientByOutputChunks(dt: dt, dPlane: dPlane, v: v, vPlane: vPlane, ld: cols, k: cols, planes: 25, cin: cin, cout: cout,
                                 rows: rows, parts: parts, dw: dw,
                                 scratch: { winogradDWScratch.buffer(worker: $0, count: 25 * cPlane) },
                                 add: { addKernelGradients33($0, plane: $1, dw: $2, kernels: $3) })
}

/// V and DY of `winograd33WeightGradientByChannels`, shared by the workers.
private let winograd33DWShared = WinogradScratch()
