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
}
