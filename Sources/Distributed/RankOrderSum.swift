import CMPI

/// The nonblocking gradient sum of `MPICommunicator.startAllreduceSum`: one float buffer summed
/// over the ranks IN RANK ORDER, `((x₀ + x₁) + x₂) + …`, so every rank gets the same bits, and
/// the same bits as one process adding N micro-batches' gradients in order (gradient
/// accumulation, docs/design.md).
///
/// The buffer is cut into `size` slices; rank c owns slice c. Two phases of point-to-point
/// messages, each progressed by `test()` (or completed by `wait()`) on the main thread:
///   1. exchange: every rank sends slice c to its owner c and receives its own slice from every
///      other rank into scratch; when all have arrived, the owner adds the `size` pieces in rank
///      order into its slice;
///   2. gather: every owner sends its summed slice to every rank, which receives it in place.
/// Per rank that moves (size-1)/size of the buffer out and in per phase, as a ring does, and
/// adds one slice (Open MPI's nonblocking allreduce between 2 ranks reduced the whole buffer on
/// one rank: 42 ms for ResNet-18's 45 MB of gradients against 11 ms this way; docs/performance.md).
///
/// Messages of one sum carry one tag, `sequence % 32768` (MPI guarantees tags up to 32767); every
/// rank starts its sums in the same order, so the numbers agree, and within one sum the gather
/// message from a rank is posted after its exchange message, which MPI delivers in order.
final class RankOrderSum: PendingReduction {
    private let communicator: MPICommunicator
    private let buffer: UnsafeMutablePointer<Float>
    /// Slice c is buffer[bounds[c] ..< bounds[c + 1]].
    private let bounds: [Int]
    private let tag: Int32
    /// The other ranks' pieces of this rank's slice, `slice` floats each in rank order, this rank
    /// skipped (`slot`); from and back to the communicator's scratch pool.
    private var scratch: ScratchPool.Block?
    /// 2 × (size − 1) requests: receives first, then sends.
    private let requests: UnsafeMutablePointer<CMPI_Request>
    private let requestCount: Int
    private enum Phase { case exchange, gather, complete }
    private var phase = Phase.exchange

    /// Starts phase 1. `count` ≤ Int32.max × size (callers split larger buffers).
    init(communicator: MPICommunicator, buffer: UnsafeMutablePointer<Float>, count: Int, sequence: Int) throws {
        let size = communicator.size, rank = communicator.rank
        self.communicator = communicator
        self.buffer = buffer
        bounds = (0...size).map { count * $0 / size }
        tag = Int32(sequence % 32768)
        requestCount = 2 * (size - 1)
        requests = .allocate(capacity: requestCount)
        for i in 0..<requestCount { CMPI_request_init(requests + i) }
        let slice = bounds[rank + 1] - bounds[rank]
        let block = communicator.scratchPool.take(slice * (size - 1))
        scratch = block
        do {
            try postRound("pieces of slice \(rank)",
                          receive: { q in UnsafeMutableBufferPointer(start: block.start + self.slot(q) * slice, count: slice) },
                          send: { q in self.slice(q) })
        } catch {
            abandon()
            throw error
        }
    }

    deinit {
        // MPI owns the buffers while requests are active: complete them before letting go.
        abandon()
        requests.deallocate()
    }

    func test() throws -> Bool {
        while phase != .complete {
            var done: Int32 = 0
            try step(CMPI_testall(Int32(requestCount), requests, &done), "MPI_Testall")
            guard done != 0 else { return false }
            try advance()
        }
        return true
    }

    func wait() throws {
        guard phase != .complete else { return }
        try communicator.watched("gradient sum (\(phaseName))") {
            while phase != .complete {
                try step(CMPI_waitall(Int32(requestCount), requests), "MPI_Waitall")
                try advance()
            }
        }
    }

    // MARK: Phases

    /// Slice c of the buffer.
    private func slice(_ c: Int) -> UnsafeMutableBufferPointer<Float> {
        UnsafeMutableBufferPointer(start: buffer + bounds[c], count: bounds[c + 1] - bounds[c])
    }

    /// One phase's messages: from every other rank q into `receive(q)`, then `send(q)` to it
    /// (receives in requests[0 ..< size - 1], sends after them).
    private func postRound(_ what: String, receive: (Int) -> UnsafeMutableBufferPointer<Float>,
                           send: (Int) -> UnsafeMutableBufferPointer<Float>) throws {
        let others = (0..<communicator.size).filter { $0 != communicator.rank }
        for (k, q) in others.enumerated() {
            let b = receive(q)
            try post(CMPI_irecv_float(b.baseAddress, Int32(b.count), Int32(q), tag, requests + k), "MPI_Irecv(\(what) from rank \(q))")
        }
        for (k, q) in others.enumerated() {
            let b = send(q)
            try post(CMPI_isend_float(b.baseAddress, Int32(b.count), Int32(q), tag, requests + others.count + k), "MPI_Isend(\(what) to rank \(q))")
        }
    }

    /// Where rank q's piece sits in the scratch (this rank has none).
    private func slot(_ q: Int) -> Int { q < communicator.rank ? q : q - 1 }

    private var phaseName: String { phase == .exchange ? "exchange of slices" : "gather of sums" }

    /// The current phase's requests all completed: add the pieces and start the gather, or finish.
    private func advance() throws {
        let size = communicator.size, rank = communicator.rank
        switch phase {
        case .exchange:
            let lo = bounds[rank], slice = bounds[rank + 1] - lo
            let pieces = (0..<size).map { q in q == rank ? UnsafePointer(buffer + lo) : UnsafePointer(scratch!.start + slot(q) * slice) }
            RankOrderSum.addInOrder(pieces, own: rank, count: slice)
            communicator.scratchPool.give(scratch!)
            scratch = nil
            phase = .gather
            try postRound("sum of slice", receive: { q in self.slice(q) }, send: { _ in self.slice(rank) })
        case .gather:
            phase = .complete
        case .complete:
            break
        }
    }

    /// `pieces[own][i] = ((pieces[0][i] + pieces[1][i]) + pieces[2][i]) + …`, in place in the
    /// piece `own`. Written so that every loop's output is its own input or a distinct buffer:
    /// a loop writing one piece while reading another through a second pointer to the same
    /// memory fails the compiler's runtime overlap check and runs at half speed.
    static func addInOrder(_ pieces: [UnsafePointer<Float>], own: Int, count: Int) {
        precondition(pieces.count >= 2 && pieces.indices.contains(own), "addInOrder needs two pieces or more, own among them")
        let out = UnsafeMutablePointer(mutating: pieces[own])
        if own == 0 {   // out = out + x1, then + x2, ...
            for q in 1..<pieces.count {
                let b = pieces[q]
                for i in 0..<count { out[i] += b[i] }
            }
            return
        }
        if pieces.count == 2 {   // own == 1: out = x0 + out
            let a = pieces[0]
            for i in 0..<count { out[i] = a[i] + out[i] }
            return
        }
        // The own piece sits inside the order: blocks of 1024 floats through a stack accumulator.
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 1024) { acc in
            let sum = acc.baseAddress!
            var i = 0
            while i < count {
                let n = min(1024, count - i)
                let a = pieces[0] + i, b = pieces[1] + i
                for j in 0..<n { sum[j] = a[j] + b[j] }
                for q in 2..<pieces.count {
                    let c = pieces[q] + i
                    for j in 0..<n { sum[j] += c[j] }
                }
                (out + i).update(from: sum, count: n)
                i += n
            }
        }
    }

    // MARK: Errors and teardown

    private func post(_ code: Int32, _ operation: @autoclosure () -> String) throws {
        try communicator.check(code, "\(operation()) of a gradient sum")
    }

    /// A failed progress call ends the sum: the error names the phase; nothing is retried.
    private func step(_ code: Int32, _ call: String) throws {
        guard code != CMPI_success() else { return }
        let name = phaseName
        phase = .complete
        try communicator.check(code, "\(call)(gradient sum, \(name))")
    }

    /// Completes whatever requests are active (unless MPI is finalized) and returns the scratch.
    private func abandon() {
        var finalized: Int32 = 0
        _ = CMPI_finalized(&finalized)
        if finalized == 0 { _ = CMPI_waitall(Int32(requestCount), requests) }   // null handles count as complete
        if let block = scratch {
            communicator.scratchPool.give(block)
            scratch = nil
        }
        phase = .complete
    }
}

/// Float scratch reused across steps: the same bucket sizes recur every step, so after the first
/// step a sum finds a block and no page is faulted in again. Main thread only.
final class ScratchPool {
    struct Block {
        let start: UnsafeMutablePointer<Float>
        let capacity: Int
    }
    private var free: [Block] = []

    deinit {
        for block in free { block.start.deallocate() }
    }

    /// The smallest free block of at least `count` floats, or a new one.
    func take(_ count: Int) -> Block {
        if let i = free.indices.filter({ free[$0].capacity >= count }).min(by: { free[$0].capacity < free[$1].capacity }) {
            return free.remove(at: i)
        }
        return Block(start: .allocate(capacity: max(count, 1)), capacity: max(count, 1))
    }

    func give(_ block: Block) {
        free.append(block)
    }
}
