// Weight gradient of a 3x3 stride-1 padding-1 convolution with Winograd F(2x2, 3x3).
// The forward is, per 2x2 output tile t, y_t = A^T [(G g G^T) ⊙ (B^T d_t B)] A, linear in g, so
// its exact adjoint is
//   dL/dg = G^T [ Σ_t (A dY_t A^T) ⊙ (B^T d_t B) ] G
// With V[16][Cin][T] = B^T d B (the forward's input transform, same tiling) and
// DY[16][Cout][T] = A dY A^T (dY_t the 2x2 output-gradient block of tile t, zero beyond H x W):
//   Mw[xi][co][ci] = Σ_t DY[xi][co][t] * V[xi][ci][t]     (16 gemms [Cout x T] x [T x Cin]^T, accumulated over blocks)
//   dW[co][ci] += G^T Mw[co][ci] G                          (once per call)
// The input transform is winogradInputTransform from Winograd.swift, shared with the forward pass.
import Foundation
import Kernels

/// Tiles (gemm K) per block for the weight gradient; 0 = automatic, max(64, 32768 / (Cin + Cout)):
/// V and DY of a block then take about 2 MiB (measured best single-threaded: 256 for 64 channels,
/// 128 for 128, 64 for 256). Each worker needs 16 * ((Cin + Cout) * T + Cin * Cout) floats of scratch.
nonisolated(unsafe) public var winogradWeightGradientTargetTiles = 0

/// Per-worker scratch of the weight gradient (separate from the forward's, which has other sizes);
/// F(3x3)'s weight gradient (Winograd33.swift) uses it too.
let winogradDWScratch = WinogradScratch()

/// Adds dL/dW (weight [Cout, Cin, 3, 3]) from images `images` of x (N, Cin, H, W) and dy (N, Cout, H, W)
/// into dw (Cout*Cin*9 floats; ADDS, the caller zeroes partial buffers). Callable concurrently from worker threads
/// with distinct `worker` ids and disjoint image ranges (use your own per-worker scratch, like WinogradScratch).
public func winogradWeightGradient(x: UnsafePointer<Float>, dy: UnsafePointer<Float>, dw: UnsafeMutablePointer<Float>,
                                   cin: Int, cout: Int, h: Int, w: Int, images: Range<Int>, worker: Int) {
    if images.isEmpty || h <= 0 || w <= 0 || cin <= 0 || cout <= 0 { return }
    let th = (h + 1) / 2, tw = (w + 1) / 2, tpi = th * tw
    let wp = 2 * tw + 2, padded = (2 * th + 2) * wp     // zero-bordered x (as in the forward)
    let wq = 2 * tw, paddedDY = 2 * th * wq              // dY padded to even size with zeros
    let total = images.count * tpi
    let target = winogradWeightGradientTargetTiles > 0 ? winogradWeightGradientTargetTiles : max(64, 32768 / (cin + cout))
    let blocks = max(1, (total + target / 2) / target)
    let tmax = (total + blocks - 1) / blocks
    // Planes padded by a cache line: the 16 streams of a transform must not alias in the cache
    // (cout * cin * 4 bytes is often a multiple of 4 KiB).
    let vPlaneMax = cin * tmax + 16, dPlaneMax = cout * tmax + 16, mPlane = cout * cin + 16
    let scratch = winogradDWScratch.buffer(worker: worker,
                                           count: 16 * (vPlaneMax + dPlaneMax + mPlane) + padded + paddedDY)
    let v = scratch, dt = v + 16 * vPlaneMax, mw = dt + 16 * dPlaneMax
    let pbuf = mw + 16 * mPlane, qbuf = pbuf + padded
    pbuf.update(repeating: 0, count: padded)
    qbuf.update(repeating: 0, count: paddedDY)
    // offs[k], offsDY[k]: where tile k of an image starts in pbuf, qbuf
    let offs = UnsafeMutablePointer<Int32>.allocate(capacity: 2 * tpi), offsDY = offs + tpi
    defer { offs.deallocate() }
    for k in 0..<tpi {
        offs[k] = Int32(2 * (k / tw) * wp + 2 * (k % tw))
        offsDY[k] = Int32(2 * (k / tw) * wq + 2 * (k % tw))
    }
    let geo = WinogradGeometry(h: h, w: w, tw: tw, tpi: tpi, wp: wp)
    var t0 = 0, firstBlock = true
    while t0 < total {
        let nt = min(tmax, total - t0)
        let first = images.lowerBound * tpi + t0
        let vPlane = cin * nt + 16, dPlane = cout * nt + 16
        winogradInputTransform(x, v, pbuf, offs, geo, plane: vPlane, cin: cin, first: first, nt: nt)
        winogradDWOutputGradientTransform(dy, dt, qbuf, offsDY, geo, wq: wq, plane: dPlane, cout: cout, first: first, nt: nt)
        for xi in 0..<16 {
            gemm(transB: true, m: cout, n: cin, k: nt, a: dt + xi * dPlane, lda: nt,
                 b: v + xi * vPlane, ldb: nt, beta: firstBlock ? 0 : 1, c: mw + xi * mPlane, ldc: cin)
        }
        firstBlock = false
        t0 += nt
    }
    winogradDWWeightTransform(mw, plane: mPlane, dw: dw, count: cout * cin)
}

/// dw[q*9 ..< q*9+9] += G^T M_q G for q in 0..<count, M_q[xi] = m[xi * plane + q],
/// G^T = [1 .5 .5 0; 0 .5 -.5 0; 0 .5 .5 1]. 8 kernels at a time in SIMD8 lanes.
private func winogradDWWeightTransform(_ m: UnsafePointer<Float>, plane: Int, dw: UnsafeMutablePointer<Float>, count: Int) {
    let half = SIMD8<Float>(repeating: 0.5)
    var q = 0
    while q < count {
        let n = min(8, count - q)
        let p = m + q
        @inline(__always) func ld(_ k: Int) -> SIMD8<Float> {
            if n == 8 { return UnsafeRawPointer(p + k * plane).loadUnaligned(as: SIMD8<Float>.self) }
            var r = SIMD8<Float>()
            for l in 0..<n { r[l] = p[k * plane + l] }
            return r
        }
        // Q = G^T M (3x4), column j from column j of M (rows ld(j), ld(4+j), ld(8+j), ld(12+j))
        @inline(__always) func qcol(_ j: Int) -> (SIMD8<Float>, SIMD8<Float>, SIMD8<Float>) {
            let m0 = ld(j), m1 = ld(4 + j), m2 = ld(8 + j), m3 = ld(12 + j)
            let s = half * (m1 + m2)
            return (m0 + s, half * (m1 - m2), s + m3)
        }
        let c0 = qcol(0), c1 = qcol(1), c2 = qcol(2), c3 = qcol(3)
        // R = Q G (3x3): R[i] = (Q[i,0] + .5(Q[i,1] + Q[i,2]), .5(Q[i,1] - Q[i,2]), .5(Q[i,1] + Q[i,2]) + Q[i,3])
        let s0 = half * (c1.0 + c2.0), s1 = half * (c1.1 + c2.1), s2 = half * (c1.2 + c2.2)
        let r = (c0.0 + s0, half * (c1.0 - c2.0), s0 + c3.0,
                 c0.1 + s1, half * (c1.1 - c2.1), s1 + c3.1,
                 c0.2 + s2, half * (c1.2 - c2.2), s2 + c3.2)
        addKernelLanes(r, to: dw + q * 9, count: n)
        q += n
    }
}

/// The second half of a weight gradient by output channels (`winograd43WeightGradientByChannels`):
/// with DY[planes][Cout][ld] and V[planes][Cin][ld] of the whole batch (k tiles), `parts` workers
/// take the chunks of `rows` output channels one at a time (`Parallel.forItems`), multiply a chunk's
/// DY rows by V into Mw[planes][rows][Cin] (in `scratch(worker)`, planes * (rows * Cin + 16) floats)
/// and add them back transformed (`add(partials, plane, dw, kernels)`) into dw.
@inline(__always)
func weightGradientByOutputChunks(dt: UnsafePointer<Float>, dPlane: Int, v: UnsafePointer<Float>, vPlane: Int, ld: Int, k: Int,
                                  planes: Int, cin: Int, cout: Int, rows: Int, parts: Int, dw: UnsafeMutablePointer<Float>,
                                  scratch: (Int) -> UnsafeMutablePointer<Float>,
                                  add: ([UnsafePointer<Float>], Int, UnsafeMutablePointer<Float>, Range<Int>) -> Void) {
    let r = max(1, min(rows, cout)), cPlane = r * cin + 16, chunks = (cout + r - 1) / r
    // With FMA, V is packed once into panels for our own gemm (Kernels/PanelGemm.swift) instead of
    // OpenBLAS packing it again for every chunk.
    let own = KernelSet.active.fusesMultiplyAdd && ownWeightGradientGemm
    let pPlane = panelFloats(rows: cin, k: k)
    let vp = panelScratch.buffer(worker: 0, count: own ? planes * pPlane : 1)
    if own {
        Parallel.forItems(planes, parts: parts) { _, xi in
            packPanels(v + xi * vPlane, ld: ld, n: cin, k: k, into: vp + xi * pPlane)
        }
    }
    Parallel.forItems(chunks, parts: parts) { wk, chunk in   // chunks write disjoint rows of dw: handed out as workers finish
        let mw = scratch(wk)
        let co0 = chunk * r, rc = min(r, cout - co0)
        for xi in 0..<planes {   // Mw[xi][co0 ..< co0 + rc][.] = DY[xi][co0 ..< co0 + rc] · V[xi]^T
            if own {
                panelGemm(m: rc, n: cin, k: k, a: dt + xi * dPlane + co0 * ld, lda: ld, panels: vp + xi * pPlane,
                          c: mw + xi * cPlane, ldc: cin, accumulate: false)
            } else {
                gemm(transB: true, m: rc, n: cin, k: k, a: dt + xi * dPlane + co0 * ld, lda: ld,
                     b: v + xi * vPlane, ldb: ld, c: mw + xi * cPlane, ldc: cin)
            }
        }
        add([UnsafePointer(mw)], cPlane, dw + co0 * cin * 9, 0..<(rc * cin))
    }
}

/// Whether the weight gradients by output channels use `panelGemm` where the kernel set has FMA
/// (false: OpenBLAS, as before; for measurements).
nonisolated(unsafe) public var ownWeightGradientGemm = true

/// V packed into panels for `panelGemm`, shared by the workers of a weight gradient.
private let panelScratch = WinogradScratch()

/// DY[xi][co][t] = (A dY_t A^T)[xi] for the block's tiles, A = [1 0; 1 1; 1 -1; 0 -1]; dY_t is the
/// 2x2 block at (2 ty, 2 tx) of dy, zero beyond H x W. Per (channel, image) the needed rows of dy go
/// into `qbuf` (2*th x wq, wq = 2*tw, the odd edge stays zero); 8 tiles at a time in SIMD8 lanes.
private func winogradDWOutputGradientTransform(_ dy: UnsafePointer<Float>, _ d: UnsafeMutablePointer<Float>,
                                               _ qbuf: UnsafeMutablePointer<Float>, _ offs: UnsafePointer<Int32>,
                                               _ geo: WinogradGeometry,
                                               wq: Int, plane: Int, cout: Int, first: Int, nt: Int) {
    let (h, w, tw, tpi) = (geo.h, geo.w, geo.tw, geo.tpi)
    let hw = h * w
    @inline(__always) func store(_ q: UnsafeMutablePointer<Float>, _ y00: SIMD8<Float>, _ y01: SIMD8<Float>,
                                 _ y10: SIMD8<Float>, _ y11: SIMD8<Float>) {
        // P = dY A^T (2x4): row r = (y_r0, y_r0 + y_r1, y_r0 - y_r1, -y_r1); then A P rows: P0, P0+P1, P0-P1, -P1
        let p00 = y00, p01 = y00 + y01, p02 = y00 - y01, p03 = -y01
        let p10 = y10, p11 = y10 + y11, p12 = y10 - y11, p13 = -y11
        let r = UnsafeMutableRawPointer(q), ps = plane * 4
        @inline(__always) func put(_ k: Int, _ val: SIMD8<Float>) { r.storeBytes(of: val, toByteOffset: k * ps, as: SIMD8<Float>.self) }
        put(0, p00); put(1, p01); put(2, p02); put(3, p03)
        put(4, p00 + p10); put(5, p01 + p11); put(6, p02 + p12); put(7, p03 + p13)
        put(8, p00 - p10); put(9, p01 - p11); put(10, p02 - p12); put(11, p03 - p13)
        put(12, -p10); put(13, -p11); put(14, -p12); put(15, -p13)
    }
    for c in 0..<cout {
        var t = 0
        while t < nt {
            let g = first + t
            let img = g / tpi, ka = g % tpi
            let kb = min(tpi, ka + (nt - t))
            let yc = dy + (img * cout + c) * hw
            let iy0 = 2 * (ka / tw), iy1 = min(h, 2 * ((kb - 1) / tw) + 2)
            for iy in iy0..<iy1 { (qbuf + iy * wq).update(from: yc + iy * w, count: w) }
            let o = d + c * nt + t - ka
            var k = ka, ty = ka / tw, tx = ka - ty * tw
            while k < kb {
                if k + 8 <= kb {
                    if tx + 8 <= tw {
                        let p = UnsafeRawPointer(qbuf + 2 * ty * wq + 2 * tx)
                        let a = p.loadUnaligned(as: SIMD16<Float>.self)
                        let b = p.loadUnaligned(fromByteOffset: wq * 4, as: SIMD16<Float>.self)
                        store(o + k, a.evenHalf, a.oddHalf, b.evenHalf, b.oddHalf)
                        k += 8; tx += 8
                        if tx == tw { tx = 0; ty += 1 }
                        continue
                    }
                    var y00 = SIMD8<Float>(), y01 = SIMD8<Float>(), y10 = SIMD8<Float>(), y11 = SIMD8<Float>()
                    for l in 0..<8 {   // gather 8 tiles that span tile rows
                        let p = qbuf + Int(offs[k + l])
                        y00[l] = p[0]; y01[l] = p[1]; y10[l] = p[wq]; y11[l] = p[wq + 1]
                    }
                    store(o + k, y00, y01, y10, y11)
                    k += 8; tx += 8
                    while tx >= tw { tx -= tw; ty += 1 }
                    continue
                }
                let p = qbuf + Int(offs[k])
                let y00 = p[0], y01 = p[1], y10 = p[wq], y11 = p[wq + 1]
                let p00 = y00, p01 = y00 + y01, p02 = y00 - y01, p03 = -y01
                let p10 = y10, p11 = y10 + y11, p12 = y10 - y11, p13 = -y11
                let q = o + k
                q[0] = p00; q[plane] = p01; q[2 * plane] = p02; q[3 * plane] = p03
                q[4 * plane] = p00 + p10; q[5 * plane] = p01 + p11; q[6 * plane] = p02 + p12; q[7 * plane] = p03 + p13
                q[8 * plane] = p00 - p10; q[9 * plane] = p01 - p11; q[10 * plane] = p02 - p12; q[11 * plane] = p03 - p13
                q[12 * plane] = -p10; q[13 * plane] = -p11; q[14 * plane] = -p12; q[15 * plane] = -p13
                k += 1; tx += 1
                if tx == tw { tx = 0; ty += 1 }
            }
            t += kb - ka
        }
    }
}
