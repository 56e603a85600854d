// SGD with momentum, optional Nesterov, and weight decay, with torch.optim.SGD's semantics
// (dampening 0), as one loop over the flat parameter buffer:
//   g = grad + wd * p ; buf = momentum * buf + g ; g = nesterov ? g + momentum * buf : buf ; p -= lr * g
// The momentum buffer starts at zero, which equals PyTorch's first-step `buf = g`.
import NN

public final class SGD {
    public let momentum: Float
    public let weightDecay: Float
    public let nesterov: Bool
    /// Momentum buffer, same layout as the parameter buffer.
    public private(set) var velocity: [Float]

    public init(count: Int, momentum: Float, weightDecay: Float, nesterov: Bool) {
        self.momentum = momentum; self.weightDecay = weightDecay; self.nesterov = nesterov
        velocity = [Float](repeating: 0, count: count)
    }

    public func step(params: UnsafeMutablePointer<Float>, grads: UnsafePointer<Float>, count: Int, lr: Float) {
        precondition(count == velocity.count)
        let (m, wd) = (momentum, weightDecay)
        velocity.withUnsafeMutableBufferPointer { vb in
            let v = vb.baseAddress!
            let nesterov = self.nesterov
            // Element by element, so splitting over the worker threads gives the same bits.
            Parallel.forRanges(count, minChunk: 1 << 16) { r in
                if m == 0 {
                    for i in r { params[i] -= lr * (grads[i] + wd * params[i]) }
                    return
                }
                for i in r {
                    let g = grads[i] + wd * params[i]
                    let b = m * v[i] + g
                    v[i] = b
                    params[i] -= lr * (nesterov ? g + m * b : b)
                }
            }
        }
    }

    /// Replaces the momentum buffer (checkpoint restore).
    public func setVelocity(_ values: [Float]) {
        precondition(values.count == velocity.count, "momentum buffer has \(values.count) values, expected \(velocity.count)")
        velocity = values
    }
}
