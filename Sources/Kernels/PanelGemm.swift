// The Winograd-domain product of the weight gradients, Mw[co][ci] = Σ_t DY[co][t] · V[ci][t], as our
// own gemm: its depth is the batch's tiles (64 for ResNet-18's stage 4 at batch 16, 224x224), too
// shallow for OpenBLAS, which packs V again for every block of output channels (its sgemm_incopy
// took a quarter of the layer's dW; 32x512x64 per plane ran at 53-69 GFLOP/s on one core).
// V is packed once per layer into panels of 16 rows, t-major, so the inner loop loads 32 columns of
// V as two vectors and broadcasts one DY value per row: the panel stays in L1 across the rows.
//
// Every C value is one fused multiply-add chain over t in order, from 0 (or from C when
// accumulating), whatever the tile shape: the AVX-512 build's 8x32 tiles, the AVX2 build's 4x16 and
// the single rows of the edges give the same bits. FMA is what makes it fast (without it, 73 against
// 101 GFLOP/s, no better than OpenBLAS): the baseline build (SSE2, no FMA) would emulate it, so NN
// calls this only from the AVX2 and AVX-512 sets (Sources/NN/Core/KernelSet.swift).

/// Floats `packPanels` writes for n rows of depth k: an even number of 16-row panels, k x 16 each.
@inlinable
public func panelFloats(rows n: Int, k: Int) -> Int { panelCount(rows: n) * 16 * k }

/// The 16-row panels of n rows: an even number, so the AVX-512 build's 32-column tiles never read past them.
@inlinable
public func panelCount(rows n: Int) -> Int { (n + 31) / 32 * 2 }

/// dst[p][t][j] = src[(16 p + j) * ld + t] (t < k) for every panel `panelFloats` counts, zero for
/// rows 16 p + j ≥ n.
public func packPanels(_ src: UnsafePointer<Float>, ld: Int, n: Int, k: Int, into dst: UnsafeMutablePointer<Float>) {
    for p in 0..<panelCount(rows: n) {
        let out = dst + p * k * 16, r0 = 16 * p, rows = max(0, min(16, n - r0))
        for t in 0..<k {
            var v = SIMD16<Float>()
            for j in 0..<rows { v[j] = src[(r0 + j) * ld + t] }
            UnsafeMutableRawPointer(out + t * 16).storeBytes(of: v, as: SIMD16<Float>.self)
        }
    }
}

public typealias Lanes16 = SIMD16<Float>
@inline(__always) @usableFromInline func load16(_ p: UnsafePointer<Float>) -> Lanes16 { UnsafeRawPointer(p).loadUnaligned(as: Lanes16.self) }

/// Stores `v` at c[0 ..< count] (count ≤ 16).
@inline(__always) @usableFromInline func store16(_ v: Lanes16, _ c: UnsafeMutablePointer<Float>, count: Int) {
    if count >= 16 { UnsafeMutableRawPointer(c).storeBytes(of: v, as: Lanes16.self); return }
    for j in 0..<max(0, count) { c[j] = v[j] }
}
@inline(__always) @usableFromInline func start16(_ c: UnsafeMutablePointer<Float>, count: Int, _ accumulate: Bool) -> Lanes16 {
    guard accumulate, count > 0 else { return Lanes16() }
    if count >= 16 { return load16(c) }
    var v = Lanes16()
    for j in 0..<count { v[j] = c[j] }
    return v
}

/// C[i][j] = (accumulate ? C[i][j] : 0) + Σ_t a[i * lda + t] · B[t][j] for i < m, j < n, with B
/// given as `packPanels` panels of depth k (B[t][j] = bp[(j / 16) k 16 + t 16 + j % 16]).
public func panelGemm(m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int, panels bp: UnsafePointer<Float>,
                      c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool) {
    if m <= 0 || n <= 0 { return }
    #if KERNELS_AVX512
    let tileRows = 8, rowBlock = 64   // rows of A per pass over the panels (64 x k floats stay in L1/L2)
    #else
    let tileRows = 4, rowBlock = 64
    #endif
    var r0 = 0
    while r0 < m {
        let re = min(m, r0 + rowBlock)
        var j = 0
        while j < n {
            let b0 = bp + (j / 16) * k * 16
            var r = r0
            while r + tileRows <= re {
                #if KERNELS_AVX512
                tile8x32(a + r * lda, lda: lda, b0, k: k, c + r * ldc + j, ldc: ldc, cols: n - j, accumulate)
                #else
                tile4x16(a + r * lda, lda: lda, b0, k: k, c + r * ldc + j, ldc: ldc, cols: n - j, accumulate)
                #endif
                r += tileRows
            }
            while r < re {
                row1x16(a + r * lda, b0, k: k, c + r * ldc + j, cols: n - j, accumulate)
                #if KERNELS_AVX512
                row1x16(a + r * lda, b0 + k * 16, k: k, c + r * ldc + j + 16, cols: n - j - 16, accumulate)
                #endif
                r += 1
            }
            #if KERNELS_AVX512
            j += 32
            #else
            j += 16
            #endif
        }
        r0 = re
    }
}

/// One row: c[0 ..< min(cols, 16)] of one panel.
@inline(__always) @usableFromInline
func row1x16(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, k: Int, _ c: UnsafeMutablePointer<Float>, cols: Int, _ acc: Bool) {
    if cols <= 0 { return }
    var s = start16(c, count: cols, acc)
    for t in 0..<k { s = s.addingProduct(Lanes16(repeating: a[t]), load16(b + t * 16)) }
    store16(s, c, count: cols)
}

/// 4 rows x one panel: 4 accumulators of 16 lanes (8 AVX2 registers).
@inline(__always) @usableFromInline
func tile4x16(_ a: UnsafePointer<Float>, lda: Int, _ b: UnsafePointer<Float>, k: Int, _ c: UnsafeMutablePointer<Float>, ldc: Int,
              cols: Int, _ acc: Bool) {
    var c0 = start16(c, count: cols, acc), c1 = start16(c + ldc, count: cols, acc)
    var c2 = start16(c + 2 * ldc, count: cols, acc), c3 = start16(c + 3 * ldc, count: cols, acc)
    let a1 = a + lda, a2 = a + 2 * lda, a3 = a + 3 * lda
    for t in 0..<k {
        let x = load16(b + t * 16)
        c0 = c0.addingProduct(Lanes16(repeating: a[t]), x)
        c1 = c1.addingProduct(Lanes16(repeating: a1[t]), x)
        c2 = c2.addingProduct(Lanes16(repeating: a2[t]), x)
        c3 = c3.addingProduct(Lanes16(repeating: a3[t]), x)
    }
    store16(c0, c, count: cols); store16(c1, c + ldc, count: cols)
    store16(c2, c + 2 * ldc, count: cols); store16(c3, c + 3 * ldc, count: cols)
}

/// 8 rows x two panels: 16 accumulators of 16 lanes (half the AVX-512 registers), two loads of V and
/// eight broadcasts of DY per 16 FMAs.
@inline(__always) @usableFromInline
func tile8x32(_ a: UnsafePointer<Float>, lda: Int, _ b: UnsafePointer<Float>, k: Int, _ c: UnsafeMutablePointer<Float>, ldc: Int,
              cols: Int, _ acc: Bool) {
    let n0 = cols, n1 = cols - 16
    var c00 = start16(c, count: n0, acc), c01 = start16(c + 16, count: n1, acc)
    var c10 = start16(c + ldc, count: n0, acc), c11 = start16(c + ldc + 16, count: n1, acc)
    var c20 = start16(c + 2 * ldc, count: n0, acc), c21 = start16(c + 2 * ldc + 16, count: n1, acc)
    var c30 = start16(c + 3 * ldc, count: n0, acc), c31 = start16(c + 3 * ldc + 16, count: n1, acc)
    var c40 = start16(c + 4 * ldc, count: n0, acc), c41 = start16(c + 4 * ldc + 16, count: n1, acc)
    var c50 = start16(c + 5 * ldc, count: n0, acc), c51 = start16(c + 5 * ldc + 16, count: n1, acc)
    var c60 = start16(c + 6 * ldc, count: n0, acc), c61 = start16(c + 6 * ldc + 16, count: n1, acc)
    var c70 = start16(c + 7 * ldc, count: n0, acc), c71 = start16(c + 7 * ldc + 16, count: n1, acc)
    let b1 = b + k * 16
    for t in 0..<k {
        let x0 = load16(b + t * 16), x1 = load16(b1 + t * 16)
        var s = Lanes16(repeating: a[t]); c00 = c00.addingProduct(s, x0); c01 = c01.addingProduct(s, x1)
        s = Lanes16(repeating: a[lda + t]); c10 = c10.addingProduct(s, x0); c11 = c11.addingProduct(s, x1)
        s = Lanes16(repeating: a[2 * lda + t]); c20 = c20.addingProduct(s, x0); c21 = c21.addingProduct(s, x1)
        s = Lanes16(repeating: a[3 * lda + t]); c30 = c30.addingProduct(s, x0); c31 = c31.addingProduct(s, x1)
        s = Lanes16(repeating: a[4 * lda + t]); c40 = c40.addingProduct(s, x0); c41 = c41.addingProduct(s, x1)
        s = Lanes16(repeating: a[5 * lda + t]); c50 = c50.addingProduct(s, x0); c51 = c51.addingProduct(s, x1)
        s = Lanes16(repeating: a[6 * lda + t]); c60 = c60.addingProduct(s, x0); c61 = c61.addingProduct(s, x1)
        s = Lanes16(repeating: a[7 * lda + t]); c70 = c70.addingProduct(s, x0); c71 = c71.addingProduct(s, x1)
    }
    store16(c00, c, count: n0); store16(c01, c + 16, count: n1)
    store16(c10, c + ldc, count: n0); store16(c11, c + ldc + 16, count: n1)
    store16(c20, c + 2 * ldc, count: n0); store16(c21, c + 2 * ldc + 16, count: n1)
    store16(c30, c + 3 * ldc, count: n0); store16(c31, c + 3 * ldc + 16, count: n1)
    store16(c40, c + 4 * ldc, count: n0); store16(c41, c + 4 * ldc + 16, count: n1)
    store16(c50, c + 5 * ldc, count: n0); store16(c51, c + 5 * ldc + 16, count: n1)
    store16(c60, c + 6 * ldc, count: n0); store16(c61, c + 6 * ldc + 16, count: n1)
    store16(c70, c + 7 * ldc, count: n0); store16(c71, c + 7 * ldc + 16, count: n1)
}
