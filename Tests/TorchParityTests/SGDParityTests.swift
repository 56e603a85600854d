// The project's SGD (Training module) against torch.optim.SGD(lr 0.05, momentum 0.9,
// weight_decay 5e-4, nesterov False): a fresh optimizer, then two steps with PyTorch's gradients
// from reference.py (the second step checks the momentum buffer). Needs "Training" in the
// TorchParityTests target's dependencies; until then a loudly skipped placeholder stands in.
// Why not plain canImport(Training): SwiftPM puts every Swift module in one folder, so once
// Training has been built, canImport(Training) is true even without the dependency, and then
// `import Training` fails with "missing required module 'CMPI'" (its C modules' module maps are
// only passed to dependents). CMPI and CZlib are visible only with the real dependency.
import Foundation
import XCTest
import NN
import Training

final class SGDParityTests: XCTestCase {
    // One step changes a parameter by lr * (g + wd * p): weight decay alone is 2.5e-5 * |p|, the
    // momentum term of step 2 is 0.9 * lr * g. The float32 update itself is exact to a few ulps.
    static let tolerance = (rtol: 1e-6, scaled: 1e-6)   // per element: rtol * |b| + scaled * max|b|

    func testSGDStepsMatchPyTorch() throws {
        let files = try TorchReferenceFiles.get()
        let ref = try files.referenceTensors()
        let sgdFile = try SafeTensors.read(path: files.sgd)
        let model = ResNet(TorchParityTests.spec, seed: 123)
        try SafeTensors.load(files.weightTensors(), into: [model.params, model.buffers], file: files.weights)

        // PyTorch's gradients into the flat gradient buffer, so this checks the optimizer alone.
        model.params.zeroGrad()
        for p in model.params.entries {
            let g = try ref.tensor("grad." + p.name, in: files.reference)
            XCTAssertEqual(g.shape, p.shape, "grad.\(p.name)")
            g.values.withUnsafeBufferPointer { p.grad.update(from: $0.baseAddress!, count: p.count) }
        }
        XCTAssertEqual(sgdFile.metadata["lr"], "0.05")
        XCTAssertEqual(sgdFile.metadata["momentum"], "0.9")
        XCTAssertEqual(sgdFile.metadata["weight_decay"], "0.0005")

        let store = model.params
        let sgd = SGD(count: store.totalCount, momentum: 0.9, weightDecay: 5e-4, nesterov: false)
        for step in 1...2 {
            sgd.step(params: store.values, grads: store.grads, count: store.totalCount, lr: 0.05)
            let report = ParityReport("SGD step \(step) vs torch.optim.SGD")
            for p in store.entries {
                let expected = try sgdFile.tensors.tensor("step\(step).\(p.name)", in: files.sgd)
                XCTAssertEqual(expected.shape, p.shape)
                report.check("step\(step).\(p.name)", p.values, expected.values,
                             rtol: Self.tolerance.rtol, scaled: Self.tolerance.scaled)
            }
            report.finish()
        }
        XCTAssertEqual(Set(sgdFile.tensors.keys.filter { $0.hasPrefix("step1.") }.map { String($0.dropFirst(6)) }),
                       Set(store.entries.map(\.name)), "sgd.safetensors names the model's parameters")
    }
}
