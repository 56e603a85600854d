// Conv2D: forward against the naive Double reference, finite-difference gradients, and the
// image-grouping paths of the forward/backward gemms.
import XCTest
import NN
import TestSupport

struct ConvCase: CustomStringConvertible {
    var n = 3, cin = 2, cout = 3, h = 6, w = 5, k = 3, stride = 1, padding = 1, bias = true
    var description: String {
        "conv n\(n) cin\(cin) cout\(cout) \(h)x\(w) k\(k) s\(stride) p\(padding) bias \(bias)"
    }
    var outHW: Int { ((h + 2 * padding - k) / stride + 1) * ((w + 2 * padding - k) / stride + 1) }
    /// Conv2D's plan (private): the batch is cut into `workers = min(Parallel.workers, n)`
    /// contiguous ranges, each done `group = max(1, min(ceil(n / workers), 4096 / (Ho*Wo)))`
    /// images per gemm.
    func groupSize(workers: Int = 1) -> Int {
        let w = max(1, min(workers, n))
        return max(1, min((n + w - 1) / w, 4096 / max(outHW, 1)))
    }
}

/// A finalized context holding one randomly initialized Conv2D.
func makeConv(_ c: ConvCase, seed: UInt64 = 7) -> (ModelContext, Conv2D) {
    let ctx = ModelContext()
    let conv = Conv2D(ctx, name: "conv", inChannels: c.cin, outChannels: c.cout, kernel: c.k,
                      stride: c.stride, padding: c.padding, bias: c.bias)
    ctx.finalize()
    randomizeParameters(ctx, seed: seed)
    return (ctx, conv)
}

func checkConvForward(_ c: ConvCase, _ conv: Conv2D, _ x: Tensor, file: StaticString = #filePath, line: UInt = #line) {
    let y = conv.forward(x, training: true)
    let ref = referenceConv2D(x.array, shape: x.shape, weight: conv.weight.values, bias: conv.bias?.values,
                              outChannels: c.cout, kernel: c.k, stride: c.stride, padding: c.padding)
    XCTAssertEqual(y.shape, ref.shape, "\(c)", file: file, line: line)
    XCTAssertEqual(conv.outputShape(x.shape), ref.shape, "\(c)", file: file, line: line)
    assertClose(y.array, ref.y, rtol: 1e-4, atol: 1e-5, "\(c) forward", file: file, line: line)
}

final class Conv2DTests: XCTestCase {
    /// Kernels 1, 3, 7; strides 1, 2; paddings 0, 1, 3; bias on and off; non-square inputs.
    static let cases: [ConvCase] = [
        ConvCase(n: 3, cin: 3, cout: 4, h: 5, w: 7, k: 1, stride: 1, padding: 0, bias: true),   // 1x1 fast path
        ConvCase(n: 3, cin: 2, cout: 3, h: 7, w: 6, k: 1, stride: 2, padding: 0, bias: false),  // 1x1 shortcut
        ConvCase(n: 3, cin: 2, cout: 2, h: 4, w: 5, k: 1, stride: 1, padding: 1, bias: true),   // 1x1 with padding
        ConvCase(n: 3, cin: 2, cout: 3, h: 6, w: 5, k: 3, stride: 1, padding: 1, bias: true),
        ConvCase(n: 4, cin: 3, cout: 2, h: 7, w: 8, k: 3, stride: 2, padding: 1, bias: false),
        ConvCase(n: 3, cin: 2, cout: 3, h: 6, w: 7, k: 3, stride: 1, padding: 0, bias: false),
        ConvCase(n: 3, cin: 2, cout: 2, h: 9, w: 6, k: 3, stride: 2, padding: 0, bias: true),
        ConvCase(n: 3, cin: 1, cout: 3, h: 11, w: 9, k: 7, stride: 2, padding: 3, bias: true),  // the stem
        ConvCase(n: 3, cin: 2, cout: 2, h: 8, w: 7, k: 7, stride: 1, padding: 3, bias: false),
        ConvCase(n: 3, cin: 1, cout: 2, h: 9, w: 10, k: 7, stride: 1, padding: 0, bias: true),
        ConvCase(n: 3, cin: 2, cout: 2, h: 5, w: 4, k: 3, stride: 2, padding: 3, bias: true),   // padding > k/2
        // Images smaller than the kernel (ResNet's last stages on small inputs): the kernel
        // overhangs both borders.
        ConvCase(n: 3, cin: 2, cout: 3, h: 1, w: 1, k: 3, stride: 1, padding: 1, bias: true),
        ConvCase(n: 3, cin: 2, cout: 2, h: 2, w: 1, k: 3, stride: 2, padding: 1, bias: true),
        ConvCase(n: 3, cin: 1, cout: 2, h: 3, w: 2, k: 7, stride: 2, padding: 3, bias: false),
        ConvCase(n: 3, cin: 2, cout: 2, h: 8, w: 7, k: 3, stride: 3, padding: 1, bias: true),   // stride 3
        // The dense-matrix path (H·W ≤ k², ConvUnrolled.swift): ResNet-18's 2x2 and 1x1 stages at
        // 28x28, its stride-2 entry, the limit H·W = k², and a 1x1 kernel on a 1x1 map.
        ConvCase(n: 3, cin: 3, cout: 4, h: 2, w: 2, k: 3, stride: 1, padding: 1, bias: false),
        ConvCase(n: 3, cin: 3, cout: 2, h: 2, w: 2, k: 3, stride: 2, padding: 1, bias: true),
        ConvCase(n: 3, cin: 2, cout: 3, h: 3, w: 3, k: 3, stride: 1, padding: 1, bias: true),
        ConvCase(n: 3, cin: 4, cout: 3, h: 1, w: 1, k: 1, stride: 1, padding: 0, bias: true),
    ]

    func testForwardMatchesReference() {
        for (i, c) in Self.cases.enumerated() {
            let (_, conv) = makeConv(c, seed: UInt64(i))
            checkConvForward(c, conv, randomTensor([c.n, c.cin, c.h, c.w], seed: UInt64(100 + i)))
        }
    }

    func testGradients() {
        for (i, c) in Self.cases.enumerated() {
            let (ctx, conv) = makeConv(c, seed: UInt64(i))
            let x = randomTensor([c.n, c.cin, c.h, c.w], seed: UInt64(200 + i))
            let r = assertLayerGradients(conv, ctx: ctx, input: x, "\(c)")
            XCTAssertEqual(r.tensors.map { $0.name }, ["input", "conv.weight"] + (c.bias ? ["conv.bias"] : []))
        }
    }

    /// Large Ho*Wo: several images per gemm with a short last group (gi > 1, n not a multiple
    /// of g), and one image per gemm (gi = 1). (One worker thread: the default; see
    /// ParallelTests for the batch split over workers.)
    func testImageGroupingPaths() {
        let grouped = [
            ConvCase(n: 3, cin: 1, cout: 2, h: 40, w: 40, k: 3, stride: 1, padding: 1, bias: true),  // g = 2: [2, 1]
            ConvCase(n: 5, cin: 1, cout: 2, h: 36, w: 36, k: 3, stride: 1, padding: 1, bias: false), // g = 3: [3, 2]
            ConvCase(n: 3, cin: 1, cout: 2, h: 46, w: 46, k: 3, stride: 1, padding: 1, bias: true),  // g = 1
            ConvCase(n: 3, cin: 2, cout: 2, h: 91, w: 91, k: 3, stride: 2, padding: 1, bias: true),  // g = 1, strided
        ]
        XCTAssertEqual(grouped.map { $0.groupSize() }, [2, 3, 1, 1])
        for (i, c) in grouped.enumerated() {
            let (ctx, conv) = makeConv(c, seed: UInt64(50 + i))
            let x = randomTensor([c.n, c.cin, c.h, c.w], seed: UInt64(300 + i))
            checkConvForward(c, conv, x)
            var o = GradientCheckOptions()
            o.maxSamples = 120
            assertLayerGradients(conv, ctx: ctx, input: x, options: o, "\(c)")
        }
    }

    /// One image per gemm (`group == 1`: the stem at 96x96 and 224x224) runs band by band of output
    /// rows (`forwardByRows` / `backwardByRows`): several bands with a short last one, 1 and 2 workers,
    /// bias on and off, dX skipped (the stem) or not. Forward against the reference, gradients by finite
    /// differences, and the same y, dX and dW as with the whole image in one band.
    func testRowBandPaths() {
        let saved = Conv2D.bandFloats
        defer { Conv2D.bandFloats = saved }
        let cases = [
            ConvCase(n: 3, cin: 3, cout: 4, h: 95, w: 93, k: 7, stride: 2, padding: 3, bias: true),   // 48x47 out, stem-like
            ConvCase(n: 2, cin: 2, cout: 3, h: 91, w: 96, k: 3, stride: 2, padding: 1, bias: false),  // 46x48 out
        ]
        XCTAssertEqual(cases.map { $0.groupSize() }, [1, 1])
        for (i, c) in cases.enumerated() {
            for workers in [1, 2] { withWorkers(workers) {
                let (ctx, conv) = makeConv(c, seed: UInt64(70 + i))
                let x = randomTensor([c.n, c.cin, c.h, c.w], seed: UInt64(80 + i))
                let dy = randomTensor(conv.outputShape(x.shape), seed: UInt64(90 + i))
                let wo = conv.outputShape(x.shape)[3], kdim = c.cin * c.k * c.k
                func run(bandRows: Int, inputGradient: Bool = true) -> ([Float], [Float], [Float]) {
                    Conv2D.bandFloats = bandRows * kdim * wo
                    conv.needsInputGradient = inputGradient
                    ctx.params.zeroGrad()
                    let y = conv.forward(x, training: true).array
                    let dx = conv.backward(dy).array
                    return (y, dx, Array(ctx.params.gradBuffer))
                }
                let whole = run(bandRows: 1000)
                let banded = run(bandRows: 5)   // 10 bands, the last of 3 (or 1) rows
                // relative to the scale of the sums: a BLAS kernel may order a narrower product's sums differently
                assertCloseScaled(banded.0, whole.0.map(Double.init), "\(c) workers \(workers) output")
                assertCloseScaled(banded.1, whole.1.map(Double.init), "\(c) workers \(workers) input gradient")
                assertCloseScaled(banded.2, whole.2.map(Double.init), "\(c) workers \(workers) parameter gradients")
                let stem = run(bandRows: 5, inputGradient: false)
                XCTAssertTrue(stem.1.allSatisfy { $0 == 0 }, "\(c): no input gradient asked, zeros returned")
                assertCloseScaled(stem.2, whole.2.map(Double.init), "\(c) workers \(workers) parameter gradients without dX")
                // dW on the im2row in chunks of 7 pixels (not a divisor of the bands' 235 or 240), and
                // as one dY · cols^T per band: the same sums in other orders
                let savedLimit = gemmSmallLimit
                gemmSmallLimit = c.cout * kdim * 7
                let chunked = run(bandRows: 5)
                gemmSmallLimit = savedLimit
                Conv2D.weightGradientByRowsIm2row = false
                let transposed = run(bandRows: 5)
                Conv2D.weightGradientByRowsIm2row = true
                assertCloseScaled(chunked.2, whole.2.map(Double.init), "\(c) workers \(workers) dW in chunks of 7 pixels")
                assertCloseScaled(transposed.2, whole.2.map(Double.init), "\(c) workers \(workers) dW as dY · cols^T")
                conv.needsInputGradient = true
                Conv2D.bandFloats = 5 * kdim * wo
                checkConvForward(c, conv, x)
                var o = GradientCheckOptions()
                o.maxSamples = 120
                assertLayerGradients(conv, ctx: ctx, input: x, options: o, "\(c) workers \(workers) in bands of 5 rows")
            }}
        }
    }

    /// Per-image results do not depend on how images are grouped: image i alone gives the same
    /// output and input gradient as inside a batch, and the weight gradient of the batch is the
    /// sum of the single-image gradients.
    func testBatchEqualsSumOfSingleImages() {
        for c in [ConvCase(n: 5, cin: 2, cout: 3, h: 36, w: 36, k: 3, stride: 1, padding: 1, bias: true),
                  ConvCase(n: 4, cin: 2, cout: 3, h: 6, w: 5, k: 3, stride: 2, padding: 1, bias: true),
                  ConvCase(n: 4, cin: 3, cout: 2, h: 2, w: 2, k: 3, stride: 1, padding: 1, bias: true)] {   // unrolled
            let (ctx, conv) = makeConv(c)
            let x = randomTensor([c.n, c.cin, c.h, c.w], seed: 9)
            let dyAll = randomTensor(conv.outputShape(x.shape), seed: 10)
            ctx.params.zeroGrad()
            let yAll = conv.forward(x, training: true).array
            let dxAll = conv.backward(dyAll).array
            let gAll = ctx.params.gradBuffer.map { $0 }
            ctx.params.zeroGrad()
            var ySingles: [Float] = [], dxSingles: [Float] = []
            for i in 0..<c.n {
                ySingles += conv.forward(x.slice(i, i + 1), training: true).array
                dxSingles += conv.backward(dyAll.slice(i, i + 1)).array
            }
            assertClose(yAll, ySingles, rtol: 1e-5, atol: 1e-6, "\(c) output")
            assertClose(dxAll, dxSingles, rtol: 1e-5, atol: 1e-6, "\(c) input gradient")
            // Relative to the gradient's scale: Winograd's rounding grows with the summed terms, not the result.
            assertCloseScaled(gAll, ctx.params.gradBuffer.map(Double.init), "\(c) parameter gradients")
        }
    }

    /// backward adds into the gradient buffer: two backward passes give twice the gradient.
    func testBackwardAccumulates() {
        let c = ConvCase()
        let (ctx, conv) = makeConv(c)
        let x = randomTensor([c.n, c.cin, c.h, c.w], seed: 1)
        let dy = randomTensor(conv.outputShape(x.shape), seed: 2)
        ctx.params.zeroGrad()
        _ = conv.forward(x, training: true)
        let dx1 = conv.backward(dy).array
        let once = Array(ctx.params.gradBuffer)
        XCTAssertTrue(once.contains { $0 != 0 })
        let dx2 = conv.backward(dy).array
        assertClose(Array(ctx.params.gradBuffer), once.map { 2 * $0 }, rtol: 1e-6, atol: 1e-7, "accumulated")
        // The input gradient is not accumulated: a second backward returns the same dx.
        assertClose(dx2, dx1, rtol: 0, atol: 0, "dx")
    }

    /// The layer's cached tensors and workspaces follow changes of batch and image size.
    func testChangingShapesReusesBuffersCorrectly() {
        let (_, conv) = makeConv(ConvCase())
        for (i, (n, h, w)) in [(3, 6, 5), (1, 6, 5), (5, 9, 7), (2, 4, 4), (3, 6, 5), (4, 40, 40)].enumerated() {
            var c = ConvCase(); c.n = n; c.h = h; c.w = w
            checkConvForward(c, conv, randomTensor([n, c.cin, h, w], seed: UInt64(40 + i)))
        }
    }

    func testNamesAndShapes() {
        let ctx = ModelContext()
        let conv = Conv2D(ctx, name: "1.0.conv1", inChannels: 3, outChannels: 5, kernel: 7, stride: 2, padding: 3)
        let nob = Conv2D(ctx, name: "x", inChannels: 3, outChannels: 5, kernel: 1, bias: false)
        XCTAssertEqual(conv.weight.name, "1.0.conv1.weight")
        XCTAssertEqual(conv.weight.shape, [5, 3, 7, 7])
        XCTAssertEqual(conv.bias?.name, "1.0.conv1.bias")
        XCTAssertEqual(conv.bias?.shape, [5])
        XCTAssertNil(nob.bias)
        XCTAssertEqual(nob.parameters.count, 1)
        XCTAssertEqual(conv.outputShape([2, 3, 224, 224]), [2, 5, 112, 112])
        XCTAssertEqual(conv.outputShape([2, 3, 225, 223]), [2, 5, 113, 112])
    }
}
