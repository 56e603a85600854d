// Numeric assertions shared by the test targets (XCTest is importable from a plain target on
// Linux and macOS, so they live here next to the pure helpers).
import XCTest
import NN

/// Element-wise comparison of `actual` against `expected` (numpy's allclose criterion:
/// |a - b| <= atol + rtol * |b|, the expected value being the reference).
public struct Difference: CustomStringConvertible {
    public var count = 0
    public var failures = 0
    public var firstFailure: Int?
    public var maxAbs = 0.0, maxAbsIndex = -1
    public var maxRel = 0.0, maxRelIndex = -1
    public var sizeMismatch: (Int, Int)?

    public var passed: Bool { failures == 0 && sizeMismatch == nil }

    public var description: String {
        if let (a, b) = sizeMismatch { return "size mismatch: \(a) values vs \(b) expected" }
        var s = "\(failures) of \(count) elements outside tolerance; max abs diff \(fmt(maxAbs)) at [\(maxAbsIndex)]"
        s += ", max rel diff \(fmt(maxRel)) at [\(maxRelIndex)]"
        if let f = firstFailure { s += ", first failure at [\(f)]" }
        return s
    }
}

public func compare(_ actual: [Double], _ expected: [Double], rtol: Double, atol: Double) -> Difference {
    var d = Difference()
    guard actual.count == expected.count else { d.sizeMismatch = (actual.count, expected.count); return d }
    d.count = actual.count
    for i in 0..<actual.count {
        let a = actual[i], b = expected[i]
        let abs = (a - b).magnitude
        let rel = abs / max(b.magnitude, 1e-30)
        let ok = a.isFinite == b.isFinite && (a == b || abs <= atol + rtol * b.magnitude)
        if abs > d.maxAbs || abs.isNaN && !d.maxAbs.isNaN { d.maxAbs = abs; d.maxAbsIndex = i }
        if rel > d.maxRel || rel.isNaN && !d.maxRel.isNaN { d.maxRel = rel; d.maxRelIndex = i }
        if !ok { d.failures += 1; if d.firstFailure == nil { d.firstFailure = i } }
    }
    if d.maxAbsIndex < 0 && d.count > 0 { d.maxAbsIndex = 0 }
    if d.maxRelIndex < 0 && d.count > 0 { d.maxRelIndex = 0 }
    return d
}

private func report(_ d: Difference, _ a: [Double], _ b: [Double], _ message: String,
                    file: StaticString, line: UInt) {
    guard !d.passed else { return }
    var s = message.isEmpty ? "" : message + ": "
    s += d.description
    if d.sizeMismatch == nil, d.maxAbsIndex >= 0, d.maxAbsIndex < a.count {
        s += " (actual \(a[d.maxAbsIndex]) vs expected \(b[d.maxAbsIndex]) at [\(d.maxAbsIndex)])"
    }
    XCTFail(s, file: file, line: line)
}

/// Fails (with the max abs/rel difference and their indices) unless every element satisfies
/// |a - b| <= atol + rtol * |b|, `b` being the reference.
public func assertClose(_ a: [Float], _ b: [Float], rtol: Float = 1e-5, atol: Float = 1e-6,
                        _ message: @autoclosure () -> String = "",
                        file: StaticString = #filePath, line: UInt = #line) {
    let da = a.map(Double.init), db = b.map(Double.init)
    report(compare(da, db, rtol: Double(rtol), atol: Double(atol)), da, db, message(), file: file, line: line)
}

/// The same against a Double reference (the naive kernels).
public func assertClose(_ a: [Float], _ b: [Double], rtol: Double = 1e-5, atol: Double = 1e-6,
                        _ message: @autoclosure () -> String = "",
                        file: StaticString = #filePath, line: UInt = #line) {
    let da = a.map(Double.init)
    report(compare(da, b, rtol: rtol, atol: atol), da, b, message(), file: file, line: line)
}

public func assertClose(_ a: [Double], _ b: [Double], rtol: Double = 1e-9, atol: Double = 1e-12,
                        _ message: @autoclosure () -> String = "",
                        file: StaticString = #filePath, line: UInt = #line) {
    report(compare(a, b, rtol: rtol, atol: atol), a, b, message(), file: file, line: line)
}

/// Fails with every failing tensor's details unless the finite-difference check passed.
public func assertGradientsMatch(_ r: GradientCheckReport, _ message: @autoclosure () -> String = "",
                                 file: StaticString = #filePath, line: UInt = #line) {
    let m = message()
    for t in r.tensors where !t.passed {
        XCTFail((m.isEmpty ? "" : m + ": ") + "gradient check failed: " + t.description, file: file, line: line)
    }
    if r.tensors.isEmpty { XCTFail((m.isEmpty ? "" : m + ": ") + "gradient check checked nothing", file: file, line: line) }
}

/// Finite-difference check of a layer's input and parameter gradients (see `checkLayerGradients`).
@discardableResult
public func assertLayerGradients(_ layer: Layer, ctx: ModelContext, input: Tensor,
                                 options: GradientCheckOptions = GradientCheckOptions(),
                                 _ message: @autoclosure () -> String = "",
                                 file: StaticString = #filePath, line: UInt = #line) -> GradientCheckReport {
    let r = checkLayerGradients(layer, ctx: ctx, input: input, options: options)
    assertGradientsMatch(r, message(), file: file, line: line)
    return r
}

func fmt(_ x: Double) -> String {
    if x.isNaN { return "nan" }
    if x == 0 { return "0" }
    let m = x.magnitude
    if m >= 1e-3 && m < 1e4 {
        let r = (x * 1e4).rounded() / 1e4
        return "\(r)"
    }
    var e = 0, v = m
    while v >= 10 { v /= 10; e += 1 }
    while v < 1 { v *= 10; e -= 1 }
    return (x < 0 ? "-" : "") + "\((v * 100).rounded() / 100)e\(e)"
}

func maxAbs(_ a: [Double]) -> Double { a.reduce(0) { max($0, abs($1)) } }

/// |a - b| <= tol * max|b| elementwise (tolerance relative to the reference's largest magnitude).
public func assertCloseScaled(_ a: [Float], _ b: [Double], tol: Double = 1e-4, _ msg: String,
                               file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.count, b.count, msg, file: file, line: line)
    let scale = max(maxAbs(b), 1e-30)
    var worst = 0.0, at = 0
    for i in 0..<min(a.count, b.count) {
        let d = abs(Double(a[i]) - b[i]); if d > worst { worst = d; at = i }
    }
    XCTAssertLessThanOrEqual(worst / scale, tol, "\(msg): worst at \(at): \(a.isEmpty ? 0 : a[at]) vs \(b.isEmpty ? 0 : b[at])",
                             file: file, line: line)
}
