// The weight gradients' own gemm (Sources/Kernels/PanelGemm.swift): in every kernel set this CPU
// runs, each C value is exactly the in-order FMA chain over t (checked bit for bit against a plain
// loop), whatever the set's register tiles; edges of the tiles and panels, accumulation, and the
// rows and columns around C left untouched.
import XCTest
@testable import NN
import Kernels   // panelFloats
import TestSupport

final class PanelGemmTests: XCTestCase {
    /// The specification: c = (accumulate ? c : 0), then c = fma(a[t], b[t], c) for t in order.
    func fmaChain(_ a: [Float], lda: Int, _ bt: [Float], ldb: Int, m: Int, n: Int, k: Int, c0: [Float], ldc: Int, accumulate: Bool) -> [Float] {
        var c = c0
        for i in 0..<m {
            for j in 0..<n {
                var s: Float = accumulate ? c[i * ldc + j] : 0
                for t in 0..<k { s = s.addingProduct(a[i * lda + t], bt[j * ldb + t]) }
                c[i * ldc + j] = s
            }
        }
        return c
    }

    /// C from `panelGemm` in the active set, with B^T (n rows of depth k, ld ldb) packed first.
    func run(_ a: [Float], lda: Int, _ bt: [Float], ldb: Int, m: Int, n: Int, k: Int, c0: [Float], ldc: Int, accumulate: Bool) -> [Float] {
        let floats = Kernels.panelFloats(rows: n, k: k)
        XCTAssertEqual(floats % (32 * max(k, 1)), 0, "an even number of 16-row panels")
        var panels = [Float](repeating: .nan, count: max(floats, 1))   // every float must be written (the padding with zeros)
        bt.withUnsafeBufferPointer { b in
            panels.withUnsafeMutableBufferPointer { p in
                NN.packPanels(b.baseAddress!, ld: ldb, n: n, k: k, into: p.baseAddress!)
            }
        }
        XCTAssertFalse(panels.prefix(floats).contains { $0.isNaN }, "packPanels left floats unwritten")
        for p in 0..<(floats / (16 * max(k, 1))) {   // rows past n are zeros
            for t in 0..<k { for j in 0..<16 where 16 * p + j >= n { XCTAssertEqual(panels[(p * k + t) * 16 + j], 0) } }
        }
        var c = c0
        a.withUnsafeBufferPointer { ap in
            panels.withUnsafeBufferPointer { pp in
                c.withUnsafeMutableBufferPointer { cp in
                    NN.panelGemm(m: m, n: n, k: k, a: ap.baseAddress!, lda: lda, panels: pp.baseAddress!, c: cp.baseAddress!, ldc: ldc,
                              accumulate: accumulate)
                }
            }
        }
        return c
    }

    func testEverySetGivesTheInOrderFMAChainBitForBit() {
        let saved = KernelSet.active
        defer { KernelSet.active = saved }
        let sets = KernelSet.runnable(on: BLASKernel.cpuFeatures)
        // (m, n, k): whole 8x32 tiles, row and column edges of both tile shapes, one row, one column, k = 1.
        let shapes = [(8, 32, 64), (16, 64, 7), (13, 37, 5), (9, 16, 3), (1, 1, 1), (3, 48, 17), (20, 50, 33), (7, 15, 2)]
        for (i, (m, n, k)) in shapes.enumerated() {
            let lda = k + 3, ldb = k + 2, ldc = n + 5   // strides wider than the rows, as in the layers' planes
            let a = randomArray(m * lda, seed: UInt64(4100 + i))
            let bt = randomArray(n * ldb, seed: UInt64(4200 + i))
            let c0 = randomArray((m + 1) * ldc, seed: UInt64(4300 + i))   // one row more than C: must stay as it was
            for accumulate in [false, true] {
                let want = fmaChain(a, lda: lda, bt, ldb: ldb, m: m, n: n, k: k, c0: c0, ldc: ldc, accumulate: accumulate)
                for set in sets {
                    KernelSet.active = set
                    let got = run(a, lda: lda, bt, ldb: ldb, m: m, n: n, k: k, c0: c0, ldc: ldc, accumulate: accumulate)
                    let differing = zip(got, want).filter { $0.bitPattern != $1.bitPattern }.count
                    XCTAssertEqual(differing, 0, "\(set) m \(m) n \(n) k \(k) accumulate \(accumulate): \(differing) of \(want.count) floats differ")
                }
            }
        }
    }

    /// The chain itself against sums in Double (so the specification above is the product).
    func testTheChainIsTheProduct() {
        let (m, n, k) = (5, 21, 40)
        let a = randomArray(m * k, seed: 4400), bt = randomArray(n * k, seed: 4401), c0 = randomArray(m * n, seed: 4402)
        let got = run(a, lda: k, bt, ldb: k, m: m, n: n, k: k, c0: c0, ldc: n, accumulate: true)
        var want = [Double](repeating: 0, count: m * n)
        for i in 0..<m { for j in 0..<n {
            want[i * n + j] = Double(c0[i * n + j]) + (0..<k).reduce(0.0) { $0 + Double(a[i * k + $1]) * Double(bt[j * k + $1]) }
        }}
        assertClose(got, want, rtol: 1e-5, atol: 1e-5, "panelGemm against Double sums")
    }
}
