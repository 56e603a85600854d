import CMPI
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// COMM_WORLD through the CMPI shim. Create one per process, from the main thread, and only
/// when an MPI launcher started the process (see `Launch.makeCommunicator()`).
/// Every nonzero MPI return code becomes a `CommunicatorError` naming the operation.
public final class MPICommunicator: Communicator {
    public let rank: Int
    public let size: Int
    /// The thread level MPI granted (CMPI_thread_funneled() was requested).
    public let providedThreadLevel: Int32
    /// MPI_Get_processor_name (usually the host name).
    public let processorName: String

    /// How many gradient sums were started (their message tags, RankOrderSum.swift).
    private var sumSequence = 0
    /// Scratch for the gradient sums' incoming pieces, reused across steps.
    let scratchPool = ScratchPool()

    /// True when this instance called MPI_Init and so calls MPI_Finalize.
    private let ownsMPI: Bool
    private var finalizeCalled = false

    /// MPI counts are C ints: larger buffers go out in chunks of this many elements.
    static let maxElementsPerCall = Int(Int32.max)

    public init() throws {
        var flag: Int32 = 0
        try MPICommunicator.check(CMPI_finalized(&flag), "MPI_Finalized", rank: nil)
        if flag != 0 {
            throw CommunicatorError("MPI was already finalized in this process; it cannot be initialized again")
        }
        try MPICommunicator.check(CMPI_initialized(&flag), "MPI_Initialized", rank: nil)
        var provided: Int32 = 0
        if flag == 0 {
            try MPICommunicator.check(CMPI_init_thread(CMPI_thread_funneled(), &provided),
                                      "MPI_Init_thread", rank: nil)
            ownsMPI = true
        } else {
            try MPICommunicator.check(CMPI_query_thread(&provided), "MPI_Query_thread", rank: nil)
            try MPICommunicator.check(CMPI_set_errors_return(), "MPI_Comm_set_errhandler", rank: nil)
            ownsMPI = false
        }
        providedThreadLevel = provided

        var r: Int32 = 0, s: Int32 = 0
        try MPICommunicator.check(CMPI_rank(&r), "MPI_Comm_rank", rank: nil)
        try MPICommunicator.check(CMPI_size(&s), "MPI_Comm_size", rank: nil)
        rank = Int(r)
        size = Int(s)

        var name = [CChar](repeating: 0, count: Int(CMPI_max_processor_name()) + 1)
        var length: Int32 = 0
        try MPICommunicator.check(CMPI_processor_name(&name, &length), "MPI_Get_processor_name", rank: rank)
        processorName = String(cString: name)
    }

    deinit {
        try? finalize()
    }

    /// MPI_Finalize (once, and only if this instance initialized MPI; deinit calls it too).
    /// Collective: every rank calls it. The communicator must not be used afterwards.
    public func finalize() throws {
        guard !finalizeCalled else { return }
        finalizeCalled = true
        guard ownsMPI else { return }
        var flag: Int32 = 0
        _ = CMPI_finalized(&flag)
        if flag != 0 { return }
        try watched("MPI_Finalize") { try check(CMPI_finalize(), "MPI_Finalize") }
    }

    // MARK: Collectives

    public func allreduceSum(_ buf: UnsafeMutablePointer<Float>, count: Int) throws {
        try watched("MPI_Allreduce(sum, float, \(count))") {
            try forEachChunk(count) { offset, n in
                try check(CMPI_allreduce_sum_float(buf + offset, n), "MPI_Allreduce(sum, float, \(n))")
            }
        }
    }

    public func allreduceSum(_ buf: UnsafeMutablePointer<Double>, count: Int) throws {
        try watched("MPI_Allreduce(sum, double, \(count))") {
            try forEachChunk(count) { offset, n in
                try check(CMPI_allreduce_sum_double(buf + offset, n), "MPI_Allreduce(sum, double, \(n))")
            }
        }
    }

    public func allreduceSum(_ buf: UnsafeMutablePointer<Int64>, count: Int) throws {
        try watched("MPI_Allreduce(sum, int64, \(count))") {
            try forEachChunk(count) { offset, n in
                try check(CMPI_allreduce_sum_int64(buf + offset, n), "MPI_Allreduce(sum, int64, \(n))")
            }
        }
    }

    public func allreduceMax(_ buf: UnsafeMutablePointer<Int64>, count: Int) throws {
        try watched("MPI_Allreduce(max, int64, \(count))") {
            try forEachChunk(count) { offset, n in
                try check(CMPI_allreduce_max_int64(buf + offset, n), "MPI_Allreduce(max, int64, \(n))")
            }
        }
    }

    /// The sum in rank order by point-to-point messages (RankOrderSum.swift), in parts of at most
    /// Int32.max floats.
    public func startAllreduceSum(_ buf: UnsafeMutablePointer<Float>, count: Int) throws -> PendingReduction {
        precondition(!finalizeCalled, "MPICommunicator used after finalize()")
        precondition(count >= 0, "negative count \(count)")
        var parts: [RankOrderSum] = []
        try forEachChunk(count) { offset, n in
            parts.append(try RankOrderSum(communicator: self, buffer: buf + offset, count: Int(n), sequence: sumSequence))
            sumSequence += 1
        }
        return parts.count == 1 ? parts[0] : PendingParts(parts)
    }

    public func broadcast(_ bytes: inout [UInt8], root: Int) throws {
        try watched("MPI_Bcast(bytes, root \(root))") {
            checkRoot(root)
            var length = Int64(rank == root ? bytes.count : 0)
            try check(CMPI_bcast_bytes(&length, Int32(MemoryLayout<Int64>.size), Int32(root)),
                      "MPI_Bcast(length, root \(root))")
            if rank != root && bytes.count != Int(length) {
                bytes = [UInt8](repeating: 0, count: Int(length))
            }
            guard length > 0 else { return }
            try bytes.withUnsafeMutableBytes { raw in
                try forEachChunk(raw.count) { offset, n in
                    try check(CMPI_bcast_bytes(raw.baseAddress! + offset, n, Int32(root)),
                              "MPI_Bcast(bytes, \(n), root \(root))")
                }
            }
        }
    }

    public func broadcast(_ buf: UnsafeMutablePointer<Float>, count: Int, root: Int) throws {
        try watched("MPI_Bcast(float, \(count), root \(root))") {
            checkRoot(root)
            try forEachChunk(count) { offset, n in
                try check(CMPI_bcast_float(buf + offset, n, Int32(root)), "MPI_Bcast(float, \(n), root \(root))")
            }
        }
    }

    public func allgather(_ bytes: [UInt8]) throws -> [[UInt8]] {
        try watched("MPI_Allgather(\(bytes.count) bytes)") { try allgatherUnwatched(bytes) }
    }

    private func allgatherUnwatched(_ bytes: [UInt8]) throws -> [[UInt8]] {
        precondition(!finalizeCalled, "MPICommunicator used after finalize()")
        var mine = Int64(bytes.count)
        var lengths = [Int64](repeating: 0, count: size)
        try check(CMPI_allgather_bytes(&mine, Int32(MemoryLayout<Int64>.size), &lengths),
                  "MPI_Allgather(lengths)")
        let total = lengths.reduce(0, +)
        guard total <= Int64(Int32.max) else {
            throw CommunicatorError("allgather on rank \(rank): \(total) bytes in all exceed MPI's int count limit")
        }
        var counts = [Int32](repeating: 0, count: size)
        var displacements = [Int32](repeating: 0, count: size)
        var offset: Int32 = 0
        for r in 0..<size {
            counts[r] = Int32(lengths[r])
            displacements[r] = offset
            offset += counts[r]
        }
        var gathered = [UInt8](repeating: 0, count: Int(total))
        if total > 0 {
            try bytes.withUnsafeBytes { send in
                try gathered.withUnsafeMutableBytes { recv in
                    try check(CMPI_allgatherv_bytes(send.baseAddress, Int32(bytes.count), recv.baseAddress,
                                                    counts, displacements),
                              "MPI_Allgatherv(\(total) bytes)")
                }
            }
        }
        return (0..<size).map { r in
            let start = Int(displacements[r])
            return Array(gathered[start ..< start + Int(counts[r])])
        }
    }

    public func barrier() throws {
        try watched("MPI_Barrier") {
            try check(CMPI_barrier(), "MPI_Barrier")
        }
    }

    /// Starts the process's collective watchdog (CollectiveWatchdog.swift) for this world: on expiry
    /// it tries MPI_Abort from its own thread, then ends the process itself.
    @discardableResult
    public func startWatchdog(timeout: Double, startupTimeout: Double) -> CollectiveWatchdog {
        CollectiveWatchdog.start(timeout: timeout, startupTimeout: startupTimeout, rank: rank, host: processorName) {
            _ = CMPI_abort(CollectiveWatchdog.exitStatus)
        }
    }

    public func abort(code: Int32) -> Never {
        fflush(stdout)
        fflush(stderr)
        var finalized: Int32 = 0
        _ = CMPI_finalized(&finalized)
        if finalized == 0 {
            _ = CMPI_abort(code)
        }
        exit(code) // MPI_Abort does not return; this is only a fallback
    }

    // MARK: Helpers

    /// `body` under the collective watchdog's deadline, when one runs (CollectiveWatchdog.swift).
    func watched<T>(_ operation: @autoclosure () -> String, _ body: () throws -> T) rethrows -> T {
        guard let watchdog = CollectiveWatchdog.shared else { return try body() }
        return try watchdog.watch(operation(), body)
    }

    /// MPI's text for an error code.
    public static func errorString(_ code: Int32) -> String {
        var text = [CChar](repeating: 0, count: Int(CMPI_max_error_string()) + 1)
        var length: Int32 = 0
        guard CMPI_error_string(code, &text, &length) == CMPI_success() else {
            return "unknown MPI error"
        }
        return String(cString: text)
    }

    static func check(_ code: Int32, _ operation: @autoclosure () -> String, rank: Int?) throws {
        guard code != CMPI_success() else { return }
        let who = rank.map { " on rank \($0)" } ?? ""
        throw CommunicatorError("\(operation()) failed\(who): \(errorString(code)) (MPI error \(code))")
    }

    func check(_ code: Int32, _ operation: @autoclosure () -> String) throws {
        guard code != CMPI_success() else { return }
        try MPICommunicator.check(code, "\(operation())", rank: rank)
    }

    private func checkRoot(_ root: Int) {
        precondition(!finalizeCalled, "MPICommunicator used after finalize()")
        precondition(root >= 0 && root < size, "broadcast root \(root) out of range 0..<\(size)")
    }

    /// Calls `body(offset, n)` for consecutive chunks of at most maxElementsPerCall elements.
    private func forEachChunk(_ count: Int, _ body: (Int, Int32) throws -> Void) throws {
        precondition(!finalizeCalled, "MPICommunicator used after finalize()")
        precondition(count >= 0, "negative count \(count)")
        var offset = 0
        while offset < count {
            let n = min(count - offset, MPICommunicator.maxElementsPerCall)
            try body(offset, Int32(n))
            offset += n
        }
    }
}

/// A sum started in several parts: complete when every part is.
final class PendingParts: PendingReduction {
    private let parts: [PendingReduction]

    init(_ parts: [PendingReduction]) {
        self.parts = parts
    }

    func wait() throws {
        for part in parts { try part.wait() }
    }

    func test() throws -> Bool {
        var all = true
        for part in parts where try !part.test() { all = false }
        return all
    }
}
