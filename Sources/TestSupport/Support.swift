// Deterministic test data: random arrays and tensors, inputs without kinks or ties, and
// random parameter values for a model context.
import NN

/// Uniform values in [lo, hi) from a seed.
public func randomArray(_ count: Int, seed: UInt64, lo: Float = -1, hi: Float = 1) -> [Float] {
    var g = SplitMix64(seed: mixSeed(seed, 0xa11a))
    return (0..<count).map { _ in g.uniform(lo, hi) }
}

/// Normal values mean + std * N(0, 1) from a seed.
public func randomNormalArray(_ count: Int, seed: UInt64, mean: Float = 0, std: Float = 1) -> [Float] {
    var g = SplitMix64(seed: mixSeed(seed, 0x9a55))
    return (0..<count).map { _ in mean + std * g.normal() }
}

public func randomTensor(_ shape: [Int], seed: UInt64, lo: Float = -1, hi: Float = 1) -> Tensor {
    Tensor(shape: shape, values: randomArray(shape.reduce(1, *), seed: seed, lo: lo, hi: hi))
}

/// Distinct values (k + 1/2 - count/2) * spacing in a random order: every pair differs by at
/// least `spacing` and none is closer than spacing/2 to zero, so perturbations smaller than
/// spacing/2 cross no ReLU kink and change no max-pool argmax.
public func spacedArray(_ count: Int, seed: UInt64, spacing: Float = 0.02) -> [Float] {
    var g = SplitMix64(seed: mixSeed(seed, 0x5ace))
    var k = Array(0..<count)
    k.shuffle(using: &g)
    let half = Float(count) / 2
    return k.map { (Float($0) + 0.5 - half) * spacing }
}

public func spacedTensor(_ shape: [Int], seed: UInt64, spacing: Float = 0.02) -> Tensor {
    Tensor(shape: shape, values: spacedArray(shape.reduce(1, *), seed: seed, spacing: spacing))
}

/// Fills one tensor with uniform values in [lo, hi).
public func fillUniform(_ h: ParamHandle, seed: UInt64, lo: Float, hi: Float) {
    let v = randomArray(h.count, seed: mixSeed(seed, fnv1a(Array(h.name.utf8))), lo: lo, hi: hi)
    for i in 0..<h.count { h.value[i] = v[i] }
}

public func setValues(_ h: ParamHandle, _ v: [Float]) {
    precondition(v.count == h.count, "\(h.name): \(v.count) values for \(h.count) elements")
    for i in 0..<h.count { h.value[i] = v[i] }
}

/// Random parameters for a finalized context: weights and biases uniform in ±scale, batch-norm
/// gamma in [0.5, 1.5) and beta in ±0.5 (so a wrong use of gamma or beta shows), running
/// statistics left as they are.
public func randomizeParameters(_ ctx: ModelContext, seed: UInt64, scale: Float = 0.5) {
    precondition(ctx.params.isFinalized, "finalize the context first")
    let bnWeights = Set(batchNormWeightNames(ctx))
    for p in ctx.params.entries {
        if bnWeights.contains(p.name) { fillUniform(p, seed: seed, lo: 0.5, hi: 1.5) }
        else { fillUniform(p, seed: seed, lo: -scale, hi: scale) }
    }
}

/// Names of batch-norm weights (gamma) in a context: the params whose sibling running_mean exists.
private func batchNormWeightNames(_ ctx: ModelContext) -> [String] {
    ctx.buffers.entries.compactMap { b -> String? in
        guard b.name.hasSuffix("running_mean") else { return nil }
        return String(b.name.dropLast("running_mean".count)) + "weight"
    }
}

/// PyTorch's initial batch-norm state for every BN buffer of a context (running mean 0, var 1,
/// no batches tracked).
public func resetBatchNormBuffers(_ ctx: ModelContext) {
    for b in ctx.buffers.entries {
        let v: Float = b.name.hasSuffix("running_var") ? 1 : 0
        b.value.update(repeating: v, count: b.count)
    }
}

public extension Tensor {
    /// A copy of images n0..<n1 along the batch dimension.
    func slice(_ n0: Int, _ n1: Int) -> Tensor {
        let per = count / shape[0]
        let t = Tensor(shape: [n1 - n0] + shape.dropFirst(), zeroed: false)
        t.data.update(from: data + n0 * per, count: (n1 - n0) * per)
        return t
    }

    /// The concatenation along the batch dimension.
    static func concat(_ parts: [Tensor]) -> Tensor {
        let rest = Array(parts[0].shape.dropFirst())
        precondition(parts.allSatisfy { Array($0.shape.dropFirst()) == rest })
        let t = Tensor(shape: [parts.reduce(0) { $0 + $1.shape[0] }] + rest, zeroed: false)
        var off = 0
        for p in parts { (t.data + off).update(from: p.data, count: p.count); off += p.count }
        return t
    }
}
