// Convolution on small maps as one dense matrix (Conv2D's third strategy, beside im2col and Winograd).
// Per image a convolution is a linear map from Cin·H·W inputs to Cout·Ho·Wo outputs; its matrix
//   Wu[(co,oy,ox), (ci,iy,ix)] = W[co, ci, iy - oy·s + p, ix - ox·s + p]  (0 where that tap is outside the kernel)
// has Ho·Wo·H·W entries per channel pair against im2col's Ho·Wo·k² multiplications, so on maps with
// no more pixels than the kernel has taps (H·W ≤ k²: the 2×2 and 1×1 maps of ResNet-18 at 28×28,
// where padding makes most of im2col's columns zeros) it does no more work, needs no im2col, and
// the NCHW batch already is the row-major matrix X[N, Cin·H·W], so each pass is one large gemm:
//   forward:  Y[N, Cout·Ho·Wo] = X · Wu^T (+ bias)
//   backward: dX = dY · Wu ;  dWu = dY^T · X ;  dW[co,ci,ki,kj] += Σ_(oy,ox) dWu[(co,oy,ox), (ci, oy·s−p+ki, ox·s−p+kj)]

/// Geometry of one unrolled convolution.
struct UnrolledConv {
    /// Largest matrix used (16 MiB of floats); larger ones fall back to im2col.
    nonisolated(unsafe) static var maxEntries = 1 << 22
    let cin, cout, k, s, p, h, w, ho, wo: Int
    var rows: Int { cout * ho * wo }     // Wu's rows: outputs per image
    var cols: Int { cin * h * w }        // Wu's columns: inputs per image

    /// Calls body(tap index in W, column in Wu's row block) for every (ci, ki, kj) that lands inside
    /// the image for output pixel (oy, ox), with `co` fixed by the caller.
    @inline(__always)
    func forEachTap(oy: Int, ox: Int, _ body: (Int, Int) -> Void) {
        for ki in 0..<k {
            let iy = oy * s - p + ki
            guard iy >= 0 && iy < h else { continue }
            for kj in 0..<k {
                let ix = ox * s - p + kj
                guard ix >= 0 && ix < w else { continue }
                for ci in 0..<cin { body((ci * k + ki) * k + kj, ci * h * w + iy * w + ix) }
            }
        }
    }

    /// Wu for output channels `channels` (rows co·Ho·Wo ..< (co+1)·Ho·Wo), from W [Cout, Cin, k, k].
    func build(_ weight: UnsafePointer<Float>, into wu: UnsafeMutablePointer<Float>, channels: Range<Int>) {
        let hw = ho * wo, kk = cin * k * k
        (wu + channels.lowerBound * hw * cols).update(repeating: 0, count: channels.count * hw * cols)
        for co in channels {
            let wc = weight + co * kk
            for oy in 0..<ho { for ox in 0..<wo {
                let row = wu + (co * hw + oy * wo + ox) * cols
                forEachTap(oy: oy, ox: ox) { tap, col in row[col] = wc[tap] }
            }}
        }
    }

    /// dW[co] += the sum of dWu's entries that share a tap, for output channels `channels`.
    func fold(_ dwu: UnsafePointer<Float>, into dw: UnsafeMutablePointer<Float>, channels: Range<Int>) {
        let hw = ho * wo, kk = cin * k * k
        for co in channels {
            let dc = dw + co * kk
            for oy in 0..<ho { for ox in 0..<wo {
                let row = dwu + (co * hw + oy * wo + ox) * cols
                forEachTap(oy: oy, ox: ox) { tap, col in dc[tap] += row[col] }
            }}
        }
    }
}
