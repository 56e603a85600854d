// Naive reference kernels in Double, written as direct loops straight from the definitions
// (PyTorch's semantics), to compare the fast layers against. Arrays are NCHW row-major.

/// y[n, co, oy, ox] = b[co] + sum_{ci, ki, kj} w[co, ci, ki, kj] * x[n, ci, oy*s - p + ki, ox*s - p + kj]
/// (zero outside the image). Returns y and its shape.
public func referenceConv2D(_ x: [Float], shape xs: [Int], weight w: [Float], bias b: [Float]?,
                            outChannels cout: Int, kernel k: Int, stride s: Int, padding p: Int)
    -> (y: [Double], shape: [Int]) {
    let (n, cin, h, wd) = (xs[0], xs[1], xs[2], xs[3])
    precondition(x.count == n * cin * h * wd && w.count == cout * cin * k * k)
    let ho = (h + 2 * p - k) / s + 1, wo = (wd + 2 * p - k) / s + 1
    var y = [Double](repeating: 0, count: n * cout * ho * wo)
    for i in 0..<n { for co in 0..<cout { for oy in 0..<ho { for ox in 0..<wo {
        var acc = b.map { Double($0[co]) } ?? 0
        for ci in 0..<cin { for ki in 0..<k { for kj in 0..<k {
            let iy = oy * s - p + ki, ix = ox * s - p + kj
            guard iy >= 0, iy < h, ix >= 0, ix < wd else { continue }
            acc += Double(w[((co * cin + ci) * k + ki) * k + kj]) * Double(x[((i * cin + ci) * h + iy) * wd + ix])
        }}}
        y[((i * cout + co) * ho + oy) * wo + ox] = acc
    }}}}
    return (y, [n, cout, ho, wo])
}

/// The gradients of `referenceConv2D` for an output gradient dy (N, Cout, Ho, Wo):
/// dx[n, ci, iy, ix] = Σ w[co, ci, ki, kj] dy[n, co, oy, ox] and dw[co, ci, ki, kj] = Σ x[n, ci, iy, ix] dy[n, co, oy, ox]
/// over the (oy, ox, ki, kj) with iy = oy*s - p + ki, ix = ox*s - p + kj inside the image.
public func referenceConv2DGradients(_ x: [Float], shape xs: [Int], weight w: [Float], dy: [Float],
                                     outChannels cout: Int, kernel k: Int, stride s: Int, padding p: Int)
    -> (dx: [Double], dw: [Double]) {
    let (n, cin, h, wd) = (xs[0], xs[1], xs[2], xs[3])
    let ho = (h + 2 * p - k) / s + 1, wo = (wd + 2 * p - k) / s + 1
    precondition(x.count == n * cin * h * wd && w.count == cout * cin * k * k && dy.count == n * cout * ho * wo)
    var dx = [Double](repeating: 0, count: x.count), dw = [Double](repeating: 0, count: w.count)
    for i in 0..<n { for co in 0..<cout { for oy in 0..<ho { for ox in 0..<wo {
        let g = Double(dy[((i * cout + co) * ho + oy) * wo + ox])
        for ci in 0..<cin { for ki in 0..<k { for kj in 0..<k {
            let iy = oy * s - p + ki, ix = ox * s - p + kj
            guard iy >= 0, iy < h, ix >= 0, ix < wd else { continue }
            let xi = ((i * cin + ci) * h + iy) * wd + ix, wi = ((co * cin + ci) * k + ki) * k + kj
            dx[xi] += Double(w[wi]) * g
            dw[wi] += Double(x[xi]) * g
        }}}
    }}}}
    return (dx, dw)
}

/// Batch norm in training mode: per channel over (N, H, W), mean, biased variance (used to
/// normalize) and unbiased variance (what PyTorch puts into running_var).
public func referenceBatchNormTraining(_ x: [Float], shape xs: [Int], gamma: [Float], beta: [Float],
                                       eps: Double = 1e-5)
    -> (y: [Double], mean: [Double], biasedVar: [Double], unbiasedVar: [Double]) {
    let (n, c, hw) = (xs[0], xs[1], xs[2] * xs[3])
    let m = Double(n * hw)
    var mean = [Double](repeating: 0, count: c), vb = mean, vu = mean
    var y = [Double](repeating: 0, count: x.count)
    for ch in 0..<c {
        var s = 0.0
        for i in 0..<n { for j in 0..<hw { s += Double(x[(i * c + ch) * hw + j]) } }
        let mu = s / m
        var ss = 0.0
        for i in 0..<n { for j in 0..<hw { let d = Double(x[(i * c + ch) * hw + j]) - mu; ss += d * d } }
        mean[ch] = mu; vb[ch] = ss / m; vu[ch] = ss / (m - 1)
        let istd = 1 / (vb[ch] + eps).squareRoot()
        for i in 0..<n { for j in 0..<hw {
            let q = (i * c + ch) * hw + j
            y[q] = (Double(x[q]) - mu) * istd * Double(gamma[ch]) + Double(beta[ch])
        }}
    }
    return (y, mean, vb, vu)
}

/// Batch norm in eval mode: y = (x - running_mean) / sqrt(running_var + eps) * gamma + beta.
public func referenceBatchNormEval(_ x: [Float], shape xs: [Int], gamma: [Float], beta: [Float],
                                   runningMean: [Float], runningVar: [Float], eps: Double = 1e-5) -> [Double] {
    let (c, hw) = (xs[1], xs[2] * xs[3])
    return x.indices.map { q in
        let ch = (q / hw) % c
        return (Double(x[q]) - Double(runningMean[ch])) / (Double(runningVar[ch]) + eps).squareRoot()
            * Double(gamma[ch]) + Double(beta[ch])
    }
}

/// Max pooling with implicit -inf padding (nn.MaxPool2d, floor mode).
public func referenceMaxPool2D(_ x: [Float], shape xs: [Int], kernel k: Int, stride s: Int, padding p: Int)
    -> (y: [Double], shape: [Int]) {
    let (n, c, h, w) = (xs[0], xs[1], xs[2], xs[3])
    let ho = (h + 2 * p - k) / s + 1, wo = (w + 2 * p - k) / s + 1
    var y = [Double](repeating: 0, count: n * c * ho * wo)
    for pl in 0..<(n * c) { for oy in 0..<ho { for ox in 0..<wo {
        var best = -Double.infinity
        for ki in 0..<k { for kj in 0..<k {
            let iy = oy * s - p + ki, ix = ox * s - p + kj
            guard iy >= 0, iy < h, ix >= 0, ix < w else { continue }
            best = max(best, Double(x[(pl * h + iy) * w + ix]))
        }}
        y[(pl * ho + oy) * wo + ox] = best
    }}}
    return (y, [n, c, ho, wo])
}

/// Max pooling's winner per window (index into x): the first maximum in row-major order, a NaN
/// taking the place of the maximum (PyTorch's rule); backward sends each window's dy there.
public func referenceMaxPool2DArgmax(_ x: [Float], shape xs: [Int], kernel k: Int, stride s: Int, padding p: Int) -> [Int] {
    let (n, c, h, w) = (xs[0], xs[1], xs[2], xs[3])
    let ho = (h + 2 * p - k) / s + 1, wo = (w + 2 * p - k) / s + 1
    var winners: [Int] = []
    for pl in 0..<(n * c) { for oy in 0..<ho { for ox in 0..<wo {
        var best = -Float.infinity, at = -1
        for ki in 0..<k { for kj in 0..<k {
            let iy = oy * s - p + ki, ix = ox * s - p + kj
            guard iy >= 0, iy < h, ix >= 0, ix < w else { continue }
            let i = (pl * h + iy) * w + ix
            if at < 0 { at = i }
            if x[i] > best || x[i].isNaN { best = x[i]; at = i }
        }}
        winners.append(at)
    }}}
    return winners
}

/// Mean over H and W per (n, c).
public func referenceGlobalAvgPool(_ x: [Float], shape xs: [Int]) -> [Double] {
    let hw = xs[2] * xs[3]
    return (0..<(xs[0] * xs[1])).map { pl in (0..<hw).reduce(0.0) { $0 + Double(x[pl * hw + $1]) } / Double(hw) }
}

/// y[n, o] = b[o] + sum_i w[o, i] x[n, i].
public func referenceLinear(_ x: [Float], batch n: Int, weight w: [Float], bias b: [Float],
                            inFeatures fin: Int, outFeatures fout: Int) -> [Double] {
    var y = [Double](repeating: 0, count: n * fout)
    for i in 0..<n { for o in 0..<fout {
        var acc = Double(b[o])
        for k in 0..<fin { acc += Double(w[o * fin + k]) * Double(x[i * fin + k]) }
        y[i * fout + o] = acc
    }}
    return y
}

/// Cross-entropy of logits (N, K) with labels: the per-sample losses -log softmax(z_n)[y_n]
/// and the softmax probabilities, in Double.
public func referenceCrossEntropy(_ z: [Float], classes k: Int, labels: [Int32])
    -> (losses: [Double], probabilities: [Double]) {
    let n = labels.count
    precondition(z.count == n * k)
    var losses = [Double](repeating: 0, count: n), probs = [Double](repeating: 0, count: n * k)
    for i in 0..<n {
        let row = (0..<k).map { Double(z[i * k + $0]) }
        let mx = row.max()!
        let lse = mx + row.reduce(0.0) { $0 + _exp($1 - mx) }.logValue
        losses[i] = lse - row[Int(labels[i])]
        for j in 0..<k { probs[i * k + j] = _exp(row[j] - lse) }
    }
    return (losses, probs)
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
@inline(__always) func _exp(_ x: Double) -> Double { exp(x) }
extension Double { var logValue: Double { log(self) } }
