// Batch normalization's passes over one channel (NN/Layers/BatchNorm2D.swift holds the layer and
// the math): x and y are (N, C, H, W), the channel's planes hw floats each, C * hw apart.
// Each per-plane loop runs 16 lanes at a time with the same operations per element as its scalar
// tail, so the same bits.

/// (Σ (x - shift), Σ (x - shift)²) over the channel's planes, in Double, summed plane by plane in order.
public func batchNormShiftedSums(_ x: UnsafePointer<Float>, n: Int, c: Int, hw: Int, channel ch: Int, shift: Double) -> (Double, Double) {
    var s = 0.0, s2 = 0.0
    for i in 0..<n {
        let (a, b) = shiftedSumAndSquares(x + (i * c + ch) * hw, hw, shift: shift)
        s += a; s2 += b
    }
    return (s, s2)
}

/// y = (x - mean) * invstd * gamma + beta over the channel's planes, plus `adding` (laid out as x: a
/// residual block's shortcut) when given, then max(y, 0) with `relu`.
public func batchNormNormalize(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, n: Int, c: Int, hw: Int, channel ch: Int,
                               mean: Float, invstd: Float, gamma: Float, beta: Float, relu: Bool, adding: UnsafePointer<Float>? = nil) {
    for i in 0..<n {
        let o = (i * c + ch) * hw
        normalizeAffine(x + o, y + o, hw, mean: mean, invstd: invstd, gamma: gamma, beta: beta, relu: relu, adding: adding.map { $0 + o })
    }
}

/// (Σ dy, Σ dy * xhat) over the channel's planes (each plane's Float sums added in Double, in order);
/// with `relu` (gamma, beta) leaving out the terms where xhat * gamma + beta ≤ 0. With `dyPlanes`,
/// dy holds the channel's planes alone, that many floats apart (else it is laid out as x).
public func batchNormGradientSums(_ dy: UnsafePointer<Float>, _ x: UnsafePointer<Float>, n: Int, c: Int, hw: Int, channel ch: Int,
                                  mean: Float, invstd: Float, relu: (gamma: Float, beta: Float)?, dyPlanes: Int? = nil) -> (Double, Double) {
    var s = 0.0, s2 = 0.0
    for i in 0..<n {
        let o = (i * c + ch) * hw
        let (a, b) = sumAndDotNormalized(dy + (dyPlanes.map { i * $0 } ?? o), x + o, hw, mean: mean, invstd: invstd, relu: relu)
        s += Double(a); s2 += Double(b)
    }
    return (s, s2)
}

/// dx = k * (m * dy - dbeta - xhat * dgamma) over the channel's planes (dy masked as in
/// `batchNormGradientSums` with `relu`, laid out as there with `dyPlanes`); dx may be dy itself.
public func batchNormInputGradient(_ dy: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>,
                                   n: Int, c: Int, hw: Int, channel ch: Int, k: Float, m: Float, dbeta: Float, dgamma: Float,
                                   mean: Float, invstd: Float, relu: (gamma: Float, beta: Float)?, dyPlanes: Int? = nil) {
    for i in 0..<n {
        let o = (i * c + ch) * hw
        inputGradient(dy + (dyPlanes.map { i * $0 } ?? o), x + o, dx + o, hw, k: k, m: m, dbeta: dbeta, dgamma: dgamma, mean: mean, invstd: invstd, relu: relu)
    }
}

/// (sum(a), sum(a * xhat)) with xhat = (x - mean) * invstd computed on the fly, rounded as a
/// stored xhat would be (batch norm's backward without keeping xhat). With `relu` (gamma, beta) the
/// terms whose batch-norm output xhat * gamma + beta is not positive are left out: a ReLU's backward
/// mask, from the same bits as the forward's output.
@inline(__always)
private func sumAndDotNormalized(_ a: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ n: Int,
                                 mean: Float, invstd: Float, relu: (gamma: Float, beta: Float)? = nil) -> (Float, Float) {
    var s = SIMD16<Float>(repeating: 0), d = SIMD16<Float>(repeating: 0)
    let mv = SIMD16<Float>(repeating: mean), iv = SIMD16<Float>(repeating: invstd), zero = SIMD16<Float>(repeating: 0)
    var j = 0
    if let (gamma, beta) = relu {
        let gv = SIMD16<Float>(repeating: gamma), bv = SIMD16<Float>(repeating: beta)
        while j + 16 <= n {
            let t = (UnsafeRawPointer(x + j).loadUnaligned(as: SIMD16<Float>.self) - mv) * iv
            let g = UnsafeRawPointer(a + j).loadUnaligned(as: SIMD16<Float>.self).replacing(with: zero, where: .!(t * gv + bv .> zero))
            s += g; d += g * t; j += 16
        }
    } else {
        while j + 16 <= n {
            let g = UnsafeRawPointer(a + j).loadUnaligned(as: SIMD16<Float>.self)
            let t = (UnsafeRawPointer(x + j).loadUnaligned(as: SIMD16<Float>.self) - mv) * iv
            s += g; d += g * t; j += 16
        }
    }
    var ss = s.sum(), dd = d.sum()
    while j < n {
        let t = (x[j] - mean) * invstd
        if let (gamma, beta) = relu, !(t * gamma + beta > 0) { j += 1; continue }
        ss += a[j]; dd += a[j] * t; j += 1
    }
    return (ss, dd)
}

/// (sum(x - shift), sum((x - shift)^2)) in Double: no cancellation even far from the shift.
@inline(__always)
private func shiftedSumAndSquares(_ p: UnsafePointer<Float>, _ n: Int, shift: Double) -> (Double, Double) {
    var s = SIMD4<Double>(repeating: 0), s2 = SIMD4<Double>(repeating: 0)
    let k = SIMD4<Double>(repeating: shift)
    var j = 0
    while j + 4 <= n {
        let v = SIMD4<Double>(UnsafeRawPointer(p + j).loadUnaligned(as: SIMD4<Float>.self)) - k
        s += v; s2 += v * v; j += 4
    }
    var a = s.sum(), b = s2.sum()
    while j < n { let v = Double(p[j]) - shift; a += v; b += v * v; j += 1 }
    return (a, b)
}

/// y[j] = (x[j] - mean) * invstd * gamma + beta, plus s[j] (a residual block's shortcut) when
/// given, then max(y, 0) with `relu` (NaN kept, as ReLU), 16 lanes at a time (the same operations
/// per element as the scalar tail, so the same bits; with s, those of the batch norm and the
/// block's sum apart).
@inline(__always)
private func normalizeAffine(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int,
                             mean: Float, invstd: Float, gamma: Float, beta: Float, relu: Bool, adding s: UnsafePointer<Float>?) {
    let mv = SIMD16<Float>(repeating: mean), iv = SIMD16<Float>(repeating: invstd)
    let gv = SIMD16<Float>(repeating: gamma), bv = SIMD16<Float>(repeating: beta), zero = SIMD16<Float>(repeating: 0)
    @inline(__always) func affine(_ j: Int) -> SIMD16<Float> {
        let v = (UnsafeRawPointer(x + j).loadUnaligned(as: SIMD16<Float>.self) - mv) * iv * gv + bv
        guard let s else { return v }
        return v + UnsafeRawPointer(s + j).loadUnaligned(as: SIMD16<Float>.self)
    }
    var j = 0
    if relu {
        while j + 16 <= n {
            let v = affine(j)
            UnsafeMutableRawPointer(y + j).storeBytes(of: v.replacing(with: zero, where: v .<= zero), as: SIMD16<Float>.self)
            j += 16
        }
    } else {
        while j + 16 <= n { UnsafeMutableRawPointer(y + j).storeBytes(of: affine(j), as: SIMD16<Float>.self); j += 16 }
    }
    while j < n {
        var v = (x[j] - mean) * invstd * gamma + beta
        if let s { v = v + s[j] }
        y[j] = relu ? (v <= 0 ? 0 : v) : v; j += 1
    }
}

/// dx[j] = k * (m * g[j] - dbeta - xhat[j] * dgamma), xhat = (x - mean) * invstd, g = dy, or with
/// `relu` (gamma, beta) dy masked to 0 where xhat * gamma + beta ≤ 0; dx may be dy itself.
@inline(__always)
private func inputGradient(_ dy: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>, _ n: Int,
                           k: Float, m: Float, dbeta: Float, dgamma: Float, mean: Float, invstd: Float,
                           relu: (gamma: Float, beta: Float)?) {
    let kv = SIMD16<Float>(repeating: k), mv = SIMD16<Float>(repeating: m), bv = SIMD16<Float>(repeating: dbeta)
    let gv = SIMD16<Float>(repeating: dgamma), meanv = SIMD16<Float>(repeating: mean), iv = SIMD16<Float>(repeating: invstd)
    let zero = SIMD16<Float>(repeating: 0)
    var j = 0
    if let (gamma, beta) = relu {
        let gav = SIMD16<Float>(repeating: gamma), bev = SIMD16<Float>(repeating: beta)
        while j + 16 <= n {
            let t = (UnsafeRawPointer(x + j).loadUnaligned(as: SIMD16<Float>.self) - meanv) * iv
            let g = UnsafeRawPointer(dy + j).loadUnaligned(as: SIMD16<Float>.self).replacing(with: zero, where: .!(t * gav + bev .> zero))
            UnsafeMutableRawPointer(dx + j).storeBytes(of: kv * (mv * g - bv - t * gv), as: SIMD16<Float>.self)
            j += 16
        }
    } else {
        while j + 16 <= n {
            let g = UnsafeRawPointer(dy + j).loadUnaligned(as: SIMD16<Float>.self)
            let t = (UnsafeRawPointer(x + j).loadUnaligned(as: SIMD16<Float>.self) - meanv) * iv
            UnsafeMutableRawPointer(dx + j).storeBytes(of: kv * (mv * g - bv - t * gv), as: SIMD16<Float>.self)
            j += 16
        }
    }
    while j < n {
        let t = (x[j] - mean) * invstd
        var g = dy[j]
        if let (gamma, beta) = relu, !(t * gamma + beta > 0) { g = 0 }
        dx[j] = k * (m * g - dbeta - t * dgamma); j += 1
    }
}
