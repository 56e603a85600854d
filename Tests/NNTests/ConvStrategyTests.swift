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
        case .winograd2x2: return "winograd2x2"
        case .im2col: return "im2col"
        }
    }

    /// (cin, cout, kernel, stride, padding, side) -> the expected strategy, ResNet-18 at width 64
    /// on 28x28, 96x96 and 224x224 inputs (the stem, a stage's 3x3 convs, its strided entry and shortcut).
    func testResNet18Choices() {
        let table: [(Int, Int, Int, Int, Int, Int, String)] = [
            (1, 64, 7, 2, 3, 28, "im2col"), (64, 64, 3, 1, 1, 7, "winograd4x4"),
            (64, 128, 3, 2, 1, 7, "im2col"), (64, 128, 1, 2, 0, 7, "im2col"), (128, 128, 3, 1, 1, 4, "winograd2x2"),
            (128, 256, 3, 2, 1, 4, "im2col"), (256, 256, 3, 1, 1, 2, "unrolled"),
            (256, 512, 3, 2, 1, 2, "unrolled"), (256, 512, 1, 2, 0, 2, "im2col"), (512, 512, 3, 1, 1, 1, "unrolled"),
            (64, 64, 3, 1, 1, 24, "winograd4x4"), (128, 128, 3, 1, 1, 12, "winograd4x4"),
            (256, 256, 3, 1, 1, 6, "winograd2x2"), (512, 512, 3, 1, 1, 3, "winograd2x2"),   // 3x3: its dense matrix is 81 MiB
            (3, 64, 7, 2, 3, 224, "im2col"), (64, 64, 3, 1, 1, 56, "winograd4x4"), (256, 256, 3, 1, 1, 14, "winograd4x4"),
            (512, 512, 3, 1, 1, 7, "winograd4x4"), (256, 256, 3, 1, 1, 5, "winograd2x2"),
        ]
        for (cin, cout, k, s, p, side, want) in table {
            let conv = Conv2D(ModelContext(), name: "c", inChannels: cin, outChannels: cout, kernel: k, stride: s, padding: p)
            XCTAssertEqual(name(conv.strategy([1, cin, side, side])), want, "\(cin)->\(cout) k\(k) s\(s) p\(p) on \(side)x\(side)")
        }
    }

    /// A 3x3 map through the dense matrix, and (with the matrix disallowed) through F(2x2)
    /// Winograd: the same output, input gradient and parameter gradients, and both pass the
    /// finite-difference check.
    func testUnrolledAndWinogradAgreeOnThreeByThreeMaps() {
        let c = ConvCase(n: 3, cin: 3, cout: 4, h: 3, w: 3, k: 3, stride: 1, padding: 1, bias: true)
        let saved = UnrolledConv.maxEntries
        defer { UnrolledConv.maxEntries = saved }
        var runs: [([Float], [Float], [Float])] = []
        for (limit, want) in [(saved, "unrolled"), (0, "winograd2x2")] {
            UnrolledConv.maxEntries = limit
            let (ctx, conv) = makeConv(c, seed: 4)
            XCTAssertEqual(name(conv.strategy([c.n, c.cin, c.h, c.w])), want)
            let x = randomTensor([c.n, c.cin, c.h, c.w], seed: 5), dy = randomTensor([c.n, c.cout, c.h, c.w], seed: 6)
            checkConvForward(c, conv, x)
            ctx.params.zeroGrad()
            let y = conv.forward(x, training: true).array
            runs.append((y, conv.backward(dy).array, Array(ctx.params.gradBuffer)))
            assertLayerGradients(conv, ctx: ctx, input: x, "\(c) \(want)")
        }
        assertClose(runs[1].0, runs[0].0, rtol: 1e-5, atol: 1e-6, "output")
        assertClose(runs[1].1, runs[0].1, rtol: 1e-5, atol: 1e-6, "input gradient")
        assertClose(runs[1].2, runs[0].2, rtol: 1e-4, atol: 1e-5, "parameter gradients")
    }
}
