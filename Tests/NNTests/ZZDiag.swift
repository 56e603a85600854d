import XCTest
import NN
import TestSupport

final class ZZDiag: XCTestCase {
    func testDiag() {
        let model = ResNet(ResNetSpec(depth: 18, inChannels: 1, numClasses: 3, width: 2), seed: 1)
        let x = Tensor(shape: [3, 1, 40, 40], values: randomNormalArray(4800, seed: 2))
        let snapshot = Array(model.buffers.valueBuffer)
        func restore() { let b = model.buffers.valueBuffer; for i in 0..<snapshot.count { b[i] = snapshot[i] } }
        var outs: [String: [Float]] = [:]
        model.ctx.inspector = { n, w, v in if w == "output" { outs[n] = Array(v) } }
        func run() -> [String: [Float]] { restore(); outs = [:]; _ = model.forward(x, training: true); return outs }
        let p = model.params["1.0.conv1.weight"]!
        for eps: Float in [1e-2, 1e-3, 1e-4] {
            let o = p.value[6]
            p.value[6] = o + eps; let a = run()
            p.value[6] = o - eps; let b = run()
            p.value[6] = o
            var flips = 0, minAbs: [String: Float] = [:]
            for (n, va) in a where n.contains("relu") || n.hasSuffix(".2") {
                let vb = b[n]!
                for i in 0..<va.count where (va[i] > 0) != (vb[i] > 0) { flips += 1 }
            }
            // BN outputs feeding relus: smallest |pre-activation|
            for (n, va) in a where n.contains("bn1") || n == "0.1" { minAbs[n] = va.map { abs($0) }.min() }
            print("eps \(eps): relu flips \(flips); ", minAbs.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" })
        }
        // BN batch stats of each bn: min variance
        let base = run()
        for (n, v) in base.sorted(by: { $0.key < $1.key }) where n.contains("conv") || n.hasPrefix("0.0") {
            let m = v.reduce(0, +) / Float(v.count)
            print(n, v.count, "mean", m, "rms", (v.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Float(v.count)).squareRoot())
        }
    }
}
