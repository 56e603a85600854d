// A timeline of chosen steps (`resnet train --trace FILE`, `train.trace_steps`): spans with a name,
// a category, a start and a duration, on the thread that ran them, kept in memory while the
// recorder is installed; Training's TraceSession writes them as Chrome trace events (Perfetto,
// chrome://tracing) — one process row per rank, one thread row per worker thread, plus a
// "communication" row for the allreduces in flight. Off (no recorder), a span costs one load and a branch.
// The module depends on nothing, so the layers (NN), the gradient buckets (Distributed) and the
// run loop (Training) all record into the same timeline.
#if canImport(Glibc)
import Glibc
#endif
import Foundation

public enum Trace {
    /// The recorder spans go to; nil = tracing off.
    nonisolated(unsafe) public static var recorder: TraceRecorder?

    /// What the main thread is running (a layer's name), for the names of worker spans.
    nonisolated(unsafe) public static var label = ""

    /// Runs `body` as a span on the calling thread.
    @inline(__always)
    public static func span<T>(_ name: @autoclosure () -> String, _ category: StaticString, _ body: () throws -> T) rethrows -> T {
        guard let r = recorder else { return try body() }
        let start = TraceRecorder.now()
        defer { r.add(name(), category, start: start, end: TraceRecorder.now(), thread: TraceRecorder.threadID()) }
        return try body()
    }
}

public final class TraceRecorder: @unchecked Sendable {
    public struct Span: Equatable, Sendable {
        public var name: String
        public var category: String
        public var start: Double      // µs since the Unix epoch (ranks on synchronized clocks line up)
        public var duration: Double   // µs
        public var thread: Int32      // OS thread id, or `communicationThread`
    }

    /// The thread row of spans that are no thread's work (an allreduce in flight).
    public static let communicationThread: Int32 = -1

    private let lock = NSLock()
    private var recorded: [Span] = []
    /// Every span so far.
    public var spans: [Span] { lock.lock(); defer { lock.unlock() }; return recorded }
    /// The thread that made the recorder (the run's main thread).
    public let mainThread = TraceRecorder.threadID()

    public init() { recorded.reserveCapacity(4096) }

    public func add(_ name: String, _ category: StaticString, start: Double, end: Double, thread: Int32) {
        add(Span(name: name, category: "\(category)", start: start, duration: max(0, end - start), thread: thread))
    }

    public func add(_ span: Span) {
        lock.lock(); recorded.append(span); lock.unlock()
    }

    /// Microseconds since the Unix epoch.
    public static func now() -> Double {
        var t = timespec()
        clock_gettime(CLOCK_REALTIME, &t)
        return Double(t.tv_sec) * 1e6 + Double(t.tv_nsec) * 1e-3
    }

    /// A small number per thread (1, 2, ... in order of first use), kept in thread-local storage.
    public static func threadID() -> Int32 {
        if let v = pthread_getspecific(threadKey) { return Int32(truncatingIfNeeded: Int(bitPattern: v)) }
        threadLock.lock(); nextThread += 1; let id = nextThread; threadLock.unlock()
        pthread_setspecific(threadKey, UnsafeRawPointer(bitPattern: Int(id)))
        return id
    }
    private static let threadKey: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key, nil)
        return key
    }()
    private static let threadLock = NSLock()
    nonisolated(unsafe) private static var nextThread: Int32 = 0

}
