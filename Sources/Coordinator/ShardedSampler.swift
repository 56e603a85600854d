// Which images each rank sees. The config's batch is global: every epoch one permutation is
// drawn from (seed, epoch) — the same on every rank — and rank r takes slice r of each global
// batch. The last partial global batch is dropped, so every rank runs the same number of steps
// and step s sees the same images whatever the world size.
import NN

public struct ShardError: Error, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}

public struct ShardedSampler: Sendable {
    public let datasetCount: Int
    public let globalBatch: Int
    public let rank: Int
    public let worldSize: Int
    public let shuffle: Bool
    public let seed: UInt64

    public init(datasetCount: Int, globalBatch: Int, rank: Int, worldSize: Int, shuffle: Bool, seed: UInt64) throws {
        guard globalBatch > 0 else { throw ShardError("train.batch_size must be positive, got \(globalBatch)") }
        guard globalBatch % worldSize == 0 else {
            throw ShardError("train.batch_size \(globalBatch) is the global batch and must be divisible by the world size \(worldSize) (each rank takes batch_size / world_size images); use e.g. \(max(worldSize, globalBatch / worldSize * worldSize))")
        }
        guard datasetCount >= globalBatch else {
            throw ShardError("train.batch_size \(globalBatch) is larger than the training set (\(datasetCount) images): no full batch to train on")
        }
        self.datasetCount = datasetCount; self.globalBatch = globalBatch
        self.rank = rank; self.worldSize = worldSize; self.shuffle = shuffle; self.seed = seed
    }

    public var localBatch: Int { globalBatch / worldSize }
    public var stepsPerEpoch: Int { datasetCount / globalBatch }

    /// The epoch's order of image indices (identity when shuffle is off).
    public func permutation(epoch: Int) -> [Int] {
        var p = Array(0..<datasetCount)
        guard shuffle else { return p }
        var rng = SplitMix64(seed: mixSeed(seed, 0x5A3D, UInt64(epoch)))
        for i in stride(from: datasetCount - 1, to: 0, by: -1) {
            let j = Int(rng.next() % UInt64(i + 1))
            p.swapAt(i, j)
        }
        return p
    }

    /// This rank's images for step `step` (0-based inside the epoch).
    public func localIndices(_ perm: [Int], step: Int) -> ArraySlice<Int> {
        let start = step * globalBatch + rank * localBatch
        return perm[start..<(start + localBatch)]
    }

    /// Evaluation split: every image exactly once across ranks (contiguous ranges).
    public static func evalRange(count: Int, rank: Int, worldSize: Int) -> Range<Int> {
        (count * rank / worldSize)..<(count * (rank + 1) / worldSize)
    }
}
