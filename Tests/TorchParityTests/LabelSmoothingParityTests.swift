// Label smoothing against PyTorch's F.cross_entropy(label_smoothing=ε): loss and dL/dlogits of a
// random batch, summed and divided by the global batch as the trainer does.
import Foundation
import XCTest
import NN

final class LabelSmoothingParityTests: XCTestCase {
    func testLossAndGradientMatchPyTorch() throws {
        try TorchPython.requireTorch()
        let (n, k) = (6, 10)
        var rng = SplitMix64(seed: 11)
        let z = (0..<(n * k)).map { _ in Float(rng.nextUnit() * 8 - 4) }
        let labels: [Int32] = [3, 0, 9, 9, 5, 1]
        for eps in [0.0, 0.1, 0.3] as [Float] {
            let script = """
            import torch, torch.nn.functional as F
            z = torch.tensor([\(z.map { "\($0)" }.joined(separator: ","))], dtype=torch.float32).reshape(\(n), \(k)).requires_grad_()
            y = torch.tensor([\(labels.map(String.init).joined(separator: ","))])
            loss = F.cross_entropy(z, y, label_smoothing=\(eps), reduction='sum') / \(n)
            loss.backward()
            print(repr(loss.item()))
            print(' '.join(repr(v) for v in z.grad.flatten().tolist()))
            """
            let out = try TorchPython.run(["-c", script])
            XCTAssertEqual(out.status, 0, out.stderr)
            let lines = out.stdout.split(separator: "\n")
            guard lines.count == 2, let torchLoss = Double(lines[0]) else { return XCTFail("unexpected output: \(out.stdout)") }
            let torchGrad = lines[1].split(separator: " ").compactMap { Double($0) }
            let ce = SoftmaxCrossEntropy(labelSmoothing: eps)
            let r = ce.forward(logits: Tensor(shape: [n, k], values: z), labels: labels, normalizer: n)
            XCTAssertEqual(r.loss, torchLoss, accuracy: 1e-5 * max(1, abs(torchLoss)), "loss ε \(eps)")
            XCTAssertEqual(torchGrad.count, n * k)
            let ours = ce.gradient().array
            for i in 0..<(n * k) {
                XCTAssertEqual(Double(ours[i]), torchGrad[i], accuracy: 1e-6, "dlogits[\(i)] ε \(eps)")
            }
        }
    }
}
