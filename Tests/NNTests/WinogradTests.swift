// Winograd F(2x2, 3x3): forward against the naive Double reference (odd and tiny maps, partial
// image ranges, tile blocks that split images), and the input-gradient path against Conv2D.backward.
import XCTest
import NN
import TestSupport

final class WinogradTests: XCTestCase {
    struct Case { var n, cin, cout, h, w: Int; var bias: Bool }

    static let cases: [Case] = [
        Case(n: 2, cin: 1, cout: 1, h: 1, w: 1, bias: true),
        Case(n: 3, cin: 2, cout: 3, h: 1, w: 1, bias: false),
        Case(n: 2, cin: 3, cout: 2, h: 2, w: 2, bias: true),
        Case(n: 3, cin: 4, cout: 5, h: 3, w: 3, bias: false),
        Case(n: 3, cin: 16, cout: 16, h: 3, w: 3, bias: true),
        Case(n: 2, cin: 5, cout: 7, h: 5, w: 5, bias: true),
        Case(n: 3, cin: 3, cout: 2, h: 6, w: 7, bias: false),
        Case(n: 2, cin: 7, cout: 3, h: 7, w: 6, bias: true),
        Case(n: 1, cin: 2, cout: 3, h: 1, w: 5, bias: true),
        Case(n: 3, cin: 8, cout: 16, h: 24, w: 24, bias: true),
        Case(n: 2, cin: 16, cout: 8, h: 24, w: 24, bias: false),
    ]

    private func run(_ c: Case, images: Range<Int>, seed: UInt64) {
        let x = randomArray(c.n * c.cin * c.h * c.w, seed: seed)
        let wt = randomArray(c.cout * c.cin * 9, seed: seed + 1)
        let b = c.bias ? randomArray(c.cout, seed: seed + 2) : nil
        var u = [Float](repeating: 0, count: 16 * c.cout * c.cin)
        let sentinel: Float = 12345
        var y = [Float](repeating: sentinel, count: c.n * c.cout * c.h * c.w)
        wt.withUnsafeBufferPointer { wp in u.withUnsafeMutableBufferPointer { up in
            winogradTransformWeights(wp.baseAddress!, cout: c.cout, cin: c.cin, into: up.baseAddress!)
        }}
        x.withUnsafeBufferPointer { xp in u.withUnsafeBufferPointer { up in y.withUnsafeMutableBufferPointer { yp in
            if let b {
                b.withUnsafeBufferPointer { bp in
                    winogradForward(x: xp.baseAddress!, u: up.baseAddress!, bias: bp.baseAddress!, y: yp.baseAddress!,
                                    cin: c.cin, cout: c.cout, h: c.h, w: c.w, images: images, worker: 0)
                }
            } else {
                winogradForward(x: xp.baseAddress!, u: up.baseAddress!, bias: nil, y: yp.baseAddress!,
                                cin: c.cin, cout: c.cout, h: c.h, w: c.w, images: images, worker: 0)
            }
        }}}
        let ref = referenceConv2D(x, shape: [c.n, c.cin, c.h, c.w], weight: wt, bias: b,
                                  outChannels: c.cout, kernel: 3, stride: 1, padding: 1)
        let img = c.cout * c.h * c.w
        let got = Array(y[(images.lowerBound * img)..<(images.upperBound * img)])
        let want = Array(ref.y[(images.lowerBound * img)..<(images.upperBound * img)])
        assertCloseScaled(got, want, "\(c) images \(images)")
        // Images outside the range are untouched.
        let outside = y[0..<(images.lowerBound * img)] + y[(images.upperBound * img)...]
        XCTAssertTrue(outside.allSatisfy { $0 == sentinel }, "\(c) wrote outside \(images)")
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

    /// Small tile blocks: blocks start and end inside images, and inside tile rows.
    func testSmallBlocks() {
        let saved = winogradTargetTiles
        defer { winogradTargetTiles = saved }
        for target in [1, 3, 7, 20] {
            winogradTargetTiles = target
            for (i, c) in Self.cases.enumerated() where c.h * c.w <= 49 {
                run(c, images: 0..<c.n, seed: UInt64(10 * i + 7 + target))
                if c.n > 2 { run(c, images: 1..<2, seed: UInt64(10 * i + 9 + target)) }
            }
        }
    }

    /// Wide maps (the SIMD8 row path, gathers across tile rows) cut into blocks that split rows and images.
    func testWideMapsSmallBlocks() {
        let saved = winogradTargetTiles
        defer { winogradTargetTiles = saved }
        for target in [13, 37, 100] {
            winogradTargetTiles = target
            run(Case(n: 3, cin: 3, cout: 2, h: 17, w: 19, bias: true), images: 0..<3, seed: UInt64(target))
            run(Case(n: 3, cin: 2, cout: 3, h: 24, w: 24, bias: false), images: 1..<3, seed: UInt64(target + 1))
        }
    }

    func testManyChannels() {
        run(Case(n: 2, cin: 33, cout: 40, h: 7, w: 7, bias: true), images: 0..<2, seed: 99)
        // > 64 input channels: the weight transform's 64-channel chunks and SIMD8 groups plus a tail
        run(Case(n: 1, cin: 75, cout: 3, h: 3, w: 4, bias: false), images: 0..<1, seed: 98)
    }

    /// dX from Winograd (transposed, rotated weights) vs Conv2D.backward's im2col/col2im dX.
    func testInputGradientMatchesConv2DBackward() {
        let shapes: [(n: Int, cin: Int, cout: Int, h: Int, w: Int)] =
            [(2, 3, 5, 1, 1), (3, 4, 2, 3, 3), (2, 5, 3, 5, 5), (3, 2, 6, 6, 7), (2, 16, 8, 7, 7), (2, 8, 12, 24, 24), (1, 3, 75, 3, 3)]
        for (i, s) in shapes.enumerated() {
            let ctx = ModelContext()
            let conv = Conv2D(ctx, name: "conv", inChannels: s.cin, outChannels: s.cout, kernel: 3,
                              stride: 1, padding: 1, bias: true)
            ctx.finalize()
            randomizeParameters(ctx, seed: UInt64(300 + i))
            let x = randomTensor([s.n, s.cin, s.h, s.w], seed: UInt64(400 + i))
            _ = conv.forward(x, training: true)
            let dy = randomTensor([s.n, s.cout, s.h, s.w], seed: UInt64(500 + i))
            let dxRef = conv.backward(dy).array

            var u = [Float](repeating: 0, count: 16 * s.cout * s.cin)
            u.withUnsafeMutableBufferPointer { up in
                winogradTransformWeightsForInputGradient(conv.weight.value, cout: s.cout, cin: s.cin, into: up.baseAddress!)
            }
            let dx = Tensor(shape: [s.n, s.cin, s.h, s.w])
            u.withUnsafeBufferPointer { up in
                winogradForward(x: dy.data, u: up.baseAddress!, bias: nil, y: dx.data, cin: s.cout, cout: s.cin,
                                h: s.h, w: s.w, images: 0..<s.n, worker: 0)
            }
            assertCloseScaled(dx.array, dxRef.map(Double.init), "dX \(s)")
        }
    }

    /// Two workers with disjoint image ranges, concurrently.
    func testConcurrentWorkers() {
        let c = Case(n: 4, cin: 6, cout: 5, h: 9, w: 8, bias: true)
        let x = randomArray(c.n * c.cin * c.h * c.w, seed: 1)
        let wt = randomArray(c.cout * c.cin * 9, seed: 2), b = randomArray(c.cout, seed: 3)
        var u = [Float](repeating: 0, count: 16 * c.cout * c.cin)
        var y = [Float](repeating: 0, count: c.n * c.cout * c.h * c.w)
        wt.withUnsafeBufferPointer { wp in u.withUnsafeMutableBufferPointer { up in
            winogradTransformWeights(wp.baseAddress!, cout: c.cout, cin: c.cin, into: up.baseAddress!)
        }}
        x.withUnsafeBufferPointer { xp in u.withUnsafeBufferPointer { up in b.withUnsafeBufferPointer { bp in
            y.withUnsafeMutableBufferPointer { yp in
                let (xa, ua, ba, ya) = (xp.baseAddress!, up.baseAddress!, bp.baseAddress!, yp.baseAddress!)
                DispatchQueue.concurrentPerform(iterations: 2) { k in
                    winogradForward(x: xa, u: ua, bias: ba, y: ya, cin: c.cin, cout: c.cout, h: c.h, w: c.w,
                                    images: (2 * k)..<(2 * k + 2), worker: 10 + k)
                }
            }
        }}}
        let ref = referenceConv2D(x, shape: [c.n, c.cin, c.h, c.w], weight: wt, bias: b,
                                  outChannels: c.cout, kernel: 3, stride: 1, padding: 1)
        assertCloseScaled(y, ref.y, "concurrent")
    }
}
