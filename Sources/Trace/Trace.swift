// A timeline of chosen steps (`resnet train --trace FILE`, `train.trace_steps`): spans with a name,
// a category, a start and a duration, on the thread that ran them, kept in memory while the
// recorder is installed and written as Chrome trace events (Perfetto, chrome://tracing) — one
// process row per rank, one thread row per worker thread, plus a "communication" row for the
// allreduces in flight. Off (no recorder), a span costs one load and a branch.
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
    public private(set) var spans: [Span] = []
    private let mainThread = TraceRecorder.threadID()

    public init() { spans.reserveCapacity(4096) }

    public func add(_ name: String, _ category: StaticString, start: Double, end: Double, thread: Int32) {
        add(Span(name: name, category: "\(category)", start: start, duration: max(0, end - start), thread: thread))
    }

    public func add(_ span: Span) {
        lock.lock(); spans.append(span); lock.unlock()
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

    /// This recorder's spans as Chrome trace events of process `rank` (JSON objects, one per
    /// line, without the enclosing array), with process and thread names.
    public func chromeEvents(rank: Int, host: String) -> [String] {
        lock.lock(); let all = spans; lock.unlock()
        var events = [#"{"name":"process_name","ph":"M","pid":\#(rank),"args":{"name":\#(json("rank \(rank) (\(host))"))}}"#,
                      #"{"name":"process_sort_index","ph":"M","pid":\#(rank),"args":{"sort_index":\#(rank)}}"#]
        var workers: [Int32: Int] = [:]
        for s in all where s.thread != mainThread && s.thread != TraceRecorder.communicationThread && workers[s.thread] == nil {
            workers[s.thread] = workers.count + 1
        }
        func threadName(_ t: Int32) -> String {
            t == mainThread ? "main" : t == TraceRecorder.communicationThread ? "communication" : "worker \(workers[t] ?? 0)"
        }
        for t in [mainThread, TraceRecorder.communicationThread] + workers.keys.sorted() {
            events.append(#"{"name":"thread_name","ph":"M","pid":\#(rank),"tid":\#(t),"args":{"name":\#(json(threadName(t)))}}"#)
        }
        for s in all {
            events.append(String(format: #"{"name":%@,"cat":%@,"ph":"X","ts":%.3f,"dur":%.3f,"pid":%d,"tid":%d}"#,
                                 json(s.name), json(s.category), s.start, s.duration, rank, s.thread))
        }
        return events
    }

    /// The whole file: every rank's events (from `chromeEvents`) in one JSON object.
    public static func chromeTrace(_ events: [String]) -> String {
        "{\"displayTimeUnit\":\"ms\",\"traceEvents\":[\n" + events.joined(separator: ",\n") + "\n]}\n"
    }

    private func json(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case _ where u.value < 0x20: out += String(format: "\\u%04x", u.value)
            default: out.unicodeScalars.append(u)
            }
        }
        return out + "\""
    }
}
