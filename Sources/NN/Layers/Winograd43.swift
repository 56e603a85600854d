// Winograd F(4x4, 3x3) (Lavin & Gray 2016) for 3x3 kernels, stride 1, padding 1, NCHW: 36
// multiplications per 4x4 output tile against F(2x2, 3x3)'s 64 and im2col's 144. Conv2D uses it
// for the forward pass and for dX (the same convolution of dY with W transposed and rotated 180°).
//   weights: U = G g G^T        (6x6 per (cout, cin)),   stored U[36][Cout][Cin]
//   input:   V = B^T d B        (6x6 per (cin, tile)),   stored V[36][Cin][T]
//   product: M[xi] = U[xi] * V[xi]  (36 row-major gemms [Cout x Cin] x [Cin x T])
//   output:  Y(4x4) = A^T M A
// with the interpolation points 0, ±1, ±2, ∞ (B, G and A: Sources/Kernels/Winograd43Transforms.swift).
// Tile (ty, tx) reads the 6x6 input patch at (4ty - 1, 4tx - 1) (zero outside the image) and writes
// the outputs of its 4x4 block that lie inside H x W. Transforms run on 8 tiles (or 8 kernels) at
// once in SIMD8 lanes (Sources/Kernels/Winograd43Transforms.swift, built per instruction set); the
// 36 gemms dominate. This file holds the passes around them: blocks, scratch, workers, gemms.

/// Tiles (gemm columns) per block: each worker needs 36 * (Cin + Cout) * this many floats of scratch.
nonisolated(unsafe) public var winograd43TargetTiles = 64

/// Forward for images `images` of x (N, Cin, H, W) -> y (N, Cout, H, W), adding bias if non-nil;
/// `u` from winograd43TransformWeights. Safe to call concurrently for disjoint image ranges with
/// distinct `worker` ids (scratch per worker).
public func winograd43Forward(x: UnsafePointer<Float>, u: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                              y: UnsafeMutablePointer<Float>, cin: Int, cout: Int, h: Int, w: Int,
                              images: Range<Int>, worker: Int) {
    if images.isEmpty || h <= 0 || w <= 0 { return }
    let th = (h + 3) / 4, tw = (w + 3) / 4, tpi = th * tw
    // The zero-padded plane (padding 1) in phase layout: column 4l + j of padded row r is at
    // (r * 4 + j) * lw + l, so column j of 8 tiles side by side is one contiguous 8-float load.
    let lw = tw + 8, padded = (4 * th + 2) * 4 * lw
    let total = images.count * tpi
    let blocks = max(1, (total + winograd43TargetTiles / 2) / max(winograd43TargetTiles, 1))
    let tmax = (total + blocks - 1) / blocks
    // Planes padded by a cache line (and room for a full 8-lane store past the last tile).
    let vPlaneMax = cin * tmax + 16, mPlaneMax = cout * tmax + 16
    let scratch = WinogradScratch.shared.buffer(worker: worker, count: 36 * (vPlaneMax + mPlaneMax) + padded)
    let v = scratch, m = scratch + 36 * vPlaneMax, pbuf = m + 36 * mPlaneMax
    pbuf.update(repeating: 0, count: padded)   // the zero border stays: only the interior is written
    var t0 = 0
    while t0 < total {
        let nt = min(tmax, total - t0)
        let first = images.lowerBound * tpi + t0
        let vPlane = cin * nt + 16, mPlane = cout * nt + 16
        winograd43InputTransform(x, v, pbuf, Winograd43Geometry(h: h, w: w, tw: tw, tpi: tpi, lw: lw),
                                 plane: vPlane, cin: cin, first: first, nt: nt)
        for xi in 0..<36 {
            gemmInBands(m: cout, n: nt, k: cin, a: u + xi * cout * cin, lda: cin, b: v + xi * vPlane, ldb: nt, c: m + xi * mPlane, ldc: nt)
        }
        winograd43OutputTransform(m, y, bias, plane: mPlane, cout: cout, h: h, w: w, tw: tw, tpi: tpi, first: first, nt: nt)
        t0 += nt
    }
}

/// Forward (or dX) for layers with few tiles and many channels (stage 4 of ResNet-18 at 224x224,
/// batch 16: 64 tiles, 512 x 512 channels), where U[36][Cout][Cin] would be 4x the tiles' V and M and
/// written to memory and read back every pass: the whole batch is one block, its input transform
/// split over the workers by input channels; then each worker takes chunks of `rows` output
/// channels, transforms just their weights into a U band that stays in cache, multiplies it by V
/// and transforms the band's outputs. Each output is the same sum as in `winograd43Forward`.
/// `w` is the layer's weight [Cout, Cin, 3, 3]; `forInputGradient` computes dX = conv(dY, W') as
/// `winograd43TransformWeights` does (x is then dY, cin the layer's Cout, cout its Cin).
public func winograd43ForwardByChannels(x: UnsafePointer<Float>, w: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                                        y: UnsafeMutablePointer<Float>, cin: Int, cout: Int, h: Int, w width: Int, n: Int,
                                        forInputGradient: Bool, workers: Int, rows: Int) {
    if n <= 0 || h <= 0 || width <= 0 || cin <= 0 || cout <= 0 { return }
    let th = (h + 3) / 4, tw = (width + 3) / 4, tpi = th * tw
    let lw = tw + 8, padded = (4 * th + 2) * 4 * lw
    let nt = winograd43Columns(n: n, h: h, w: width), ld = (nt + 15) / 8 * 8   // an 8-lane store past a row's end stays in the row
    let vPlane = cin * ld + 16
    let v = winograd43ForwardShared.buffer(worker: 0, count: 36 * vPlane)
    let geo = Winograd43Geometry(h: h, w: width, tw: tw, tpi: tpi, lw: lw)
    let parts = max(1, min(workers, cout))
    let (layerOut, layerIn) = forInputGradient ? (cin, cout) : (cout, cin)   // the layer's weight is [Cout, Cin]
    Parallel.forRanges(parts) { ws in for wk in ws {
        let pbuf = winograd43ForwardPadded.buffer(worker: wk, count: padded)
        pbuf.update(repeating: 0, count: padded)
        winograd43InputTransform(x, v, pbuf, geo, plane: vPlane, cin: cin, first: 0, nt: nt,
                                 channels: cin * wk / parts ..< cin * (wk + 1) / parts, ld: ld)
    }}
    forwardByOutputChunks(v: v, vPlane: vPlane, ld: ld, k: nt, planes: 36, cin: cin, cout: cout, rows: rows, parts: parts,
                          transformWeights: { band, u, uPlane in
                              winograd43TransformWeights(w, cout: layerOut, cin: layerIn, into: u, forInputGradient: forInputGradient,
                                                         rows: band, band: uPlane) },
                          transformOutput: { m, mPlane, band in
                              winograd43OutputTransform(m, y, bias, plane: mPlane, cout: cout, h: h, w: width, tw: tw, tpi: tpi,
                                              first: 0, nt: nt, channels: band, ld: ld) })
}

/// V of `winograd43ForwardByChannels`, shared by the workers, and each worker's zero-bordered plane.
private let winograd43ForwardShared = WinogradScratch(), winograd43ForwardPadded = WinogradScratch()

/// Gemm columns of a whole batch in F(4x4) form: its 4x4 output tiles.
public func winograd43Columns(n: Int, h: Int, w: Int) -> Int { n * ((h + 3) / 4) * ((w + 3) / 4) }

/// Tile geometry shared by the F(4x4) passes: map h x w, tw tiles per tile row, tpi per image, and
/// lw, the length of a phase row of the padded plane.
struct Winograd43Geometry {
    let h, w, tw, tpi, lw: Int
}
