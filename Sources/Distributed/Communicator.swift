// The collective operations the training code needs, independent of MPI.
// Two implementations: `MPICommunicator` (one process per rank under mpirun/srun) and
// `LocalCommunicator` (a world of one, where every collective is a no-op or the identity).
//
// Rules shared by every implementation:
// - All ranks call the same collectives in the same order with matching counts and roots
//   (MPI matches collectives by the order they are issued, nonblocking ones included).
// - Only the main thread calls a communicator (MPI is initialized with MPI_THREAD_FUNNELED).
// - A buffer given to a nonblocking operation stays valid and untouched until its
//   `PendingReduction` has completed (`wait()` returned, or `test()` returned true).

/// A failed collective: names the operation, the rank and MPI's own error text.
public struct CommunicatorError: Error, CustomStringConvertible {
    public let description: String

    public init(_ description: String) {
        self.description = description
    }
}

public protocol Communicator: AnyObject {
    /// This process's index in the world, 0 ..< size.
    var rank: Int { get }
    /// Number of processes in the world.
    var size: Int { get }

    /// Sums `buf[0 ..< count]` over all ranks, in place; every rank gets the sum.
    func allreduceSum(_ buf: UnsafeMutablePointer<Float>, count: Int) throws
    func allreduceSum(_ buf: UnsafeMutablePointer<Double>, count: Int) throws
    /// For small control values (counts, flags, hashes).
    func allreduceSum(_ buf: UnsafeMutablePointer<Int64>, count: Int) throws
    /// Element-wise maximum over all ranks, in place (min: negate, reduce, negate).
    func allreduceMax(_ buf: UnsafeMutablePointer<Int64>, count: Int) throws

    /// Nonblocking in-place sum, added in rank order, ((x₀ + x₁) + x₂) + …: every rank gets the
    /// same bits, those of one process adding the ranks' buffers in order. `buf` must stay valid
    /// and untouched until it completes.
    func startAllreduceSum(_ buf: UnsafeMutablePointer<Float>, count: Int) throws -> PendingReduction

    /// Root's bytes to every rank; receivers' arrays are resized to the root's length.
    func broadcast(_ bytes: inout [UInt8], root: Int) throws
    /// Root's `buf[0 ..< count]` to every rank (every rank passes the same count).
    func broadcast(_ buf: UnsafeMutablePointer<Float>, count: Int, root: Int) throws

    /// Every rank's bytes, indexed by rank; lengths may differ per rank.
    func allgather(_ bytes: [UInt8]) throws -> [[UInt8]]

    func barrier() throws

    /// Ends communication at the end of a successful run; every rank calls it once, after its
    /// last collective (MPI_Finalize; a no-op for a world of one). OpenMPI's mpirun treats a
    /// rank that exits without it as failed, so call it before exiting with status 0. On an
    /// error, call `abort(code:)` instead (finalize would wait for the other ranks).
    func finalize() throws

    /// Ends the whole job (every rank) with `code`. Flushes stdout/stderr first.
    func abort(code: Int32) -> Never
}

/// A started nonblocking collective.
public protocol PendingReduction: AnyObject {
    /// Blocks until the operation completed. Calling again after completion is a no-op.
    func wait() throws
    /// Drives progress without blocking; true once the operation completed.
    func test() throws -> Bool
}
