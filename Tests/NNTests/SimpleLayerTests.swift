// ReLU, MaxPool2D, GlobalAvgPool, Flatten, Linear: forward values and gradients.
import XCTest
import NN
import TestSupport

final class SimpleLayerTests: XCTestCase {
    func testReLU() {
        let relu = ReLU(name: "r")
        let x = Tensor(shape: [1, 1, 2, 3], values: [-2, -0.5, 0, 0.25, 3, -1e-3])
        XCTAssertEqual(relu.forward(x, training: true).array, [0, 0, 0, 0.25, 3, 0])
        XCTAssertEqual(relu.backward(Tensor(shape: [1, 1, 2, 3], values: [1, 2, 3, 4, 5, 6])).array, [0, 0, 0, 4, 5, 0])
        // A NaN stays NaN (PyTorch's relu), and its gradient is masked (its `result > 0` is false),
        // in the 16-lane loop (first 16) and the scalar tail alike.
        var v = [Float](repeating: 1, count: 19); v[3] = .nan; v[17] = .nan; v[5] = -1
        let y = relu.forward(Tensor(shape: [1, 1, 1, 19], values: v), training: true).array
        XCTAssertTrue(y[3].isNaN && y[17].isNaN && y[5] == 0 && y[0] == 1, "\(y)")
        let g = relu.backward(Tensor(shape: [1, 1, 1, 19], values: [Float](repeating: 2, count: 19))).array
        XCTAssertEqual(g.enumerated().filter { $0.element == 0 }.map(\.offset), [3, 5, 17])
        let ctx = ModelContext(); ctx.finalize()
        let r = assertLayerGradients(relu, ctx: ctx, input: spacedTensor([3, 2, 4, 5], seed: 1), "relu")
        XCTAssertEqual(r.tensors.map { $0.name }, ["input"])
    }

    func testMaxPoolForwardMatchesReference() {
        let configs = [(3, 2, 1), (2, 2, 0), (3, 1, 1), (3, 2, 0)]
        let sizes = [(7, 9), (5, 5), (8, 6), (6, 7), (4, 4), (3, 3)]
        for (k, s, p) in configs { for (i, (h, w)) in sizes.enumerated() {
            let pool = MaxPool2D(name: "mp", kernel: k, stride: s, padding: p)
            // All-negative inputs too: the padding is -inf, not 0.
            for x in [spacedTensor([2, 3, h, w], seed: UInt64(i)),
                      randomTensor([2, 3, h, w], seed: UInt64(i), lo: -5, hi: -1)] {
                let y = pool.forward(x, training: true)
                let ref = referenceMaxPool2D(x.array, shape: x.shape, kernel: k, stride: s, padding: p)
                XCTAssertEqual(y.shape, ref.shape)
                XCTAssertEqual(pool.outputShape(x.shape), ref.shape)
                assertClose(y.array, ref.y, rtol: 0, atol: 0, "maxpool k\(k) s\(s) p\(p) \(h)x\(w)")
            }
        }}
        // d2l's shape: 112 -> 56 with k3 s2 p1; odd 7 -> 4; k2 s2 p0: 7 -> 3.
        XCTAssertEqual(MaxPool2D(name: "", kernel: 3, stride: 2, padding: 1).outputShape([1, 64, 112, 112]), [1, 64, 56, 56])
        XCTAssertEqual(MaxPool2D(name: "", kernel: 3, stride: 2, padding: 1).outputShape([1, 1, 7, 7]), [1, 1, 4, 4])
        XCTAssertEqual(MaxPool2D(name: "", kernel: 2, stride: 2, padding: 0).outputShape([1, 1, 7, 7]), [1, 1, 3, 3])
    }

    func testMaxPoolGradients() {
        let ctx = ModelContext(); ctx.finalize()
        for (k, s, p) in [(3, 2, 1), (2, 2, 0), (3, 1, 1)] { for (h, w) in [(7, 9), (6, 6), (5, 4)] {
            let pool = MaxPool2D(name: "mp", kernel: k, stride: s, padding: p)
            assertLayerGradients(pool, ctx: ctx, input: spacedTensor([3, 2, h, w], seed: UInt64(h * w)),
                                 "maxpool k\(k) s\(s) p\(p) \(h)x\(w)")
        }}
    }

    /// Rows wide enough for several 8-window SIMD groups and a partial one (stride 2), with many
    /// ties (a ReLU'd, coarsely quantized input: runs of zeros and equal values) and NaNs: the
    /// same values and the same winning element per window as the scalar rule.
    func testMaxPoolWideRowsTiesAndNaNMatchTheScalarRule() {
        for (k, s, p) in [(3, 2, 1), (2, 2, 0), (3, 2, 0), (3, 1, 1)] { for (h, w) in [(13, 41), (9, 40), (6, 17)] {
            let shape = [2, 3, h, w]
            var values = randomTensor(shape, seed: UInt64(h + w), lo: -2, hi: 3).array.map { max(0, ($0 * 2).rounded()) }
            values[5] = .nan; values[values.count / 2] = .nan
            let x = Tensor(shape: shape, values: values)
            let pool = MaxPool2D(name: "mp", kernel: k, stride: s, padding: p)
            let y = pool.forward(x, training: true).array
            let winners = referenceMaxPool2DArgmax(values, shape: shape, kernel: k, stride: s, padding: p)
            let label = "maxpool k\(k) s\(s) p\(p) \(h)x\(w)"
            XCTAssertEqual(y.count, winners.count, label)
            XCTAssertEqual(y.map { $0.isNaN }, winners.map { values[$0].isNaN }, label + " NaN positions")
            XCTAssertEqual(y.map { $0.isNaN ? 0 : $0 }, winners.map { values[$0].isNaN ? 0 : values[$0] }, label)
            let dy = randomTensor(pool.outputShape(shape), seed: 3)
            let dx = pool.backward(dy).array
            var refDx = [Double](repeating: 0, count: values.count)
            for (o, i) in winners.enumerated() { refDx[i] += Double(dy.array[o]) }
            assertClose(dx, refDx, rtol: 1e-6, atol: 0, label + " backward")
        }}
    }

    /// Rows so wide that a 3x3 window spans more than 65535 floats: the argmax is kept as plane
    /// indices (Int32) rather than offsets in the window (UInt16); the same winners either way.
    func testMaxPoolArgmaxOfVeryWideRows() {
        for w in [32766, 32800] {   // offsets up to 2 * (w + 1): UInt16 below 32767, Int32 above
            let shape = [1, 1, 3, w]
            let values = randomTensor(shape, seed: 9, lo: -1, hi: 1).array
            let pool = MaxPool2D(name: "mp", kernel: 3, stride: 2, padding: 1)
            _ = pool.forward(Tensor(shape: shape, values: values), training: true)
            let winners = referenceMaxPool2DArgmax(values, shape: shape, kernel: 3, stride: 2, padding: 1)
            let dy = randomTensor(pool.outputShape(shape), seed: 4)
            let dx = pool.backward(dy).array
            var refDx = [Float](repeating: 0, count: values.count)
            for (o, i) in winners.enumerated() { refDx[i] += dy.array[o] }   // stride 2, k 3: at most 4 windows per element
            XCTAssertEqual(dx.map(\.bitPattern), refDx.map(\.bitPattern), "width \(w)")
        }
    }

    /// Overlapping windows (k3 s1): an element that is the max of several windows gets the sum.
    func testMaxPoolBackwardSumsOverlappingWindows() {
        let pool = MaxPool2D(name: "mp", kernel: 3, stride: 1, padding: 1)
        let x = Tensor(shape: [1, 1, 3, 3], values: [1, 2, 3, 4, 9, 5, 6, 7, 8])
        XCTAssertEqual(pool.forward(x, training: true).array, [9, 9, 9, 9, 9, 9, 9, 9, 9])
        let dx = pool.backward(Tensor(shape: [1, 1, 3, 3], values: [1, 1, 1, 1, 1, 1, 1, 1, 1])).array
        XCTAssertEqual(dx, [0, 0, 0, 0, 9, 0, 0, 0, 0])
    }

    func testGlobalAvgPool() {
        let gap = GlobalAvgPool(name: "5")
        let x = randomTensor([3, 4, 5, 3], seed: 2)
        let y = gap.forward(x, training: true)
        XCTAssertEqual(y.shape, [3, 4, 1, 1])
        assertClose(y.array, referenceGlobalAvgPool(x.array, shape: x.shape), rtol: 1e-6, atol: 1e-6, "gap")
        let ctx = ModelContext(); ctx.finalize()
        assertLayerGradients(gap, ctx: ctx, input: x, "gap")
        assertLayerGradients(gap, ctx: ctx, input: randomTensor([2, 3, 1, 1], seed: 3), "gap 1x1")
    }

    func testFlatten() {
        let f = Flatten(name: "6")
        let x = randomTensor([3, 4, 2, 1], seed: 4)
        let y = f.forward(x, training: true)
        XCTAssertEqual(y.shape, [3, 8])
        XCTAssertEqual(y.array, x.array)
        XCTAssertEqual(f.outputShape([2, 512, 1, 1]), [2, 512])
        let dx = f.backward(Tensor(shape: [3, 8], values: randomArray(24, seed: 5)))
        XCTAssertEqual(dx.shape, [3, 4, 2, 1])
        XCTAssertEqual(dx.array, randomArray(24, seed: 5))
        let ctx = ModelContext(); ctx.finalize()
        assertLayerGradients(f, ctx: ctx, input: x, "flatten")
    }

    func testLinear() {
        let ctx = ModelContext()
        let lin = Linear(ctx, name: "7", inFeatures: 6, outFeatures: 4)
        ctx.finalize()
        randomizeParameters(ctx, seed: 6)
        XCTAssertEqual(lin.weight.name, "7.weight"); XCTAssertEqual(lin.weight.shape, [4, 6])
        XCTAssertEqual(lin.bias.name, "7.bias"); XCTAssertEqual(lin.bias.shape, [4])
        let x = randomTensor([5, 6], seed: 7)
        let y = lin.forward(x, training: true)
        XCTAssertEqual(y.shape, [5, 4])
        let ref = referenceLinear(x.array, batch: 5, weight: lin.weight.values, bias: lin.bias.values,
                                  inFeatures: 6, outFeatures: 4)
        assertClose(y.array, ref, rtol: 1e-5, atol: 1e-6, "linear forward")
        let r = assertLayerGradients(lin, ctx: ctx, input: x, "linear")
        XCTAssertEqual(r.tensors.map { $0.name }, ["input", "7.weight", "7.bias"])
        // Batch of one, and accumulation into the gradient buffer.
        assertLayerGradients(lin, ctx: ctx, input: randomTensor([1, 6], seed: 8), "linear n=1")
        ctx.params.zeroGrad()
        let dy = randomTensor([5, 4], seed: 9)
        _ = lin.forward(x, training: true); _ = lin.backward(dy)
        let once = Array(ctx.params.gradBuffer)
        _ = lin.backward(dy)
        assertClose(Array(ctx.params.gradBuffer), once.map { 2 * $0 }, rtol: 1e-6, atol: 1e-7, "accumulated")
    }

    /// The checker itself: it must reject a backward with a 10% error or a dropped sum term.
    func testGradientCheckerCatchesWrongGradients() {
        let ctx = ModelContext()
        let good = Scale(ctx, name: "s", error: .none)
        let bad1 = Scale(ctx, name: "t", error: .factor)
        let bad2 = Scale(ctx, name: "u", error: .droppedTerm)
        ctx.finalize()
        randomizeParameters(ctx, seed: 1)
        let x = randomTensor([3, 4], seed: 2)
        XCTAssertTrue(checkLayerGradients(good, ctx: ctx, input: x).passed)
        let r1 = checkLayerGradients(bad1, ctx: ctx, input: x)
        XCTAssertFalse(r1["input"]!.passed, r1.description)
        XCTAssertTrue(r1["t.w"]!.passed, r1.description)
        let r2 = checkLayerGradients(bad2, ctx: ctx, input: x)
        XCTAssertTrue(r2["input"]!.passed, r2.description)
        XCTAssertFalse(r2["u.w"]!.passed, r2.description)
    }
}

/// y[n, i] = w[i] * x[n, i], with optional deliberate backward bugs (for the checker's test).
final class Scale: Layer {
    enum Bug { case none, factor, droppedTerm }
    let name: String
    let w: ParamHandle
    let error: Bug
    private var x: Tensor?
    init(_ ctx: ModelContext, name: String, error: Bug) {
        self.name = name; self.error = error
        w = ctx.params.declare(name + ".w", shape: [4])
    }
    var parameters: [ParamHandle] { [w] }
    func outputShape(_ s: [Int]) -> [Int] { s }
    func forward(_ x: Tensor, training: Bool) -> Tensor {
        self.x = x
        let y = Tensor(shape: x.shape)
        for q in 0..<x.count { y[q] = w.value[q % 4] * x[q] }
        return y
    }
    func backward(_ dy: Tensor) -> Tensor {
        let x = self.x!, dx = Tensor(shape: x.shape)
        for q in 0..<x.count {
            dx[q] = w.value[q % 4] * dy[q] * (error == .factor ? 1.1 : 1)
            if error == .droppedTerm && q / 4 == x.shape[0] - 1 { continue }   // forgets the last image
            w.grad[q % 4] += x[q] * dy[q]
        }
        return dx
    }
}
