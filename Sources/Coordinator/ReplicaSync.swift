// Keeps the replicas in agreement: start-up broadcast of parameters and BN buffers from rank 0,
// a check that every rank built the same layout and read the same config, the checkpoint a
// resume starts from, and batch-norm statistics (averaged running stats; the reducer that makes sync_bn use global batch stats).
import NN
import Distributed

/// The ranks disagree about something they must share (parameter layout, config, command).
public struct ReplicaMismatchError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

public enum ReplicaSync {
    /// Rank 0's parameters and BN buffers to every rank (random init and init_weights alike).
    public static func broadcastInitialState(_ model: ResNet, _ comm: Communicator) throws {
        guard comm.size > 1 else { return }
        try comm.broadcast(model.params.values, count: model.params.totalCount, root: 0)
        try comm.broadcast(model.buffers.values, count: model.buffers.totalCount, root: 0)
    }

    /// Every rank compares its parameter layout hash with rank 0's; a mismatch names the rank.
    /// (The configs are compared key by key before this, `checkConfigAgreement`.)
    public static func checkAgreement(layoutHash: UInt64, _ comm: Communicator) throws {
        guard comm.size > 1 else { return }
        let mine = withUnsafeBytes(of: layoutHash.littleEndian) { Array($0) }
        let all = try comm.allgather(mine)
        for (r, other) in all.enumerated() where other != all[0] {
            throw ReplicaMismatchError("rank \(r) has a different parameter layout than rank 0 (another program version?): every rank must run the same binary with the same config")
        }
    }

    /// Every rank must run the same resolved config, given as ("section.key", printed value)
    /// pairs in one order; a difference is named by key and rank (each rank gets every rank's
    /// pairs, a few hundred bytes). Values are printed on one line and keys hold no '='.
    public static func checkConfigAgreement(_ values: [(key: String, value: String)], _ comm: Communicator) throws {
        guard comm.size > 1 else { return }
        let all = try comm.allgather(Array(values.map { "\($0.key)=\($0.value)" }.joined(separator: "\n").utf8))
        func pairs(_ bytes: [UInt8]) -> [String: String] {
            var out: [String: String] = [:]
            for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") {
                guard let eq = line.firstIndex(of: "=") else { continue }
                out[String(line[..<eq])] = String(line[line.index(after: eq)...])
            }
            return out
        }
        let root = pairs(all[0])
        for (r, bytes) in all.enumerated() where bytes != all[0] {
            let other = pairs(bytes)
            let keys = Set(root.keys).union(other.keys).filter { root[$0] != other[$0] }.sorted()
            let shown = keys.prefix(3).map { "\($0) is \(clippedForMessage(root[$0] ?? "?", limit: 60)) on rank 0 but \(clippedForMessage(other[$0] ?? "?", limit: 60)) on rank \(r)" }
            throw ReplicaMismatchError("the ranks were started with different configs: \(shown.joined(separator: "; "))\(keys.count > 3 ? " (and \(keys.count - 3) more)" : ""); every rank must read the same config file and --set overrides")
        }
    }

    /// Rank 0's choice of checkpoint to every rank: its path and bytes, or nil for a fresh
    /// start (`found` is read on rank 0 only). Every rank resumes from the same bytes.
    public static func broadcastCheckpoint(_ found: (path: String, bytes: [UInt8])?, _ comm: Communicator) throws -> (path: String, bytes: [UInt8])? {
        var payload: [UInt8] = [0]   // [0] = fresh start, [1] + path length (4, little-endian) + path + file bytes
        if comm.rank == 0, let found {
            let p = Array(found.path.utf8)
            payload = [1, UInt8(p.count & 0xff), UInt8((p.count >> 8) & 0xff), UInt8((p.count >> 16) & 0xff), UInt8(p.count >> 24)] + p + found.bytes
        }
        try comm.broadcast(&payload, root: 0)
        guard payload.first == 1, payload.count >= 5 else { return nil }
        let n = Int(payload[1]) | Int(payload[2]) << 8 | Int(payload[3]) << 16 | Int(payload[4]) << 24
        return (String(decoding: payload[5..<(5 + n)], as: UTF8.self), Array(payload[(5 + n)...]))
    }

    /// Runs `body` with the BN buffers averaged over ranks (evaluation, checkpoints), then puts
    /// each rank's own running statistics back, so that writing a checkpoint or evaluating never
    /// changes the arithmetic of the run (BN uses running_mean as the shift of its sums).
    public static func withAveragedBuffers<T>(_ model: ResNet, _ comm: Communicator, _ body: () throws -> T) throws -> T {
        guard comm.size > 1 else { return try body() }
        let local = Array(model.buffers.valueBuffer)
        try averageBuffers(model, comm)
        defer { local.withUnsafeBufferPointer { model.buffers.values.update(from: $0.baseAddress!, count: $0.count) } }
        return try body()
    }

    /// Every rank's own BN buffers, indexed by rank (for checkpoints: a resume at the same world
    /// size restores each replica exactly).
    public static func gatherBuffers(_ model: ResNet, _ comm: Communicator) throws -> [[Float]] {
        guard comm.size > 1 else { return [Array(model.buffers.valueBuffer)] }
        let bytes = Array(UnsafeRawBufferPointer(model.buffers.valueBuffer))
        return try comm.allgather(bytes).map { b in
            b.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        }
    }

    /// Running mean/var (and the rest of the BN buffers) averaged over ranks, in place: at the
    /// end of a run, before the final weights are written.
    public static func averageBuffers(_ model: ResNet, _ comm: Communicator) throws {
        guard comm.size > 1 else { return }
        let n = model.buffers.totalCount
        try comm.allreduceSum(model.buffers.values, count: n)
        let inv = 1 / Float(comm.size)
        for i in 0..<n { model.buffers.values[i] *= inv }
    }

    /// With sync_bn: batch statistics summed over all ranks inside BN's forward and backward.
    /// An MPI failure there ends the job (it cannot be recovered mid-layer).
    public static func installSyncBN(_ model: ResNet, _ comm: Communicator) {
        guard comm.size > 1 else { return }
        model.ctx.statReducer = { buf, count in
            do { try comm.allreduceSum(buf, count: count) } catch {
                StandardError.print("[rank \(comm.rank)] sync_bn allreduce failed: \(error)")
                comm.abort(code: 1)
            }
        }
    }
}
