// Winograd F(2x2, 3x3) convolution (Lavin & Gray 2016) for 3x3 kernels, stride 1, padding 1, NCHW.
//   weights: U = G g G^T        (4x4 per (cout, cin)),   stored U[16][Cout][Cin]
//   input:   V = B^T d B        (4x4 per (cin, tile)),   stored V[16][Cin][T]
//   product: M[xi] = U[xi] * V[xi]  (16 row-major gemms [Cout x Cin] x [Cin x T]), M[16][Cout][T]
//   output:  Y(2x2) = A^T M A
// Tiles are 4x4 input patches at stride 2 starting at (2*ty - 1, 2*tx - 1) (padding 1); reads
// outside the image are zero (this also covers the right/bottom padding to an even size), and
// outputs beyond H x W are dropped, so odd sizes (3x3, 7x7) work.
// A worker processes its images' tiles in blocks of about `winogradTargetTiles` columns; a block
// may start and end inside an image (tiny maps such as 3x3 have 4 tiles per image).
import Foundation
import Kernels

/// Tiles (gemm columns) per block; each worker needs 16 * (Cin + Cout) * this many floats of scratch.
/// 0 = automatic: 160, fewer from 256 + 256 channels on (min(160, 65536 / (Cin + Cout)), at least 32)
/// so the scratch stays at 4 MiB per worker.
nonisolated(unsafe) public var winogradTargetTiles = 0

/// Per-worker scratch for V and M, safe to request from inside worker threads (Workspace.shared
/// is main-thread only, and its slots belong to Conv2D).
final class WinogradScratch: @unchecked Sendable {
    static let shared = WinogradScratch()
    private let lock = NSLock()
    private var buffers: [UnsafeMutablePointer<Float>] = []
    private var capacities: [Int] = []

    /// Buffer of `worker` with room for at least `count` floats (contents undefined).
    func buffer(worker: Int, count: Int) -> UnsafeMutablePointer<Float> {
        lock.lock(); defer { lock.unlock() }
        while buffers.count <= worker {
            buffers.append(.allocate(capacity: 1)); capacities.append(1)
        }
        if capacities[worker] < count {
            buffers[worker].deallocate()
            buffers[worker] = .allocate(capacity: count)
            buffers[worker].initialize(repeating: 0, count: count)
            capacities[worker] = count
        }
        return buffers[worker]
    }
}

/// The second half of a forward (or dX) by output channels (`winograd43ForwardByChannels`,
/// `winograd33ForwardByChannels`): with V[planes][Cin][ld] of the whole batch (k columns), `parts`
/// workers take the chunks of `rows` output channels one at a time (`Parallel.forItems`), transform
/// just a chunk's weights into a U band in their scratch (`transformWeights(band, u, uPlane)`:
/// U[planes][band][Cin], planes uPlane apart), multiply it by V into M[planes][band][ld] and transform the band's outputs
/// (`transformOutput(m, mPlane, band)`, with row co of the band at m + co * ld).
@inline(__always)
func forwardByOutputChunks(v: UnsafePointer<Float>, vPlane: Int, ld: Int, k: Int, planes: Int, cin: Int, cout: Int,
                           rows: Int, parts: Int,
                           transformWeights: (Range<Int>, UnsafeMutablePointer<Float>, Int) -> Void,
                           transformOutput: (UnsafePointer<Float>, Int, Range<Int>) -> Void) {
    let r = max(1, min(rows, cout)), uPlane = r * cin + 16, mPlane = r * ld + 16, chunks = (cout + r - 1) / r   // planes a cache line apart beyond r * cin (often a multiple of 4 KiB)
    Parallel.forItems(chunks, parts: parts) { wk, chunk in   // chunks write disjoint outputs: handed out as workers finish
        let u = WinogradScratch.shared.buffer(worker: wk, count: planes * (uPlane + mPlane) + 16), m = u + planes * uPlane
        let band = chunk * r ..< min(cout, (chunk + 1) * r)
        transformWeights(band, u, uPlane)
        for xi in 0..<planes {   // M[xi][band][.] = U[xi][band] · V[xi]
            gemmInBands(m: band.count, n: k, k: cin, a: u + xi * uPlane, lda: cin, b: v + xi * vPlane, ldb: ld,
                        c: m + xi * mPlane, ldc: ld)
        }
        transformOutput(m - band.lowerBound * ld, mPlane, band)
    }
}

/// Pre-transformed weights: U[16][Cout][Cin] from W [Cout, Cin, 3, 3]; recompute when weights change (every step).
/// `rows` limits the work to output channels co in rows (to split the transform over threads).
public func winogradTransformWeights(_ w: UnsafePointer<Float>, cout: Int, cin: Int, into u: UnsafeMutablePointer<Float>,
                                     rows: Range<Int>? = nil) {
    let plane = cout * cin
    // Chunks of 64 input channels of one output row go into a small [16][64] buffer, then out as 16
    // contiguous runs: writing the 16 planes (often a multiple of 4 KiB apart) element by element
    // thrashes the cache.
    let tmp = UnsafeMutablePointer<Float>.allocate(capacity: 16 * 64)
    defer { tmp.deallocate() }
    for co in rows ?? 0..<cout {
        var c0 = 0
        while c0 < cin {
            let nc = min(64, cin - c0)
            var j = 0
            while j + 8 <= nc {   // 8 kernels in SIMD8 lanes
                let g = w + (co * cin + c0 + j) * 9
                winogradTransformKernels8(tmp + j, 64) { l, k in g[l * 9 + k] }
                j += 8
            }
            while j < nc {
                let g = w + (co * cin + c0 + j) * 9
                winogradTransformKernel(g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7], g[8], tmp + j, 64)
                j += 1
            }
            spreadRuns(tmp, planes: 16, count: nc, into: u + co * cin + c0, plane: plane)
            c0 += nc
        }
    }
}

/// U for the input gradient of a 3x3 stride-1 pad-1 conv: dX = conv(dY, W') with
/// W'[ci][co][kh][kw] = W[co][ci][2-kh][2-kw]. `u` gets U'[16][Cin][Cout] (W' has Cin outputs and
/// Cout inputs); use it as `winogradForward(x: dY, u: u, bias: nil, y: dX, cin: cout, cout: cin, ...)`.
/// `rows` limits the work to input channels ci in rows (U' rows).
public func winogradTransformWeightsForInputGradient(_ w: UnsafePointer<Float>, cout: Int, cin: Int,
                                                     into u: UnsafeMutablePointer<Float>, rows: Range<Int>? = nil) {
    let plane = cout * cin
    let tmp = UnsafeMutablePointer<Float>.allocate(capacity: 16 * 64)
    defer { tmp.deallocate() }
    for ci in rows ?? 0..<cin {
        var c0 = 0
        while c0 < cout {
            let nc = min(64, cout - c0)
            let step = cin * 9
            var j = 0
            while j + 8 <= nc {   // rotated 180 degrees: g'[k] = g[8 - k]
                let g = w + ((c0 + j) * cin + ci) * 9
                winogradTransformKernels8(tmp + j, 64) { l, k in g[l * step + 8 - k] }
                j += 8
            }
            while j < nc {
                let g = w + ((c0 + j) * cin + ci) * 9
                winogradTransformKernel(g[8], g[7], g[6], g[5], g[4], g[3], g[2], g[1], g[0], tmp + j, 64)
                j += 1
            }
            spreadRuns(tmp, planes: 16, count: nc, into: u + ci * cout + c0, plane: plane)
            c0 += nc
        }
    }
}

/// The same for 8 kernels at once: element k (row-major 3x3) of kernel l is g(l, k); kernel l's
/// results go to u[xi * stride + l].
@inline(__always)
private func winogradTransformKernels8(_ u: UnsafeMutablePointer<Float>, _ stride: Int,
                                       _ g: (Int, Int) -> Float) {
    @inline(__always) func lanes(_ k: Int) -> SIMD8<Float> {
        SIMD8<Float>(g(0, k), g(1, k), g(2, k), g(3, k), g(4, k), g(5, k), g(6, k), g(7, k))
    }
    let half = SIMD8<Float>(repeating: 0.5)
    let g00 = lanes(0), g01 = lanes(1), g02 = lanes(2), g10 = lanes(3), g11 = lanes(4), g12 = lanes(5)
    let g20 = lanes(6), g21 = lanes(7), g22 = lanes(8)
    // t = G g, rows t0..t3 (each 3 columns)
    let t00 = g00, t01 = g01, t02 = g02
    let t10 = half * (g00 + g10 + g20), t11 = half * (g01 + g11 + g21), t12 = half * (g02 + g12 + g22)
    let t20 = half * (g00 - g10 + g20), t21 = half * (g01 - g11 + g21), t22 = half * (g02 - g12 + g22)
    let t30 = g20, t31 = g21, t32 = g22
    let r = UnsafeMutableRawPointer(u), bs = stride * 4
    @inline(__always) func row(_ i: Int, _ a: SIMD8<Float>, _ b: SIMD8<Float>, _ c: SIMD8<Float>) {
        r.storeBytes(of: a, toByteOffset: (i * 4) * bs, as: SIMD8<Float>.self)
        r.storeBytes(of: half * (a + b + c), toByteOffset: (i * 4 + 1) * bs, as: SIMD8<Float>.self)
        r.storeBytes(of: half * (a - b + c), toByteOffset: (i * 4 + 2) * bs, as: SIMD8<Float>.self)
        r.storeBytes(of: c, toByteOffset: (i * 4 + 3) * bs, as: SIMD8<Float>.self)
    }
    row(0, t00, t01, t02); row(1, t10, t11, t12); row(2, t20, t21, t22); row(3, t30, t31, t32)
}

/// u[xi * stride] = (G g G^T)[xi] for one 3x3 kernel g (row-major), G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1].
@inline(__always)
private func winogradTransformKernel(_ g00: Float, _ g01: Float, _ g02: Float,
                                     _ g10: Float, _ g11: Float, _ g12: Float,
                                     _ g20: Float, _ g21: Float, _ g22: Float,
                                     _ u: UnsafeMutablePointer<Float>, _ stride: Int) {
    // t = G g (4x3), as three column vectors over the rows of G
    let c0 = SIMD4<Float>(g00, 0.5 * (g00 + g10 + g20), 0.5 * (g00 - g10 + g20), g20)
    let c1 = SIMD4<Float>(g01, 0.5 * (g01 + g11 + g21), 0.5 * (g01 - g11 + g21), g21)
    let c2 = SIMD4<Float>(g02, 0.5 * (g02 + g12 + g22), 0.5 * (g02 - g12 + g22), g22)
    // (t G^T) columns: u[:,0] = c0, u[:,1] = .5(c0+c1+c2), u[:,2] = .5(c0-c1+c2), u[:,3] = c2
    let u0 = c0, u1 = 0.5 * (c0 + c1 + c2), u2 = 0.5 * (c0 - c1 + c2), u3 = c2
    for r in 0..<4 {
        u[(r * 4 + 0) * stride] = u0[r]
        u[(r * 4 + 1) * stride] = u1[r]
        u[(r * 4 + 2) * stride] = u2[r]
        u[(r * 4 + 3) * stride] = u3[r]
    }
}

/// Forward for images [n0, n1) of x (N, Cin, H, W) -> y (N, Cout, H, W) (stride 1, pad 1), adding bias if non-nil.
/// `u` is winogradTransformWeights' output. Safe to call concurrently for disjoint image ranges with
/// distinct `worker` ids (scratch is per worker, in WinogradScratch, not Workspace.shared).
public func winogradForward(x: UnsafePointer<Float>, u: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                            y: UnsafeMutablePointer<Float>, cin: Int, cout: Int, h: Int, w: Int,
                            images: Range<Int>, worker: Int) {
    if images.isEmpty || h <= 0 || w <= 0 { return }
    let th = (h + 1) / 2, tw = (w + 1) / 2, tpi = th * tw
    let wp = 2 * tw + 2, padded = (2 * th + 2) * wp
    let total = images.count * tpi
    // Blocks of equal size close to the target.
    let target = winogradTargetTiles > 0 ? winogradTargetTiles : max(32, min(160, 65536 / (cin + cout)))
    let blocks = max(1, (total + target / 2) / target)
    let tmax = (total + blocks - 1) / blocks
    // Planes are padded by a cache line so the 16 streams of a transform don't alias in the cache.
    let vPlaneMax = cin * tmax + 16, mPlaneMax = cout * tmax + 16
    let scratch = WinogradScratch.shared.buffer(worker: worker, count: 16 * (vPlaneMax + mPlaneMax) + padded)
    let v = scratch, m = scratch + 16 * vPlaneMax, pbuf = m + 16 * mPlaneMax
    pbuf.update(repeating: 0, count: padded)   // the zero border stays: only the interior is ever written
    // offs[k]: where tile k of an image starts in the padded image
    let offs = UnsafeMutablePointer<Int32>.allocate(capacity: tpi)
    defer { offs.deallocate() }
    for k in 0..<tpi { offs[k] = Int32(2 * (k / tw) * wp + 2 * (k % tw)) }
    let geo = WinogradGeometry(h: h, w: w, tw: tw, tpi: tpi, wp: wp)
    var t0 = 0
    while t0 < total {
        let nt = min(tmax, total - t0)
        let first = images.lowerBound * tpi + t0   // global index of the block's first tile
        let vPlane = cin * nt + 16, mPlane = cout * nt + 16
        winogradInputTransform(x, v, pbuf, offs, geo, plane: vPlane, cin: cin, first: first, nt: nt)
        for xi in 0..<16 {
            gemmInBands(m: cout, n: nt, k: cin, a: u + xi * cout * cin, lda: cin,
                 b: v + xi * vPlane, ldb: nt, c: m + xi * mPlane, ldc: nt)
        }
        winogradOutputTransform(m, y, bias, geo, plane: mPlane, cout: cout, first: first, nt: nt)
        t0 += nt
    }
}

/// Map geometry shared by the Winograd passes (also WinogradWeightGradient.swift).
struct WinogradGeometry {
    let h, w, tw, tpi, wp: Int
}

/// 16 SIMD8 results of B^T d B for 8 tiles, given e[r] = (d B) of their rows r (as column vectors).
@inline(__always)
func winogradStoreInput(_ q: UnsafeMutablePointer<Float>, _ plane: Int,
                                _ e0: (SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>),
                                _ e1: (SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>),
                                _ e2: (SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>),
                                _ e3: (SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>)) {
    let r = UnsafeMutableRawPointer(q), ps = plane * 4
    @inline(__always) func put(_ k: Int, _ val: SIMD8<Float>) { r.storeBytes(of: val, toByteOffset: k * ps, as: SIMD8<Float>.self) }
    put(0, e0.0 - e2.0); put(1, e0.1 - e2.1); put(2, e0.2 - e2.2); put(3, e0.3 - e2.3)
    put(4, e1.0 + e2.0); put(5, e1.1 + e2.1); put(6, e1.2 + e2.2); put(7, e1.3 + e2.3)
    put(8, e2.0 - e1.0); put(9, e2.1 - e1.1); put(10, e2.2 - e1.2); put(11, e2.3 - e1.3)
    put(12, e1.0 - e3.0); put(13, e1.1 - e3.1); put(14, e1.2 - e3.2); put(15, e1.3 - e3.3)
}

/// V[xi][c][t] = (B^T d B)[xi] for the block's tiles, B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1].
/// Per (channel, image) the needed input rows are copied into the zero-bordered padded image
/// `pbuf` ((2*th + 2) x wp); then 8 tiles at a time are transformed in SIMD8 lanes: contiguous
/// loads (even/odd lanes) along a tile row, gathers across tile rows, scalar for the last < 8.
func winogradInputTransform(_ x: UnsafePointer<Float>, _ v: UnsafeMutablePointer<Float>,
                                    _ pbuf: UnsafeMutablePointer<Float>, _ offs: UnsafePointer<Int32>,
                                    _ geo: WinogradGeometry, plane: Int, cin: Int, first: Int, nt: Int) {
    let (h, w, tw, tpi, wp) = (geo.h, geo.w, geo.tw, geo.tpi, geo.wp)
    let hw = h * w
    for c in 0..<cin {
        var t = 0
        while t < nt {   // the block's tiles [ka, kb) of image img
            let g = first + t
            let img = g / tpi, ka = g % tpi
            let kb = min(tpi, ka + (nt - t))
            let xc = x + (img * cin + c) * hw
            let iy0 = max(0, 2 * (ka / tw) - 1), iy1 = min(h, 2 * ((kb - 1) / tw) + 3)
            for iy in iy0..<iy1 { (pbuf + (iy + 1) * wp + 1).update(from: xc + iy * w, count: w) }
            let o = v + c * nt + t - ka   // o[k]: tile k of this image
            var k = ka, ty = ka / tw, tx = ka - ty * tw
            while k < kb {
                if k + 8 <= kb {
                    if tx + 8 <= tw {   // 8 tiles along one tile row: column j of tile l is element 2l + j
                        let p = UnsafeRawPointer(pbuf + 2 * ty * wp + 2 * tx)
                        @inline(__always) func row(_ r: Int) -> (SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>) {
                            let a = p.loadUnaligned(fromByteOffset: r * wp * 4, as: SIMD16<Float>.self)
                            let b = p.loadUnaligned(fromByteOffset: (r * wp + 2) * 4, as: SIMD16<Float>.self)
                            let c0 = a.evenHalf, c1 = a.oddHalf, c2 = b.evenHalf, c3 = b.oddHalf
                            return (c0 - c2, c1 + c2, c2 - c1, c1 - c3)
                        }
                        winogradStoreInput(o + k, plane, row(0), row(1), row(2), row(3))
                    } else {   // gather 8 tiles that span tile rows
                        @inline(__always) func row(_ r: Int) -> (SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>) {
                            var c0 = SIMD8<Float>(), c1 = SIMD8<Float>(), c2 = SIMD8<Float>(), c3 = SIMD8<Float>()
                            for l in 0..<8 {
                                let p = pbuf + Int(offs[k + l]) + r * wp
                                c0[l] = p[0]; c1[l] = p[1]; c2[l] = p[2]; c3[l] = p[3]
                            }
                            return (c0 - c2, c1 + c2, c2 - c1, c1 - c3)
                        }
                        winogradStoreInput(o + k, plane, row(0), row(1), row(2), row(3))
                    }
                    k += 8; tx += 8
                    while tx >= tw { tx -= tw; ty += 1 }
                    continue
                }
                let p = pbuf + Int(offs[k])
                let r0 = UnsafeRawPointer(p).loadUnaligned(as: SIMD4<Float>.self)
                let r1 = UnsafeRawPointer(p + wp).loadUnaligned(as: SIMD4<Float>.self)
                let r2 = UnsafeRawPointer(p + 2 * wp).loadUnaligned(as: SIMD4<Float>.self)
                let r3 = UnsafeRawPointer(p + 3 * wp).loadUnaligned(as: SIMD4<Float>.self)
                let s0 = r0 - r2, s1 = r1 + r2, s2 = r2 - r1, s3 = r1 - r3
                let q = o + k
                q[0 * plane] = s0[0] - s0[2]; q[1 * plane] = s0[1] + s0[2]; q[2 * plane] = s0[2] - s0[1]; q[3 * plane] = s0[1] - s0[3]
                q[4 * plane] = s1[0] - s1[2]; q[5 * plane] = s1[1] + s1[2]; q[6 * plane] = s1[2] - s1[1]; q[7 * plane] = s1[1] - s1[3]
                q[8 * plane] = s2[0] - s2[2]; q[9 * plane] = s2[1] + s2[2]; q[10 * plane] = s2[2] - s2[1]; q[11 * plane] = s2[1] - s2[3]
                q[12 * plane] = s3[0] - s3[2]; q[13 * plane] = s3[1] + s3[2]; q[14 * plane] = s3[2] - s3[1]; q[15 * plane] = s3[1] - s3[3]
                k += 1; tx += 1
                if tx == tw { tx = 0; ty += 1 }
            }
            t += kb - ka
        }
    }
}

/// y[img][co] 2x2 blocks = A^T M A (+ bias), A^T = [1 1 1 0; 0 1 -1 -1]; outputs beyond H x W dropped.
/// 8 consecutive tiles at a time in SIMD8 lanes (contiguous loads from the 16 planes of M).
private func winogradOutputTransform(_ m: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>,
                                     _ bias: UnsafePointer<Float>?, _ geo: WinogradGeometry,
                                     plane: Int, cout: Int, first: Int, nt: Int) {
    let (h, w, tw, tpi) = (geo.h, geo.w, geo.tw, geo.tpi)
    let hw = h * w
    let img0 = first / tpi, rem0 = first % tpi
    for co in 0..<cout {
        let b = bias?[co] ?? 0
        var img = img0, ty = rem0 / tw, tx = rem0 % tw
        var yc = y + (img * cout + co) * hw
        let mc = m + co * nt
        var t = 0
        while t < nt {
            let n = min(8, nt - t)
            let p = mc + t
            @inline(__always) func ld(_ k: Int) -> SIMD8<Float> {
                if n == 8 { return UnsafeRawPointer(p + k * plane).loadUnaligned(as: SIMD8<Float>.self) }
                var r = SIMD8<Float>()
                for l in 0..<n { r[l] = p[k * plane + l] }
                return r
            }
            let m4 = ld(4), m5 = ld(5), m6 = ld(6), m7 = ld(7), m8 = ld(8), m9 = ld(9), m10 = ld(10), m11 = ld(11)
            let a00 = ld(0) + m4 + m8, a01 = ld(1) + m5 + m9, a02 = ld(2) + m6 + m10, a03 = ld(3) + m7 + m11
            let a10 = m4 - m8 - ld(12), a11 = m5 - m9 - ld(13), a12 = m6 - m10 - ld(14), a13 = m7 - m11 - ld(15)
            let bv = SIMD8<Float>(repeating: b)
            let y00 = a00 + a01 + a02 + bv, y01 = a01 - a02 - a03 + bv
            let y10 = a10 + a11 + a12 + bv, y11 = a11 - a12 - a13 + bv
            for l in 0..<n {
                let oy = 2 * ty, ox = 2 * tx
                let d = yc + oy * w + ox
                if oy + 1 < h && ox + 1 < w {
                    d[0] = y00[l]; d[1] = y01[l]; d[w] = y10[l]; d[w + 1] = y11[l]
                } else {
                    d[0] = y00[l]
                    if ox + 1 < w { d[1] = y01[l] }
                    if oy + 1 < h { d[w] = y10[l]; if ox + 1 < w { d[w + 1] = y11[l] } }
                }
                tx += 1
                if tx == tw {
                    tx = 0; ty += 1
                    if ty * tw == tpi { ty = 0; img += 1; yc = y + (img * cout + co) * hw }
                }
            }
            t += n
        }
    }
}
