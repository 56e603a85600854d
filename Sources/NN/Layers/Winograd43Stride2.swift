// Winograd F(4x4, 3x3) with stride 2 for the 3x3 stride-2 padding-1 convolutions that open ResNet
// stages 2-4: 81 multiplications per 4x4 output tile and channel pair against im2col's 144 (the
// algorithm, its matrices and transforms: Sources/Kernels/Winograd43Stride2Transforms.swift).
//   weights: U = G g G^T          (9x9 per (cout, cin)),  stored U[81][Cout][Cin] (dX: U^T[81][Cin][Cout])
//   input:   V = B^T d B          (9x9 per (cin, tile)),  stored V[81][Cin][T]; tile (ty, tx) reads the
//            9x9 input patch at (8ty - 1, 8tx - 1) (zero outside the map) and writes the 4x4 output block at (4ty, 4tx)
//   forward: M[xi] = U[xi] · V[xi]                         (81 gemms [Cout x Cin] x [Cin x T]),  Y = A^T M A
//   backward, per block of images, the exact adjoint of the forward with DY = A dY A^T shared by both halves:
//            Mw[xi] += DY[xi] · V[xi]^T,  dW = G^T (Σ_workers Mw) G       (dL/dg)
//            MX[xi] = U^T[xi] · DY[xi],   dX = Σ_t B MX_t B^T on the tile's patch   (dL/dd)
// Blocks hold whole images (dX sums the patches of an image's neighbouring tiles).

/// Tiles (gemm columns) per block, in whole images (at least one): each worker needs
/// 81 * (Cin + Cout) * this many floats of scratch.
nonisolated(unsafe) public var winograd43s2TargetTiles = 64

/// Output tiles of one image and the padded planes' row lengths.
struct Winograd43s2Geometry {
    let h, w, ho, wo, th, tw, tpi, lw, lw4: Int
    init(h: Int, w: Int) {
        self.h = h; self.w = w
        ho = (h - 1) / 2 + 1; wo = (w - 1) / 2 + 1
        th = (ho + 3) / 4; tw = (wo + 3) / 4; tpi = th * tw
        lw = tw + 8; lw4 = tw + 8   // 8-lane loads of a tile row's last group stay inside a phase row
    }
    /// The zero-bordered input (or input-gradient) plane in phase layout modulo 8.
    var padded: Int { (8 * th + 1) * 8 * lw }
    /// dY, zero beyond ho x wo, in phase layout modulo 4.
    var paddedDY: Int { 4 * th * 4 * lw4 }
    /// Whole images per block: about `winograd43s2TargetTiles` tiles.
    func blockImages(_ count: Int) -> Int { max(1, min(count, winograd43s2TargetTiles / tpi)) }
}

/// Gemm columns of a whole batch: its 4x4 output tiles.
public func winograd43s2Columns(n: Int, h: Int, w: Int) -> Int { n * Winograd43s2Geometry(h: h, w: w).tpi }

/// U[81][Cout][Cin] (or, `transposed`, U^T[81][Cin][Cout]) of weight [Cout, Cin, 3, 3], split over
/// the workers by rows (output channels, or input channels transposed), into `u`.
func winograd43s2Weights(_ w: UnsafePointer<Float>, cout: Int, cin: Int, into u: UnsafeMutablePointer<Float>, transposed: Bool) {
    Parallel.forRanges(transposed ? cin : cout) { rows in
        winograd43s2TransformWeights(w, cout: cout, cin: cin, into: u, transposed: transposed, rows: rows)
    }
}

/// Forward for images `images` of x (N, Cin, H, W) -> y (N, Cout, Ho, Wo), adding bias if non-nil; `u`
/// from `winograd43s2Weights`. Safe to call concurrently for disjoint image ranges with distinct `worker` ids.
public func winograd43s2Forward(x: UnsafePointer<Float>, u: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                                y: UnsafeMutablePointer<Float>, cin: Int, cout: Int, h: Int, w: Int,
                                images: Range<Int>, worker: Int) {
    if images.isEmpty || h <= 0 || w <= 0 || cin <= 0 || cout <= 0 { return }
    let geo = Winograd43s2Geometry(h: h, w: w)
    let per = geo.blockImages(images.count), tmax = per * geo.tpi
    let vPlaneMax = cin * tmax + 16, mPlaneMax = cout * tmax + 16   // planes padded by a cache line (and an 8-lane store)
    let scratch = WinogradScratch.shared.buffer(worker: worker, count: 81 * (vPlaneMax + mPlaneMax) + geo.padded)
    let v = scratch, m = v + 81 * vPlaneMax, pbuf = m + 81 * mPlaneMax
    pbuf.update(repeating: 0, count: geo.padded)   // the zero border stays: only the interior is written
    var img0 = images.lowerBound
    while img0 < images.upperBound {
        let block = img0 ..< min(images.upperBound, img0 + per), nt = block.count * geo.tpi
        let vPlane = cin * nt + 16, mPlane = cout * nt + 16
        winograd43s2InputTransform(x, v, pbuf, geo, plane: vPlane, cin: cin, images: block, ld: nt)
        for xi in 0..<81 {
            gemmInBands(m: cout, n: nt, k: cin, a: u + xi * cout * cin, lda: cin, b: v + xi * vPlane, ldb: nt, c: m + xi * mPlane, ldc: nt)
        }
        winograd43s2OutputTransform(m, y, bias, plane: mPlane, geo, cout: cout, images: block, ld: nt)
        img0 = block.upperBound
    }
}

/// Backward for images `images`: Mw[81][Cout][Cin] = Σ over their tiles of DY ⊙ V, returned in
/// `worker`'s scratch (valid until its next call; planes cout * cin + 16 apart; nil for no images), and,
/// with `ut` (U^T from `winograd43s2Weights(transposed: true)`) and `dx`, the images' dX (OVERWRITTEN).
/// Safe to call concurrently for disjoint image ranges with distinct `worker` ids.
public func winograd43s2Backward(x: UnsafePointer<Float>, dy: UnsafePointer<Float>, ut: UnsafePointer<Float>?,
                                 dx: UnsafeMutablePointer<Float>?, cin: Int, cout: Int, h: Int, w: Int,
                                 images: Range<Int>, worker: Int) -> UnsafePointer<Float>? {
    if images.isEmpty || h <= 0 || w <= 0 || cin <= 0 || cout <= 0 { return nil }
    let geo = Winograd43s2Geometry(h: h, w: w)
    let per = geo.blockImages(images.count), tmax = per * geo.tpi
    let vPlaneMax = cin * tmax + 16, dPlaneMax = cout * tmax + 16, mPlane = cout * cin + 16
    let scratch = winogradDWScratch.buffer(worker: worker, count: 81 * (vPlaneMax + dPlaneMax + mPlane) + 2 * geo.padded + geo.paddedDY)
    let mw = scratch, v = mw + 81 * mPlane, dt = v + 81 * vPlaneMax
    let pbuf = dt + 81 * dPlaneMax, rbuf = pbuf + geo.padded, qbuf = rbuf + geo.padded
    pbuf.update(repeating: 0, count: 2 * geo.padded + geo.paddedDY)   // pbuf, rbuf and qbuf
    var img0 = images.lowerBound, first = true
    while img0 < images.upperBound {
        let block = img0 ..< min(images.upperBound, img0 + per), nt = block.count * geo.tpi
        let vPlane = cin * nt + 16, dPlane = cout * nt + 16
        winograd43s2InputTransform(x, v, pbuf, geo, plane: vPlane, cin: cin, images: block, ld: nt)
        winograd43s2OutputGradientTransform(dy, dt, qbuf, geo, plane: dPlane, cout: cout, images: block, ld: nt)
        for xi in 0..<81 {   // Mw[xi] (+)= DY[xi] · V[xi]^T
            gemm(transB: true, m: cout, n: cin, k: nt, a: dt + xi * dPlane, lda: nt, b: v + xi * vPlane, ldb: nt,
                 beta: first ? 0 : 1, c: mw + xi * mPlane, ldc: cin)
        }
        first = false
        if let ut, let dx {   // MX[xi] = U^T[xi] · DY[xi], into V's planes (read for the last time above)
            for xi in 0..<81 {
                gemmInBands(m: cin, n: nt, k: cout, a: ut + xi * cin * cout, lda: cout, b: dt + xi * dPlane, ldb: nt,
                            c: v + xi * vPlane, ldc: nt)
            }
            winograd43s2InputGradientTransform(v, dx, rbuf, geo, plane: vPlane, cin: cin, images: block, ld: nt)
        }
        img0 = block.upperBound
    }
    return UnsafePointer(mw)
}
