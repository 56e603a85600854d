// A dense Float tensor in row-major (NCHW) order that owns its storage.
// Layers keep the tensors they return and reuse them while the shape stays the same,
// so a training step allocates nothing once the first step has run.

public final class Tensor {
    public private(set) var shape: [Int]
    public let count: Int
    public let data: UnsafeMutablePointer<Float>

    public init(shape: [Int], zeroed: Bool = true) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in \(shape)")
        self.shape = shape
        self.count = shape.reduce(1, *)
        self.data = .allocate(capacity: max(count, 1))
        if zeroed { data.initialize(repeating: 0, count: max(count, 1)) }
    }

    public convenience init(shape: [Int], values: [Float]) {
        self.init(shape: shape, zeroed: false)
        precondition(values.count == count, "\(values.count) values for shape \(shape)")
        values.withUnsafeBufferPointer { data.update(from: $0.baseAddress!, count: count) }
    }

    deinit { data.deallocate() }

    public var buffer: UnsafeMutableBufferPointer<Float> { .init(start: data, count: count) }
    public var array: [Float] { Array(buffer) }
    public var rank: Int { shape.count }
    public subscript(i: Int) -> Float {
        get { data[i] }
        set { data[i] = newValue }
    }

    public func zero() { data.update(repeating: 0, count: count) }

    public func copy() -> Tensor {
        let t = Tensor(shape: shape, zeroed: false)
        t.data.update(from: data, count: count)
        return t
    }

    /// Same storage size, another shape (e.g. flatten [N,C,1,1] -> [N,C]).
    public func reshape(_ newShape: [Int]) {
        precondition(newShape.reduce(1, *) == count, "cannot reshape \(shape) to \(newShape)")
        shape = newShape
    }

    /// Returns `cached` when it already has `shape`, otherwise a fresh tensor.
    /// The reuse idiom of every layer: `out = Tensor.reuse(out, shape)`.
    public static func reuse(_ cached: Tensor?, _ shape: [Int], zeroed: Bool = false) -> Tensor {
        if let t = cached, t.shape == shape {
            if zeroed { t.zero() }
            return t
        }
        return Tensor(shape: shape, zeroed: true)
    }
}

/// Human-readable shape, e.g. "(64,56,56)".
public func shapeString(_ s: [Int]) -> String { "(" + s.map(String.init).joined(separator: ",") + ")" }
