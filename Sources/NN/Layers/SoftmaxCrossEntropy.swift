// Softmax cross-entropy over logits (N, K) with integer labels, as F.cross_entropy, with
// optional label smoothing ε (torch's `label_smoothing`): the target is q = (1-ε)·onehot(y) + ε/K.
// loss = sum_n -Σ_j q_nj log softmax(z_n)_j / normalizer  (normalizer = the GLOBAL batch size, so
// the sum of every rank's loss and gradient is the mean over the global batch).
// Backward: dz_n = (softmax(z_n) - q_n) / normalizer.

public final class SoftmaxCrossEntropy {
    private var dlogits: Tensor?
    /// ε in [0, 1); 0 is plain cross-entropy (the same bits as without the option).
    public var labelSmoothing: Float {
        didSet { precondition(labelSmoothing >= 0 && labelSmoothing < 1, "label smoothing \(labelSmoothing) outside [0, 1)") }
    }
    public init(labelSmoothing: Float = 0) {
        precondition(labelSmoothing >= 0 && labelSmoothing < 1, "label smoothing \(labelSmoothing) outside [0, 1)")
        self.labelSmoothing = labelSmoothing
    }

    public struct Result {
        public var loss: Double        // sum over this batch of -log p / normalizer
        public var correct: Int        // top-1 hits in this batch
    }

    /// Computes loss and top-1 hits; with `gradient`, also dL/dlogits (returned by `gradient()`).
    public func forward(logits z: Tensor, labels: UnsafePointer<Int32>, normalizer: Int, gradient: Bool = true) -> Result {
        let (n, k) = (z.shape[0], z.shape[1])
        let d = gradient ? Tensor.reuse(dlogits, z.shape) : nil
        if gradient { dlogits = d }
        var loss = 0.0, correct = 0
        let inv = 1 / Float(normalizer)
        let eps = labelSmoothing, uniform = labelSmoothing / Float(k)   // q = (1-ε)·onehot + ε/K
        for i in 0..<n {
            let row = z.data + i * k
            var mx = row[0], arg = 0
            for j in 1..<k where row[j] > mx { mx = row[j]; arg = j }
            var sum: Float = 0
            for j in 0..<k { sum += expf_(row[j] - mx) }
            let label = Int(labels[i])
            precondition(label >= 0 && label < k, "label \(label) outside 0..<\(k)")
            if eps == 0 {
                loss += Double(logf_(sum) - (row[label] - mx))
            } else {   // -Σ q_j log p_j = log Σ e^(z-mx) - ((1-ε)(z_y - mx) + ε/K Σ_j (z_j - mx))
                var shifted: Float = 0
                for j in 0..<k { shifted += row[j] - mx }
                loss += Double(logf_(sum) - ((1 - eps) * (row[label] - mx) + uniform * shifted))
            }
            if arg == label { correct += 1 }
            if let d = d {
                let g = d.data + i * k
                if eps == 0 {
                    for j in 0..<k { g[j] = expf_(row[j] - mx) / sum * inv }
                    g[label] -= inv
                } else {
                    for j in 0..<k { g[j] = (expf_(row[j] - mx) / sum - uniform) * inv }
                    g[label] -= (1 - eps) * inv
                }
            }
        }
        return Result(loss: loss / Double(normalizer), correct: correct)
    }

    public func gradient() -> Tensor {
        guard let d = dlogits else { preconditionFailure("SoftmaxCrossEntropy: gradient before forward") }
        return d
    }
}
