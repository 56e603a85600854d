// SoftmaxCrossEntropy: value against a hand computation, gradient against finite differences,
// and the normalizer (global batch) semantics.
import XCTest
import NN
import TestSupport

final class SoftmaxCrossEntropyTests: XCTestCase {
    func testValueByHand() {
        // Row 0: logits (1, 2, 3), label 2: -log(e^3 / (e + e^2 + e^3)) = log(1 + e^-1 + e^-2).
        // Row 1: logits (0, 0, 0), label 0: log 3.
        let z = Tensor(shape: [2, 3], values: [1, 2, 3, 0, 0, 0])
        let labels: [Int32] = [2, 0]
        let ce = SoftmaxCrossEntropy()
        let r = ce.forward(logits: z, labels: labels, normalizer: 2)
        let l0 = (1 + exp(-1.0) + exp(-2.0)).logValueForTest, l1 = 3.0.logValueForTest
        XCTAssertEqual(r.loss, (l0 + l1) / 2, accuracy: 1e-6)
        XCTAssertEqual(r.correct, 2)   // row 0 predicts 2; row 1 is a tie, which goes to the first index, 0
        // dz = (softmax - onehot) / 2
        let s = [exp(1.0), exp(2.0), exp(3.0)].map { $0 / (exp(1.0) + exp(2.0) + exp(3.0)) }
        let expected = [s[0] / 2, s[1] / 2, (s[2] - 1) / 2, (1.0 / 3 - 1) / 2, 1.0 / 6, 1.0 / 6]
        assertClose(ce.gradient().array, expected, rtol: 1e-5, atol: 1e-7, "gradient")
    }

    func testTopOneCount() {
        let z = Tensor(shape: [3, 2], values: [0.1, 0.9, 2, -1, 0.5, 0.5])
        let r = SoftmaxCrossEntropy().forward(logits: z, labels: [1, 1, 1], normalizer: 3, gradient: false)
        XCTAssertEqual(r.correct, 1)   // row 0 right, row 1 wrong, row 2 a tie -> the first index (0): wrong
    }

    func testAgainstReferenceAndFiniteDifferences() {
        let (n, k) = (5, 7)
        let z = randomTensor([n, k], seed: 1, lo: -3, hi: 3)
        let labels: [Int32] = [0, 6, 3, 3, 1]
        let ce = SoftmaxCrossEntropy()
        let r = ce.forward(logits: z, labels: labels, normalizer: n)
        let ref = referenceCrossEntropy(z.array, classes: k, labels: labels)
        XCTAssertEqual(r.loss, ref.losses.reduce(0, +) / Double(n), accuracy: 1e-6)
        var expected = ref.probabilities
        for i in 0..<n { expected[i * k + Int(labels[i])] -= 1 }
        assertClose(ce.gradient().array, expected.map { $0 / Double(n) }, rtol: 1e-5, atol: 1e-7, "analytic vs reference")
        // Finite differences of the Double reference loss (mean over the batch).
        let analytic = ce.gradient().array
        let report = finiteDifferenceCheck([CheckedTensor(name: "logits", values: z.data, count: z.count, analytic: analytic)],
                                           options: GradientCheckOptions()) {
            referenceCrossEntropy(z.array, classes: k, labels: labels).losses.reduce(0, +) / Double(n)
        }
        assertGradientsMatch(report, "cross-entropy")
    }

    /// Two ranks each normalizing by the global batch: their losses and gradients add up to the
    /// mean over the whole batch.
    func testNormalizerIsTheGlobalBatch() {
        let (n, k) = (6, 4)
        let z = randomTensor([n, k], seed: 2, lo: -2, hi: 2)
        let labels: [Int32] = [0, 1, 2, 3, 2, 1]
        let whole = SoftmaxCrossEntropy()
        let rw = whole.forward(logits: z, labels: labels, normalizer: n)
        let gw = whole.gradient().array
        var loss = 0.0, grads: [Float] = [], correct = 0
        for (a, b) in [(0, 2), (2, 6)] {
            let ce = SoftmaxCrossEntropy()
            let part = Array(labels[a..<b])
            let r = ce.forward(logits: z.slice(a, b), labels: part, normalizer: n)
            loss += r.loss; correct += r.correct; grads += ce.gradient().array
        }
        XCTAssertEqual(loss, rw.loss, accuracy: 1e-6)
        XCTAssertEqual(correct, rw.correct)
        assertClose(grads, gw, rtol: 1e-6, atol: 1e-8, "gradients")
        // normalizer 1 gives the sum (evaluation).
        let sum = SoftmaxCrossEntropy().forward(logits: z, labels: labels, normalizer: 1, gradient: false).loss
        XCTAssertEqual(sum, rw.loss * Double(n), accuracy: 1e-5)
    }

    /// Label smoothing ε: loss -Σ q log p with q = (1-ε)·onehot + ε/K against a Double reference,
    /// the gradient against the reference's softmax - q and its finite differences; ε = 0 gives the
    /// same bits as the plain loss.
    func testLabelSmoothing() {
        let (n, k) = (5, 7)
        let z = randomTensor([n, k], seed: 3, lo: -3, hi: 3)
        let labels: [Int32] = [0, 6, 3, 3, 1]
        let ref = referenceCrossEntropy(z.array, classes: k, labels: labels)
        for eps in [0.1, 0.35] as [Float] {
            let ce = SoftmaxCrossEntropy(labelSmoothing: eps)
            let r = ce.forward(logits: z, labels: labels, normalizer: n)
            func smoothed(_ values: [Float]) -> Double {
                let rr = referenceCrossEntropy(values, classes: k, labels: labels)
                var total = 0.0
                for i in 0..<n {
                    for j in 0..<k {
                        let q = Double(eps) / Double(k) + (j == Int(labels[i]) ? 1 - Double(eps) : 0)
                        total -= q * log(rr.probabilities[i * k + j])
                    }
                }
                return total / Double(n)
            }
            XCTAssertEqual(r.loss, smoothed(z.array), accuracy: 1e-6, "loss ε \(eps)")
            var expected = ref.probabilities.map { $0 - Double(eps) / Double(k) }
            for i in 0..<n { expected[i * k + Int(labels[i])] -= 1 - Double(eps) }
            assertClose(ce.gradient().array, expected.map { $0 / Double(n) }, rtol: 1e-5, atol: 1e-7, "gradient ε \(eps)")
            let analytic = ce.gradient().array
            let report = finiteDifferenceCheck([CheckedTensor(name: "logits", values: z.data, count: z.count, analytic: analytic)],
                                               options: GradientCheckOptions()) { smoothed(z.array) }
            assertGradientsMatch(report, "smoothed cross-entropy ε \(eps)")
        }
        let plain = SoftmaxCrossEntropy(), zero = SoftmaxCrossEntropy(labelSmoothing: 0)
        XCTAssertEqual(plain.forward(logits: z, labels: labels, normalizer: n).loss,
                       zero.forward(logits: z, labels: labels, normalizer: n).loss)
        XCTAssertEqual(plain.gradient().array, zero.gradient().array)
    }

    func testLargeLogitsAreStable() {
        let z = Tensor(shape: [2, 3], values: [1000, 0, -1000, -500, 500, 499])
        let ce = SoftmaxCrossEntropy()
        let r = ce.forward(logits: z, labels: [1, 2], normalizer: 2)
        XCTAssertTrue(r.loss.isFinite)
        XCTAssertEqual(r.loss, (1000 + (1 + log(1 + exp(-1.0)))) / 2, accuracy: 1e-3)
        XCTAssertTrue(ce.gradient().array.allSatisfy { $0.isFinite })
    }
}

extension Double { var logValueForTest: Double { log(self) } }
