import XCTest
@testable import Data

final class SyntheticDatasetTests: XCTestCase {
    func testDeterministicAndSplitDiffers() throws {
        let a = try loadDataset(kind: .synthetic, root: "", split: .train, syntheticCount: 20,
                                syntheticShape: (3, 8, 6), numClasses: 4, seed: 42)
        let b = try loadDataset(kind: .synthetic, root: "", split: .train, syntheticCount: 20,
                                syntheticShape: (3, 8, 6), numClasses: 4, seed: 42)
        let t = try loadDataset(kind: .synthetic, root: "", split: .test, syntheticCount: 20,
                                syntheticShape: (3, 8, 6), numClasses: 4, seed: 42)
        let other = try loadDataset(kind: .synthetic, root: "", split: .train, syntheticCount: 20,
                                    syntheticShape: (3, 8, 6), numClasses: 4, seed: 43)
        XCTAssertEqual(a.count, 20)
        XCTAssertEqual([a.channels, a.height, a.width, a.numClasses], [3, 8, 6, 4])
        for i in 0..<20 {
            XCTAssertEqual(a.label(i), b.label(i))
            XCTAssertEqual(a.image(i), b.image(i))
            XCTAssertTrue((0..<4).contains(a.label(i)))
            XCTAssertTrue(a.image(i).allSatisfy { $0 >= 0 && $0 < 1 })
        }
        XCTAssertNotEqual(a.image(0), t.image(0))
        XCTAssertNotEqual(a.image(0), other.image(0))
        XCTAssertGreaterThan(Set((0..<20).map { a.label($0) }).count, 1)
    }

    func testClassSignal() throws {
        // The mean of the label's stripe rows is brighter than the rest of the image.
        let ds = try loadDataset(kind: .synthetic, root: "", split: .train, syntheticCount: 30,
                                 syntheticShape: (1, 20, 20), numClasses: 10, seed: 1)
        for i in 0..<ds.count {
            let img = ds.image(i), k = Int(ds.label(i))
            let stripe = (2 * k)..<(2 * k + 2)
            var inside: Float = 0, outside: Float = 0
            for y in 0..<20 { for x in 0..<20 { if stripe.contains(y) { inside += img[y * 20 + x] } else { outside += img[y * 20 + x] } } }
            XCTAssertGreaterThan(inside / 40, outside / 360 + 0.2)
        }
    }

    func testBadSyntheticParameters() {
        assertDatasetError(try loadDataset(kind: .synthetic, root: "", split: .train, syntheticShape: (0, 28, 28)),
                           contains: ["shape"])
    }
}
