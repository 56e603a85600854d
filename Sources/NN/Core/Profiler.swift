// Accumulates wall time per layer type for `resnet bench`'s breakdown.
#if canImport(Glibc)
import Glibc
#endif

public func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

public final class LayerProfiler {
    public private(set) var seconds: [String: Double] = [:]
    public init() {}
    public func add(_ key: String, _ dt: Double) { seconds[key, default: 0] += dt }
    public func reset() { seconds = [:] }
}

extension ModelContext {
    /// Runs `body`, charging its time to `key` when profiling is on.
    @inline(__always) func timed<T>(_ key: @autoclosure () -> String, _ body: () -> T) -> T {
        guard let p = profiler else { return body() }
        let t0 = monotonicSeconds()
        let r = body()
        p.add(key(), monotonicSeconds() - t0)
        return r
    }
}
