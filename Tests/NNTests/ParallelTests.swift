// The layers split their loops over `Parallel.workers` threads (Conv2D also splits the batch,
// with per-worker weight-gradient partial sums). Results must not depend on the worker count.
import XCTest
import NN
import TestSupport

/// Runs body with `Parallel.workers = n`, restoring the previous value.
func withWorkers<T>(_ n: Int, _ body: () -> T) -> T {
    let saved = Parallel.workers
    Parallel.workers = n
    defer { Parallel.workers = saved }
    return body()
}

final class ParallelTests: XCTestCase {
    struct ConvRun { var y: [Float]; var dx: [Float]; var grads: [Float] }

    func runConv(_ c: ConvCase, workers: Int) -> ConvRun {
        withWorkers(workers) {
            let (ctx, conv) = makeConv(c, seed: 5)
            let x = randomTensor([c.n, c.cin, c.h, c.w], seed: 6)
            let dy = randomTensor(conv.outputShape(x.shape), seed: 7)
            ctx.params.zeroGrad()
            let y = conv.forward(x, training: true).array
            let dx = conv.backward(dy).array
            return ConvRun(y: y, dx: dx, grads: Array(ctx.params.gradBuffer))
        }
    }

    /// forItems hands every item out exactly once, to worker ids below `parts`, even when one
    /// worker is much slower than the other (it then takes fewer items).
    func testForItemsCoversEveryItemOnce() {
        for (n, parts) in [(0, 2), (1, 2), (7, 1), (37, 2), (64, 3)] {
            let seen = UnsafeMutablePointer<Int>.allocate(capacity: max(n, 1))
            let by = UnsafeMutablePointer<Int>.allocate(capacity: max(n, 1))
            defer { seen.deallocate(); by.deallocate() }
            seen.initialize(repeating: 0, count: max(n, 1)); by.initialize(repeating: -1, count: max(n, 1))
            withWorkers(parts) {
                Parallel.forItems(n, parts: parts) { wk, item in
                    if wk == 0 && parts > 1 { usleep(5000) }   // a slow worker
                    seen[item] += 1; by[item] = wk
                }
            }
            XCTAssertEqual(Array(UnsafeBufferPointer(start: seen, count: n)), [Int](repeating: 1, count: n), "n \(n) parts \(parts)")
            XCTAssertTrue((0..<n).allSatisfy { by[$0] >= 0 && by[$0] < parts }, "n \(n) parts \(parts)")
            if n == 37 && parts == 2 && ProcessInfo.processInfo.activeProcessorCount >= 2 {   // both threads at once
                let slow = (0..<n).filter { by[$0] == 0 }.count
                XCTAssertLessThan(slow, n / 2, "the slow worker took \(slow) of \(n) items")
            }
        }
    }

    func testConvSameResultsForAnyWorkerCount() {
        let cases = [
            ConvCase(n: 5, cin: 1, cout: 2, h: 36, w: 36, k: 3, stride: 1, padding: 1, bias: true),  // groups of 3 / [2], [3]
            ConvCase(n: 3, cin: 1, cout: 2, h: 46, w: 46, k: 3, stride: 1, padding: 1, bias: true),  // one image per gemm
            ConvCase(n: 7, cin: 3, cout: 4, h: 6, w: 5, k: 3, stride: 2, padding: 1, bias: true),    // small planes
            ConvCase(n: 2, cin: 2, cout: 3, h: 7, w: 9, k: 7, stride: 2, padding: 3, bias: false),
            ConvCase(n: 1, cin: 4, cout: 3, h: 5, w: 5, k: 1, stride: 1, padding: 0, bias: true),    // fewer images than workers
            ConvCase(n: 7, cin: 3, cout: 5, h: 2, w: 2, k: 3, stride: 1, padding: 1, bias: true),    // unrolled: split by images and channels
        ]
        XCTAssertEqual(cases[0].groupSize(workers: 2), 3)
        for c in cases {
            let one = runConv(c, workers: 1)
            for w in [2, 3, 4] {
                let r = runConv(c, workers: w)
                assertClose(r.y, one.y, rtol: 1e-5, atol: 1e-6, "\(c) workers \(w) output")
                assertClose(r.dx, one.dx, rtol: 1e-5, atol: 1e-6, "\(c) workers \(w) input gradient")
                // relative to the gradient's scale (Winograd's rounding grows with the summed terms)
                assertCloseScaled(r.grads, one.grads.map(Double.init), "\(c) workers \(w) parameter gradients")
            }
        }
    }

    func testConvGradientsWithTwoWorkers() {
        withWorkers(2) {
            for (i, c) in [ConvCase(n: 5, cin: 1, cout: 2, h: 36, w: 36, k: 3, stride: 1, padding: 1, bias: true),
                           ConvCase(n: 3, cin: 2, cout: 3, h: 6, w: 7, k: 3, stride: 2, padding: 1, bias: true),
                           ConvCase(n: 3, cin: 2, cout: 3, h: 2, w: 2, k: 3, stride: 1, padding: 1, bias: true)].enumerated() {
                let (ctx, conv) = makeConv(c, seed: UInt64(i))
                let x = randomTensor([c.n, c.cin, c.h, c.w], seed: UInt64(60 + i))
                checkConvForward(c, conv, x)
                var o = GradientCheckOptions()
                o.maxSamples = 120
                assertLayerGradients(conv, ctx: ctx, input: x, options: o, "\(c), 2 workers")
            }
        }
    }

    func testBatchNormSameResultsForAnyWorkerCount() {
        func run(_ workers: Int) -> [[Float]] {
            withWorkers(workers) {
                let (ctx, bn) = makeBN(channels: 5)
                let x = randomTensor([3, 5, 4, 6], seed: 1, lo: -2, hi: 3), dy = randomTensor([3, 5, 4, 6], seed: 2)
                ctx.params.zeroGrad()
                let y = bn.forward(x, training: true).array
                let dx = bn.backward(dy).array
                let ye = bn.forward(x, training: false).array
                return [y, dx, Array(ctx.params.gradBuffer), Array(ctx.buffers.valueBuffer), ye]
            }
        }
        let one = run(1)
        for w in [2, 3] {
            for (a, b) in zip(run(w), one) { assertClose(a, b, rtol: 1e-6, atol: 1e-6, "workers \(w)") }
        }
    }

    /// A whole training step (every layer kind, ReLU/residual loops above their parallel
    /// threshold) gives the same loss, gradients and BN statistics on 1, 2 and 3 workers.
    func testResNetStepSameForAnyWorkerCount() {
        func run(_ workers: Int) -> (Double, [Float], [Float], [Float]) {
            withWorkers(workers) {
                let model = ResNet(ResNetSpec(depth: 18, inChannels: 1, numClasses: 3, width: 4), seed: 1)
                let x = randomTensor([6, 1, 48, 48], seed: 2)
                model.params.zeroGrad()
                let r = model.trainStep(x, labels: [0, 1, 2, 2, 1, 0], normalizer: 6)
                let z = model.forward(x, training: false).array
                return (r.loss, Array(model.params.gradBuffer), Array(model.buffers.valueBuffer), z)
            }
        }
        let one = run(1)
        for w in [2, 3] {
            let r = run(w)
            XCTAssertEqual(r.0, one.0, accuracy: 1e-6, "workers \(w) loss")
            assertClose(r.1, one.1, rtol: 1e-3, atol: 1e-5, "workers \(w) gradients")
            assertClose(r.2, one.2, rtol: 1e-5, atol: 1e-6, "workers \(w) BN buffers")
            assertClose(r.3, one.3, rtol: 1e-4, atol: 1e-5, "workers \(w) eval logits")
        }
    }

    func testPoolingAndActivationsSameForAnyWorkerCount() {
        func run(_ workers: Int) -> [[Float]] {
            withWorkers(workers) {
                let relu = ReLU(name: "r"), pool = MaxPool2D(name: "p"), gap = GlobalAvgPool(name: "g")
                let x = spacedTensor([4, 3, 90, 70], seed: 3, spacing: 1e-3)   // 75600 elements: above the chunk size
                let a = relu.forward(x, training: true)
                let b = pool.forward(a, training: true)
                let c = gap.forward(b, training: true)
                let dc = gap.backward(randomTensor(c.shape, seed: 4))
                let db = pool.backward(dc)
                let da = relu.backward(db)
                return [a.array, b.array, c.array, da.array]
            }
        }
        let one = run(1)
        for w in [2, 3] { for (a, b) in zip(run(w), one) { assertClose(a, b, rtol: 0, atol: 0, "workers \(w)") } }
    }
}
