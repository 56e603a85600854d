// Winograd F(4x4, 3x3): forward against the naive Double reference (odd, tiny and non-square maps,
// partial image ranges, tile blocks that split images and tile rows, channel counts that leave a
// partial group of 8 kernels), dX against the F(2x2, 3x3) path, and concurrent workers.
import Dispatch
import XCTest
import NN
import TestSupport

final class Winograd43Tests: XCTestCase {
    struct Case { var n, cin, cout, h, w: Int; var bias: Bool }

    static let cases: [Case] = [
        Case(n: 2, cin: 1, cout: 1, h: 1, w: 1, bias: true),
        Case(n: 2, cin: 3, cout: 2, h: 2, w: 3, bias: false),
        Case(n: 3, cin: 4, cout: 5, h: 4, w: 4, bias: true),
        Case(n: 2, cin: 5, cout: 7, h: 5, w: 6, bias: true),
        Case(n: 3, cin: 3, cout: 2, h: 7, w: 7, bias: false),
        Case(n: 2, cin: 9, cout: 3, h: 8, w: 8, bias: true),
        Case(n: 2, cin: 2, cout: 11, h: 13, w: 9, bias: true),
        Case(n: 1, cin: 3, cout: 4, h: 3, w: 37, bias: false),    // one tile row, several groups of 8 tiles
        Case(n: 3, cin: 8, cout: 16, h: 24, w: 24, bias: true),
        Case(n: 2, cin: 17, cout: 8, h: 14, w: 14, bias: false),
    ]

    private func run(_ c: Case, images: Range<Int>, seed: UInt64, file: StaticString = #filePath, line: UInt = #line) {
        let x = randomArray(c.n * c.cin * c.h * c.w, seed: seed)
        let wt = randomArray(c.cout * c.cin * 9, seed: seed + 1)
        let b = c.bias ? randomArray(c.cout, seed: seed + 2) : nil
        var u = [Float](repeating: 0, count: 36 * c.cout * c.cin)
        let sentinel: Float = 12345
        var y = [Float](repeating: sentinel, count: c.n * c.cout * c.h * c.w)
        wt.withUnsafeBufferPointer { wp in u.withUnsafeMutableBufferPointer { up in
            winograd43TransformWeights(wp.baseAddress!, cout: c.cout, cin: c.cin, into: up.baseAddress!,
                                       forInputGradient: false, rows: 0..<c.cout)
        }}
        x.withUnsafeBufferPointer { xp in u.withUnsafeBufferPointer { up in y.withUnsafeMutableBufferPointer { yp in
            (b ?? []).withUnsafeBufferPointer { bp in
                winograd43Forward(x: xp.baseAddress!, u: up.baseAddress!, bias: b == nil ? nil : bp.baseAddress!,
                                  y: yp.baseAddress!, cin: c.cin, cout: c.cout, h: c.h, w: c.w, images: images, worker: 0)
            }
        }}}
        let ref = referenceConv2D(x, shape: [c.n, c.cin, c.h, c.w], weight: wt, bias: b,
                                  outChannels: c.cout, kernel: 3, stride: 1, padding: 1)
        let img = c.cout * c.h * c.w
        let got = Array(y[(images.lowerBound * img)..<(images.upperBound * img)])
        let want = Array(ref.y[(images.lowerBound * img)..<(images.upperBound * img)])
        assertCloseScaled(got, want, "\(c) images \(images)", file: file, line: line)
        let outside = y[0..<(images.lowerBound * img)] + y[(images.upperBound * img)...]
        XCTAssertTrue(outside.allSatisfy { $0 == sentinel }, "\(c) wrote outside \(images)", file: file, line: line)
    }

    func testForwardMatchesReference() {
        for (i, c) in Self.cases.enumerated() { run(c, images: 0..<c.n, seed: UInt64(10 * i + 1)) }
    }

    func testPartialImageRanges() {
        for (i, c) in Self.cases.enumerated() where c.n > 1 {
            run(c, images: 1..<c.n, seed: UInt64(10 * i + 3))
            run(c, images: 0..<1, seed: UInt64(10 * i + 5))
        }
    }

    /// Blocks of 1, 3, 7, 20 tiles: blocks start and end inside images and tile rows, and groups
    /// of 8 tiles are cut short by a block's end.
    func testSmallBlocks() {
        let saved = winograd43TargetTiles
        defer { winograd43TargetTiles = saved }
        for target in [1, 3, 7, 20] {
            winograd43TargetTiles = target
            for (i, c) in Self.cases.enumerated() {
                run(c, images: 0..<c.n, seed: UInt64(10 * i + 7 + target))
                if c.n > 2 { run(c, images: 1..<2, seed: UInt64(10 * i + 9 + target)) }
            }
        }
    }

    /// dX with F(4x4) (transposed, rotated weights) equals dX with F(2x2) through Conv2D.backward.
    func testInputGradientMatchesF2x2() {
        let shapes: [(n: Int, cin: Int, cout: Int, h: Int, w: Int)] = [(2, 3, 5, 8, 8), (3, 2, 6, 9, 11), (2, 16, 9, 16, 16)]
        let saved = Conv2D.winograd4x4MinSide
        defer { Conv2D.winograd4x4MinSide = saved }
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

    /// Two workers with disjoint image ranges, concurrently, each with its own scratch.
    func testConcurrentWorkers() {
        let c = Case(n: 4, cin: 6, cout: 5, h: 9, w: 12, bias: true)
        let x = randomArray(c.n * c.cin * c.h * c.w, seed: 1)
        let wt = randomArray(c.cout * c.cin * 9, seed: 2), b = randomArray(c.cout, seed: 3)
        var u = [Float](repeating: 0, count: 36 * c.cout * c.cin)
        var y = [Float](repeating: 0, count: c.n * c.cout * c.h * c.w)
        wt.withUnsafeBufferPointer { wp in u.withUnsafeMutableBufferPointer { up in
            winograd43TransformWeights(wp.baseAddress!, cout: c.cout, cin: c.cin, into: up.baseAddress!,
                                       forInputGradient: false, rows: 0..<c.cout)
        }}
        x.withUnsafeBufferPointer { xp in u.withUnsafeBufferPointer { up in b.withUnsafeBufferPointer { bp in
            y.withUnsafeMutableBufferPointer { yp in
                let (xa, ua, ba, ya) = (xp.baseAddress!, up.baseAddress!, bp.baseAddress!, yp.baseAddress!)
                DispatchQueue.concurrentPerform(iterations: 2) { k in
                    winograd43Forward(x: xa, u: ua, bias: ba, y: ya, cin: c.cin, cout: c.cout, h: c.h, w: c.w,
                                      images: (2 * k)..<(2 * k + 2), worker: 10 + k)
                }
            }
        }}}
        let ref = referenceConv2D(x, shape: [c.n, c.cin, c.h, c.w], weight: wt, bias: b,
                                  outChannels: c.cout, kernel: 3, stride: 1, padding: 1)
        assertCloseScaled(y, ref.y, "concurrent")
    }
}
