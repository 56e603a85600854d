// Distributed: the world-of-one communicator, gradient buckets (against a simulated world),
// launcher detection, and real `mpirun` jobs running the mpi-selftest program.
import Foundation
import XCTest
import TestSupport
import NN
@testable import Distributed

final class ShimTests: XCTestCase {

    // MARK: LocalCommunicator

    func testLocalCommunicatorIsAWorldOfOne() throws {
        let comm = LocalCommunicator()
        XCTAssertEqual(comm.rank, 0)
        XCTAssertEqual(comm.size, 1)

        var floats: [Float] = [1.5, -2, 3]
        try floats.withUnsafeMutableBufferPointer { try comm.allreduceSum($0.baseAddress!, count: 3) }
        XCTAssertEqual(floats, [1.5, -2, 3])
        var doubles: [Double] = [0.25, 7]
        try doubles.withUnsafeMutableBufferPointer { try comm.allreduceSum($0.baseAddress!, count: 2) }
        XCTAssertEqual(doubles, [0.25, 7])
        var ints: [Int64] = [5, -9]
        try ints.withUnsafeMutableBufferPointer { try comm.allreduceSum($0.baseAddress!, count: 2) }
        try ints.withUnsafeMutableBufferPointer { try comm.allreduceMax($0.baseAddress!, count: 2) }
        XCTAssertEqual(ints, [5, -9])

        try floats.withUnsafeMutableBufferPointer { buf in
            let pending = try comm.startAllreduceSum(buf.baseAddress!, count: 3)
            XCTAssertTrue(try pending.test())
            try pending.wait()
            try pending.wait()
        }
        XCTAssertEqual(floats, [1.5, -2, 3])

        var bytes: [UInt8] = [1, 2, 3]
        try comm.broadcast(&bytes, root: 0)
        XCTAssertEqual(bytes, [1, 2, 3])
        try floats.withUnsafeMutableBufferPointer { try comm.broadcast($0.baseAddress!, count: 3, root: 0) }
        XCTAssertEqual(floats, [1.5, -2, 3])
        XCTAssertEqual(try comm.allgather([9, 8]), [[9, 8]])
        XCTAssertEqual(try comm.allgather([]), [[]])
        try comm.barrier()
        try comm.finalize()
    }

    // MARK: Launch detection

    func testLaunchDetection() {
        func launched(_ env: [String: String]) -> Bool { Launch.isMPILaunch { env[$0] } }
        XCTAssertFalse(launched([:]))
        XCTAssertFalse(launched(["PATH": "/usr/bin", "OMPI_MCA_btl": "tcp,self"]))
        XCTAssertTrue(launched(["OMPI_COMM_WORLD_SIZE": "2"]))
        XCTAssertTrue(launched(["PMIX_RANK": "0"]))
        XCTAssertTrue(launched(["PMI_SIZE": "4"]))
        XCTAssertTrue(launched(["PMI_RANK": "1"]))
        // SLURM: a batch script alone is not a launch, an srun step with an MPI plugin is.
        XCTAssertFalse(launched(["SLURM_JOB_ID": "7", "SLURM_NTASKS": "4"]))
        XCTAssertFalse(launched(["SLURM_JOB_ID": "7", "SLURM_STEP_ID": "0", "SLURM_MPI_TYPE": "none"]))
        XCTAssertTrue(launched(["SLURM_JOB_ID": "7", "SLURM_STEP_ID": "0", "SLURM_MPI_TYPE": "pmi2"]))
        XCTAssertFalse(launched(["OMPI_COMM_WORLD_SIZE": ""]))
    }

    func testMakeCommunicatorWithoutLauncherIsLocal() throws {
        try XCTSkipIf(Launch.underMPILauncher, "the test process itself runs under an MPI launcher")
        XCTAssertTrue(try Launch.makeCommunicator() is LocalCommunicator)
    }

    // MARK: GradientBuckets: ranges

    func testBucketRangesSplitEvenlyAndCoverTheBuffer() {
        XCTAssertEqual(GradientBuckets.ranges(total: 0), [])
        XCTAssertEqual(GradientBuckets.ranges(total: 10, bucketBytes: 16),
                       [0 ..< 4, 4 ..< 7, 7 ..< 10])
        XCTAssertEqual(GradientBuckets.ranges(total: 8, bucketBytes: 16),
                       [0 ..< 4, 4 ..< 8])
        XCTAssertEqual(GradientBuckets.ranges(total: 3, bucketBytes: 16), [0 ..< 3])
        XCTAssertEqual(GradientBuckets.ranges(total: 5, bucketBytes: 4).count, 5)

        // Default 4 MB = 1 Mi floats; ResNet-18-sized buffer (11.2 M floats) → 11 buckets.
        for total in [1, 1 << 20, (1 << 20) + 1, 11_172_042, 2_500_000] {
            let ranges = GradientBuckets.ranges(total: total)
            XCTAssertEqual(ranges.count, (total + (1 << 20) - 1) / (1 << 20), "total \(total)")
            XCTAssertEqual(ranges.first?.lowerBound, 0)
            XCTAssertEqual(ranges.last?.upperBound, total)
            for (a, b) in zip(ranges, ranges.dropFirst()) { XCTAssertEqual(a.upperBound, b.lowerBound) }
            let sizes = ranges.map(\.count)
            XCTAssertLessThanOrEqual(sizes.max()! - sizes.min()!, 1, "total \(total)")
            XCTAssertLessThanOrEqual(sizes.max()!, 1 << 20)
        }
    }

    // MARK: GradientBuckets: world of one

    func testBucketsOnAWorldOfOneDoNothing() throws {
        let recorder = SimulatedWorld(size: 1)
        for comm in [LocalCommunicator(), recorder] as [Communicator] {
            let total = 1000
            let buf = UnsafeMutablePointer<Float>.allocate(capacity: total)
            defer { buf.deallocate() }
            for i in 0..<total { buf[i] = Float(i) * 0.5 }
            let buckets = GradientBuckets(buffer: buf, total: total, bucketBytes: 64, communicator: comm)
            var random = TestRandom(seed: 3)
            for _ in 0..<3 {
                for piece in random.shuffledPieces(total: total, maxLength: 90) {
                    try buckets.markReady(lo: piece.lowerBound, hi: piece.upperBound)
                    XCTAssertEqual(try buckets.poll(), 0)
                }
                XCTAssertEqual(try buckets.finish(), 0)
                XCTAssertEqual(buckets.communicationWaitSeconds, 0)
                XCTAssertTrue((0..<total).allSatisfy { buf[$0] == Float($0) * 0.5 }, "a world of one leaves the buffer alone")
            }
        }
        XCTAssertTrue(recorder.started.isEmpty, "a world of one starts no reductions")
    }

    // MARK: GradientBuckets: simulated world of 3 identical ranks

    func testBucketsReduceEveryFloatOnceInAnyMarkingOrder() throws {
        let world = SimulatedWorld(size: 3)
        let total = 10_007
        let buf = UnsafeMutablePointer<Float>.allocate(capacity: total)
        defer { buf.deallocate() }
        let buckets = GradientBuckets(buffer: buf, total: total, bucketBytes: 4 * 500, communicator: world)
        XCTAssertEqual(buckets.ranges.count, 21)
        var random = TestRandom(seed: 11)

        for step in 0..<6 {
            world.started = []
            for i in 0..<total { buf[i] = Float((i + step) % 17) }
            var pieces = random.shuffledPieces(total: total, maxLength: step < 3 ? 300 : 2_000)
            if step == 0 { pieces.sort { $0.lowerBound > $1.lowerBound } }  // backward order
            let marked = step == 5 ? pieces.count / 3 : pieces.count        // leave some for finish
            var coveredSoFar = IndexSet()

            for (k, piece) in pieces.prefix(marked).enumerated() {
                try buckets.markReady(lo: piece.lowerBound, hi: piece.upperBound)
                coveredSoFar.insert(integersIn: piece)
                // Started right away: exactly the buckets whose floats are all marked.
                let complete = buckets.ranges.filter { coveredSoFar.contains(integersIn: $0) }
                XCTAssertEqual(Set(world.startedRanges(in: buf)), Set(complete), "step \(step) piece \(k)")
                if k % 4 == 0 { try buckets.poll() }
            }
            let waited = try buckets.finish()
            XCTAssertGreaterThanOrEqual(waited, 0)
            XCTAssertEqual(waited, buckets.communicationWaitSeconds)
            XCTAssertEqual(world.startedRanges(in: buf).sorted { $0.lowerBound < $1.lowerBound },
                           buckets.ranges, "every bucket started exactly once in step \(step)")
            XCTAssertTrue(world.started.allSatisfy { $0.completed })
            for i in 0..<total where buf[i] != 3 * Float((i + step) % 17) {
                XCTFail("step \(step): buffer[\(i)] = \(buf[i]), expected \(3 * Float((i + step) % 17))")
                break
            }
        }
    }

    func testBucketsPollCompletesInFlightReductions() throws {
        let world = SimulatedWorld(size: 2, testsUntilDone: 2)
        let p = UnsafeMutablePointer<Float>.allocate(capacity: 40)
        defer { p.deallocate() }
        p.initialize(repeating: 1, count: 40)
        let buckets = GradientBuckets(buffer: p, total: 40, bucketBytes: 40, communicator: world)  // 4 buckets of 10
        try buckets.markReady(lo: 25, hi: 40)     // completes bucket 3 only
        XCTAssertEqual(world.startedRanges(in: p), [30 ..< 40])
        try buckets.markReady(lo: 5, hi: 25)      // completes buckets 1 and 2
        XCTAssertEqual(world.startedRanges(in: p), [30 ..< 40, 10 ..< 20, 20 ..< 30])
        XCTAssertEqual(try buckets.poll(), 3)
        XCTAssertEqual(try buckets.poll(), 0)     // second test completes them
        XCTAssertEqual(p[35], 2)
        XCTAssertEqual(p[0], 1)                   // bucket 0 not started yet
        _ = try buckets.finish()                  // starts bucket 0, waits
        XCTAssertEqual(Array(UnsafeBufferPointer(start: p, count: 40)), [Float](repeating: 2, count: 40))
    }

    // MARK: Real mpirun jobs

    private func selftest() throws -> String {
        try XCTSkipIf(mpirunPath() == nil, "mpirun is not installed")
        guard let path = findBuiltProduct("mpi-selftest") else {
            throw XCTSkip("mpi-selftest is not built (swift build --product mpi-selftest)")
        }
        return path
    }

    private func assertSelftestPasses(np: Int, extraMCA: [String] = [],
                                      file: StaticString = #filePath, line: UInt = #line) throws {
        let result = runMPI(np: np, executable: try selftest(), args: [], extraMCA: extraMCA, timeout: 120)
        let context = "np \(np) \(extraMCA)\nstdout:\n\(result.stdout)\nstderr:\n\(result.stderr)"
        XCTAssertFalse(result.timedOut, "timed out: \(context)", file: file, line: line)
        XCTAssertEqual(result.status, 0, context, file: file, line: line)
        for r in 0..<np {
            XCTAssertTrue(result.stdout.contains("OK rank \(r)/\(np)\n"), "no OK from rank \(r): \(context)",
                          file: file, line: line)
        }
    }

    func testSelftestWithoutMpirunIsAWorldOfOne() throws {
        let result = runProcess(try selftest(), [], timeout: 60)
        XCTAssertEqual(result.status, 0, result.stdout + result.stderr)
        XCTAssertEqual(result.stdout, "OK rank 0/1\n")
    }

    func testSelftestTwoRanks() throws {
        try assertSelftestPasses(np: 2)
    }

    func testSelftestThreeRanksOversubscribed() throws {
        try assertSelftestPasses(np: 3)
    }

    func testSelftestOverTCP() throws {
        try assertSelftestPasses(np: 2, extraMCA: ["btl=tcp,self"])
        try assertSelftestPasses(np: 3, extraMCA: ["btl=tcp,self"])
    }

    func testAbortOnOneRankEndsTheJobNonZero() throws {
        let path = try selftest()
        let began = Date()
        let result = runMPI(np: 3, executable: path, args: ["--abort-rank", "1"], timeout: 30)
        let context = "stdout:\n\(result.stdout)\nstderr:\n\(result.stderr)"
        XCTAssertFalse(result.timedOut, "the job hung after rank 1 aborted: \(context)")
        XCTAssertNotEqual(result.status, 0, context)
        XCTAssertTrue(result.stdout.contains("rank 1/3 aborting"), context)
        XCTAssertFalse(result.stdout.contains("passed a barrier"), context)
        XCTAssertLessThan(Date().timeIntervalSince(began), 30)
    }

    func testRunnerTimesOutAndKills() throws {
        try XCTSkipIf(mpirunPath() == nil, "mpirun is not installed")
        let began = Date()
        let result = runMPI(np: 2, executable: "/bin/sleep", args: ["60"], timeout: 2)
        XCTAssertTrue(result.timedOut)
        XCTAssertNotEqual(result.status, 0)
        XCTAssertLessThan(Date().timeIntervalSince(began), 20)
    }
}

// MARK: Test doubles

/// A world of `size` identical ranks: a sum over ranks multiplies by `size`. Nonblocking
/// reductions are deferred until `test()` has been called `testsUntilDone` times or `wait()`.
final class SimulatedWorld: Communicator {
    let size: Int
    let testsUntilDone: Int
    var rank: Int { 0 }
    /// Every startAllreduceSum call, in order.
    var started: [SimulatedReduction] = []

    init(size: Int, testsUntilDone: Int = 3) {
        self.size = size
        self.testsUntilDone = testsUntilDone
    }

    func allreduceSum(_ buf: UnsafeMutablePointer<Float>, count: Int) throws {
        for i in 0..<count { buf[i] *= Float(size) }
    }
    func allreduceSum(_ buf: UnsafeMutablePointer<Double>, count: Int) throws {
        for i in 0..<count { buf[i] *= Double(size) }
    }
    func allreduceSum(_ buf: UnsafeMutablePointer<Int64>, count: Int) throws {
        for i in 0..<count { buf[i] *= Int64(size) }
    }
    func allreduceMax(_ buf: UnsafeMutablePointer<Int64>, count: Int) throws {}

    func startAllreduceSum(_ buf: UnsafeMutablePointer<Float>, count: Int) throws -> PendingReduction {
        let pending = SimulatedReduction(buf: buf, count: count, factor: Float(size), testsUntilDone: testsUntilDone)
        started.append(pending)
        return pending
    }

    /// The started reductions as index ranges of the buffer starting at `base`.
    func startedRanges(in base: UnsafeMutablePointer<Float>) -> [Range<Int>] {
        started.map { ($0.buf - base) ..< ($0.buf - base + $0.count) }
    }

    func broadcast(_ bytes: inout [UInt8], root: Int) throws {}
    func broadcast(_ buf: UnsafeMutablePointer<Float>, count: Int, root: Int) throws {}
    func allgather(_ bytes: [UInt8]) throws -> [[UInt8]] { Array(repeating: bytes, count: size) }
    func barrier() throws {}
    func finalize() throws {}
    func abort(code: Int32) -> Never { fatalError("abort(\(code))") }
}

final class SimulatedReduction: PendingReduction {
    let buf: UnsafeMutablePointer<Float>
    let count: Int
    let factor: Float
    var testsLeft: Int
    private(set) var completed = false

    init(buf: UnsafeMutablePointer<Float>, count: Int, factor: Float, testsUntilDone: Int) {
        self.buf = buf
        self.count = count
        self.factor = factor
        testsLeft = testsUntilDone
    }

    private func complete() {
        guard !completed else { return }
        for i in 0..<count { buf[i] *= factor }
        completed = true
    }

    func wait() throws { complete() }

    func test() throws -> Bool {
        testsLeft -= 1
        if testsLeft <= 0 { complete() }
        return completed
    }
}

/// NN's SplitMix64 plus the draws these tests need.
struct TestRandom {
    var generator: SplitMix64
    init(seed: UInt64) { generator = SplitMix64(seed: seed) }

    mutating func next() -> UInt64 { generator.next() }

    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }

    /// [0, total) cut into pieces of 1 ... maxLength floats, in random order.
    mutating func shuffledPieces(total: Int, maxLength: Int) -> [Range<Int>] {
        var pieces: [Range<Int>] = []
        var lo = 0
        while lo < total {
            let hi = min(total, lo + 1 + below(maxLength))
            pieces.append(lo ..< hi)
            lo = hi
        }
        for i in stride(from: pieces.count - 1, to: 0, by: -1) { pieces.swapAt(i, below(i + 1)) }
        return pieces
    }
}
