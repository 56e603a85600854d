// `resnet bench`: times full training steps (data, forward, backward, allreduce, SGD) on
// synthetic data after warm-up; prints images/s, achieved GFLOP/s, the share of the step spent
// waiting on gradient communication, and a per-layer-type time breakdown.
// --batch is PER RANK (as Horovod's synthetic benchmark): N ranks process N x batch per step.
import ArgumentParser
import NN
import Training
import Distributed
import Coordinator
import Foundation

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Benchmark training steps on synthetic data.")
    @Option(help: "ResNet depth (18, 34, 50).") var depth = 18
    @Option(help: "Images per rank per step.") var batch = 64
    @Option(help: "Input channels.") var channels = 1
    @Option(help: "Image side (pixels).") var size = 96
    @Option(help: "Worker threads per rank (0 = auto: the cores shared among the ranks on this node).") var threads = 0
    @Option(help: "Base width (64 = the paper's).") var width = 64
    @Option(help: "Timed steps.") var steps = 10
    @Option(help: "Untimed warm-up steps.") var warmup = 2
    @Option(help: "Gradient bucket size in MiB.") var bucketMb = 4.0
    @Option(help: "Write a Chrome trace (Perfetto, chrome://tracing) of the timed steps to this file.") var trace: String?

    func validate() throws {
        typealias L = ConfigLimits
        let stepCounts = 1...1_000_000, warmupCounts = 0...1_000_000
        for (name, value, range) in [("--batch", batch, L.batchSize), ("--channels", channels, L.inChannels),
                                     ("--size", size, 1...L.imageSize.upperBound), ("--width", width, L.width),
                                     ("--steps", steps, stepCounts), ("--warmup", warmup, warmupCounts),
                                     ("--threads", threads, L.threads)]
        where !range.contains(value) {
            throw ValidationError("\(name) must be an integer in \(range.lowerBound)...\(range.upperBound), got \(value)")
        }
        guard bucketMb.isFinite, L.bucketMB.contains(bucketMb) else {
            throw ValidationError("--bucket-mb must be a number in \(L.bucketMB.lowerBound)...\(L.bucketMB.upperBound), got \(bucketMb)")
        }
    }

    func run() throws {
        configureThreads(threads)
        withCommunicator(command: "bench") { comm in
            var config = RunConfig.default
            config.model.depth = depth; config.model.inChannels = channels; config.model.width = width
            config.data.dataset = "synthetic"; config.data.imageSize = size; config.data.shuffle = false
            // Two global batches of synthetic images, loaded step after step (epochs of 2 steps): the
            // data path runs as in training without holding a dataset the peer does not hold
            // (PyTorch's bench reuses one batch).
            config.data.syntheticCount = 2 * batch * comm.size
            config.train.batchSize = batch * comm.size; config.train.epochs = 1
            config.train.bucketMB = bucketMb
            try config.validate(source: "resnet bench options")   // e.g. --depth 20 is refused, named
            let estimate = try ResourceCheck.estimate(config, localBatch: batch)
            try ResourceCheck.check(config, localBatch: batch, what: "this config")   // refuses a run that does not fit in memory
            // The step engine alone: no run folder, metrics, evaluation or checkpoints.
            let plan = try RunPlan(config)
            let engine = try StepEngine(plan: plan, trainLoader: try plan.trainLoader(), comm: comm)
            var position = TrainState()
            _ = try engine.runSteps(warmup, from: &position)
            let profiler = LayerProfiler()
            engine.model.ctx.profiler = profiler
            let session = try trace.map { file in
                try TraceSession.checkWritable(file)
                return TraceSession(path: file, comm: comm)
            }
            session?.start()
            let (seconds, wait) = try engine.runSteps(steps, from: &position)
            try session?.finish(what: "the \(steps) timed steps")
            guard comm.rank == 0 else { return }
            let ips = Double(batch * comm.size * steps) / seconds
            // Training FLOPs ~ 3x forward (forward, input gradient, weight gradient) of conv and linear layers.
            var fwd = 0.0
            for leaf in engine.model.leaves {
                if let c = leaf as? Conv2D, let s = c.lastOutputShape {
                    fwd += 2.0 * Double(s.reduce(1, *)) * Double(c.inChannels * c.kernel * c.kernel)
                } else if let l = leaf as? Linear {
                    fwd += 2.0 * Double(batch * l.inFeatures * l.outFeatures)
                }
            }
            let gflops = 3 * fwd * Double(steps) / seconds / 1e9   // per rank
            print(BLASKernel.summary)
            print("ResNet-\(depth) width \(width), \(comm.size) rank(s) x batch \(batch), \(channels)x\(size)x\(size), \(threads == 0 ? "auto" : String(threads)) thread(s)/rank, \(steps) steps")
            print(String(format: "%.1f ms/step, %.1f GFLOP/s per rank, communication wait %.1f%% of the step",
                         seconds / Double(steps) * 1000, gflops, 100 * wait / seconds))
            let total = profiler.seconds.values.reduce(0, +)
            for (k, v) in profiler.seconds.sorted(by: { $0.value > $1.value }) {
                print("  " + k.padding(toLength: 32, withPad: " ", startingAt: 0) + String(format: "%8.1f ms/step  %5.1f%%", v / Double(steps) * 1000, 100 * v / max(total, 1e-12)))
            }
            print("memory estimate per rank: \(formatBytes(estimate.total)) (\(estimate))")
            print(String(format: "%.1f images/s", ips))
        }
    }
}
