// Deterministic random numbers. Everything random in a run derives from the config's seed
// through `mixSeed`, so the same (seed, epoch, image index) gives the same draw on any rank.
#if canImport(Glibc)
import Glibc
#endif

public struct SplitMix64: RandomNumberGenerator, Sendable {
    public var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    public mutating func nextUnit() -> Float { Float(next() >> 40) * (1.0 / Float(1 << 24)) }
    /// Uniform in [lo, hi).
    public mutating func uniform(_ lo: Float, _ hi: Float) -> Float { lo + (hi - lo) * nextUnit() }
    /// Standard normal (Box-Muller).
    public mutating func normal() -> Float {
        let u1 = max(Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0), 1e-300)
        let u2 = Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0)
        return Float((-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2))
    }
}

/// Combines a seed with further keys (epoch, image index, ...) into a new well-mixed seed.
public func mixSeed(_ seed: UInt64, _ keys: UInt64...) -> UInt64 {
    var g = SplitMix64(seed: seed)
    var h = g.next()
    for k in keys {
        g = SplitMix64(seed: h ^ (k &* 0xD6E8_FEB8_6659_FD93))
        h = g.next()
    }
    return h
}
