// Scratch memory shared by all layers (they run one after another): one growable Float buffer
// per (worker thread, slot). Conv2D uses it for im2col columns, gemm outputs and the
// per-worker weight-gradient partial sums (slots 0-2 of each worker), and for the dense matrix of an
// unrolled convolution and its gradient (slots 3-4 of worker 0) and Winograd-transformed weights
// (slot 5 of worker 0); a batch norm that pools as it normalizes uses slot 6 of each worker.

public final class Workspace {
    public static let shared = Workspace()
    private var buffers: [[UnsafeMutablePointer<Float>]] = []
    private var capacities: [[Int]] = []
    public static let slots = 7
    public static let unrolledMatrix = 3, unrolledGradient = 4, winogradWeights = 5, pooledPlanes = 6

    /// Buffer `slot` of `worker`, with room for at least `count` floats (contents undefined).
    /// Call from the main thread before fanning out to workers.
    public func buffer(worker: Int, slot: Int, count: Int) -> UnsafeMutablePointer<Float> {
        while buffers.count <= worker {
            buffers.append((0..<Workspace.slots).map { _ in UnsafeMutablePointer<Float>.allocate(capacity: 1) })
            capacities.append([Int](repeating: 1, count: Workspace.slots))
        }
        if capacities[worker][slot] < count {
            buffers[worker][slot].deallocate()
            buffers[worker][slot] = .allocate(capacity: count)
            buffers[worker][slot].initialize(repeating: 0, count: count)
            capacities[worker][slot] = count
        }
        return buffers[worker][slot]
    }
}
