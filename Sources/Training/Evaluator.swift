// Evaluation over a split: rank r takes a contiguous range, every image counted exactly once;
// loss sums, hits and counts are summed across ranks.
import NN
import Data
import Distributed
import Coordinator

public enum Evaluator {
    public static func evaluate(model: ResNet, loader: BatchLoader, batch: Int, comm: Communicator) throws -> (loss: Double, accuracy: Double) {
        let range = ShardedSampler.evalRange(count: loader.dataset.count, rank: comm.rank, worldSize: comm.size)
        let out = loader.outputShape
        var labels = [Int32](repeating: 0, count: max(batch, 1))
        var x: Tensor? = nil
        var sums = [0.0, 0.0, 0.0]   // loss sum, hits, images
        var i = range.lowerBound
        while i < range.upperBound {
            let n = min(batch, range.upperBound - i)
            let xb = Tensor.reuse(x, [n, out.c, out.h, out.w]); x = xb
            labels.withUnsafeMutableBufferPointer { lb in
                loader.fill(indices: Array(i..<(i + n)), x: xb, labels: lb.baseAddress!, augment: false, seed: 0, epoch: 0)
            }
            let r = labels.withUnsafeBufferPointer { model.evaluate(xb, labels: $0.baseAddress!) }
            sums[0] += r.lossSum; sums[1] += Double(r.correct); sums[2] += Double(n)
            i += n
        }
        try sums.withUnsafeMutableBufferPointer { try comm.allreduceSum($0.baseAddress!, count: 3) }
        return (sums[0] / max(sums[2], 1), sums[1] / max(sums[2], 1))
    }
}
