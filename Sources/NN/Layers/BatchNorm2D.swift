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
        let y = Tensor.reuse(out, x.shape); out = y
        trainingForward = training
        let gamma = weight.value, beta = bias.value, rm = runningMean.value, rv = runningVar.value
        let (sums, invstd, eps) = (self.sums, self.invstd, self.eps)
        if !training {
            Parallel.forRanges(c) { r in
                for ch in r {
                    let scale = gamma[ch] / Float((Double(rv[ch]) + eps).squareRoot())
                    let shift = beta[ch] - rm[ch] * scale
                    for i in 0..<n {
                        let p = x.data + (i * c + ch) * hw, q = y.data + (i * c + ch) * hw
                        if self.fusedReLU { for j in 0..<hw { let v = p[j] * scale + shift; q[j] = v <= 0 ? 0 : v } }
                        else { for j in 0..<hw { q[j] = p[j] * scale + shift } }
                    }
                }
            }
            return y
        }
        input = x
        let norm = normalization
        // Per-channel sums of (x - K) and (x - K)^2, reduced across ranks when synced. The shift
        // K = running_mean (the same on every rank) keeps E[x^2] - E[x]^2 from cancelling.
        func sumChannel(_ ch: Int) {   // in Double: no cancellation even far from K
            let (s, s2) = batchNormShiftedSums(x.data, n: n, c: c, hw: hw, channel: ch, shift: Double(rm[ch]))
            sums[ch] = s; sums[c + ch] = s2
        }
        func normalizeChannel(_ ch: Int, _ m: Double) {
            let shifted = sums[ch] / m
            let mean = shifted + Double(rm[ch])
            let varB = max(sums[c + ch] / m - shifted * shifted, 0)  // biased, used to normalize
            let istd = 1 / (varB + eps).squareRoot()
            invstd[ch] = istd
            let g = gamma[ch], b = beta[ch], fm = Float(mean), fi = Float(istd)
            norm[ch] = fm; norm[c + ch] = fi
            batchNormNormalize(x.data, y.data, n: n, c: c, hw: hw, channel: ch, mean: fm, invstd: fi, gamma: g, beta: b,
                               relu: self.fusedReLU)
            let unbiased = m > 1 ? varB * m / (m - 1) : varB
            rm[ch] = Float((1 - self.momentum) * Double(rm[ch]) + self.momentum * mean)
            rv[ch] = Float((1 - self.momentum) * Double(rv[ch]) + self.momentum * unbiased)
        }
        if let reduce = ctx.statReducer {
            Parallel.forRanges(c) { r in for ch in r { sumChannel(ch) } }
            sums[2 * c] = Double(n * hw)
            reduce(sums, 2 * c + 1)
            count = sums[2 * c]
            let m = count
            Parallel.forRanges(c) { r in for ch in r { normalizeChannel(ch, m) } }
        } else {
            // The sums are final at once: each channel is normalized right after it is summed, its
            // planes still in cache (one read from memory instead of two when they fit in L2).
            count = Double(n * hw)
            let m = count
            Parallel.forRanges(c) { r in for ch in r { sumChannel(ch); normalizeChannel(ch, m) } }
        }
        numBatchesTracked.value[0] += 1
        return y
    }

    public func backward(_ dy: Tensor) -> Tensor {
        guard let x = input, trainingForward else { preconditionFailure("\(name): backward needs a training forward") }
        let (n, c, hw) = (dy.shape[0], channels, dy.shape[2] * dy.shape[3])
        let d = GradientPool.take(dy.shape, replacing: dy)   // elementwise: may overwrite a donated dy
        let (sums, invstd, norm) = (self.sums, self.invstd, self.normalization)
        let gamma = weight.value, beta = bias.value, dgammaOut = weight.grad, dbetaOut = bias.grad
        func sumChannel(_ ch: Int) {   // sum(dy), sum(dy * xhat)
            let (s, s2) = batchNormGradientSums(dy.data, x.data, n: n, c: c, hw: hw, channel: ch, mean: norm[ch], invstd: norm[c + ch],
                                                relu: self.fusedReLU ? (gamma[ch], beta[ch]) : nil)
            sums[ch] = s; sums[c + ch] = s2
            dbetaOut[ch] += Float(s); dgammaOut[ch] += Float(s2)   // local sums; the allreduce adds the rest
        }
        let m = count
        func gradientChannel(_ ch: Int) {
            let dbeta = sums[ch], dgamma = sums[c + ch]
            let k = Float(Double(gamma[ch]) * invstd[ch] / m)
            let fm = Float(m), fb = Float(dbeta), fg = Float(dgamma), mean = norm[ch], istd = norm[c + ch]
            batchNormInputGradient(dy.data, x.data, d.data, n: n, c: c, hw: hw, channel: ch, k: k, m: fm, dbeta: fb, dgamma: fg,
                                   mean: mean, invstd: istd, relu: self.fusedReLU ? (gamma[ch], beta[ch]) : nil)
        }
        if let reduce = ctx.statReducer {
            Parallel.forRanges(c) { r in for ch in r { sumChannel(ch) } }
            reduce(sums, 2 * c)
            Parallel.forRanges(c) { r in for ch in r { gradientChannel(ch) } }
        } else {   // as in forward: both passes over a channel while it is in cache
            Parallel.forRanges(c) { r in for ch in r { sumChannel(ch); gradientChannel(ch) } }
        }
        return d
    }
}

/// Fuses every batch norm of `layers` that an in-place ReLU follows (`BatchNorm2D.fuse`), when
/// `BatchNorm2D.fusesReLU` (on by default; off only to compare against the two layers apart).
func fuseBatchNormReLUs(_ layers: [Layer]) {
    guard BatchNorm2D.fusesReLU else { return }
    for (a, b) in zip(layers, layers.dropFirst()) {
        if let bn = a as? BatchNorm2D, let relu = b as? ReLU, relu.inPlace { bn.fuse(relu) }
    }
}
