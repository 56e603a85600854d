// Thin wrappers over OpenBLAS and libm shared by the layers.
import CBLAS
#if canImport(Glibc)
import Glibc
#endif

/// C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C, row-major.
@inline(__always)
public func gemm(transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
                 alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
                 b: UnsafePointer<Float>, ldb: Int,
                 beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}

/// C[M,N] = A[M,K] * B[K,N] (no transposes, beta 0), row-major, as bands of rows of C (or, where a
/// band would be under 16 rows, of columns) small enough for OpenBLAS's small-matrix path (M·N·K ≤ 10⁶
/// in its SkylakeX and Cooperlake kernels): that path skips packing, and on the Winograd planes
/// (e.g. 512 x 32 x 512) ran at 100–115 GFLOP/s on one core against 61–87 for the same product in one
/// call (docs/performance.md). Bands are whole multiples of 16 and as even as that allows. Each
/// element of C sums the same products; a kernel may order them differently for a narrower product
/// (Haswell's edge kernels do: last-bit differences).
@inline(__always)
public func gemmInBands(m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int,
                        b: UnsafePointer<Float>, ldb: Int, c: UnsafeMutablePointer<Float>, ldc: Int) {
    @inline(__always) func band(_ total: Int, _ fit: Int) -> Int {   // fit >= 16
        let bands = (total + fit / 16 * 16 - 1) / (fit / 16 * 16)
        return ((total + bands - 1) / bands + 15) / 16 * 16
    }
    let rowFit = gemmSmallLimit / max(1, n * k), colFit = gemmSmallLimit / max(1, m * k)
    if m * n * k <= gemmSmallLimit || (rowFit < 16 && colFit < 16) {
        gemm(m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc)
    } else if rowFit >= 16 {
        let rows = band(m, rowFit)
        var r = 0
        while r < m {
            gemm(m: min(rows, m - r), n: n, k: k, a: a + r * lda, lda: lda, b: b, ldb: ldb, c: c + r * ldc, ldc: ldc)
            r += rows
        }
    } else {
        let cols = band(n, colFit)
        var j = 0
        while j < n {
            gemm(m: m, n: min(cols, n - j), k: k, a: a, lda: lda, b: b + j, ldb: ldb, c: c + j, ldc: ldc)
            j += cols
        }
    }
}

/// The largest M·N·K OpenBLAS 0.3.21 hands to its small-matrix kernels (kernel/x86_64/
/// sgemm_small_kernel_permit_skylakex.c). 0 turns the banding off.
nonisolated(unsafe) public var gemmSmallLimit = 1_000_000

@inline(__always) public func expf_(_ x: Float) -> Float { expf(x) }
@inline(__always) public func logf_(_ x: Float) -> Float { logf(x) }

// MARK: Vectorized reductions
// A plain `s += p[j]` loop is a chain of dependent scalar adds (the compiler may not reorder
// float additions); these keep 16 (or 4 Double) partial sums in SIMD registers (~5x faster).

/// sum(p[0..<n])
@inline(__always)
public func sumFloats(_ p: UnsafePointer<Float>, _ n: Int) -> Float {
    var s = SIMD16<Float>(repeating: 0)
    var j = 0
    while j + 16 <= n { s += UnsafeRawPointer(p + j).loadUnaligned(as: SIMD16<Float>.self); j += 16 }
    var a = s.sum()
    while j < n { a += p[j]; j += 1 }
    return a
}

/// out[i] = y[i] > 0 ? g[i] : 0 — the ReLU backward mask (a NaN y masks too, as PyTorch's), 16 lanes at a time.
@inline(__always)
public func reluMask(_ y: UnsafePointer<Float>, _ g: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, _ n: Int) {
    var j = 0
    let zero = SIMD16<Float>(repeating: 0)
    while j + 16 <= n {
        let yv = UnsafeRawPointer(y + j).loadUnaligned(as: SIMD16<Float>.self)
        let gv = UnsafeRawPointer(g + j).loadUnaligned(as: SIMD16<Float>.self)
        UnsafeMutableRawPointer(out + j).storeBytes(of: gv.replacing(with: zero, where: .!(yv .> zero)), as: SIMD16<Float>.self)
        j += 16
    }
    while j < n { out[j] = y[j] > 0 ? g[j] : 0; j += 1 }
}
