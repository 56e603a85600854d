// Winograd weight gradients, F(2x2, 3x3) and F(4x4, 3x3), each: against a direct Double reference
// (odd and tiny maps, partial image ranges, blocks splitting images and tile rows, many channels,
// concurrent workers, accumulation into dw) and against Conv2D.backward's im2col weight gradient.
import XCTest
import Foundation
import NN
import TestSupport

/// dW[co][ci][ki][kj] = Σ_{n in images} Σ_{oy, ox} dy[n, co, oy, ox] * x[n, ci, oy - 1 + ki, ox - 1 + kj].
private func referenceWeightGradient(x: [Float], dy: [Float], n: Int, cin: Int, cout: Int, h: Int, w: Int,
                                     images: Range<Int>) -> [Double] {
    var dw = [Double](repeating: 0, count: cout * cin * 9)
    for i in images { for co in 0..<cout { for ci in 0..<cin { for ki in 0..<3 { for kj in 0..<3 {
        var acc = 0.0
        for oy in 0..<h {
            let iy = oy - 1 + ki
            guard iy >= 0, iy < h else { continue }
            for ox in 0..<w {
                let ix = ox - 1 + kj
                guard ix >= 0, ix < w else { continue }
                acc += Double(dy[((i * cout + co) * h + oy) * w + ox]) * Double(x[((i * cin + ci) * h + iy) * w + ix])
            }
        }
        dw[((co * cin + ci) * 3 + ki) * 3 + kj] += acc
    }}}}}
    return dw
}

/// One of the two weight-gradient passes, with its block-size knob.
private struct Variant {
    let name: String
    let run: (UnsafePointer<Float>, UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int, Int, Int, Int, Range<Int>, Int) -> Void
    let setTarget: (Int) -> Void
    let target: () -> Int
}

private let variants = [
    Variant(name: "F(2x2)", run: { winogradWeightGradient(x: $0, dy: $1, dw: $2, cin: $3, cout: $4, h: $5, w: $6, images: $7, worker: $8) },
            setTarget: { winogradWeightGradientTargetTiles = $0 }, target: { winogradWeightGradientTargetTiles }),
    Variant(name: "F(4x4)", run: { winograd43WeightGradient(x: $0, dy: $1, dw: $2, cin: $3, cout: $4, h: $5, w: $6, images: $7, worker: $8) },
            setTarget: { winograd43WeightGradientTargetTiles = $0 }, target: { winograd43WeightGradientTargetTiles }),
    Variant(name: "F(3x3)", run: { winograd33WeightGradient(x: $0, dy: $1, dw: $2, cin: $3, cout: $4, h: $5, w: $6, images: $7, worker: $8) },
            setTarget: { winograd33WeightGradientTargetTiles = $0 }, target: { winograd33WeightGradientTargetTiles }),
]

final class WinogradWeightGradientTests: XCTestCase {
    struct Case { var n, cin, cout, h, w: Int }

    static let cases: [Case] = [
        Case(n: 2, cin: 1, cout: 1, h: 1, w: 1),
        Case(n: 3, cin: 2, cout: 3, h: 1, w: 1),
        Case(n: 2, cin: 3, cout: 2, h: 2, w: 2),
        Case(n: 3, cin: 4, cout: 5, h: 3, w: 3),
        Case(n: 3, cin: 16, cout: 16, h: 3, w: 3),
        Case(n: 2, cin: 9, cout: 7, h: 4, w: 4),
        Case(n: 2, cin: 5, cout: 7, h: 5, w: 5),
        Case(n: 3, cin: 3, cout: 2, h: 6, w: 7),
        Case(n: 2, cin: 7, cout: 3, h: 7, w: 6),
        Case(n: 1, cin: 2, cout: 3, h: 1, w: 5),
        Case(n: 3, cin: 8, cout: 16, h: 12, w: 12),
        Case(n: 2, cin: 16, cout: 8, h: 12, w: 12),
        Case(n: 2, cin: 11, cout: 13, h: 17, w: 19),
    ]

    /// Runs both passes on `images` into a dw prefilled with `initial`, checks dw = initial + reference.
    private func run(_ c: Case, images: Range<Int>, seed: UInt64, file: StaticString = #filePath, line: UInt = #line) {
        for v in variants { run(v, c, images: images, seed: seed, file: file, line: line) }
    }

    private func run(_ v: Variant, _ c: Case, images: Range<Int>, seed: UInt64, file: StaticString, line: UInt) {
        let x = randomArray(c.n * c.cin * c.h * c.w, seed: seed)
        let dy = randomArray(c.n * c.cout * c.h * c.w, seed: seed + 1)
        let initial = randomArray(c.cout * c.cin * 9, seed: seed + 2)
        var dw = initial
        x.withUnsafeBufferPointer { xp in dy.withUnsafeBufferPointer { dp in dw.withUnsafeMutableBufferPointer { wp in
            v.run(xp.baseAddress!, dp.baseAddress!, wp.baseAddress!, c.cin, c.cout, c.h, c.w, images, 0)
        }}}
        let ref = referenceWeightGradient(x: x, dy: dy, n: c.n, cin: c.cin, cout: c.cout, h: c.h, w: c.w, images: images)
        // Compare the added part (tolerance relative to the gradient's magnitude, not the prefill's).
        let added = zip(dw, initial).map { $0 - $1 }
        assertCloseScaled(added, ref, "\(v.name) \(c) images \(images)", file: file, line: line)
    }

    func testMatchesReference() {
        for (i, c) in Self.cases.enumerated() { run(c, images: 0..<c.n, seed: UInt64(10 * i + 1)) }
    }

    func testPartialImageRanges() {
        for (i, c) in Self.cases.enumerated() where c.n > 1 {
            run(c, images: 1..<c.n, seed: UInt64(10 * i + 3))
            run(c, images: 0..<1, seed: UInt64(10 * i + 5))
        }
        run(Case(n: 3, cin: 3, cout: 4, h: 5, w: 6), images: 1..<2, seed: 77)
        run(Case(n: 3, cin: 3, cout: 4, h: 5, w: 6), images: 2..<2, seed: 78)   // empty: adds nothing
    }

    /// Small blocks: blocks start and end inside images and tile rows; gemms accumulate over many blocks.
    func testSmallBlocks() {
        for v in variants {
            let saved = v.target()
            defer { v.setTarget(saved) }
            for target in [1, 3, 7, 20, 37, 100] {
                v.setTarget(target)
                for (i, c) in Self.cases.enumerated() {
                    run(v, c, images: 0..<c.n, seed: UInt64(10 * i + 7 + target), file: #filePath, line: #line)
                    if c.n > 2 { run(v, c, images: 1..<2, seed: UInt64(10 * i + 9 + target), file: #filePath, line: #line) }
                }
            }
        }
    }

    func testManyChannels() {
        run(Case(n: 2, cin: 33, cout: 40, h: 7, w: 7), images: 0..<2, seed: 99)
        run(Case(n: 1, cin: 75, cout: 3, h: 3, w: 4), images: 0..<1, seed: 98)
        run(Case(n: 2, cin: 3, cout: 37, h: 6, w: 6), images: 0..<2, seed: 97)
    }

    /// Two workers, disjoint image ranges, concurrently, into separate partial buffers.
    func testConcurrentWorkers() {
        let c = Case(n: 4, cin: 6, cout: 5, h: 9, w: 8)
        let x = randomArray(c.n * c.cin * c.h * c.w, seed: 1)
        let dy = randomArray(c.n * c.cout * c.h * c.w, seed: 2)
        let count = c.cout * c.cin * 9
        let ref = referenceWeightGradient(x: x, dy: dy, n: c.n, cin: c.cin, cout: c.cout, h: c.h, w: c.w, images: 0..<c.n)
        let ref0 = referenceWeightGradient(x: x, dy: dy, n: c.n, cin: c.cin, cout: c.cout, h: c.h, w: c.w, images: 0..<2)
        for v in variants {
            var parts = [Float](repeating: 0, count: 2 * count)
            x.withUnsafeBufferPointer { xp in dy.withUnsafeBufferPointer { dp in parts.withUnsafeMutableBufferPointer { pp in
                let (xa, da, pa) = (xp.baseAddress!, dp.baseAddress!, pp.baseAddress!)
                DispatchQueue.concurrentPerform(iterations: 2) { k in
                    v.run(xa, da, pa + k * count, c.cin, c.cout, c.h, c.w, (2 * k)..<(2 * k + 2), 10 + k)
                }
            }}}
            let sum = (0..<count).map { parts[$0] + parts[count + $0] }
            assertCloseScaled(sum, ref, "\(v.name) concurrent")
            assertCloseScaled(Array(parts[0..<count]), ref0, "\(v.name) concurrent worker 0")
        }
    }

    /// Conv2D's split of F(4x4) and F(3x3): Winograd-domain partial sums of two workers (concurrently),
    /// then the transform back over kernel ranges that cut groups of 8 lanes, added to a prefilled dW.
    func testPartialSumsThenTransformByKernelRanges() {
        typealias Partial = (UnsafePointer<Float>, UnsafePointer<Float>, Int, Int, Int, Int, Range<Int>, Int) -> UnsafePointer<Float>?
        typealias Add = ([UnsafePointer<Float>], Int, Int, UnsafeMutablePointer<Float>, Range<Int>) -> Void
        let split: [(String, Partial, Add)] = [
            ("F(4x4)", { winograd43WeightGradientPartial(x: $0, dy: $1, cin: $2, cout: $3, h: $4, w: $5, images: $6, worker: $7) },
             { winograd43AddKernelGradients($0, cin: $1, cout: $2, dw: $3, kernels: $4) }),
            ("F(3x3)", { winograd33WeightGradientPartial(x: $0, dy: $1, cin: $2, cout: $3, h: $4, w: $5, images: $6, worker: $7) },
             { winograd33AddKernelGradients($0, cin: $1, cout: $2, dw: $3, kernels: $4) }),
        ]
        for c in [Case(n: 5, cin: 6, cout: 5, h: 9, w: 8), Case(n: 3, cin: 7, cout: 3, h: 3, w: 3), Case(n: 19, cin: 4, cout: 4, h: 6, w: 6)] {
            let x = randomArray(c.n * c.cin * c.h * c.w, seed: 1)
            let dy = randomArray(c.n * c.cout * c.h * c.w, seed: 2)
            let initial = randomArray(c.cout * c.cin * 9, seed: 3)
            let ref = referenceWeightGradient(x: x, dy: dy, n: c.n, cin: c.cin, cout: c.cout, h: c.h, w: c.w, images: 0..<c.n)
            for (name, partial, add) in split {
                var dw = initial
                x.withUnsafeBufferPointer { xp in dy.withUnsafeBufferPointer { dp in dw.withUnsafeMutableBufferPointer { wp in
                    let (xa, da) = (xp.baseAddress!, dp.baseAddress!)
                    let parts = UnsafeMutableBufferPointer<UnsafePointer<Float>?>.allocate(capacity: 2)
                    defer { parts.deallocate() }
                    DispatchQueue.concurrentPerform(iterations: 2) { k in
                        parts[k] = partial(xa, da, c.cin, c.cout, c.h, c.w, (k == 0 ? 0..<2 : 2..<c.n), 20 + k)
                    }
                    let kernels = c.cout * c.cin
                    for r in [0..<3, 3..<(kernels / 2), (kernels / 2)..<kernels] {
                        add(parts.compactMap { $0 }, c.cin, c.cout, wp.baseAddress!, r)
                    }
                }}}
                assertCloseScaled(zip(dw, initial).map { $0 - $1 }, ref, "\(name) split \(c)")
            }
        }
    }

    /// The transform back reads a single partial in place and gathers several a chunk at a time:
    /// one partial must give the bits of the same partial gathered beside an all-zero one
    /// (0 + p + 0 = p), for kernel ranges that cut groups of 8 lanes and end in a partial group.
    func testOnePartialInPlaceGivesTheGatheredBits() {
        typealias Add = ([UnsafePointer<Float>], Int, Int, UnsafeMutablePointer<Float>, Range<Int>) -> Void
        let adds: [(String, Int, Add)] = [
            ("F(4x4)", 36, { winograd43AddKernelGradients($0, cin: $1, cout: $2, dw: $3, kernels: $4) }),
            ("F(3x3)", 25, { winograd33AddKernelGradients($0, cin: $1, cout: $2, dw: $3, kernels: $4) }),
        ]
        let (cin, cout) = (13, 7)   // 91 kernels: 11 groups of 8 and 3
        let kernels = cin * cout, plane = kernels + 16
        for (name, planes, add) in adds {
            let m = randomArray(planes * plane, seed: 7), zeros = [Float](repeating: 0, count: planes * plane)
            let initial = randomArray(kernels * 9, seed: 8)
            var inPlace = initial, gathered = initial
            m.withUnsafeBufferPointer { mp in zeros.withUnsafeBufferPointer { zp in
                for r in [0..<3, 3..<21, 21..<64, 64..<kernels] {
                    inPlace.withUnsafeMutableBufferPointer { add([mp.baseAddress!], cin, cout, $0.baseAddress!, r) }
                    gathered.withUnsafeMutableBufferPointer { add([mp.baseAddress!, zp.baseAddress!], cin, cout, $0.baseAddress!, r) }
                }
            }}
            let differing = zip(inPlace, gathered).filter { $0.bitPattern != $1.bitPattern }.count
            XCTAssertEqual(differing, 0, "\(name): one partial in place differs from it gathered in \(differing) of \(kernels * 9) values")
            XCTAssertGreaterThan(zip(inPlace, initial).filter { $0 != $1 }.count, kernels * 9 * 9 / 10, "\(name): the gradient was not added")
        }
    }

    /// Against Conv2D.backward's im2col + gemm weight gradient.
    func testMatchesConv2DBackward() {
        let shapes: [(n: Int, cin: Int, cout: Int, h: Int, w: Int)] =
            [(2, 3, 5, 1, 1), (3, 4, 2, 3, 3), (2, 5, 3, 5, 5), (3, 2, 6, 6, 7), (2, 16, 8, 7, 7), (2, 8, 12, 24, 24), (1, 34, 3, 4, 4)]
        for (i, s) in shapes.enumerated() {
            let ctx = ModelContext()
            let conv = Conv2D(ctx, name: "conv", inChannels: s.cin, outChannels: s.cout, kernel: 3,
                              stride: 1, padding: 1, bias: true)
            ctx.finalize()
            randomizeParameters(ctx, seed: UInt64(300 + i))
            ctx.params.zeroGrad()
            let x = randomTensor([s.n, s.cin, s.h, s.w], seed: UInt64(400 + i))
            _ = conv.forward(x, training: true)
            let dy = randomTensor([s.n, s.cout, s.h, s.w], seed: UInt64(500 + i))
            _ = conv.backward(dy)
            let dwRef = conv.weight.grads

            for v in variants {
                var dw = [Float](repeating: 0, count: s.cout * s.cin * 9)
                dw.withUnsafeMutableBufferPointer { wp in
                    v.run(x.data, dy.data, wp.baseAddress!, s.cin, s.cout, s.h, s.w, 0..<s.n, 0)
                }
                assertCloseScaled(dw, dwRef.map(Double.init), "\(v.name) dW vs Conv2D \(s)")
            }
        }
    }

    /// dW by output-channel chunks (`winograd43/33WeightGradientByChannels`, the deep layers) against
    /// the direct reference: F(4x4) and F(3x3) maps, image counts that leave a partial group of 8,
    /// output channels that leave a partial chunk and uneven shares over 2 and 3 workers; it ADDS.
    func testByChannelsMatchesReference() {
        let shapes: [(n: Int, cin: Int, cout: Int, h: Int, w: Int)] = [(3, 5, 7, 7, 7), (2, 9, 20, 9, 10), (5, 4, 3, 12, 8), (9, 6, 17, 3, 3), (4, 3, 5, 6, 5)]
        for workers in [2, 3] {
            for (i, s) in shapes.enumerated() {
                let x = randomArray(s.n * s.cin * s.h * s.w, seed: UInt64(900 + i))
                let dy = randomArray(s.n * s.cout * s.h * s.w, seed: UInt64(950 + i))
                let ref = referenceWeightGradient(x: x, dy: dy, n: s.n, cin: s.cin, cout: s.cout, h: s.h, w: s.w, images: 0..<s.n)
                for f4 in [true, false] {
                    var dw = [Float](repeating: 0.5, count: s.cout * s.cin * 9)   // ADDS: starts from 0.5
                    x.withUnsafeBufferPointer { xp in dy.withUnsafeBufferPointer { dp in dw.withUnsafeMutableBufferPointer { wp in
                        withWorkers(workers) {
                            if f4 {
                                winograd43WeightGradientByChannels(x: xp.baseAddress!, dy: dp.baseAddress!, dw: wp.baseAddress!, cin: s.cin, cout: s.cout,
                                                                   h: s.h, w: s.w, n: s.n, workers: workers, rows: 4)
                            } else {
                                winograd33WeightGradientByChannels(x: xp.baseAddress!, dy: dp.baseAddress!, dw: wp.baseAddress!, cin: s.cin, cout: s.cout,
                                                                   h: s.h, w: s.w, n: s.n, workers: workers, rows: 4)
                            }
                        }
                    }}}
                    assertCloseScaled(dw.map { $0 - 0.5 }, ref, "\(f4 ? "F(4x4)" : "F(3x3)") by channels \(s), \(workers) workers")
                }
            }
        }
    }

    /// Conv2D takes the by-channels dW where its rule says (few tiles, many channels) and gets the
    /// dW of the split by images; the rule does pick it for these shapes at 2 workers.
    func testConv2DByChannelsWeightGradientMatchesSplitByImages() {
        let saved = Conv2D.weightGradientByChannelsRatio
        defer { Conv2D.weightGradientByChannelsRatio = saved }
        let shapes: [(n: Int, c: Int, side: Int)] = [(2, 16, 3), (2, 24, 7), (3, 20, 6)]
        for (i, s) in shapes.enumerated() {
            let ctx = ModelContext()
            let conv = Conv2D(ctx, name: "conv", inChannels: s.c, outChannels: s.c, kernel: 3, stride: 1, padding: 1, bias: false)
            ctx.finalize()
            randomizeParameters(ctx, seed: UInt64(1000 + i))
            let x = randomTensor([s.n, s.c, s.side, s.side], seed: UInt64(1100 + i))
            let dy = randomTensor([s.n, s.c, s.side, s.side], seed: UInt64(1200 + i))
            var grads: [[Float]] = []
            for ratio in [0.0, 1e9] {
                Conv2D.weightGradientByChannelsRatio = ratio
                ctx.params.zeroGrad()
                withWorkers(2) { _ = conv.forward(x, training: true); _ = conv.backward(dy) }
                grads.append(conv.weight.grads)
            }
            assertCloseScaled(grads[1], grads[0].map(Double.init), "Conv2D dW by channels vs by images \(s)")
        }
    }
}
