// GradientPool's donation rules: only a donated tensor of the pool is overwritten in place, once.
import XCTest
import NN

final class GradientPoolTests: XCTestCase {
    func testDonatedTensorIsReusedOnceAndOthersNever() {
        let pool = GradientPool()
        GradientPool.current = pool
        defer { GradientPool.current = nil }
        let a = pool.take([2, 3]), b = pool.take([2, 3])
        XCTAssertFalse(GradientPool.take([2, 3], replacing: a) === a, "not donated: a fresh tensor")
        pool.donate(a)
        XCTAssertTrue(pool.isDonated(a))
        XCTAssertTrue(GradientPool.take([2, 3], replacing: a) === a, "donated: overwritten in place")
        XCTAssertFalse(pool.isDonated(a))
        XCTAssertFalse(GradientPool.take([2, 3], replacing: a) === a, "a donation is used once")
        pool.donate(b)
        XCTAssertFalse(GradientPool.take([3, 2], replacing: b) === b, "another shape never reuses it")
        pool.give(b)
        let again = pool.take([2, 3])   // b, from the free list
        XCTAssertTrue(again === b)
        XCTAssertFalse(GradientPool.take([2, 3], replacing: b) === b, "giving back cleared the donation")
        let foreign = Tensor(shape: [2, 3], zeroed: true)
        pool.donate(foreign)
        XCTAssertFalse(GradientPool.take([2, 3], replacing: foreign) === foreign, "a tensor not from the pool is never overwritten")
    }

    /// A Sequential of elementwise layers handed a donated gradient overwrites it all the way and
    /// returns it; handed the caller's gradient, it leaves it untouched and takes one tensor.
    func testSequentialPassesADonationOnAndLeavesTheCallersGradientAlone() {
        let ctx = ModelContext()
        let seq = Sequential(ctx, name: "s", [ReLU(name: "r1"), ReLU(name: "r2")])
        ctx.finalize()
        let x = Tensor(shape: [1, 1, 2, 2], zeroed: true)
        for (i, v) in [1, -1, 2, -2].enumerated() { x.data[i] = Float(v) }
        _ = seq.forward(x, training: true)
        GradientPool.current = ctx.gradients
        defer { GradientPool.current = nil }
        let mine = ctx.gradients.take([1, 1, 2, 2])
        for i in 0..<4 { mine.data[i] = 5 }
        let before = ctx.gradients.allocatedFloats
        let kept = seq.backward(mine)
        XCTAssertEqual(kept.array, [5, 0, 5, 0])
        XCTAssertTrue(ctx.gradients.allocatedFloats > before || kept !== mine, "not donated: the caller's tensor is not overwritten")
        XCTAssertEqual(mine.array, [5, 5, 5, 5])
        ctx.gradients.donate(mine)
        let after = ctx.gradients.allocatedFloats
        let reused = seq.backward(mine)
        XCTAssertTrue(reused === mine, "donated: overwritten in place and returned")
        XCTAssertEqual(reused.array, [5, 0, 5, 0])
        XCTAssertEqual(ctx.gradients.allocatedFloats, after, "no tensor taken")
    }
}
