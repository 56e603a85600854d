// Thin wrappers over OpenBLAS and libm shared by the layers.
import CBLAS
#if canImport(Glibc)
import Glibc
#endif


public enum BLAS {
    /// Sets OpenBLAS's thread count (1 per rank when ranks share cores).
    /// The layers split their work over `n` worker threads of their own (`Parallel.workers`),
    /// each calling single-threaded OpenBLAS: no BLAS thread pool spinning against our workers.
    public static func setThreads(_ n: Int) {
        openblas_set_num_threads(1)
        Parallel.workers = max(1, n)
    }
}

/// C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C, row-major.
@inline(__always)
public func gemm(transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
                 alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
                 b: UnsafePointer<Float>, ldb: Int,
                 beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}

@inline(__always) public func expf_(_ x: Float) -> Float { expf(x) }
@inline(__always) public func logf_(_ x: Float) -> Float { logf(x) }
