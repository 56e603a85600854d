// BatchNorm2D: training forward and running statistics (momentum 0.1, unbiased variance,
// num_batches_tracked), eval mode, gradients, and the cross-rank statistic reducer.
import XCTest
import Foundation
import NN
import TestSupport

func makeBN(channels: Int, seed: UInt64 = 3, reducer: ((UnsafeMutablePointer<Double>, Int) -> Void)? = nil)
    -> (ModelContext, BatchNorm2D) {
    let ctx = ModelContext()
    let bn = BatchNorm2D(ctx, name: "bn", channels: channels)
    ctx.finalize()
    bn.resetParameters()
    fillUniform(bn.weight, seed: seed, lo: 0.5, hi: 1.5)
    fillUniform(bn.bias, seed: seed, lo: -0.5, hi: 0.5)
    ctx.statReducer = reducer
    return (ctx, bn)
}

final class BatchNormTests: XCTestCase {
    let shape = [4, 3, 5, 6]

    /// Input channels with different means and spreads (mean 3 tests the shifted sums).
    func input(_ shape: [Int], seed: UInt64) -> Tensor {
        let x = randomTensor(shape, seed: seed, lo: -1, hi: 1)
        let hw = shape[2] * shape[3], c = shape[1]
        for q in 0..<x.count {
            let ch = (q / hw) % c
            x[q] = x[q] * Float(ch + 1) + [3, -0.5, 10][ch % 3]
        }
        return x
    }

    func testTrainingForwardAndRunningStatistics() {
        let (ctx, bn) = makeBN(channels: 3)
        XCTAssertEqual(bn.runningMean.values, [0, 0, 0])
        XCTAssertEqual(bn.runningVar.values, [1, 1, 1])
        XCTAssertEqual(bn.numBatchesTracked.values, [0])
        XCTAssertEqual(bn.numBatchesTracked.type, .int64)
        XCTAssertEqual(bn.numBatchesTracked.shape, [])
        var expMean = [Double](repeating: 0, count: 3), expVar = [Double](repeating: 1, count: 3)
        for step in 1...3 {
            let x = input(shape, seed: UInt64(step))
            let y = bn.forward(x, training: true)
            let ref = referenceBatchNormTraining(x.array, shape: shape, gamma: bn.weight.values, beta: bn.bias.values)
            assertClose(y.array, ref.y, rtol: 1e-4, atol: 1e-5, "step \(step) output")
            for ch in 0..<3 {
                expMean[ch] = 0.9 * expMean[ch] + 0.1 * ref.mean[ch]
                expVar[ch] = 0.9 * expVar[ch] + 0.1 * ref.unbiasedVar[ch]   // unbiased, as PyTorch
            }
            assertClose(bn.runningMean.values, expMean, rtol: 1e-5, atol: 1e-6, "step \(step) running_mean")
            assertClose(bn.runningVar.values, expVar, rtol: 1e-5, atol: 1e-6, "step \(step) running_var")
            XCTAssertEqual(bn.numBatchesTracked.values, [Float(step)])
            // Biased variance would differ by the factor M/(M-1) = 120/119: tell them apart.
            XCTAssertGreaterThan(ref.unbiasedVar[2] - ref.biasedVar[2], 1e-3)
        }
        XCTAssertEqual(ctx.buffers.entries.map { $0.name },
                       ["bn.running_mean", "bn.running_var", "bn.num_batches_tracked"])
        XCTAssertEqual(ctx.params.entries.map { $0.name }, ["bn.weight", "bn.bias"])
    }

    /// One-image, 1x1 planes: M = N, still unbiased; constant channels give var 0 without NaN.
    func testSmallAndConstantBatches() {
        let (_, bn) = makeBN(channels: 2)
        let x = Tensor(shape: [3, 2, 1, 1], values: [1, 5, 2, 5, 4, 5])
        let y = bn.forward(x, training: true)
        let ref = referenceBatchNormTraining(x.array, shape: x.shape, gamma: bn.weight.values, beta: bn.bias.values)
        assertClose(y.array, ref.y, rtol: 1e-4, atol: 1e-5, "output")
        XCTAssertTrue(y.array.allSatisfy { $0.isFinite })
        // channel 0: mean 7/3, unbiased var ((4/3)^2 + (1/3)^2 + (5/3)^2)/2 = 7/3; channel 1 constant.
        assertClose(bn.runningMean.values, [0.1 * 7 / 3, 0.5], rtol: 1e-5, atol: 1e-6, "running_mean")
        assertClose(bn.runningVar.values, [0.9 + 0.1 * 7 / 3, 0.9], rtol: 1e-5, atol: 1e-6, "running_var")
    }

    func testEvalUsesRunningStatisticsAndChangesNothing() {
        let (_, bn) = makeBN(channels: 3)
        setValues(bn.runningMean, [0.5, -1, 2])
        setValues(bn.runningVar, [0.25, 2, 4])
        let x = input(shape, seed: 5)
        let y = bn.forward(x, training: false)
        let ref = referenceBatchNormEval(x.array, shape: shape, gamma: bn.weight.values, beta: bn.bias.values,
                                         runningMean: [0.5, -1, 2], runningVar: [0.25, 2, 4])
        assertClose(y.array, ref, rtol: 1e-5, atol: 1e-5, "eval output")
        XCTAssertEqual(bn.runningMean.values, [0.5, -1, 2])
        XCTAssertEqual(bn.runningVar.values, [0.25, 2, 4])
        XCTAssertEqual(bn.numBatchesTracked.values, [0])
    }

    func testGradients() {
        let (ctx, bn) = makeBN(channels: 3)
        let r = assertLayerGradients(bn, ctx: ctx, input: input(shape, seed: 7), "bn [4,3,5,6]")
        XCTAssertEqual(r.tensors.map { $0.name }, ["input", "bn.weight", "bn.bias"])
        let (ctx2, bn2) = makeBN(channels: 2)
        assertLayerGradients(bn2, ctx: ctx2, input: input([3, 2, 1, 1], seed: 8), "bn [3,2,1,1]")
        let (ctx3, bn3) = makeBN(channels: 4)
        assertLayerGradients(bn3, ctx: ctx3, input: input([1, 4, 3, 2], seed: 9), "bn [1,4,3,2]")
    }

    /// A batch norm fused with the in-place ReLU after it (what Sequential and ResidualBlock do by
    /// default) gives the bits of the two layers apart: output in training and eval, input gradient
    /// and parameter gradients; maps of 35 (a SIMD tail) and of 1 pixel, NaN inputs included.
    func testFusedReLUMatchesTheTwoLayersBitForBit() {
        let saved = BatchNorm2D.fusesReLU
        defer { BatchNorm2D.fusesReLU = saved }
        for shape in [[4, 3, 5, 7], [5, 2, 1, 1]] {
            func run(fused: Bool) -> (y: [Float], dx: [Float], grads: [Float], eval: [Float]) {
                BatchNorm2D.fusesReLU = fused
                let ctx = ModelContext()
                let bn = BatchNorm2D(ctx, name: "bn", channels: shape[1])
                let relu = ReLU(name: "relu", inPlace: true)
                let seq = Sequential(ctx, name: "s", [bn, relu])
                ctx.finalize()
                bn.resetParameters()
                fillUniform(bn.weight, seed: 3, lo: -1.5, hi: 1.5)   // negative gammas flip the mask
                fillUniform(bn.bias, seed: 4, lo: -0.5, hi: 0.5)
                XCTAssertEqual(bn.fusedReLU, fused, "\(shape)")
                XCTAssertEqual(relu.passThrough, fused, "\(shape)")
                let x = input(shape, seed: 21)
                if shape[2] > 1 { x[7] = .nan }   // one NaN: its channel's statistics and all its outputs are NaN
                let dy = randomTensor(shape, seed: 22)
                ctx.params.zeroGrad()
                let y = seq.forward(x, training: true).array
                let dx = seq.backward(dy).array
                let grads = Array(ctx.params.gradBuffer)
                return (y, dx, grads, seq.forward(x, training: false).array)
            }
            let apart = run(fused: false), fused = run(fused: true)
            XCTAssertTrue(apart.y.contains(0) && apart.y.contains { $0 > 0 }, "\(shape): the ReLU must cut somewhere")
            for (name, a, b) in [("y", apart.y, fused.y), ("dx", apart.dx, fused.dx), ("gradients", apart.grads, fused.grads),
                                 ("eval y", apart.eval, fused.eval)] {
                let differ = a.indices.filter { $0 < b.count }.filter { a[$0].bitPattern != b[$0].bitPattern }
                XCTAssertTrue(a.count == b.count && differ.isEmpty,
                              "\(shape) \(name): \(differ.count) of \(a.count) differ, first at \(differ.first.map { "[\($0)] \(a[$0]) vs \(b[$0])" } ?? "-")")
            }
        }
    }

    /// A batch norm that pools as it normalizes (the stem's BN, ReLU, MaxPool; `fuse(pool:)`) gives the
    /// bits of the three layers apart: pooled output in training and eval, input gradient, parameter
    /// gradients and running statistics; with and without the ReLU, with an identity stat reducer
    /// (the synced path), with 1 to 3 workers, for 3x3/2 padding 1 and 2x2/2 pooling; odd maps, a NaN
    /// and ties included.
    func testFusedPoolingMatchesTheLayersApartBitForBit() {
        let saved = (BatchNorm2D.fusesReLU, BatchNorm2D.fusesPool)
        defer { (BatchNorm2D.fusesReLU, BatchNorm2D.fusesPool) = saved }
        BatchNorm2D.fusesReLU = true
        for (shape, k, st, pd) in [([3, 4, 9, 11], 3, 2, 1), ([2, 3, 8, 6], 2, 2, 0), ([5, 2, 1, 1], 3, 2, 1)] {
            for withReLU in [true, false] { for synced in [false, true] { for workers in [1, 2, 3] {
                func run(fused: Bool) -> [[Float]] { withWorkers(workers) {
                    BatchNorm2D.fusesPool = fused
                    let ctx = ModelContext()
                    if synced { ctx.statReducer = { _, _ in } }
                    let bn = BatchNorm2D(ctx, name: "bn", channels: shape[1])
                    let pool = MaxPool2D(name: "pool", kernel: k, stride: st, padding: pd)
                    let seq = Sequential(ctx, name: "s", withReLU ? [bn, ReLU(name: "relu", inPlace: true), pool] : [bn, pool])
                    ctx.finalize()
                    bn.resetParameters()
                    fillUniform(bn.weight, seed: 3, lo: -1.5, hi: 1.5)
                    fillUniform(bn.bias, seed: 4, lo: -0.5, hi: 0.5)
                    XCTAssertEqual(bn.fusedPool != nil, fused)
                    XCTAssertEqual(pool.passThrough, fused)
                    let x = input(shape, seed: 41)
                    if shape[2] > 1 { x[5] = .nan; x[shape[2] * shape[3] + 2] = x[shape[2] * shape[3] + 3] }   // a NaN, a tie
                    ctx.params.zeroGrad()
                    let y = seq.forward(x, training: true)
                    let dy = randomTensor(y.shape, seed: 42)
                    let dx = seq.backward(dy).array
                    let grads = Array(ctx.params.gradBuffer)
                    let stats = bn.runningMean.values + bn.runningVar.values
                    return [y.array, dx, grads, stats, seq.forward(x, training: false).array]
                }}
                let apart = run(fused: false), fused = run(fused: true)
                let what = "\(shape) pool \(k)/\(st)/\(pd) relu \(withReLU) synced \(synced) workers \(workers)"
                XCTAssertTrue(apart[1].contains { $0 != 0 && !$0.isNaN }, "\(what): some input gradient")
                for (i, name) in ["y", "dx", "gradients", "running statistics", "eval y"].enumerated() {
                    let a = apart[i], b = fused[i]
                    let differ = a.indices.filter { $0 < b.count && a[$0].bitPattern != b[$0].bitPattern }
                    XCTAssertTrue(a.count == b.count && differ.isEmpty,
                                  "\(what) \(name): \(differ.count) of \(a.count) differ, first at \(differ.first.map { "[\($0)] \(a[$0]) vs \(b[$0])" } ?? "-")")
                }
            }}}
        }
    }

    /// Without a reducer each channel's two passes run back to back (in cache); with one, all the
    /// sums come first. A reducer that changes nothing must give the same bits, with and without ReLU.
    func testChannelByChannelPassesMatchTheTwoPhasePassesBitForBit() {
        for fused in [false, true] {
            func run(reducer: ((UnsafeMutablePointer<Double>, Int) -> Void)?) -> [[Float]] {
                let (ctx, bn) = makeBN(channels: 3, seed: 5, reducer: reducer)
                if fused { bn.fuse(ReLU(name: "relu", inPlace: true)) }
                let x = input([4, 3, 9, 7], seed: 31), dy = randomTensor([4, 3, 9, 7], seed: 32)
                ctx.params.zeroGrad()
                let y = bn.forward(x, training: true).array, dx = bn.backward(dy).array
                return [y, dx, Array(ctx.params.gradBuffer), bn.runningMean.values, bn.runningVar.values]
            }
            let alone = run(reducer: nil), reduced = run(reducer: { _, _ in })
            for (i, name) in ["y", "dx", "gradients", "running mean", "running var"].enumerated() {
                XCTAssertEqual(alone[i].map(\.bitPattern), reduced[i].map(\.bitPattern), "fused ReLU \(fused): \(name)")
            }
            XCTAssertTrue(alone[1].contains { $0 != 0 })
        }
    }

    func testBackwardAccumulatesParameterGradients() {
        let (ctx, bn) = makeBN(channels: 3)
        let x = input(shape, seed: 11), dy = randomTensor(shape, seed: 12)
        ctx.params.zeroGrad()
        _ = bn.forward(x, training: true)
        let dx1 = bn.backward(dy).array
        let once = Array(ctx.params.gradBuffer)
        let dx2 = bn.backward(dy).array
        assertClose(Array(ctx.params.gradBuffer), once.map { 2 * $0 }, rtol: 1e-6, atol: 1e-6, "accumulated")
        assertClose(dx2, dx1, rtol: 0, atol: 0, "dx")
    }

    /// A reducer that doubles every sum (as if a second rank held the same batch) must act
    /// exactly like BN on the batch concatenated with itself; parameter gradients stay local
    /// (half of the concatenated ones: the gradient allreduce adds the other half).
    func testDoublingReducerEqualsConcatenatedBatch() {
        var calls: [Int] = []
        let (ctxR, bnR) = makeBN(channels: 3) { p, n in
            calls.append(n)
            for i in 0..<n { p[i] *= 2 }
        }
        let (ctxC, bnC) = makeBN(channels: 3)
        let x = input(shape, seed: 13), dy = randomTensor(shape, seed: 14)
        ctxR.params.zeroGrad(); ctxC.params.zeroGrad()
        let yR = bnR.forward(x, training: true).array
        let yC = bnC.forward(Tensor.concat([x, x]), training: true).array
        assertClose(yR, Array(yC[..<x.count]), rtol: 1e-5, atol: 1e-5, "output")
        assertClose(bnR.runningMean.values, bnC.runningMean.values, rtol: 1e-5, atol: 1e-6, "running_mean")
        assertClose(bnR.runningVar.values, bnC.runningVar.values, rtol: 1e-5, atol: 1e-6, "running_var (M = 2 * 120)")
        let dxR = bnR.backward(dy).array
        let dxC = bnC.backward(Tensor.concat([dy, dy])).array
        assertClose(dxR, Array(dxC[..<x.count]), rtol: 1e-4, atol: 1e-5, "input gradient")
        assertClose(bnR.weight.grads.map { 2 * $0 }, bnC.weight.grads, rtol: 1e-5, atol: 1e-5, "dgamma")
        assertClose(bnR.bias.grads.map { 2 * $0 }, bnC.bias.grads, rtol: 1e-5, atol: 1e-5, "dbeta")
        XCTAssertEqual(calls, [2 * 3 + 1, 2 * 3], "forward reduces (sum, sum of squares, count), backward two sums")
        // Eval mode never reduces.
        _ = bnR.forward(x, training: false)
        XCTAssertEqual(calls.count, 2)
    }

    /// Two simulated ranks on two threads with uneven local batches (2 and 3 images), each with
    /// its own BN instance holding the same parameters, reducing through a shared exchange:
    /// together they must match one BN over the whole batch of 5.
    func testTwoRankReducerMatchesGlobalBatch() {
        let exchange = TwoRankExchange()
        let ranks = (0..<2).map { r in makeBN(channels: 3, reducer: { p, n in exchange.allreduce(rank: r, p, n) }) }
        let (ctxG, bnG) = makeBN(channels: 3)
        let x = input([5, 3, 4, 3], seed: 15), dy = randomTensor([5, 3, 4, 3], seed: 16)
        let parts = [(0, 2), (2, 5)]
        let results = ResultSlots()
        func rank(_ r: Int) {
            let (ctx, bn) = ranks[r]
            ctx.params.zeroGrad()
            let y = bn.forward(x.slice(parts[r].0, parts[r].1), training: true).array
            let dx = bn.backward(dy.slice(parts[r].0, parts[r].1)).array
            results.set(r, (y, dx))
        }
        let job = UncheckedJob { rank(1); exchange.done.signal() }
        let thread = Thread { job.run() }
        thread.start()
        rank(0)
        exchange.done.wait()
        ctxG.params.zeroGrad()
        let yG = bnG.forward(x, training: true).array
        let dxG = bnG.backward(dy).array
        assertClose(results[0].0 + results[1].0, yG, rtol: 1e-5, atol: 1e-5, "output")
        assertClose(results[0].1 + results[1].1, dxG, rtol: 1e-4, atol: 1e-5, "input gradient")
        for (r, (_, bn)) in ranks.enumerated() {
            assertClose(bn.runningMean.values, bnG.runningMean.values, rtol: 1e-5, atol: 1e-6, "rank \(r) running_mean")
            assertClose(bn.runningVar.values, bnG.runningVar.values, rtol: 1e-5, atol: 1e-6, "rank \(r) running_var")
        }
        let sumGrad = { (f: (BatchNorm2D) -> [Float]) in zip(f(ranks[0].1), f(ranks[1].1)).map { $0 + $1 } }
        assertClose(sumGrad { $0.weight.grads }, bnG.weight.grads, rtol: 1e-5, atol: 1e-5, "dgamma summed over ranks")
        assertClose(sumGrad { $0.bias.grads }, bnG.bias.grads, rtol: 1e-5, atol: 1e-5, "dbeta summed over ranks")
    }

    /// Statistics far from K = running_mean (the first batches, or after a shift): with float32
    /// sums, E[x^2] - E[x]^2 cancelled and a channel with mean 1000 and std 1 was normalized with
    /// an error of ~0.4 on the first step; the sums are now accumulated in Double.
    func testBatchNormStatisticsFarFromRunningMean() throws {
        for (mean, std, hw) in [(1000 as Float, 1 as Float, 14), (100, 0.1, 28)] {
            let (_, bn) = makeBN(channels: 1)
            let x = Tensor(shape: [8, 1, hw, hw], values: randomNormalArray(8 * hw * hw, seed: 1, mean: mean, std: std))
            let y = bn.forward(x, training: true)
            let ref = referenceBatchNormTraining(x.array, shape: x.shape, gamma: bn.weight.values, beta: bn.bias.values)
            assertClose(y.array, ref.y, rtol: 1e-3, atol: 1e-3, "mean \(mean) std \(std): output")
            assertClose(bn.runningVar.values, [0.9 + 0.1 * ref.unbiasedVar[0]], rtol: 1e-4, atol: 1e-6,
                        "mean \(mean) std \(std): running_var")
        }
    }
}

/// A closure handed to another thread (the test joins it through a semaphore).
final class UncheckedJob: @unchecked Sendable {
    let run: () -> Void
    init(_ run: @escaping () -> Void) { self.run = run }
}

/// What each simulated rank produced (written by two threads).
final class ResultSlots: @unchecked Sendable {
    private let lock = NSLock()
    private var slots = [([Float], [Float])](repeating: ([], []), count: 2)
    func set(_ r: Int, _ v: ([Float], [Float])) { lock.lock(); slots[r] = v; lock.unlock() }
    subscript(r: Int) -> ([Float], [Float]) { lock.lock(); defer { lock.unlock() }; return slots[r] }
}

/// An in-process allreduce (sum) of two ranks running on two threads.
final class TwoRankExchange: @unchecked Sendable {
    private let cond = NSCondition()
    private var slots: [[Double]] = [[], []]
    private var arrived = 0, generation = 0
    let done = DispatchSemaphore(value: 0)

    private func barrier() {
        cond.lock()
        let g = generation
        arrived += 1
        if arrived == 2 { arrived = 0; generation += 1; cond.broadcast() }
        else { while generation == g { cond.wait() } }
        cond.unlock()
    }

    func allreduce(rank: Int, _ p: UnsafeMutablePointer<Double>, _ n: Int) {
        cond.lock(); slots[rank] = Array(UnsafeBufferPointer(start: p, count: n)); cond.unlock()
        barrier()
        cond.lock(); let other = slots[1 - rank]; cond.unlock()
        precondition(other.count == n, "ranks reduce different lengths")
        for i in 0..<n { p[i] += other[i] }
        barrier()
    }
}
