import Trace

/// Gradient buckets over one flat Float buffer [0, total), given once: contiguous slices of about
/// `bucketBytes` each, summed across ranks with nonblocking sums in rank order
/// (`Communicator.startAllreduceSum`; RankOrderSum.swift under MPI).
///
/// During backward, the training loop calls `markReady` for each gradient range that is final
/// for this step; a bucket's allreduce starts as soon as every float in it has been marked, so
/// communication overlaps the rest of backward. `poll()` drives progress in between; `finish`
/// starts whatever is left, waits for everything and resets for the next step.
///
/// Rules: every float is marked exactly once per step; all ranks mark in the same order (MPI
/// matches collectives by issue order; backward visits layers in the same order on every rank);
/// the buffer is not written while its buckets are in flight; main thread only.
/// With a world of one (`size == 1`) every call returns at once.
public final class GradientBuckets {
    public let total: Int
    /// The gradients: `total` floats, summed across ranks in place.
    public let buffer: UnsafeMutablePointer<Float>
    /// The buckets, in buffer order; they cover [0, total) without gaps or overlap.
    public let ranges: [Range<Int>]
    public let communicator: Communicator
    /// Seconds `finish` spent in the last step (starting leftovers and waiting).
    public private(set) var communicationWaitSeconds: Double = 0

    private let active: Bool
    private var covered: [Int]
    private var inFlight: [PendingReduction?]
    private var done: [Bool]
    /// When each in-flight bucket's allreduce started (µs), while a trace is recorded.
    private var started: [Double]

    public init(buffer: UnsafeMutablePointer<Float>, total: Int, bucketBytes: Int = 4 << 20, communicator: Communicator) {
        precondition(total >= 0, "negative gradient count \(total)")
        precondition(bucketBytes >= MemoryLayout<Float>.stride, "bucketBytes \(bucketBytes) holds no Float")
        self.total = total
        self.buffer = buffer
        self.communicator = communicator
        ranges = GradientBuckets.ranges(total: total, bucketBytes: bucketBytes)
        active = communicator.size > 1
        covered = [Int](repeating: 0, count: ranges.count)
        inFlight = [PendingReduction?](repeating: nil, count: ranges.count)
        done = [Bool](repeating: false, count: ranges.count)
        started = [Double](repeating: 0, count: ranges.count)
    }

    /// `total` floats in ceil(total / bucketFloats) slices of equal size (differing by at most
    /// one), so no tiny tail bucket; bucketFloats = bucketBytes / 4.
    public static func ranges(total: Int, bucketBytes: Int = 4 << 20) -> [Range<Int>] {
        let bucketFloats = max(1, bucketBytes / MemoryLayout<Float>.stride)
        guard total > 0 else { return [] }
        let n = (total + bucketFloats - 1) / bucketFloats
        let base = total / n, extra = total % n
        var result: [Range<Int>] = []
        result.reserveCapacity(n)
        var lo = 0
        for i in 0..<n {
            let hi = lo + base + (i < extra ? 1 : 0)
            result.append(lo ..< hi)
            lo = hi
        }
        return result
    }

    /// Marks the floats [lo, hi) of the buffer final for this step. A bucket whose every float
    /// has been marked starts its allreduce right away. A range may span buckets.
    public func markReady(lo: Int, hi: Int) throws {
        guard active else { return }
        precondition(0 <= lo && lo <= hi && hi <= total, "markReady range \(lo)..<\(hi) outside 0..<\(total)")
        guard lo < hi else { return }
        var b = bucketIndex(containing: lo)
        while b < ranges.count && ranges[b].lowerBound < hi {
            let range = ranges[b]
            covered[b] += min(hi, range.upperBound) - max(lo, range.lowerBound)
            precondition(covered[b] <= range.count,
                         "markReady: floats of bucket \(b) (\(range)) marked more than once this step")
            if covered[b] == range.count {
                try start(b)
            }
            b += 1
        }
    }

    /// Tests every in-flight bucket so MPI makes progress; returns how many are still in flight.
    @discardableResult
    public func poll() throws -> Int {
        guard active else { return 0 }
        var pending = 0
        for b in inFlight.indices where !done[b] {
            guard let request = inFlight[b] else { continue }
            if try request.test() {
                done[b] = true
                inFlight[b] = nil
                traceCompleted(b)
            } else {
                pending += 1
            }
        }
        return pending
    }

    /// Starts every bucket not yet started, waits for all of them and resets for the next
    /// step. Returns the seconds spent here (also kept in `communicationWaitSeconds`).
    public func finish() throws -> Double {
        guard active else {
            communicationWaitSeconds = 0
            return 0
        }
        let clock = ContinuousClock()
        let began = clock.now
        for b in ranges.indices where inFlight[b] == nil && !done[b] {
            try start(b)
        }
        try Trace.span("wait for gradient allreduces", "wait") {
            for b in ranges.indices {
                if let request = inFlight[b] {
                    try CollectiveWatchdog.describing("allreduce of gradient bucket \(b + 1)/\(ranges.count)") { try request.wait() }
                    traceCompleted(b)
                }
            }
        }
        let elapsed = clock.now - began
        let (seconds, attoseconds) = elapsed.components
        communicationWaitSeconds = Double(seconds) + Double(attoseconds) * 1e-18
        reset()
        return communicationWaitSeconds
    }

    private func start(_ b: Int) throws {
        if Trace.recorder != nil { started[b] = TraceRecorder.now() }
        let range = ranges[b]
        inFlight[b] = try communicator.startAllreduceSum(buffer + range.lowerBound, count: range.count)
    }

    /// Bucket b's allreduce, from its start to now, on the trace's communication row.
    private func traceCompleted(_ b: Int) {
        guard let r = Trace.recorder, started[b] > 0 else { return }
        r.add("allreduce bucket \(b + 1)/\(ranges.count)", "allreduce", start: started[b], end: TraceRecorder.now(),
              thread: TraceRecorder.communicationThread)
        started[b] = 0
    }

    private func reset() {
        for b in ranges.indices {
            covered[b] = 0
            inFlight[b] = nil
            done[b] = false
        }
    }

    /// The bucket whose range contains `index` (0 <= index < total).
    private func bucketIndex(containing index: Int) -> Int {
        var lo = 0, hi = ranges.count - 1
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if ranges[mid].lowerBound <= index { lo = mid } else { hi = mid - 1 }
        }
        return lo
    }
}
