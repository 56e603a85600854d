// Conv2D's choice of algorithm (im2col, Winograd F(2x2)/F(4x4), dense unrolled matrix) for the
// shapes of ResNet-18, and the paths a forced choice takes on the same layer giving the same results.
import XCTest
@testable import NN
import TestSupport

final class ConvStrategyTests: XCTestCase {
    private func name(_ s: Conv2D.Strategy) -> String {
        switch s {
        case .unrolled: return "unrolled"
        case .winograd4x4: return "winograd4x4"
        case .winograd3x3: return "winograd3x3"
        case .winograd2x2: return "winograd2x2"
        case .winogradStride2: return "winogradStride2"
        case .im2col: return "im2col"
        }
    }

    /// (cin, cout, kernel, stride, padding, side) -> the expected strategy, ResNet-18 at width 64
    /// on 28x28, 96x96 and 224x224 inputs (the stem, a stage's 3x3 convs, its strided entry and shortcut).
    func testResNet18Choices() {
        let table: [(Int, Int, Int, Int, Int, Int, String)] = [
            (1, 64, 7, 2, 3, 28, "im2col"), (64, 64, 3, 1, 1, 7, "winograd4x4"),
            (64, 128, 3, 2, 1, 7, "winogradStride2"), (64, 128, 1, 2, 0, 7, "im2col"), (128, 128, 3, 1, 1, 4, "winograd2x2"),
            (128, 256, 3, 2, 1, 4, "im2col"), (256, 256, 3, 1, 1, 2, "unrolled"),
            (256, 512, 3, 2, 1, 2, "unrolled"), (256, 512, 1, 2, 0, 2, "im2col"), (512, 512, 3, 1, 1, 1, "unrolled"),
            (64, 64, 3, 1, 1, 24, "winograd4x4"), (128, 128, 3, 1, 1, 12, "winograd4x4"),
            (256, 256, 3, 1, 1, 6, "winograd3x3"), (512, 512, 3, 1, 1, 3, "winograd3x3"),   // 3x3: its dense matrix is 81 MiB
            (3, 64, 7, 2, 3, 224, "im2col"), (64, 64, 3, 1, 1, 56, "winograd4x4"), (256, 256, 3, 1, 1, 14, "winograd4x4"),
            (512, 512, 3, 1, 1, 7, "winograd4x4"), (256, 256, 3, 1, 1, 5, "winograd3x3"),
            (256, 256, 3, 1, 1, 9, "winograd3x3"), (128, 128, 3, 1, 1, 10, "winograd4x4"), (128, 128, 3, 1, 1, 21, "winograd4x4"),
            // strided entries: F(4x4) stride 2 where 4x4 tiles cover the output exactly (4, 12, 24, 28)
            (64, 128, 3, 2, 1, 56, "winogradStride2"), (128, 256, 3, 2, 1, 28, "im2col"), (256, 512, 3, 2, 1, 14, "im2col"),
            (64, 128, 3, 2, 1, 48, "winogradStride2"), (128, 256, 3, 2, 1, 24, "winogradStride2"), (256, 512, 3, 2, 1, 12, "im2col"),
            (64, 128, 3, 2, 0, 56, "im2col"), (64, 128, 3, 2, 1, 55, "winogradStride2"),   // padding 0; an odd map, 28x28 out
        ]
        for (cin, cout, k, s, p, side, want) in table {
            let conv = Conv2D(ModelContext(), name: "c", inChannels: cin, outChannels: cout, kernel: k, stride: s, padding: p)
            XCTAssertEqual(name(conv.strategy([1, cin, side, side])), want, "\(cin)->\(cout) k\(k) s\(s) p\(p) on \(side)x\(side)")
        }
    }

    /// A 3x3 map through the dense matrix, and (with the matrix disallowed) through F(3x3) and F(2x2)
    /// Winograd: the same output, input gradient and parameter gradients, and all pass the
    /// finite-difference check.
    func testUnrolledAndWinogradAgreeOnThreeByThreeMaps() {
        let c = ConvCase(n: 3, cin: 3, cout: 4, h: 3, w: 3, k: 3, stride: 1, padding: 1, bias: true)
        let saved = (UnrolledConv.maxEntries, Conv2D.winograd3x3MaxSide)
        defer { (UnrolledConv.maxEntries, Conv2D.winograd3x3MaxSide) = saved }
        var runs: [([Float], [Float], [Float])] = []
        for (limit, f3, want) in [(saved.0, 9, "unrolled"), (0, 9, "winograd3x3"), (0, 0, "winograd2x2")] {
            UnrolledConv.maxEntries = limit; Conv2D.winograd3x3MaxSide = f3
            let (ctx, conv) = makeConv(c, seed: 4)
            XCTAssertEqual(name(conv.strategy([c.n, c.cin, c.h, c.w])), want)
            let x = randomTensor([c.n, c.cin, c.h, c.w], seed: 5), dy = randomTensor([c.n, c.cout, c.h, c.w], seed: 6)
            checkConvForward(c, conv, x)
            ctx.params.zeroGrad()
            let y = conv.forward(x, training: true).array
            runs.append((y, conv.backward(dy).array, Array(ctx.params.gradBuffer)))
            assertLayerGradients(conv, ctx: ctx, input: x, "\(c) \(want)")
        }
        for k in 1..<runs.count {
            // Relative to each tensor's largest magnitude: Winograd's rounding scales with the whole tile.
            assertCloseScaled(runs[k].0, runs[0].0.map(Double.init), tol: 2e-5, "output \(k)")
            assertCloseScaled(runs[k].1, runs[0].1.map(Double.init), tol: 2e-5, "input gradient \(k)")
            assertCloseScaled(runs[k].2, runs[0].2.map(Double.init), tol: 1e-4, "parameter gradients \(k)")
        }
    }

    /// F(3x3) and F(2x2) through Conv2D on 5x5, 6x6 and 9x9 maps (one to three tiles a side, a batch
    /// that is not a multiple of 8 lanes): the same output and gradients, and F(3x3) passes the
    /// finite-difference check.
    func testThreeByThreeTilesAgreeWithTwoByTwo() {
        let saved = Conv2D.winograd3x3MaxSide
        defer { Conv2D.winograd3x3MaxSide = saved }
        for (i, side) in [5, 6, 9].enumerated() {
            let c = ConvCase(n: 11, cin: 3, cout: 4, h: side, w: side, k: 3, stride: 1, padding: 1, bias: false)
            var runs: [([Float], [Float], [Float])] = []
            for (f3, want) in [(9, "winograd3x3"), (0, side == 9 ? "winograd4x4" : "winograd2x2")] {
                Conv2D.winograd3x3MaxSide = f3
                let (ctx, conv) = makeConv(c, seed: UInt64(40 + i))
                XCTAssertEqual(name(conv.strategy([c.n, c.cin, c.h, c.w])), want)
                let x = randomTensor([c.n, c.cin, c.h, c.w], seed: UInt64(50 + i)), dy = randomTensor([c.n, c.cout, c.h, c.w], seed: 60)
                ctx.params.zeroGrad()
                let y = conv.forward(x, training: true).array
                runs.append((y, conv.backward(dy).array, Array(ctx.params.gradBuffer)))
                if f3 > 0 { assertLayerGradients(conv, ctx: ctx, input: Tensor(shape: [2, c.cin, side, side], values: Array(x.array.prefix(2 * c.cin * side * side))), "\(c) \(want)") }
            }
            assertCloseScaled(runs[0].0, runs[1].0.map(Double.init), tol: 2e-5, "output \(side)")
            assertCloseScaled(runs[0].1, runs[1].1.map(Double.init), tol: 2e-5, "input gradient \(side)")
            assertCloseScaled(runs[0].2, runs[1].2.map(Double.init), tol: 1e-4, "parameter gradients \(side)")
        }
    }
    /// The bias gradient on every path (F(4x4) dW by images and by output channels, F(3x3), F(2x2),
    /// the im2col gather, the stem's bands, the dense matrix), with 1 and 2 workers, is Σ dY per
    /// channel (Double reference), added to what the gradient held.
    func testBiasGradientIsTheSumOfTheOutputGradientOnEveryPath() {
        let saved = Conv2D.weightGradientByChannelsRatio
        defer { Conv2D.weightGradientByChannelsRatio = saved }
        let cases: [(ConvCase, String, Double)] = [
            (ConvCase(n: 3, cin: 2, cout: 5, h: 11, w: 10, k: 3, stride: 1, padding: 1, bias: true), "winograd4x4", 0),   // by images
            (ConvCase(n: 2, cin: 8, cout: 9, h: 7, w: 7, k: 3, stride: 1, padding: 1, bias: true), "winograd4x4", 1e9),  // by channels
            (ConvCase(n: 3, cin: 2, cout: 3, h: 9, w: 9, k: 3, stride: 1, padding: 1, bias: true), "winograd3x3", 0),
            (ConvCase(n: 3, cin: 2, cout: 3, h: 4, w: 4, k: 3, stride: 1, padding: 1, bias: true), "winograd2x2", 0),
            (ConvCase(n: 5, cin: 2, cout: 3, h: 9, w: 8, k: 3, stride: 2, padding: 1, bias: true), "im2col", 0),         // gather
            (ConvCase(n: 3, cin: 1, cout: 4, h: 101, w: 99, k: 7, stride: 2, padding: 3, bias: true), "im2col", 0),     // by rows
            (ConvCase(n: 3, cin: 2, cout: 3, h: 2, w: 2, k: 3, stride: 1, padding: 1, bias: true), "unrolled", 0),
        ]
        for (c, want, ratio) in cases {
            Conv2D.weightGradientByChannelsRatio = ratio
            for workers in [1, 2] { withWorkers(workers) {
                let (ctx, conv) = makeConv(c, seed: 9)
                XCTAssertEqual(name(conv.strategy([c.n, c.cin, c.h, c.w])), want, "\(c)")
                let x = randomTensor([c.n, c.cin, c.h, c.w], seed: 10)
                let os = conv.outputShape(x.shape), dy = randomTensor(os, seed: 11)
                ctx.params.zeroGrad()
                let b = conv.bias!
                for k in 0..<c.cout { b.grad[k] = Float(k) }   // backward adds to what is there
                _ = conv.forward(x, training: true)
                _ = conv.backward(dy)
                let hw = os[2] * os[3]
                for k in 0..<c.cout {
                    var want = Double(k)
                    for i in 0..<c.n { for j in 0..<hw { want += Double(dy[(i * c.cout + k) * hw + j]) } }
                    XCTAssertEqual(Double(b.grad[k]), want, accuracy: 1e-5 * max(1, abs(want)) + 1e-4, "\(c) workers \(workers) channel \(k)")
                }
            }}
        }
    }
}
