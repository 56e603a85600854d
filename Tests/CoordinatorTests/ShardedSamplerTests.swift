// Which images each rank sees: one permutation per (seed, epoch) on every rank, rank r takes
// slice r of each global batch, so the ranks' slices joined are one process's batch; evaluation
// ranges cover the test set once.
import XCTest
import Coordinator

final class ShardedSamplerTests: XCTestCase {
    func testSamplerShardsTheGlobalBatch() throws {
        let one = try ShardedSampler(datasetCount: 100, globalBatch: 8, rank: 0, worldSize: 1, shuffle: true, seed: 7)
        let perm = one.permutation(epoch: 3)
        XCTAssertEqual(perm.sorted(), Array(0..<100))
        XCTAssertNotEqual(perm, one.permutation(epoch: 4))
        XCTAssertEqual(one.stepsPerEpoch, 12)   // the partial last batch is dropped
        for world in [2, 4] {
            for step in 0..<one.stepsPerEpoch {
                var joined: [Int] = []
                for r in 0..<world {
                    let s = try ShardedSampler(datasetCount: 100, globalBatch: 8, rank: r, worldSize: world, shuffle: true, seed: 7)
                    XCTAssertEqual(s.permutation(epoch: 3), perm)
                    joined += s.localIndices(perm, step: step)
                }
                XCTAssertEqual(joined, Array(one.localIndices(perm, step: step)))
            }
        }
        XCTAssertThrowsError(try ShardedSampler(datasetCount: 100, globalBatch: 9, rank: 0, worldSize: 2, shuffle: true, seed: 0)) {
            XCTAssertTrue("\($0)".contains("train.batch_size 9") && "\($0)".contains("divisible by the world size 2"), "\($0)")
        }
        let ranges = (0..<3).map { ShardedSampler.evalRange(count: 10, rank: $0, worldSize: 3) }
        XCTAssertEqual(ranges.flatMap { Array($0) }, Array(0..<10))
    }
}
