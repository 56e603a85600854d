// Winograd forward, F(2x2, 3x3) and F(4x4, 3x3), each: against the naive Double reference (odd,
// tiny and non-square maps, partial image ranges, tile blocks that split images and tile rows,
// channel counts that leave partial SIMD groups), dX (transposed, rotated weights) against a
// Double reference, concurrent workers; and F(4x4) dX against F(2x2) dX through Conv2D.
import Dispatch
import XCTest
@testable import NN
import TestSupport

/// One of the two forward passes with its weight transform and block-size knob.
private struct Variant {
    let name: String
    let planes: Int   // transformed values per kernel: 16 or 36
    let transform: (UnsafePointer<Float>, Int, Int, UnsafeMutablePointer<Float>, Bool) -> Void   // w, cout, cin, u, for dX
    let forward: (UnsafePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>?, UnsafeMutablePointer<Float>,
                  Int, Int, Int, Int, Range<Int>, Int) -> Void
    let target: () -> Int
    let setTarget: (Int) -> Void
}

private let variants = [
    Variant(name: "F(2x2)", planes: 16,
            transform: { w, co, ci, u, dx in
                if dx { winogradTransformWeightsForInputGradient(w, cout: co, cin: ci, into: u) }
                else { winogradTransformWeights(w, cout: co, cin: ci, into: u) } },
            forward: { winogradForward(x: $0, u: $1, bias: $2, y: $3, cin: $4, cout: $5, h: $6, w: $7, images: $8, worker: $9) },
            target: { winogradTargetTiles }, setTarget: { winogradTargetTiles = $0 }),
    Variant(name: "F(4x4)", planes: 36,
            transform: { w, co, ci, u, dx in
                winograd43TransformWeights(w, cout: co, cin: ci, into: u, forInputGradient: dx, rows: 0..<(dx ? ci : co)) },
            forward: { winograd43Forward(x: $0, u: $1, bias: $2, y: $3, cin: $4, cout: $5, h: $6, w: $7, images: $8, worker: $9) },
            target: { winograd43TargetTiles }, setTarget: { winograd43TargetTiles = $0 }),
    Variant(name: "F(3x3)", planes: 25,
            transform: { w, co, ci, u, dx in
                winograd33TransformWeights(w, cout: co, cin: ci, into: u, forInputGradient: dx, rows: 0..<(dx ? ci : co)) },
            forward: { winograd33Forward(x: $0, u: $1, bias: $2, y: $3, cin: $4, cout: $5, h: $6, w: $7, images: $8, worker: $9) },
            target: { winograd33TargetTiles }, setTarget: { winograd33TargetTiles = $0 }),
]

final class WinogradTests: XCTestCase {
    struct Case { var n, cin, cout, h, w: Int; var bias: Bool }

    static let cases: [Case] = [
        Case(n: 2, cin: 1, cout: 1, h: 1, w: 1, bias: true),
        Case(n: 3, cin: 2, cout: 3, h: 1, w: 1, bias: false),
        Case(n: 2, cin: 3, cout: 2, h: 2, w: 3, bias: false),
        Case(n: 3, cin: 4, cout: 5, h: 3, w: 3, bias: false),
        Case(n: 3, cin: 16, cout: 16, h: 3, w: 3, bias: true),
        Case(n: 3, cin: 4, cout: 5, h: 4, w: 4, bias: true),
        Case(n: 2, cin: 5, cout: 7, h: 5, w: 6, bias: true),
        Case(n: 3, cin: 3, cout: 2, h: 6, w: 7, bias: false),
        Case(n: 2, cin: 7, cout: 3, h: 7, w: 6, bias: true),
        Case(n: 2, cin: 9, cout: 3, h: 8, w: 8, bias: true),
        Case(n: 1, cin: 2, cout: 3, h: 1, w: 5, bias: true),
        Case(n: 2, cin: 2, cout: 11, h: 13, w: 9, bias: true),
        Case(n: 1, cin: 3, cout: 4, h: 3, w: 37, bias: false),    // one tile row, several groups of 8 tiles
        Case(n: 2, cin: 17, cout: 8, h: 14, w: 14, bias: false),
        Case(n: 3, cin: 8, cout: 16, h: 24, w: 24, bias: true),
    ]

    /// Runs `v` on `images` of a random case; checks them against the reference and that nothing
    /// outside them was written.
    private func run(_ v: Variant, _ c: Case, images: Range<Int>, seed: UInt64, file: StaticString = #filePath, line: UInt = #line) {
        let x = randomArray(c.n * c.cin * c.h * c.w, seed: seed)
        let wt = randomArray(c.cout * c.cin * 9, seed: seed + 1)
        let b = c.bias ? randomArray(c.cout, seed: seed + 2) : nil
        var u = [Float](repeating: 0, count: v.planes * c.cout * c.cin)
        let sentinel: Float = 12345
        var y = [Float](repeating: sentinel, count: c.n * c.cout * c.h * c.w)
        wt.withUnsafeBufferPointer { wp in u.withUnsafeMutableBufferPointer { up in v.transform(wp.baseAddress!, c.cout, c.cin, up.baseAddress!, false) }}
        x.withUnsafeBufferPointer { xp in u.withUnsafeBufferPointer { up in y.withUnsafeMutableBufferPointer { yp in
            (b ?? []).withUnsafeBufferPointer { bp in
                v.forward(xp.baseAddress!, up.baseAddress!, b == nil ? nil : bp.baseAddress!, yp.baseAddress!,
                          c.cin, c.cout, c.h, c.w, images, 0)
            }
        }}}
        let ref = referenceConv2D(x, shape: [c.n, c.cin, c.h, c.w], weight: wt, bias: b,
                                  outChannels: c.cout, kernel: 3, stride: 1, padding: 1)
        let img = c.cout * c.h * c.w
        let got = Array(y[(images.lowerBound * img)..<(images.upperBound * img)])
        let want = Array(ref.y[(images.lowerBound * img)..<(images.upperBound * img)])
        assertCloseScaled(got, want, "\(v.name) \(c) images \(images)", file: file, line: line)
        let outside = y[0..<(images.lowerBound * img)] + y[(images.upperBound * img)...]
        XCTAssertTrue(outside.allSatisfy { $0 == sentinel }, "\(v.name) \(c) wrote outside \(images)", file: file, line: line)
    }

    func testForwardMatchesReference() {
        for v in variants { for (i, c) in Self.cases.enumerated() { run(v, c, images: 0..<c.n, seed: UInt64(10 * i + 1)) } }
    }

    func testPartialImageRanges() {
        for v in variants {
            for (i, c) in Self.cases.enumerated() where c.n > 1 {
                run(v, c, images: 1..<c.n, seed: UInt64(10 * i + 3))
                run(v, c, images: 0..<1, seed: UInt64(10 * i + 5))
            }
        }
    }

    /// Small blocks: blocks start and end inside images and tile rows, and groups of 8 tiles are
    /// cut short by a block's end.
    func testSmallBlocks() {
        for v in variants {
            let saved = v.target()
            defer { v.setTarget(saved) }
            for target in [1, 3, 7, 20, 37, 100] {
                v.setTarget(target)
                for (i, c) in Self.cases.enumerated() where c.h * c.w <= 200 {
                    run(v, c, images: 0..<c.n, seed: UInt64(10 * i + 7 + target))
                    if c.n > 2 { run(v, c, images: 1..<2, seed: UInt64(10 * i + 9 + target)) }
                }
            }
        }
    }

    func testManyChannels() {
        for v in variants {
            run(v, Case(n: 2, cin: 33, cout: 40, h: 7, w: 7, bias: true), images: 0..<2, seed: 99)
            // > 64 input channels: the F(2x2) weight transform's 64-channel chunks, plus a partial group of 8
            run(v, Case(n: 1, cin: 75, cout: 3, h: 3, w: 4, bias: false), images: 0..<1, seed: 98)
        }
    }

    /// dX = the same convolution of dY with W'[ci][co] = W[co][ci] rotated 180°, against the
    /// Double reference of that convolution.
    func testInputGradientMatchesReference() {
        let shapes: [(n: Int, cin: Int, cout: Int, h: Int, w: Int)] =
            [(2, 3, 5, 1, 1), (3, 4, 2, 3, 3), (2, 5, 3, 5, 5), (3, 2, 6, 6, 7), (2, 16, 8, 7, 7), (2, 8, 12, 24, 24), (1, 3, 75, 3, 3)]
        for v in variants {
            for (i, s) in shapes.enumerated() {
                let w = randomArray(s.cout * s.cin * 9, seed: UInt64(300 + i)), dy = randomArray(s.n * s.cout * s.h * s.w, seed: UInt64(500 + i))
                var rotated = [Float](repeating: 0, count: w.count)   // [Cin][Cout][3][3]
                for co in 0..<s.cout { for ci in 0..<s.cin { for k in 0..<9 { rotated[(ci * s.cout + co) * 9 + k] = w[(co * s.cin + ci) * 9 + 8 - k] } } }
                let ref = referenceConv2D(dy, shape: [s.n, s.cout, s.h, s.w], weight: rotated, bias: nil,
                                          outChannels: s.cin, kernel: 3, stride: 1, padding: 1)
                var u = [Float](repeating: 0, count: v.planes * s.cout * s.cin)
                var dx = [Float](repeating: 0, count: s.n * s.cin * s.h * s.w)
                w.withUnsafeBufferPointer { wp in u.withUnsafeMutableBufferPointer { up in v.transform(wp.baseAddress!, s.cout, s.cin, up.baseAddress!, true) }}
                dy.withUnsafeBufferPointer { dp in u.withUnsafeBufferPointer { up in dx.withUnsafeMutableBufferPointer { xp in
                    v.forward(dp.baseAddress!, up.baseAddress!, nil, xp.baseAddress!, s.cout, s.cin, s.h, s.w, 0..<s.n, 0)
                }}}
                assertCloseScaled(dx, ref.y, "\(v.name) dX \(s)")
            }
        }
    }

    /// Conv2D's dX with F(4x4) equals its dX with F(2x2) on the same layer.
    func testConv2DInputGradientSameWithEitherTileSize() {
        let saved = Conv2D.winograd4x4MinSide
        defer { Conv2D.winograd4x4MinSide = saved }
        let shapes: [(n: Int, cin: Int, cout: Int, h: Int, w: Int)] = [(2, 3, 5, 8, 8), (3, 2, 6, 9, 11), (2, 16, 9, 16, 16)]
        for (i, s) in shapes.enumerated() {
            let ctx = ModelContext()
            let conv = Conv2D(ctx, name: "conv", inChannels: s.cin, outChannels: s.cout, kernel: 3, stride: 1, padding: 1)
            ctx.finalize()
            randomizeParameters(ctx, seed: UInt64(300 + i))
            let x = randomTensor([s.n, s.cin, s.h, s.w], seed: UInt64(400 + i))
            let dy = randomTensor([s.n, s.cout, s.h, s.w], seed: UInt64(500 + i))
            var results: [[Float]] = []
            for minSide in [3, Int.max] {   // F(4x4), then F(2x2)
                Conv2D.winograd4x4MinSide = minSide
                _ = conv.forward(x, training: true)
                results.append(conv.backward(dy).array)
            }
            assertCloseScaled(results[0], results[1].map(Double.init), "dX \(s)")
        }
    }

    /// Conv2D's F(4x4) backward after a training forward writes dX in its dW pass, as the exact adjoint
    /// of the forward (the kept U transposed, `A dY A^T` shared with dW, patches summed per image):
    /// dX and dW against the Double references on maps that leave partial tiles, tile rows of 9 tiles
    /// (a group of 8 and a partial one), one tile row, batches that span several blocks, 1 to 3
    /// workers; after an eval forward, and with more channels than `winograd43AdjointMaxChannels`
    /// (the last shape), it computes dX the other way, to the same values.
    func testConv2DInputGradientAsTheAdjointMatchesReference() {
        let saved = Conv2D.winograd43AdjointMaxChannels
        defer { Conv2D.winograd43AdjointMaxChannels = saved }
        Conv2D.winograd43AdjointMaxChannels = 16
        let shapes: [(n: Int, cin: Int, cout: Int, h: Int, w: Int)] =
            [(3, 3, 5, 8, 8), (2, 2, 6, 9, 11), (5, 4, 3, 7, 36), (2, 16, 9, 16, 16), (1, 3, 2, 40, 7), (9, 2, 3, 12, 12), (2, 17, 3, 8, 8)]
        for (i, s) in shapes.enumerated() {
            let c = ConvCase(n: s.n, cin: s.cin, cout: s.cout, h: s.h, w: s.w, k: 3, stride: 1, padding: 1, bias: false)
            let x = randomTensor([s.n, s.cin, s.h, s.w], seed: UInt64(700 + i)), dy = randomTensor([s.n, s.cout, s.h, s.w], seed: UInt64(710 + i))
            for workers in [1, 2, 3] { withWorkers(workers) {
                let (ctx, conv) = makeConv(c, seed: UInt64(720 + i))
                XCTAssertEqual("\(conv.strategy(x.shape))", "winograd4x4", "\(c)")
                let ref = referenceConv2DGradients(x.array, shape: x.shape, weight: conv.weight.values, dy: dy.array,
                                                   outChannels: s.cout, kernel: 3, stride: 1, padding: 1)
                for training in [true, false] {
                    ctx.params.zeroGrad()
                    _ = conv.forward(x, training: training)
                    assertCloseScaled(conv.backward(dy).array, ref.dx, tol: 1e-5, "\(c) workers \(workers) training \(training) dX")
                    assertCloseScaled(conv.weight.grads, ref.dw, tol: 1e-5, "\(c) workers \(workers) training \(training) dW")
                }
            }}
        }
    }

    /// Two workers with disjoint image ranges, concurrently, each with its own scratch.
    func testConcurrentWorkers() {
        let c = Case(n: 4, cin: 6, cout: 5, h: 9, w: 12, bias: true)
        let x = randomArray(c.n * c.cin * c.h * c.w, seed: 1)
        let wt = randomArray(c.cout * c.cin * 9, seed: 2), b = randomArray(c.cout, seed: 3)
        let ref = referenceConv2D(x, shape: [c.n, c.cin, c.h, c.w], weight: wt, bias: b,
                                  outChannels: c.cout, kernel: 3, stride: 1, padding: 1)
        for v in variants {
            var u = [Float](repeating: 0, count: v.planes * c.cout * c.cin)
            var y = [Float](repeating: 0, count: c.n * c.cout * c.h * c.w)
            wt.withUnsafeBufferPointer { wp in u.withUnsafeMutableBufferPointer { up in v.transform(wp.baseAddress!, c.cout, c.cin, up.baseAddress!, false) }}
            x.withUnsafeBufferPointer { xp in u.withUnsafeBufferPointer { up in b.withUnsafeBufferPointer { bp in
                y.withUnsafeMutableBufferPointer { yp in
                    let (xa, ua, ba, ya) = (xp.baseAddress!, up.baseAddress!, bp.baseAddress!, yp.baseAddress!)
                    DispatchQueue.concurrentPerform(iterations: 2) { k in
                        v.forward(xa, ua, ba, ya, c.cin, c.cout, c.h, c.w, (2 * k)..<(2 * k + 2), 10 + k)
                    }
                }
            }}}
            assertCloseScaled(y, ref.y, "\(v.name) concurrent")
        }
    }

    /// F(4x4) and F(3x3) forward and dX by output-channel chunks (`winograd43/33ForwardByChannels`,
    /// stage 4 at 224x224 and at 96x96) against the Double references: maps that leave partial tiles,
    /// tile counts (F(4x4)) and image counts (F(3x3)) that leave a partial group of 8, output channels
    /// that leave a partial chunk, 1 to 3 workers, bias on and off.
    func testByChannelsForwardAndInputGradientMatchReference() {
        let shapes: [(n: Int, cin: Int, cout: Int, h: Int, w: Int, bias: Bool)] =
            [(3, 5, 7, 7, 7, true), (2, 9, 20, 9, 10, false), (5, 4, 3, 12, 8, true), (1, 6, 17, 7, 13, true),
             (9, 6, 10, 3, 3, true), (4, 3, 5, 6, 5, false)]
        for workers in [1, 2, 3] { for f4 in [true, false] {
            for (i, s) in shapes.enumerated() {
                let x = randomArray(s.n * s.cin * s.h * s.w, seed: UInt64(700 + i))
                let wt = randomArray(s.cout * s.cin * 9, seed: UInt64(710 + i))
                let b = s.bias ? randomArray(s.cout, seed: UInt64(720 + i)) : nil
                let dy = randomArray(s.n * s.cout * s.h * s.w, seed: UInt64(730 + i))
                let ref = referenceConv2D(x, shape: [s.n, s.cin, s.h, s.w], weight: wt, bias: b,
                                          outChannels: s.cout, kernel: 3, stride: 1, padding: 1)
                var rotated = [Float](repeating: 0, count: wt.count)   // [Cin][Cout][3][3]
                for co in 0..<s.cout { for ci in 0..<s.cin { for k in 0..<9 { rotated[(ci * s.cout + co) * 9 + k] = wt[(co * s.cin + ci) * 9 + 8 - k] } } }
                let refDX = referenceConv2D(dy, shape: [s.n, s.cout, s.h, s.w], weight: rotated, bias: nil,
                                            outChannels: s.cin, kernel: 3, stride: 1, padding: 1)
                var y = [Float](repeating: .nan, count: s.n * s.cout * s.h * s.w)
                var dx = [Float](repeating: .nan, count: s.n * s.cin * s.h * s.w)
                withWorkers(workers) {
                    x.withUnsafeBufferPointer { xp in wt.withUnsafeBufferPointer { wp in (b ?? []).withUnsafeBufferPointer { bp in
                        y.withUnsafeMutableBufferPointer { yp in
                            (f4 ? winograd43ForwardByChannels : winograd33ForwardByChannels)(
                                xp.baseAddress!, wp.baseAddress!, b == nil ? nil : bp.baseAddress!, yp.baseAddress!,
                                s.cin, s.cout, s.h, s.w, s.n, false, workers, 4)
                        }
                    }}}
                    dy.withUnsafeBufferPointer { dp in wt.withUnsafeBufferPointer { wp in dx.withUnsafeMutableBufferPointer { xp in
                        (f4 ? winograd43ForwardByChannels : winograd33ForwardByChannels)(
                            dp.baseAddress!, wp.baseAddress!, nil, xp.baseAddress!, s.cout, s.cin, s.h, s.w, s.n, true, workers, 4)
                    }}}
                }
                let form = f4 ? "F(4x4)" : "F(3x3)"
                assertCloseScaled(y, ref.y, "\(form) by channels forward \(s), \(workers) workers")
                assertCloseScaled(dx, refDX.y, "\(form) by channels dX \(s), \(workers) workers")
            }
        }}
    }

    /// Conv2D takes the by-channels F(4x4) or F(3x3) forward and dX where its rule says and gets the
    /// outputs and input gradients of the split by images.
    func testConv2DForwardByChannelsMatchesTheSplitByImages() {
        let saved = Conv2D.forwardByChannelsRatio
        defer { Conv2D.forwardByChannelsRatio = saved }
        let shapes: [(n: Int, c: Int, side: Int)] = [(2, 16, 7), (3, 20, 8), (1, 12, 13), (9, 16, 3), (3, 12, 6)]   // F(4x4), then F(3x3)
        for (i, s) in shapes.enumerated() {
            let ctx = ModelContext()
            let conv = Conv2D(ctx, name: "conv", inChannels: s.c, outChannels: s.c + 3, kernel: 3, stride: 1, padding: 1)
            ctx.finalize()
            randomizeParameters(ctx, seed: UInt64(1300 + i))
            let x = randomTensor([s.n, s.c, s.side, s.side], seed: UInt64(1400 + i))
            let dy = randomTensor(conv.outputShape(x.shape), seed: UInt64(1500 + i))
            var results: [([Float], [Float])] = []
            for ratio in [0.0, 1e9] {
                Conv2D.forwardByChannelsRatio = ratio
                withWorkers(2) { results.append((conv.forward(x, training: true).array, conv.backward(dy).array)) }
            }
            assertCloseScaled(results[1].0, results[0].0.map(Double.init), "Conv2D forward by channels vs by images \(s)")
            assertCloseScaled(results[1].1, results[0].1.map(Double.init), "Conv2D dX by channels vs by images \(s)")
        }
    }
}
