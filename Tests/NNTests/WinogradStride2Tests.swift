// Winograd F(4x4, 3x3) with stride 2 (Conv2D's `winogradStride2`, Winograd43Stride2.swift): the
// forward pass, dX and dW against the Double references on maps that exercise every edge of the
// tiling, with 1 to 3 workers; the finite-difference check; the stem's case (no dX).
import XCTest
@testable import NN
import TestSupport

final class WinogradStride2Tests: XCTestCase {
    /// Runs `body` with F(4x4) stride 2 chosen for every 3x3 stride-2 padding-1 convolution.
    private func everywhere<T>(_ body: () throws -> T) rethrows -> T {
        let saved = Conv2D.winogradStride2MaxCost
        Conv2D.winogradStride2MaxCost = 100
        defer { Conv2D.winogradStride2MaxCost = saved }
        return try body()
    }

    /// Maps even and odd, square and not; one tile, tiles whose last outputs and inputs fall outside
    /// the map, nine tiles a row (a full 8-lane group and a partial one); channel counts that leave
    /// partial 8-lane groups and a second 64-kernel chunk; bias on and off; batches of 1 to 5 (blocks
    /// of whole images, split over 1 to 3 workers): output, dX and dW within float rounding of the
    /// Double references (relative to each tensor's largest value: Winograd's rounding scales with the tile).
    func testMatchesTheReferences() {
        let cases = [
            ConvCase(n: 3, cin: 2, cout: 3, h: 8, w: 8, k: 3, stride: 2, padding: 1, bias: true),     // one 4x4 tile
            ConvCase(n: 2, cin: 3, cout: 5, h: 9, w: 7, k: 3, stride: 2, padding: 1, bias: false),    // odd map: 5x4 outputs
            ConvCase(n: 5, cin: 4, cout: 2, h: 26, w: 17, k: 3, stride: 2, padding: 1, bias: true),   // 13x9: partial last tiles
            ConvCase(n: 2, cin: 9, cout: 70, h: 16, w: 16, k: 3, stride: 2, padding: 1, bias: false), // 70 kernels a row
            ConvCase(n: 2, cin: 70, cout: 3, h: 15, w: 16, k: 3, stride: 2, padding: 1, bias: false), // 70 a column (dX's U^T)
            ConvCase(n: 1, cin: 2, cout: 2, h: 2, w: 11, k: 3, stride: 2, padding: 1, bias: true),    // one output row
            ConvCase(n: 3, cin: 2, cout: 3, h: 70, w: 66, k: 3, stride: 2, padding: 1, bias: false),  // 35x33: 9 tiles a row
        ]
        everywhere {
            for (i, c) in cases.enumerated() {
                let x = randomTensor([c.n, c.cin, c.h, c.w], seed: UInt64(300 + i))
                for workers in [1, 2, 3] { withWorkers(workers) {
                    let (ctx, conv) = makeConv(c, seed: UInt64(310 + i))
                    guard case .winogradStride2 = conv.strategy(x.shape) else { return XCTFail("\(c): \(conv.strategy(x.shape))") }
                    let os = conv.outputShape(x.shape), dy = randomTensor(os, seed: UInt64(320 + i))
                    let ref = referenceConv2D(x.array, shape: x.shape, weight: conv.weight.values, bias: conv.bias?.values,
                                              outChannels: c.cout, kernel: 3, stride: 2, padding: 1)
                    let grads = referenceConv2DGradients(x.array, shape: x.shape, weight: conv.weight.values, dy: dy.array,
                                                         outChannels: c.cout, kernel: 3, stride: 2, padding: 1)
                    ctx.params.zeroGrad()
                    let y = conv.forward(x, training: true)
                    XCTAssertEqual(y.shape, ref.shape, "\(c)")
                    assertCloseScaled(y.array, ref.y, tol: 1e-5, "\(c) workers \(workers) output")
                    assertCloseScaled(conv.backward(dy).array, grads.dx, tol: 1e-5, "\(c) workers \(workers) dX")
                    assertCloseScaled(conv.weight.grads, grads.dw, tol: 1e-5, "\(c) workers \(workers) dW")
                }}
            }
        }
    }

    /// The layer's gradients against finite differences of its own forward pass.
    func testFiniteDifferences() {
        let c = ConvCase(n: 2, cin: 2, cout: 3, h: 10, w: 9, k: 3, stride: 2, padding: 1, bias: true)
        everywhere {
            let (ctx, conv) = makeConv(c, seed: 41)
            let x = randomTensor([c.n, c.cin, c.h, c.w], seed: 42)
            XCTAssertEqual("\(conv.strategy(x.shape))", "winogradStride2")
            assertLayerGradients(conv, ctx: ctx, input: x, "\(c)")
        }
    }

    /// Without dX (a first layer), backward returns zeros and the same weight gradient, and a second
    /// step sums into dW as the first did (the partials are overwritten, not accumulated, per call).
    func testWithoutInputGradient() {
        let c = ConvCase(n: 3, cin: 3, cout: 4, h: 12, w: 12, k: 3, stride: 2, padding: 1, bias: false)
        everywhere {
            let x = randomTensor([c.n, c.cin, c.h, c.w], seed: 51)
            var grads: [[Float]] = []
            for needs in [true, false] { withWorkers(2) {
                let (ctx, conv) = makeConv(c, seed: 52)
                conv.needsInputGradient = needs
                let dy = randomTensor(conv.outputShape(x.shape), seed: 53)
                ctx.params.zeroGrad()
                _ = conv.forward(x, training: true)
                let dx = conv.backward(dy).array
                if !needs { XCTAssertEqual(dx.filter { $0 != 0 }.count, 0, "dX of a layer that needs none") }
                let once = conv.weight.grads
                _ = conv.forward(x, training: true)
                _ = conv.backward(dy)
                XCTAssertEqual(conv.weight.grads, once.map { $0 + $0 }, "the second step adds the same gradient")
                grads.append(once)
            }}
            XCTAssertEqual(grads[0], grads[1])
        }
    }
}
