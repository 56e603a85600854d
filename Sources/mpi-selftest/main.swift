// mpi-selftest: exercises every Communicator operation and checks each result against the
// sum computed locally. Run under `mpirun -np N mpi-selftest`; without a launcher it runs as
// a world of one. Prints "OK rank R/N" and exits 0 when every check passes on every rank,
// otherwise prints the mismatches and exits 1.
//
//   mpi-selftest                  all checks
//   mpi-selftest --abort-rank K   rank K calls abort(code: 3), the others wait in a barrier;
//                                 the job must end non-zero instead of hanging
import Distributed
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

setvbuf(stdout, nil, _IOLBF, 0)

func fail(_ message: String) -> Never {
    fputs("mpi-selftest: \(message)\n", stderr)
    exit(2)
}

var abortRank: Int?
var arguments = CommandLine.arguments.dropFirst()
while let argument = arguments.popFirst() {
    switch argument {
    case "--abort-rank":
        guard let value = arguments.popFirst(), let k = Int(value) else { fail("--abort-rank needs a rank") }
        abortRank = k
    default:
        fail("unknown argument \(argument)")
    }
}

let comm: Communicator
do {
    comm = try Launch.makeCommunicator()
} catch {
    fail("cannot start: \(error)")
}
let rank = comm.rank, size = comm.size

// MARK: Abort mode

if let k = abortRank {
    guard k >= 0 && k < size else { fail("--abort-rank \(k) outside 0..<\(size)") }
    if rank == k {
        print("rank \(rank)/\(size) aborting")
        comm.abort(code: 3)
    }
    do {
        try comm.barrier() // never completes: rank k does not arrive
    } catch {
        print("rank \(rank)/\(size) barrier failed: \(error)")
        exit(4)
    }
    print("rank \(rank)/\(size) passed a barrier that rank \(k) never entered")
    exit(5)
}

// MARK: Checks

var failures: [String] = []

func expect(_ ok: Bool, _ message: @autoclosure () -> String) {
    if !ok && failures.count < 20 { failures.append(message()) }
}

/// Sum over ranks of (r + 1): the factor every rank-scaled value sums to.
let rankSum = size * (size + 1) / 2

/// Deterministic generator, same sequence on every rank (collectives must be issued in the
/// same order everywhere).
struct SplitMix64 {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
}

func checkAllreduce() throws {
    let n = 100_003
    var floats = (0..<n).map { Float((rank + 1) * ($0 % 7)) }
    try floats.withUnsafeMutableBufferPointer { try comm.allreduceSum($0.baseAddress!, count: n) }
    for i in 0..<n where floats[i] != Float(rankSum * (i % 7)) {
        expect(false, "allreduceSum(Float)[\(i)] = \(floats[i]), expected \(rankSum * (i % 7))")
        break
    }

    var doubles = (0..<n).map { Double(rank) + Double($0) * 0.5 }
    try doubles.withUnsafeMutableBufferPointer { try comm.allreduceSum($0.baseAddress!, count: n) }
    let rankIndexSum = Double(size * (size - 1) / 2)
    for i in 0..<n where doubles[i] != Double(size) * Double(i) * 0.5 + rankIndexSum {
        expect(false, "allreduceSum(Double)[\(i)] = \(doubles[i]), expected \(Double(size) * Double(i) * 0.5 + rankIndexSum)")
        break
    }

    var ints: [Int64] = [Int64(rank + 1), 1 << 40, -Int64(rank)]
    try ints.withUnsafeMutableBufferPointer { try comm.allreduceSum($0.baseAddress!, count: 3) }
    expect(ints == [Int64(rankSum), Int64(size) << 40, -Int64(size * (size - 1) / 2)],
           "allreduceSum(Int64) = \(ints)")
    var maxima: [Int64] = [Int64(rank), -Int64(rank)]
    try maxima.withUnsafeMutableBufferPointer { try comm.allreduceMax($0.baseAddress!, count: 2) }
    expect(maxima == [Int64(size - 1), 0], "allreduceMax(Int64) = \(maxima)")
}

func checkGradientBuckets() throws {
    let total = 1_000_003
    let buffer = UnsafeMutablePointer<Float>.allocate(capacity: total)
    defer { buffer.deallocate() }
    let buckets = GradientBuckets(buffer: buffer, total: total, bucketBytes: 64 << 10, communicator: comm)
    expect(buckets.ranges.first?.lowerBound == 0 && buckets.ranges.last?.upperBound == total,
           "bucket ranges do not cover 0..<\(total)")
    var random = SplitMix64(state: 42)
    for step in 0..<4 {
        for i in 0..<total { buffer[i] = Float((rank + 1) * ((i + step) % 13)) }
        // Cut [0, total) into pieces of random length (spanning buckets), mark them in a
        // random order (reverse order on step 0, like backward), leave some for finish.
        var cuts = [0]
        while cuts.last! < total { cuts.append(min(total, cuts.last! + 1 + random.below(40_000))) }
        var pieces = (0..<(cuts.count - 1)).map { cuts[$0] ..< cuts[$0 + 1] }
        if step == 0 {
            pieces.reverse()
        } else {
            for i in stride(from: pieces.count - 1, to: 0, by: -1) { pieces.swapAt(i, random.below(i + 1)) }
        }
        let marked = step == 3 ? pieces.count / 2 : pieces.count
        for (k, piece) in pieces.prefix(marked).enumerated() {
            try buckets.markReady(lo: piece.lowerBound, hi: piece.upperBound)
            if k % 3 == 0 { try buckets.poll() }
        }
        let waited = try buckets.finish()
        expect(waited >= 0 && waited == buckets.communicationWaitSeconds, "finish returned \(waited)")
        for i in 0..<total where buffer[i] != Float(rankSum * ((i + step) % 13)) {
            expect(false, "GradientBuckets step \(step) [\(i)] = \(buffer[i]), expected \(rankSum * ((i + step) % 13))")
            break
        }
    }
    // Direct nonblocking use: test() until done.
    var floats = (0..<1000).map { Float(rank + 1) * Float($0) }
    try floats.withUnsafeMutableBufferPointer { buf in
        let pending = try comm.startAllreduceSum(buf.baseAddress!, count: buf.count)
        while try !pending.test() {}
        try pending.wait()
    }
    for i in 0..<1000 where floats[i] != Float(rankSum) * Float(i) {
        expect(false, "startAllreduceSum [\(i)] = \(floats[i]), expected \(Float(rankSum) * Float(i))")
        break
    }
}

/// The gradient sum (startAllreduceSum) adds in rank order, ((x0 + x1) + x2) + ..., the same bits
/// on every rank: checked bit for bit on values whose float sum depends on the order, for counts
/// that leave some ranks an empty slice (0, 1, size - 1) or split unevenly, several sums in flight
/// at once, completed in reverse order of starting.
func checkRankOrderSum() throws {
    /// Rank r's value at i: random sign, magnitude 2^-12 ... 2^12, the same on every rank.
    func value(_ r: Int, _ i: Int) -> Float {
        var g = SplitMix64(state: UInt64(r * 1_000_003 + i))
        let bits = g.next()
        let magnitude = Float(sign: .plus, exponent: Int(bits % 25) - 12, significand: 1 + Float((bits >> 8) % 1024) / 1024)
        return (bits >> 40) & 1 == 0 ? magnitude : -magnitude
    }
    let counts = [0, 1, size - 1, 1000, 4099, 65_536 + 7]
    var buffers = counts.map { n in (0..<n).map { value(rank, $0) } }
    var pending: [PendingReduction] = []
    for k in buffers.indices {
        pending.append(try buffers[k].withUnsafeMutableBufferPointer { try comm.startAllreduceSum($0.baseAddress!, count: $0.count) })
    }
    for p in pending.reversed() { try p.wait() }
    var orderMatters = false
    for (k, n) in counts.enumerated() {
        for i in 0..<n {
            var inOrder = value(0, i)
            for r in 1..<size { inOrder += value(r, i) }
            var reversed = value(size - 1, i)
            for r in stride(from: size - 2, through: 0, by: -1) { reversed += value(r, i) }
            if inOrder.bitPattern != reversed.bitPattern { orderMatters = true }
            if buffers[k][i].bitPattern != inOrder.bitPattern {
                expect(false, "startAllreduceSum of \(n) floats [\(i)] = \(buffers[k][i]), expected the rank-order sum \(inOrder)")
                break
            }
        }
    }
    expect(size < 3 || orderMatters, "the rank-order check's values sum to the same bits in any order")
}

func checkBroadcast() throws {
    for root in 0..<size {
        let length = root == size - 1 ? 0 : 1000 + 37 * root   // the last root sends nothing
        let expected = (0..<length).map { UInt8(truncatingIfNeeded: $0 * 31 + root) }
        var bytes = rank == root ? expected : [UInt8](repeating: 0xAB, count: rank * 5)
        try comm.broadcast(&bytes, root: root)
        expect(bytes == expected, "broadcast bytes from root \(root): got \(bytes.count) bytes, expected \(length)")
    }
    let n = 4099
    var floats = [Float](repeating: rank == 0 ? 0 : -1, count: n)
    if rank == 0 { for i in 0..<n { floats[i] = Float(i) * 0.25 } }
    try floats.withUnsafeMutableBufferPointer { try comm.broadcast($0.baseAddress!, count: n, root: 0) }
    expect(floats == (0..<n).map { Float($0) * 0.25 }, "broadcast floats from root 0 differ")
}

func checkAllgather() throws {
    func payload(_ r: Int) -> [UInt8] {
        let length = r == 1 ? 0 : r * 3 + 1     // rank 1 sends nothing
        return (0..<length).map { UInt8(truncatingIfNeeded: r * 7 + $0) }
    }
    let gathered = try comm.allgather(payload(rank))
    expect(gathered.count == size, "allgather returned \(gathered.count) arrays for \(size) ranks")
    for r in 0..<min(size, gathered.count) {
        expect(gathered[r] == payload(r), "allgather [\(r)] = \(gathered[r].count) bytes, expected \(payload(r).count)")
    }
    let empty = try comm.allgather([])
    expect(empty == [[UInt8]](repeating: [], count: size), "allgather of empty arrays = \(empty)")
}

func checkErrorText() {
    guard comm is MPICommunicator else { return }
    let text = MPICommunicator.errorString(2) // MPI_ERR_COUNT in OpenMPI and MPICH
    expect(text.contains("MPI_ERR") || text.lowercased().contains("count"), "MPI error string for 2: \(text)")
}

do {
    checkErrorText()
    try checkAllreduce()
    try checkGradientBuckets()
    try checkRankOrderSum()
    try checkBroadcast()
    try checkAllgather()
    try comm.barrier()
    // Every rank learns whether any rank failed, so all exit with the same status.
    var failed: [Int64] = [failures.isEmpty ? 0 : 1]
    try failed.withUnsafeMutableBufferPointer { try comm.allreduceSum($0.baseAddress!, count: 1) }
    for failure in failures { print("MISMATCH rank \(rank)/\(size): \(failure)") }
    try comm.finalize()
    if failed[0] != 0 {
        print("FAIL rank \(rank)/\(size): \(failed[0]) rank(s) saw mismatches")
        exit(1)
    }
    print("OK rank \(rank)/\(size)")
    exit(0)
} catch {
    print("ERROR rank \(rank)/\(size): \(error)")
    comm.abort(code: 1)
}
