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

/// Phase times inside a parallel loop, measured on worker 0 (its share approximates the wall
/// time, as the workers get equal slices of the batch). Off unless a profiler is attached.
final class PhaseClock {
    let enabled: Bool
    private var last = 0.0
    private(set) var seconds = [Double](repeating: 0, count: 8)
    init(enabled: Bool) { self.enabled = enabled }
    @inline(__always) func start(_ worker: Int) {
        if enabled && worker == 0 { last = monotonicSeconds() }
    }
    @inline(__always) func lap(_ worker: Int, _ phase: Int) {
        guard enabled && worker == 0 else { return }
        let t = monotonicSeconds(); seconds[phase] += t - last; last = t
    }
    func report(_ p: LayerProfiler?, _ names: [String]) {
        guard let p = p else { return }
        for (i, n) in names.enumerated() { p.add(n, seconds[i]) }
    }
}
