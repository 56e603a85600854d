// Finite-difference gradient checks.
//
// A layer is checked through the scalar L = sum(y ⊙ r), r a fixed random (standard normal)
// tensor of y's shape: dL/dy = r is fed to backward, and every checked element e of the input
// and of each parameter gets the central difference
//     (L(e + eps) - L(e - eps)) / ((e + eps) - (e - eps))        (both evaluated in float32,
// L accumulated in Double; the denominator uses the float values actually stored).
//
// Tolerance. Element i of a tensor passes when
//     |analytic - numeric| <= rtol * max(|analytic|, |numeric|) + atol * S
// with rtol = 0.02, atol = 0.005, and S the tensor's gradient scale: the largest |numeric| of
// the tensor, but at least `floorFraction` (1%) of the largest scale over all checked tensors
// (a conv bias in front of a batch norm has an exactly-zero gradient, and its numeric value is
// pure float32 rounding noise of the whole loss). So a 10% error on any element that is not
// tiny compared with its tensor's largest gradient fails: a missing factor (2, 1/M, gamma),
// a dropped sum term or a wrong index all give errors of that size, while float32 noise
// (|dL| ~ 1e-7 |L| / (2 eps)) stays well under 0.5% for the sizes used in the tests.
// Rounding-noise floor. Every loss evaluation is a float32 computation whose rounding error is
// bounded by a few units of roundoff (u = 2^-24) of the terms it sums, |dL| <~ u * sum|y_i r_i|,
// so a central difference carries noise up to noiseFactor * u * sum|y_i r_i| / eps whatever the
// BLAS kernel's summation order is. Where the true gradient vanishes (a conv bias in front of a
// training-mode batch norm) the numeric value is nothing but that noise, and its size differs
// between OpenBLAS kernels (Prescott's SSE3 sums give ~1e-3 where Haswell's give ~1e-4 in the
// basic residual block). The element tolerance is therefore never below that bound:
//     |analytic - numeric| <= rtol * max(|a|, |n|) + max(atol * S, noiseFactor * u * sum|y r| / eps)
// (`lossMagnitude` = sum|y_i r_i|; checkLayerGradients passes it, a caller of
// finiteDifferenceCheck may). The bound is kernel-independent, so pass/fail is too.
// Each tensor also reports its relative L2 error ||analytic - numeric|| / ||numeric||
// (~0.3% at worst for the single layers and blocks of NNTests); `maxRelativeL2` turns it into
// a criterion too.
//
// Kinks. A central difference that straddles a kink (a ReLU input crossing 0, a max-pool
// window changing its choice) measures nothing. checkLayerGradients records those decisions
// through the inspector (`PiecewisePattern`); a difference whose +eps or -eps evaluation
// changes them is redone with eps * retryFactor (0.25), up to `kinkRetries` (2) times, then
// skipped (a tensor with more than half of its samples skipped fails). Independently, an
// element that fails is re-evaluated once with eps * retryFactor and passes if that agrees
// (the O(eps^2) truncation error, e.g. batch norm over small batches): a real gradient bug
// disagrees at every eps.
//
// eps: 1e-3 for single layers and blocks (inputs of order 1); inputs of ReLU/MaxPool are
// also spaced apart (`spacedTensor`) so no kink or tie is near. The whole network (float32
// rounding noise ~1e-6 in a loss of order 1, ~10^4 kinks) uses 1e-2 and looser element
// tolerances with a relative-L2 bound: see ResNetTests.testResNet18GradientsByFiniteDifferences.
// Element sampling: all elements when a tensor has at most `maxSamples` (300), otherwise a
// deterministic sample of that many including the first and last element.
import NN

public struct GradientCheckOptions {
    public var eps: Double = 1e-3
    public var rtol: Double = 0.02
    public var atol: Double = 0.005
    public var floorFraction: Double = 0.01
    /// Multiple of u * lossMagnitude / eps allowed for float32 rounding noise (see the header).
    public var noiseFactor: Double = 2
    public var retryFactor: Double = 0.25
    /// With a piecewise pattern: how many times a difference straddling a kink is redone with
    /// a smaller eps before it is skipped.
    public var kinkRetries: Int = 2
    /// Also fail a tensor whose relative L2 error exceeds this (for checks where single elements
    /// are allowed a loose tolerance, e.g. the whole float32 network).
    public var maxRelativeL2: Double? = nil
    /// Richardson extrapolation of two central differences (eps and eps/2).
    public var richardson: Bool = false
    /// checkLayerGradients: watch the layer's ReLU and max-pool decisions (PiecewisePattern).
    public var detectKinks: Bool = true
    public var maxSamples: Int = 300
    public var seed: UInt64 = 1
    /// Forward mode for the layer (BatchNorm2D's backward needs a training forward).
    public var training: Bool = true
    public var checkInput: Bool = true
    /// Which parameters of the context to check (all by default).
    public var includeParameter: (String) -> Bool = { _ in true }
    public init() {}
    public init(eps: Double = 1e-3, maxSamples: Int = 300, seed: UInt64 = 1, training: Bool = true) {
        self.eps = eps; self.maxSamples = maxSamples; self.seed = seed; self.training = training
    }
}

public struct TensorGradientReport: CustomStringConvertible {
    public var name: String
    public var total: Int
    public var checked: Int
    public var failures: Int
    public var retried: Int
    /// Samples that straddled a kink at every eps tried (not compared).
    public var skipped: Int
    public var maxAbsError: Double
    public var worstIndex: Int
    public var worstAnalytic: Double
    public var worstNumeric: Double
    /// max |error| / S over the tensor: 1 would be the tolerance at a tiny element.
    public var scale: Double
    /// The rounding-noise floor of the absolute tolerance at the check's eps (0 without a
    /// loss magnitude).
    public var noiseFloor: Double = 0
    /// ||analytic - numeric|| / ||numeric|| over the compared elements (the denominator at least
    /// floorFraction * largest scale * sqrt(count), as for the element tolerance).
    public var relativeL2: Double
    /// With GradientCheckOptions.maxRelativeL2, the tensor fails above it.
    public var relativeL2Limit = Double.infinity
    /// The first few failing elements: (index, analytic, numeric).
    public var failing: [(index: Int, analytic: Double, numeric: Double)] = []
    /// No failure, and at least half of the samples compared (not lost to kinks).
    public var passed: Bool {
        failures == 0 && 2 * skipped <= checked && skipped < checked && relativeL2 <= relativeL2Limit
    }

    public var description: String {
        "\(name): \(failures) of \(checked)/\(total) checked elements fail (\(retried) retried, \(skipped) skipped at kinks); "
            + "max abs err \(fmt(maxAbsError)) at [\(worstIndex)] analytic \(fmt(worstAnalytic)) "
            + "numeric \(fmt(worstNumeric)); scale \(fmt(scale)); noise floor \(fmt(noiseFloor)); rel L2 err \(fmt(relativeL2))"
            + (failing.isEmpty ? "" : "; failing [index] analytic/numeric: "
                + failing.map { "[\($0.index)] \(fmt($0.analytic))/\(fmt($0.numeric))" }.joined(separator: ", "))
    }
}

public struct GradientCheckReport: CustomStringConvertible {
    public var tensors: [TensorGradientReport]
    public var passed: Bool { !tensors.isEmpty && tensors.allSatisfy { $0.passed } }
    public subscript(name: String) -> TensorGradientReport? { tensors.first { $0.name == name } }
    public var description: String { tensors.map { $0.description }.joined(separator: "\n") }
    /// One line: the worst relative L2 error and the number of checked elements.
    public var summary: String {
        let worst = tensors.max { $0.relativeL2 < $1.relativeL2 }
        return "\(tensors.count) tensors, \(tensors.reduce(0) { $0 + $1.checked }) elements, worst rel L2 err "
            + "\(fmt(worst?.relativeL2 ?? 0)) (\(worst?.name ?? "-")), \(passed ? "pass" : "FAIL")"
    }
}

/// A tensor whose gradient is checked: its values (perturbed in place) and its analytic gradient.
public struct CheckedTensor {
    public var name: String
    public var values: UnsafeMutablePointer<Float>
    public var count: Int
    public var analytic: [Float]
    public init(name: String, values: UnsafeMutablePointer<Float>, count: Int, analytic: [Float]) {
        precondition(analytic.count == count, "\(name): \(analytic.count) gradient values for \(count) elements")
        self.name = name; self.values = values; self.count = count; self.analytic = analytic
    }
}

/// Deterministic sample of at most `maxSamples` indices in 0..<count, sorted, including both ends.
public func sampleIndices(_ count: Int, maxSamples: Int, seed: UInt64) -> [Int] {
    if count <= maxSamples { return Array(0..<count) }
    var rng = SplitMix64(seed: mixSeed(seed, UInt64(count)))
    var all = Array(1..<(count - 1))
    all.shuffle(using: &rng)
    return ([0, count - 1] + all.prefix(max(maxSamples - 2, 0))).sorted()
}

/// Compares each tensor's analytic gradient with central differences of `loss`, which must
/// recompute the loss from the current values (and restore any state a forward changes).
/// With `pattern` (the piecewise-linear decisions of the last `loss` evaluation, e.g.
/// `PiecewisePattern`), a difference whose +eps or -eps evaluation changes the pattern straddles
/// a kink: it is redone with eps * retryFactor up to `kinkRetries` times, then skipped.
/// `lossMagnitude` (sum of |terms| of the loss) sets the rounding-noise floor of the tolerance.
public func finiteDifferenceCheck(_ tensors: [CheckedTensor], options o: GradientCheckOptions,
                                  lossMagnitude: Double = 0,
                                  pattern: (() -> [Int32])? = nil,
                                  loss: () -> Double) -> GradientCheckReport {
    /// Float32 rounding noise of a central difference with this eps.
    func noiseFloor(_ eps: Double) -> Double { o.noiseFactor * Double(Float.ulpOfOne) / 2 * lossMagnitude / eps }
    var base: [Int32]?
    if let pattern = pattern { _ = loss(); base = pattern() }
    /// nil when the two evaluations straddle a kink.
    func central(_ p: UnsafeMutablePointer<Float>, _ eps: Double) -> Double? {
        let orig = p.pointee
        let up = Float(Double(orig) + eps), down = Float(Double(orig) - eps)
        p.pointee = up; let lp = loss(); let pp = pattern?()
        p.pointee = down; let lm = loss(); let pm = pattern?()
        p.pointee = orig
        if let b = base, pp != b || pm != b { return nil }
        return (lp - lm) / (Double(up) - Double(down))
    }
    /// Central difference, or with `richardson` (4 D(eps/2) - D(eps)) / 3, which cancels the
    /// eps^2 term of the truncation error (the curvature of batch norm over small batches).
    func estimate(_ p: UnsafeMutablePointer<Float>, _ eps: Double) -> Double? {
        guard let d1 = central(p, eps) else { return nil }
        guard o.richardson else { return d1 }
        guard let d2 = central(p, eps / 2) else { return nil }
        return (4 * d2 - d1) / 3
    }
    func numeric(_ p: UnsafeMutablePointer<Float>, _ eps0: Double) -> Double? {
        var eps = eps0
        for _ in 0...(pattern == nil ? 0 : o.kinkRetries) {
            if let v = estimate(p, eps) { return v }
            eps *= o.retryFactor
        }
        return nil
    }
    // Pass 1: numeric gradients on the samples.
    var samples: [[Int]] = [], numerics: [[Double?]] = []
    for (t, ct) in tensors.enumerated() {
        let idx = sampleIndices(ct.count, maxSamples: o.maxSamples, seed: mixSeed(o.seed, UInt64(t)))
        samples.append(idx)
        numerics.append(idx.map { numeric(ct.values + $0, o.eps) })
    }
    let scales = numerics.map { $0.reduce(0) { max($0, $1?.magnitude ?? 0) } }
    let global = scales.max() ?? 0
    // Pass 2: compare.
    var reports: [TensorGradientReport] = []
    for (t, ct) in tensors.enumerated() {
        let s = max(scales[t], o.floorFraction * global, 1e-30)
        var r = TensorGradientReport(name: ct.name, total: ct.count, checked: samples[t].count, failures: 0,
                                     retried: 0, skipped: 0, maxAbsError: 0, worstIndex: -1, worstAnalytic: 0,
                                     worstNumeric: 0, scale: s, relativeL2: 0)
        r.noiseFloor = noiseFloor(o.eps)
        var errSq = 0.0, refSq = 0.0
        for (j, i) in samples[t].enumerated() {
            let a = Double(ct.analytic[i])
            guard var n = numerics[t][j] else { r.skipped += 1; continue }
            func fails(_ n: Double, eps: Double) -> Bool {
                !((a - n).magnitude <= o.rtol * max(a.magnitude, n.magnitude) + max(o.atol * s, noiseFloor(eps)))
            }
            if fails(n, eps: o.eps) {
                r.retried += 1
                let eps2 = o.eps * o.retryFactor
                if let n2 = numeric(ct.values + i, eps2), !fails(n2, eps: eps2) { n = n2 } else {
                    r.failures += 1
                    if r.failing.count < 6 { r.failing.append((i, a, n)) }
                }
            }
            let e = (a - n).magnitude
            errSq += e * e; refSq += n * n
            if e > r.maxAbsError || r.worstIndex < 0 || e.isNaN {
                r.maxAbsError = e; r.worstIndex = i; r.worstAnalytic = a; r.worstNumeric = n
            }
        }
        let compared = Double(r.checked - r.skipped)
        let floorNorm = compared.squareRoot() * o.floorFraction * global
        r.relativeL2 = errSq.squareRoot() / max(refSq.squareRoot(), floorNorm, 1e-30)
        if let limit = o.maxRelativeL2 { r.relativeL2Limit = limit }
        reports.append(r)
    }
    return GradientCheckReport(tensors: reports)
}

/// Checks a layer's dL/dx and dL/dθ (every parameter of `ctx.params` accepted by the options)
/// for L = sum(y ⊙ r). Parameter gradients are zeroed first (backward adds into them).
/// Batch-norm buffers are snapshotted and restored around every forward, so every evaluation
/// sees the same state, and are left as they were before the check. Differences that cross
/// a ReLU kink or change a max-pool choice are redone with a smaller eps (`detectKinks`).
public func checkLayerGradients(_ layer: Layer, ctx: ModelContext, input x: Tensor,
                                options o: GradientCheckOptions = GradientCheckOptions()) -> GradientCheckReport {
    let snapshot = Array(ctx.buffers.valueBuffer)
    func restore() {
        let b = ctx.buffers.valueBuffer
        for i in 0..<snapshot.count { b[i] = snapshot[i] }
    }
    restore()
    let y0 = ctx.forward(layer, x, training: o.training)
    let yShape = y0.shape
    var rng = SplitMix64(seed: mixSeed(o.seed, 0x10ad))
    let r = (0..<y0.count).map { _ in rng.normal() }
    var magnitude = 0.0   // sum |y_i r_i|: the rounding-noise scale of L (read before backward reuses y's memory)
    for i in 0..<y0.count { magnitude += (Double(y0.data[i]) * Double(r[i])).magnitude }
    ctx.params.zeroGrad()
    let dx = ctx.backward(layer, Tensor(shape: yShape, values: r)).array
    precondition(dx.count == x.count, "\(layer.name): input gradient has \(dx.count) elements, input \(x.count)")
    let rd = r.map(Double.init)
    var tensors: [CheckedTensor] = []
    if o.checkInput { tensors.append(CheckedTensor(name: "input", values: x.data, count: x.count, analytic: dx)) }
    for p in ctx.params.entries where o.includeParameter(p.name) {
        tensors.append(CheckedTensor(name: p.name, values: p.value, count: p.count, analytic: p.grads))
    }
    let recorder = o.detectKinks ? PiecewisePattern(ctx) : nil
    defer { recorder?.uninstall() }
    let pattern = recorder.map { rec in { rec.pattern(layer, input: x.array, shape: x.shape) } }
    let report = finiteDifferenceCheck(tensors, options: o, lossMagnitude: magnitude, pattern: pattern) {
        restore()
        let y = ctx.forward(layer, x, training: o.training)
        precondition(y.shape == yShape)
        var s = 0.0
        for i in 0..<y.count { s += Double(y.data[i]) * rd[i] }
        return s
    }
    restore()
    return report
}
