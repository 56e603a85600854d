// Batch normalization over (N, H, W) per channel, PyTorch's nn.BatchNorm2d: eps 1e-5,
// momentum 0.1, running_var updated with the unbiased batch variance, num_batches_tracked.
// Backward (xhat = (x - mean) * invstd, M = elements per channel, sums over the batch):
//   dgamma = sum(dy * xhat) ; dbeta = sum(dy) ; dx = gamma * invstd / M * (M*dy - dbeta - xhat*dgamma)
// With a stat reducer (sync_bn) the per-channel sums and M are summed over all ranks first.
// Backward recomputes xhat from the input (kept by the layer before, so no extra tensor) with the
// saved Float mean and invstd — the same operations as forward, so the same bits; the output is
// not read by backward, so a ReLU or a residual sum may overwrite it in place.
// `fuse(_ relu:)` takes over the ReLU that follows: forward writes max(y, 0) (one pass over the
// tensor less), backward masks dy where y ≤ 0 itself (y recomputed, the same bits), and the ReLU
// passes its input and gradient through. Results are those of the two layers apart, bit for bit.
// `fuse(pool:)` takes over a max pooling after that (the stem's BN, ReLU, MaxPool): each plane is
// normalized into a per-worker buffer and pooled from there, so the normalized tensor (the largest
// of the network) is neither written nor kept; backward rebuilds each channel's output gradient
// from the pooled one (`MaxPool2D.unpool`) into the worker's buffer (a channel's planes: workers x
// N x H x W floats of scratch, a 64th of the tensor it replaces at 64 channels and 2 workers). Bit for
// bit the layers apart, again.

public final class BatchNorm2D: Layer {
    public let name: String
    public let channels: Int
    public let eps: Double = 1e-5
    public let momentum: Double = 0.1
    public let weight, bias: ParamHandle                      // gamma, beta [C]
    public let runningMean, runningVar, numBatchesTracked: ParamHandle   // buffers [C], [C], []
    private let ctx: ModelContext
    private var out: Tensor?
    private var input: Tensor?                                 // (N, C, H, W), for backward
    private let invstd: UnsafeMutablePointer<Double>           // [C]
    private let normalization: UnsafeMutablePointer<Float>     // [2C]: Float mean, Float invstd (xhat's)
    private let sums: UnsafeMutablePointer<Double>             // [2C + 1] reduction scratch
    private var count = 0.0                                    // M (global when synced)
    private var trainingForward = true
    /// The ReLU after this layer, when `fuse` gave its work to this layer.
    public private(set) var fusedReLU = false
    /// Whether Sequential and ResidualBlock fuse a batch norm with the in-place ReLU after it.
    nonisolated(unsafe) public static var fusesReLU = true
    /// The max pooling after this layer (and its ReLU), when `fuse(pool:)` gave its work to this layer.
    public private(set) var fusedPool: MaxPool2D?
    /// Whether Sequential and ResidualBlock fuse a batch norm (and its ReLU) with the max pooling after it.
    nonisolated(unsafe) public static var fusesPool = true
    /// Set by the residual block this layer ends, for its next forward only: the output is then
    /// relu(bn(x) + residual), the block's sum and ReLU done in this layer's pass (`ResidualBlock`).
    var residual: Tensor?

    public init(_ ctx: ModelContext, name: String, channels: Int) {
        self.ctx = ctx; self.name = name; self.channels = channels
        weight = ctx.params.declare(joinName(name, "weight"), shape: [channels])
        bias = ctx.params.declare(joinName(name, "bias"), shape: [channels])
        runningMean = ctx.buffers.declare(joinName(name, "running_mean"), shape: [channels])
        runningVar = ctx.buffers.declare(joinName(name, "running_var"), shape: [channels])
        numBatchesTracked = ctx.buffers.declare(joinName(name, "num_batches_tracked"), shape: [], type: .int64)
        invstd = .allocate(capacity: channels); invstd.initialize(repeating: 0, count: channels)
        normalization = .allocate(capacity: 2 * channels); normalization.initialize(repeating: 0, count: 2 * channels)
        sums = .allocate(capacity: 2 * channels + 1); sums.initialize(repeating: 0, count: 2 * channels + 1)
    }
    deinit { invstd.deallocate(); sums.deallocate(); normalization.deallocate() }

    /// Applies `relu` (which must come right after this layer and be in place) in this layer's passes.
    public func fuse(_ relu: ReLU) {
        precondition(relu.inPlace, "\(name): only an in-place ReLU can be fused")
        fusedReLU = true
        relu.passThrough = true
    }

    /// The last training forward's per-channel mean and 1/sqrt(var + eps), as xhat uses them.
    public var batchStatistics: (mean: [Float], invstd: [Float]) {
        (Array(UnsafeBufferPointer(start: normalization, count: channels)),
         Array(UnsafeBufferPointer(start: normalization + channels, count: channels)))
    }

    /// Pools as `pool` would, plane by plane as each is normalized (`pool` must come right after
    /// this layer, or after its fused ReLU).
    public func fuse(pool: MaxPool2D) {
        fusedPool = pool
        pool.passThrough = true
    }

    public var parameters: [ParamHandle] { [weight, bias] }
    public func outputShape(_ s: [Int]) -> [Int] { s }

    /// PyTorch's initial state: gamma 1, beta 0, running mean 0, var 1, no batches tracked.
    public func resetParameters() {
        weight.value.update(repeating: 1, count: channels); bias.value.update(repeating: 0, count: channels)
        runningMean.value.update(repeating: 0, count: channels); runningVar.value.update(repeating: 1, count: channels)
        numBatchesTracked.value[0] = 0
    }

    public func forward(_ x: Tensor, training: Bool) -> Tensor {
        precondition(x.rank == 4 && x.shape[1] == channels, "\(name): input \(x.shape), expected (N,\(channels),H,W)")
        let (n, c, hw) = (x.shape[0], channels, x.shape[2] * x.shape[3])
        trainingForward = training
        let shortcut = residual, add = shortcut.map { UnsafePointer($0.data) }
        defer { withExtendedLifetime(shortcut) {} }   // `add` points into it
        if let r = shortcut {
            precondition(r.shape == x.shape && !fusedReLU && fusedPool == nil, "\(name): residual \(r.shape) for input \(x.shape)")
            residual = nil
        }
        if let pool = fusedPool { return forwardPooling(x, pool, training: training) }
        let y = Tensor.reuse(out, x.shape); out = y
        let gamma = weight.value, beta = bias.value
        if !training {
            Parallel.forRanges(c) { r in
                for ch in r { for i in 0..<n {
                    let o = (i * c + ch) * hw
                    self.evalPlane(x.data + o, y.data + o, hw, channel: ch, adding: add.map { $0 + o })
                }}
            }
            return y
        }
        input = x
        let norm = normalization, relu = fusedReLU || add != nil
        let m = statistics(x)
        // Without a reducer the sums are final at once: each channel is normalized right after it is
        // summed, its planes still in cache (one read from memory instead of two when they fit in L2).
        Parallel.forRanges(c) { r in
            for ch in r {
                self.channelStatistics(x, ch, m)
                batchNormNormalize(x.data, y.data, n: n, c: c, hw: hw, channel: ch, mean: norm[ch], invstd: norm[c + ch],
                                   gamma: gamma[ch], beta: beta[ch], relu: relu, adding: add)
            }
        }
        numBatchesTracked.value[0] += 1
        return y
    }

    /// q = the eval-mode output of one plane of channel ch (running statistics), then the fused ReLU
    /// (or plus a residual block's shortcut plane, then ReLU).
    private func evalPlane(_ p: UnsafePointer<Float>, _ q: UnsafeMutablePointer<Float>, _ hw: Int, channel ch: Int,
                           adding s: UnsafePointer<Float>? = nil) {
        let scale = weight.value[ch] / Float((Double(runningVar.value[ch]) + eps).squareRoot())
        let shift = bias.value[ch] - runningMean.value[ch] * scale
        if let s { for j in 0..<hw { let v = p[j] * scale + shift + s[j]; q[j] = v <= 0 ? 0 : v } }
        else if fusedReLU { for j in 0..<hw { let v = p[j] * scale + shift; q[j] = v <= 0 ? 0 : v } }
        else { for j in 0..<hw { q[j] = p[j] * scale + shift } }
    }

    /// Per-channel sums of (x - K) and (x - K)^2 into `sums`, in Double (no cancellation even far
    /// from K). The shift K = running_mean (the same on every rank) keeps E[x^2] - E[x]^2 from cancelling.
    private func sumChannel(_ x: Tensor, _ ch: Int) {
        let (n, c, hw) = (x.shape[0], channels, x.shape[2] * x.shape[3])
        let (s, s2) = batchNormShiftedSums(x.data, n: n, c: c, hw: hw, channel: ch, shift: Double(runningMean.value[ch]))
        sums[ch] = s; sums[c + ch] = s2
    }

    /// M, the elements per channel (over all ranks when synced). With a stat reducer every channel
    /// is summed here and the sums reduced across ranks; else each channel is summed in
    /// `channelStatistics`, just before it is normalized.
    private func statistics(_ x: Tensor) -> Double {
        let c = channels
        if let reduce = ctx.statReducer {
            Parallel.forRanges(c) { r in for ch in r { self.sumChannel(x, ch) } }
            sums[2 * c] = Double(x.shape[0] * x.shape[2] * x.shape[3])
            reduce(sums, 2 * c + 1)
            count = sums[2 * c]
        } else {
            count = Double(x.shape[0] * x.shape[2] * x.shape[3])
        }
        return count
    }

    /// Channel ch's mean and invstd from its sums over m elements (`statistics`; summed here when
    /// there is no reducer), Float copies for xhat in `normalization`, and the running statistics updated.
    private func channelStatistics(_ x: Tensor, _ ch: Int, _ m: Double) {
        if ctx.statReducer == nil { sumChannel(x, ch) }
        let c = channels, rm = runningMean.value, rv = runningVar.value
        let shifted = sums[ch] / m
        let mean = shifted + Double(rm[ch])
        let varB = max(sums[c + ch] / m - shifted * shifted, 0)  // biased, used to normalize
        let istd = 1 / (varB + eps).squareRoot()
        invstd[ch] = istd
        normalization[ch] = Float(mean); normalization[c + ch] = Float(istd)
        let unbiased = m > 1 ? varB * m / (m - 1) : varB
        rm[ch] = Float((1 - momentum) * Double(rm[ch]) + momentum * mean)
        rv[ch] = Float((1 - momentum) * Double(rv[ch]) + momentum * unbiased)
    }

    public func backward(_ dy: Tensor) -> Tensor {
        guard let x = input, trainingForward else { preconditionFailure("\(name): backward needs a training forward") }
        let (n, c, hw) = (x.shape[0], channels, x.shape[2] * x.shape[3])
        let parts = max(1, min(Parallel.workers, c))
        // Where worker wk reads channel ch's output gradient: dy itself (laid out as x), or, when this
        // layer pools, the worker's buffer that the channel's planes are rebuilt into from the pooled dy.
        let d: Tensor, gradientOf: (_ wk: Int, _ ch: Int) -> (base: UnsafePointer<Float>, planes: Int?)
        if let pool = fusedPool {
            precondition(dy.shape == pool.outputShape(x.shape), "\(name): dy \(dy.shape), expected \(pool.outputShape(x.shape)) (pooled)")
            d = GradientPool.take(x.shape)
            let buffers = (0..<parts).map { Workspace.shared.buffer(worker: $0, slot: Workspace.pooledPlanes, count: n * hw) }
            gradientOf = { wk, ch in
                for i in 0..<n { pool.unpool(dy, plane: i * c + ch, into: buffers[wk] + i * hw) }
                return (UnsafePointer(buffers[wk]), hw)
            }
        } else {
            precondition(dy.shape == x.shape, "\(name): dy \(dy.shape), expected \(x.shape)")
            d = GradientPool.take(dy.shape, replacing: dy)   // elementwise: may overwrite a donated dy
            gradientOf = { _, _ in (UnsafePointer(dy.data), nil) }
        }
        let (sums, invstd, norm) = (self.sums, self.invstd, self.normalization)
        let gamma = weight.value, beta = bias.value, dgammaOut = weight.grad, dbetaOut = bias.grad
        func relu(_ ch: Int) -> (Float, Float)? { fusedReLU ? (gamma[ch], beta[ch]) : nil }
        func sumChannel(_ g: (base: UnsafePointer<Float>, planes: Int?), _ ch: Int) {   // sum(dy), sum(dy * xhat)
            let (s, s2) = batchNormGradientSums(g.base, x.data, n: n, c: c, hw: hw, channel: ch, mean: norm[ch], invstd: norm[c + ch],
                                                relu: relu(ch), dyPlanes: g.planes)
            sums[ch] = s; sums[c + ch] = s2
            dbetaOut[ch] += Float(s); dgammaOut[ch] += Float(s2)   // local sums; the allreduce adds the rest
        }
        let m = count
        func gradientChannel(_ g: (base: UnsafePointer<Float>, planes: Int?), _ ch: Int) {
            let k = Float(Double(gamma[ch]) * invstd[ch] / m)
            batchNormInputGradient(g.base, x.data, d.data, n: n, c: c, hw: hw, channel: ch, k: k, m: Float(m), dbeta: Float(sums[ch]),
                                   dgamma: Float(sums[c + ch]), mean: norm[ch], invstd: norm[c + ch], relu: relu(ch), dyPlanes: g.planes)
        }
        if let reduce = ctx.statReducer {
            Parallel.forItems(c, parts: parts) { wk, ch in sumChannel(gradientOf(wk, ch), ch) }
            reduce(sums, 2 * c)
            Parallel.forItems(c, parts: parts) { wk, ch in gradientChannel(gradientOf(wk, ch), ch) }
        } else {   // as in forward: both passes over a channel while it is in cache
            Parallel.forItems(c, parts: parts) { wk, ch in let g = gradientOf(wk, ch); sumChannel(g, ch); gradientChannel(g, ch) }
        }
        return d
    }

    // MARK: Pooling as it normalizes (`fuse(pool:)`)

    /// The pooled output: each image's plane of a channel is normalized into the worker's buffer and
    /// pooled from there (the statistics as in `forward`); `backward` rebuilds each plane's gradient.
    private func forwardPooling(_ x: Tensor, _ pool: MaxPool2D, training: Bool) -> Tensor {
        let (n, c, hw) = (x.shape[0], channels, x.shape[2] * x.shape[3])
        let y = pool.begin(x.shape, training: training)
        let scratch = pool.planeScratch(x.shape), parts = max(1, min(Parallel.workers, c))
        let buffers = (0..<parts).map { Workspace.shared.buffer(worker: $0, slot: Workspace.pooledPlanes, count: hw + scratch) }
        let gamma = weight.value, beta = bias.value
        let relu = fusedReLU
        // normalized plane i of channel ch into the worker's buffer, with `normalize(src, dst)`, then pooled
        func poolChannel(_ wk: Int, _ ch: Int, _ normalize: (UnsafePointer<Float>, UnsafeMutablePointer<Float>) -> Void) {
            let b = buffers[wk]
            for i in 0..<n {
                let pl = i * c + ch
                normalize(x.data + pl * hw, b)
                pool.pool(b, plane: pl, into: y, scratch: b + hw)
            }
        }
        if !training {
            Parallel.forItems(c, parts: parts) { wk, ch in poolChannel(wk, ch) { p, q in self.evalPlane(p, q, hw, channel: ch) } }
            return y
        }
        input = x
        let norm = normalization
        let m = statistics(x)
        Parallel.forItems(c, parts: parts) { wk, ch in
            self.channelStatistics(x, ch, m)
            let g = gamma[ch], b = beta[ch], fm = norm[ch], fi = norm[c + ch]
            poolChannel(wk, ch) { p, q in
                batchNormNormalize(p, q, n: 1, c: 1, hw: hw, channel: 0, mean: fm, invstd: fi, gamma: g, beta: b, relu: relu)
            }
        }
        numBatchesTracked.value[0] += 1
        return y
    }
}

/// Fuses every batch norm of `layers` that an in-place ReLU follows (`BatchNorm2D.fuse`), when
/// `BatchNorm2D.fusesReLU` (on by default; off only to compare against the two layers apart), and
/// then a max pooling that follows either (`fuse(pool:)`, when `BatchNorm2D.fusesPool`); marks every
/// convolution a batch norm follows as one whose bias gradient vanishes (`Conv2D.biasGradientVanishes`,
/// when `Conv2D.skipsVanishingBiasGradient`).
func fuseBatchNorms(_ layers: [Layer]) {
    for (i, layer) in layers.enumerated() {
        guard let bn = layer as? BatchNorm2D else { continue }
        if Conv2D.skipsVanishingBiasGradient, i > 0, let conv = layers[i - 1] as? Conv2D { conv.biasGradientVanishes = true }
        var next = i + 1
        if BatchNorm2D.fusesReLU, next < layers.count, let relu = layers[next] as? ReLU, relu.inPlace {
            bn.fuse(relu); next += 1
        }
        if BatchNorm2D.fusesPool, next < layers.count, let pool = layers[next] as? MaxPool2D { bn.fuse(pool: pool) }
    }
}
