// The layer protocol and the build context every layer registers its tensors with.
import Trace

public protocol Layer: AnyObject {
    /// The PyTorch module path of this layer in the seed's model, e.g. "1.0.conv1" ("" for the root).
    var name: String { get }
    /// Output shape for an input shape (including the batch dimension).
    func outputShape(_ input: [Int]) -> [Int]
    /// y = f(x). Keeps what backward needs. The returned tensor belongs to the layer and is
    /// overwritten by the next forward call.
    func forward(_ x: Tensor, training: Bool) -> Tensor
    /// Given dL/dy, accumulates parameter gradients into the flat gradient buffer
    /// and returns dL/dx (also owned by the layer).
    func backward(_ dy: Tensor) -> Tensor
    /// Leaf layers in forward order (containers list their children's leaves).
    var leaves: [Layer] { get }
    /// Parameters owned directly by this layer.
    var parameters: [ParamHandle] { get }
}

public extension Layer {
    var leaves: [Layer] { [self] }
    var parameters: [ParamHandle] { [] }
    var typeName: String { String(describing: type(of: self)) }
    var isLeaf: Bool { let l = leaves; return l.count == 1 && l[0] === self }
}

/// Shared state a model's layers are built against.
public final class ModelContext {
    public let params = ParameterStore()
    /// Batch-norm running statistics: buffers, not parameters (no gradient memory).
    public let buffers = ParameterStore(hasGradients: false)
    // The hooks a run attaches to its model, all here.
    /// Called after backward has finished a parameter's gradient (the gradient buckets start
    /// their allreduce from it).
    public var onGradientReady: ((ParamHandle) -> Void)?
    /// Sums a small Double vector across ranks in place (batch-norm statistics with sync_bn).
    /// nil means one process (or BN statistics stay local).
    public var statReducer: ((UnsafeMutablePointer<Double>, Int) -> Void)?
    /// Debug hook: (layer name, what, values) after every leaf layer's forward and backward
    /// ("output", "input gradient", "gradient of <param>").
    public var inspector: ((String, String, UnsafeBufferPointer<Float>) -> Void)?
    /// Per-layer-type timing (bench); nil when off.
    public var profiler: LayerProfiler?
    /// The input gradients of backward, shared by all layers of this model.
    public let gradients = GradientPool()

    public init() {}

    public func finalize() { params.finalize(); buffers.finalize() }

    /// Runs a child's forward: times leaves (bench) and shows outputs to the inspector (debug).
    public func forward(_ layer: Layer, _ x: Tensor, training: Bool) -> Tensor {
        guard layer.isLeaf else { return layer.forward(x, training: training) }
        if Trace.recorder != nil { Trace.label = "\(layer.name) forward" }
        let y = Trace.span(Trace.label, "forward") { timed(layer.typeName) { layer.forward(x, training: training) } }
        inspector?(layer.name, "output", UnsafeBufferPointer(y.buffer))
        return y
    }

    /// Runs a child's backward; for a leaf, then announces its finished parameter gradients
    /// (the gradient buckets start their allreduce from this) and shows them to the inspector.
    public func backward(_ layer: Layer, _ dy: Tensor) -> Tensor {
        let outer = GradientPool.current
        GradientPool.current = gradients
        defer { GradientPool.current = outer }
        guard layer.isLeaf else { return layer.backward(dy) }
        if Trace.recorder != nil { Trace.label = "\(layer.name) backward" }
        let dx = Trace.span(Trace.label, "backward") { timed(layer.typeName) { layer.backward(dy) } }
        for p in layer.parameters {
            onGradientReady?(p)
            inspector?(layer.name, "gradient of \(p.name)", UnsafeBufferPointer(start: p.grad, count: p.count))
        }
        inspector?(layer.name, "input gradient", UnsafeBufferPointer(dx.buffer))
        return dx
    }
}

public func joinName(_ prefix: String, _ child: String) -> String {
    prefix.isEmpty ? child : prefix + "." + child
}
