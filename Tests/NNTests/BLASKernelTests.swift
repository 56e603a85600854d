// The OpenBLAS kernel choice (BLASKernel): feature bits -> level, kernel names -> level, when to
// override OpenBLAS's pick, and sgemm of the kernel this process runs against a plain loop.
import XCTest
import NN

final class BLASKernelTests: XCTestCase {
    typealias F = BLASKernel.Features

    func testLevelsOfFeatureSets() {
        XCTAssertEqual(BLASKernel.level(of: []), 0)
        XCTAssertEqual(BLASKernel.level(of: [.avx]), 1)
        XCTAssertEqual(BLASKernel.level(of: [.avx, .avx2]), 1, "AVX2 without FMA is not Haswell-class")
        XCTAssertEqual(BLASKernel.level(of: [.avx, .avx2, .fma]), 2)
        XCTAssertEqual(BLASKernel.level(of: [.avx, .avx2, .fma, .avx512f]), 2, "AVX-512F alone (Knights Landing) is not SkylakeX-class")
        let skx: F = [.avx, .avx2, .fma, .avx512f, .avx512bw, .avx512dq, .avx512vl, .avx512cd]
        XCTAssertEqual(BLASKernel.level(of: skx), 3)
        XCTAssertEqual(BLASKernel.level(of: skx.union(.avx512bf16)), 4)
    }

    func testKernelLevelsAndUpgrades() {
        XCTAssertEqual(BLASKernel.level(ofCore: "Prescott"), 0)
        XCTAssertEqual(BLASKernel.level(ofCore: "HASWELL"), 2)
        XCTAssertEqual(BLASKernel.level(ofCore: "Zen"), 2)
        XCTAssertEqual(BLASKernel.level(ofCore: "SkylakeX"), 3)
        XCTAssertEqual(BLASKernel.level(ofCore: "Cooperlake"), 4)
        XCTAssertNil(BLASKernel.level(ofCore: "SomethingNew"))
        // The Xeon of issue 8: AVX-512 with BF16, OpenBLAS fell back to Prescott.
        XCTAssertEqual(BLASKernel.upgrade(autodetected: "Prescott", cpuLevel: 4), "Cooperlake")
        XCTAssertEqual(BLASKernel.upgrade(autodetected: "Prescott", cpuLevel: 3), "SkylakeX")
        XCTAssertEqual(BLASKernel.upgrade(autodetected: "Sandybridge", cpuLevel: 2), "Haswell")
        XCTAssertEqual(BLASKernel.upgrade(autodetected: "Zen", cpuLevel: 3), "SkylakeX")
        // Nothing to gain, or nothing known: OpenBLAS's pick stays.
        XCTAssertNil(BLASKernel.upgrade(autodetected: "Haswell", cpuLevel: 2))
        XCTAssertNil(BLASKernel.upgrade(autodetected: "Cooperlake", cpuLevel: 4))
        XCTAssertNil(BLASKernel.upgrade(autodetected: "Prescott", cpuLevel: 1))
        XCTAssertNil(BLASKernel.upgrade(autodetected: "SomethingNew", cpuLevel: 4))
    }

    func testSgemmOfTheKernelInUseMatchesAPlainLoop() {
        let r = BLASKernel.sgemmCheck()
        XCTAssertLessThan(r.maxRelativeError, 1e-5, "kernel \(BLASKernel.coreInUse)")
        XCTAssertGreaterThan(r.gflops, 0)
    }

    /// gemmInBands cuts a product into bands of rows (or columns) of at most `gemmSmallLimit`
    /// multiply-adds each, multiples of 16 as even as allowed; the result equals a plain loop
    /// whichever way it is cut, including short last bands and leading dimensions wider than the matrices.
    func testGemmInBandsMatchesAPlainLoop() {
        let saved = gemmSmallLimit
        defer { gemmSmallLimit = saved }
        // (m, n, k, limit): one call; row bands 16+16+16+2 and 32+32+6; column bands 5 x 16 + 10; too thin to band
        for (m, n, k, limit) in [(20, 30, 40, 1_000_000), (50, 30, 40, 16 * 30 * 40), (70, 9, 33, 40 * 9 * 33),
                                 (8, 90, 21, 8 * 20 * 21), (10, 10, 10, 100)] {
            gemmSmallLimit = limit
            let (lda, ldb, ldc) = (k + 3, n + 5, n + 7)
            var rng = SplitMix64(seed: UInt64(m * n * k))
            let a = (0..<(m * lda)).map { _ in Float.random(in: -1...1, using: &rng) }
            let b = (0..<(k * ldb)).map { _ in Float.random(in: -1...1, using: &rng) }
            var c = [Float](repeating: .nan, count: m * ldc)
            a.withUnsafeBufferPointer { pa in b.withUnsafeBufferPointer { pb in c.withUnsafeMutableBufferPointer { pc in
                gemmInBands(m: m, n: n, k: k, a: pa.baseAddress!, lda: lda, b: pb.baseAddress!, ldb: ldb, c: pc.baseAddress!, ldc: ldc)
            }}}
            for i in 0..<m { for j in 0..<n {
                var r = 0.0
                for l in 0..<k { r += Double(a[i * lda + l]) * Double(b[l * ldb + j]) }
                XCTAssertEqual(Double(c[i * ldc + j]), r, accuracy: 1e-4, "\(m)x\(n)x\(k) limit \(limit) at (\(i), \(j))")
            }}
            for i in 0..<m { XCTAssertTrue(c[(i * ldc + n)..<(i * ldc + ldc)].allSatisfy { $0.isNaN }, "wrote past column \(n)") }
        }
    }
}
