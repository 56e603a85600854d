// One flat buffer for every parameter and one for every gradient (as in llm.c), plus a
// second store of the same kind for batch-norm buffers. Layers declare their tensors
// while the model is built; `finalize()` lays them out and allocates.
//
// Layout: reverse declaration order. Layers declare in forward order, so the last layer's
// tensors sit at offset 0 and backward fills the gradient buffer from the front: the
// gradient allreduce can start on the leading buckets while earlier layers still compute.

public enum StoredType: String, Sendable { case float32 = "F32", int64 = "I64" }

public final class ParamHandle {
    public let name: String
    public let shape: [Int]
    public let count: Int
    public let type: StoredType
    public fileprivate(set) var offset: Int = -1
    fileprivate unowned let store: ParameterStore

    fileprivate init(name: String, shape: [Int], type: StoredType, store: ParameterStore) {
        self.name = name; self.shape = shape; self.count = shape.reduce(1, *)
        self.type = type; self.store = store
    }

    /// The tensor's values inside the store's flat value buffer.
    public var value: UnsafeMutablePointer<Float> { store.values + offset }
    /// The tensor's gradient inside the store's flat gradient buffer (parameters only: a store of
    /// buffers has none).
    public var grad: UnsafeMutablePointer<Float> {
        precondition(store.hasGradients, "\(name) is a buffer: it has no gradient")
        return store.grads + offset
    }
    public var values: [Float] { Array(UnsafeBufferPointer(start: value, count: count)) }
    public var grads: [Float] { Array(UnsafeBufferPointer(start: grad, count: count)) }
}

public final class ParameterStore {
    public private(set) var entries: [ParamHandle] = []
    public private(set) var totalCount = 0
    public private(set) var values: UnsafeMutablePointer<Float>
    public private(set) var grads: UnsafeMutablePointer<Float>
    public private(set) var isFinalized = false
    /// False for batch norm's running statistics: values only, no gradient memory.
    public let hasGradients: Bool
    private var byName: [String: ParamHandle] = [:]

    public init(hasGradients: Bool = true) {
        self.hasGradients = hasGradients
        values = .allocate(capacity: 1); grads = .allocate(capacity: 1)
    }
    deinit { values.deallocate(); grads.deallocate() }

    public func declare(_ name: String, shape: [Int], type: StoredType = .float32) -> ParamHandle {
        precondition(!isFinalized, "declare after finalize: \(name)")
        precondition(byName[name] == nil, "duplicate tensor name \(name)")
        let h = ParamHandle(name: name, shape: shape, type: type, store: self)
        entries.append(h); byName[name] = h
        return h
    }

    public func finalize() {
        precondition(!isFinalized)
        var offset = 0
        for h in entries.reversed() { h.offset = offset; offset += h.count }
        totalCount = offset
        values.deallocate(); grads.deallocate()
        values = .allocate(capacity: max(offset, 1)); values.initialize(repeating: 0, count: max(offset, 1))
        let gradCount = hasGradients ? max(offset, 1) : 1
        grads = .allocate(capacity: gradCount); grads.initialize(repeating: 0, count: gradCount)
        isFinalized = true
    }

    public subscript(name: String) -> ParamHandle? { byName[name] }
    public var valueBuffer: UnsafeMutableBufferPointer<Float> { .init(start: values, count: totalCount) }
    public var gradBuffer: UnsafeMutableBufferPointer<Float> { .init(start: grads, count: hasGradients ? totalCount : 0) }
    public func zeroGrad() {
        guard hasGradients else { return }
        let g = grads
        Parallel.forRanges(max(totalCount, 1), minChunk: 1 << 18) { r in (g + r.lowerBound).update(repeating: 0, count: r.count) }
    }

    /// The first tensor holding a NaN or an infinity: its name, the element's index and value
    /// (loaded weights and checkpoints are checked with this before a run uses them). `buffer`
    /// (default: the values) may be any buffer laid out like this store, e.g. SGD's momentum.
    public func firstNonFinite(in buffer: UnsafePointer<Float>? = nil) -> (name: String, index: Int, value: Float)? {
        let base = buffer ?? UnsafePointer(values)
        for h in entries {
            let p = base + h.offset
            for i in 0..<h.count where !p[i].isFinite { return (h.name, i, p[i]) }
        }
        return nil
    }

    /// FNV-1a hash of the layout (names, shapes, types, offsets): ranks compare it at start-up.
    public var layoutHash: UInt64 {
        var text = ""
        for h in entries { text += "\(h.name):\(h.shape):\(h.type.rawValue):\(h.offset);" }
        return fnv1a(Array(text.utf8))
    }
}

public func fnv1a<C: Collection>(_ bytes: C, seed: UInt64 = 0xcbf2_9ce4_8422_2325) -> UInt64 where C.Element == UInt8 {
    var h = seed
    for b in bytes { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
    return h
}
