#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A world of one process (no mpirun): every collective is a no-op or the identity, so the
/// single-process mode runs the same training code at no cost.
public final class LocalCommunicator: Communicator {
    public init() {}

    public var rank: Int { 0 }
    public var size: Int { 1 }

    public func allreduceSum(_ buf: UnsafeMutablePointer<Float>, count: Int) throws {}
    public func allreduceSum(_ buf: UnsafeMutablePointer<Double>, count: Int) throws {}
    public func allreduceSum(_ buf: UnsafeMutablePointer<Int64>, count: Int) throws {}
    public func allreduceMax(_ buf: UnsafeMutablePointer<Int64>, count: Int) throws {}

    public func startAllreduceSum(_ buf: UnsafeMutablePointer<Float>, count: Int) throws -> PendingReduction {
        CompletedReduction.shared
    }

    public func broadcast(_ bytes: inout [UInt8], root: Int) throws {
        precondition(root == 0, "broadcast root \(root) out of range for a world of 1")
    }

    public func broadcast(_ buf: UnsafeMutablePointer<Float>, count: Int, root: Int) throws {
        precondition(root == 0, "broadcast root \(root) out of range for a world of 1")
    }

    public func allgather(_ bytes: [UInt8]) throws -> [[UInt8]] {
        [bytes]
    }

    public func barrier() throws {}

    public func finalize() throws {}

    public func abort(code: Int32) -> Never {
        fflush(stdout)
        fflush(stderr)
        exit(code)
    }
}

/// A reduction that was complete when it started (world of one).
final class CompletedReduction: PendingReduction, Sendable {
    static let shared = CompletedReduction()

    func wait() throws {}
    func test() throws -> Bool { true }
}
