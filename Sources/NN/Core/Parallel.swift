// Splits a loop over the rank's worker threads (the same count as OpenBLAS's threads), for the
// memory-bound parts of the layers (im2col, col2im, batch norm, ReLU, pooling). One worker runs inline.
import CBLAS
import Dispatch
import Trace
import Synchronization

public enum Parallel {
    /// Worker threads per rank (`setWorkers`).
    nonisolated(unsafe) public static var workers = 1

    /// The layers split their work over `n` worker threads of their own, each calling
    /// single-threaded OpenBLAS (pinned to 1 thread here): no BLAS thread pool spinning against
    /// our workers.
    public static func setWorkers(_ n: Int) {
        openblas_set_num_threads(1)
        workers = max(1, n)
    }

    /// Calls body(range) for disjoint ranges that cover 0..<n, on up to `workers` threads.
    /// Loops shorter than `minChunk` items per worker run inline.
    @inline(__always)
    public static func forRanges(_ n: Int, minChunk: Int = 1, _ body: (Range<Int>) -> Void) {
        let parts = min(workers, n / max(minChunk, 1))
        if parts <= 1 { if n > 0 { body(0..<n) }; return }
        if Trace.recorder != nil {   // one span per worker's share, on its own thread row
            let label = Trace.label
            DispatchQueue.concurrentPerform(iterations: parts) { p in
                Trace.span(label, "worker") { body((n * p / parts)..<(n * (p + 1) / parts)) }
            }
            return
        }
        DispatchQueue.concurrentPerform(iterations: parts) { p in
            body((n * p / parts)..<(n * (p + 1) / parts))
        }
    }

    /// Calls body(worker, item) for every item of 0..<n on `parts` workers (worker < parts picks
    /// per-worker scratch), handing the items out one at a time as the workers finish: a worker
    /// slowed down (by another process on its core) takes fewer. Only for items that write
    /// disjoint outputs, so that which worker took one cannot change a result.
    public static func forItems(_ n: Int, parts: Int, _ body: (_ worker: Int, _ item: Int) -> Void) {
        let next = Atomic<Int>(0)
        forRanges(max(1, min(parts, n))) { ws in for wk in ws {
            while true {
                let item = next.wrappingAdd(1, ordering: .relaxed).oldValue
                if item >= n { break }
                body(wk, item)
            }
        }}
    }
}
