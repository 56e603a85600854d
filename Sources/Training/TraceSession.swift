// `--trace FILE`: the timeline of a window of steps (train.trace_steps; bench: its timed steps) on
// every rank, merged by rank 0 into one Chrome trace-event file (Perfetto, chrome://tracing): one
// process row per rank, one thread row per worker thread, a "communication" row for allreduces in
// flight. The spans themselves come from the Trace module (layers, gradient buckets, the step
// engine, evaluation and checkpoints); recording does not change what is computed.
import Foundation
import Distributed
import NN
import Trace

public final class TraceSession {
    let path: String
    let comm: Communicator
    private(set) var finished = false

    public init(path: String, comm: Communicator) {
        self.path = path; self.comm = comm
    }

    /// Refuses a path whose folder does not exist or is not writable, or that is a folder.
    public static func checkWritable(_ path: String) throws {
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue {
            throw TrainingError("--trace \(path): is a folder; expected a file to write the trace to")
        }
        let folder = (path as NSString).deletingLastPathComponent.isEmpty ? "." : (path as NSString).deletingLastPathComponent
        guard FileManager.default.fileExists(atPath: folder, isDirectory: &isDir), isDir.boolValue else {
            throw TrainingError("--trace \(path): the folder \(folder) does not exist")
        }
        guard access(folder, W_OK) == 0 else {
            throw TrainingError("--trace \(path): the folder \(folder) is not writable")
        }
    }

    /// Starts recording on this rank (idempotent).
    public func start() {
        if Trace.recorder == nil && !finished { Trace.recorder = TraceRecorder() }
    }

    var recording: Bool { Trace.recorder != nil }

    /// Collective: stops recording, gathers every rank's spans and rank 0 writes the file.
    public func finish(what: String) throws {
        guard !finished else { return }
        finished = true
        let recorder = Trace.recorder ?? TraceRecorder()
        Trace.recorder = nil
        let mine = recorder.chromeEvents(rank: comm.rank, host: ProcessInfo.processInfo.hostName).joined(separator: ",\n")
        let all = try comm.allgather(Array(mine.utf8)).map { String(decoding: $0, as: UTF8.self) }
        guard comm.rank == 0 else { return }
        try writeTextFile(path, TraceRecorder.chromeTrace(all.filter { !$0.isEmpty }))
        print("wrote the trace of \(what) (\(comm.size) rank(s)) to \(path)")
    }
}

extension TraceRecorder {
    /// This recorder's spans as Chrome trace events of process `rank` (JSON objects without the
    /// enclosing array), with the process's name and its thread rows' names.
    public func chromeEvents(rank: Int, host: String) -> [String] {
        let all = spans
        var events = [#"{"name":"process_name","ph":"M","pid":\#(rank),"args":{"name":\#(quotedString("rank \(rank) (\(host))"))}}"#,
                      #"{"name":"process_sort_index","ph":"M","pid":\#(rank),"args":{"sort_index":\#(rank)}}"#]
        var workers: [Int32: Int] = [:]
        for s in all where s.thread != mainThread && s.thread != TraceRecorder.communicationThread && workers[s.thread] == nil {
            workers[s.thread] = workers.count + 1
        }
        func threadName(_ t: Int32) -> String {
            t == mainThread ? "main" : t == TraceRecorder.communicationThread ? "communication" : "worker \(workers[t] ?? 0)"
        }
        for t in [mainThread, TraceRecorder.communicationThread] + workers.keys.sorted() {
            events.append(#"{"name":"thread_name","ph":"M","pid":\#(rank),"tid":\#(t),"args":{"name":\#(quotedString(threadName(t)))}}"#)
        }
        for s in all {
            events.append(#"{"name":\#(quotedString(s.name)),"cat":\#(quotedString(s.category)),"ph":"X","ts":\#(String(format: "%.3f", s.start)),"dur":\#(String(format: "%.3f", s.duration)),"pid":\#(rank),"tid":\#(s.thread)}"#)
        }
        return events
    }

    /// The whole file: every rank's events (from `chromeEvents`) in one JSON object.
    public static func chromeTrace(_ events: [String]) -> String {
        "{\"displayTimeUnit\":\"ms\",\"traceEvents\":[\n" + events.joined(separator: ",\n") + "\n]}\n"
    }
}
