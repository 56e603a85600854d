// The whole network: finite-difference gradients through trainStep, ResNet-34/50 smoke steps,
// the seed's shape table and PyTorch names, the flat layout, and the debugging hooks.
import XCTest
import Foundation
import NN
import TestSupport

final class ResNetTests: XCTestCase {
    /// ResNet-18 as the seed builds it (1 input channel, 10 classes, width 64): built once,
    /// never run forward (too slow in a debug build).
    static let big = ResNet(ResNetSpec(depth: 18, inChannels: 1, numClasses: 10, width: 64))

    // MARK: Gradients of the whole network

    /// Mean cross-entropy of a tiny ResNet-18 (width 2) on 3x1x40x40: trainStep's gradients
    /// (added into the flat buffer) against central differences of the loss for a sample of
    /// parameters across the network (stem conv and BN, block convs and BNs, the 1x1 shortcuts,
    /// the linear layer) and of the input (its gradient is the stem conv's input gradient, read
    /// through the inspector). Spatial sizes 40 -> 20 -> 10 -> 10 -> 5 -> 3 -> 2, so the last
    /// BN still normalizes over 12 values.
    ///
    /// Tolerances. The whole float32 network is a piecewise-smooth function with ~10^4 kinks
    /// (ReLUs, max-pool choices) and float32 rounding noise of ~1e-6 in the loss, amplified by
    /// batch norm over small batches. So: (1) batch-norm gammas are drawn in [0.4, 0.7) and
    /// betas in [0.9, 1.4), which leaves most ReLUs on and far from their kink (the weights keep
    /// PyTorch's default initialization); (2) every difference is watched for kinks
    /// (PiecewisePattern) and redone with a smaller eps or skipped when it straddles one;
    /// (3) eps = 1e-2 keeps the rounding noise small; (4) single elements are allowed
    /// 5% + 2% of their tensor's scale, and each tensor's relative L2 error must be <= 3%
    /// (scales floored at 0.1% of the largest tensor's).
    /// The errors seen are ~1% on the input and <= 0.5% elsewhere; a missing factor or term in
    /// any layer's backward moves a whole tensor by >= 10%.
    func testResNet18GradientsByFiniteDifferences() {
        let model = ResNet(ResNetSpec(depth: 18, inChannels: 1, numClasses: 3, width: 2), seed: 1)
        for case let bn as BatchNorm2D in model.leaves {
            fillUniform(bn.weight, seed: 3, lo: 0.4, hi: 0.7)
            fillUniform(bn.bias, seed: 4, lo: 0.9, hi: 1.4)
        }
        // The stem skips the input gradient in training (nothing consumes it); turn it on here.
        let stem = model.leaves[0] as! Conv2D
        XCTAssertFalse(stem.needsInputGradient)
        stem.needsInputGradient = true
        let x = Tensor(shape: [3, 1, 40, 40], values: randomNormalArray(4800, seed: 2))
        let labels: [Int32] = [0, 2, 1]
        let snapshot = Array(model.buffers.valueBuffer)
        func restore() { let b = model.buffers.valueBuffer; for i in 0..<snapshot.count { b[i] = snapshot[i] } }

        var dx: [Float] = []
        model.ctx.inspector = { name, what, v in if name == "0.0" && what == "input gradient" { dx = Array(v) } }
        model.params.zeroGrad()
        let step = model.trainStep(x, labels: labels, normalizer: 3)
        model.ctx.inspector = nil
        XCTAssertEqual(dx.count, x.count)

        func loss() -> Double {
            restore()
            let z = model.forward(x, training: true)
            return referenceCrossEntropy(z.array, classes: 3, labels: labels).losses.reduce(0, +) / 3
        }
        XCTAssertEqual(step.loss, loss(), accuracy: 1e-5, "trainStep's loss is the mean cross-entropy")

        // A conv bias directly followed by batch norm has an exactly zero gradient (BN removes
        // any per-channel shift); checked here rather than by differences of pure noise.
        let largest = model.params.gradBuffer.reduce(0) { max($0, abs($1)) }
        for n in ["0.0.bias", "1.0.conv1.bias", "2.1.conv2.bias", "4.1.conv2.bias"] {
            let g = model.params[n]!.grads.reduce(0) { max($0, abs($1)) }
            XCTAssertLessThan(g, 1e-5 * largest, "\(n): gradient through batch norm")
        }
        let names = ["0.0.weight", "0.1.weight", "0.1.bias", "1.0.conv1.weight", "1.1.bn2.weight",
                     "2.0.conv3.weight", "2.0.conv3.bias", "2.0.bn1.bias", "3.0.conv2.weight", "3.1.bn1.bias",
                     "4.0.conv3.weight", "4.1.bn2.weight", "7.weight", "7.bias"]
        var tensors = [CheckedTensor(name: "input", values: x.data, count: x.count, analytic: dx)]
        for n in names {
            let p = model.params[n]!
            tensors.append(CheckedTensor(name: n, values: p.value, count: p.count, analytic: p.grads))
        }
        var o = GradientCheckOptions(eps: 1e-2, maxSamples: 32)
        // Gradient scales differ by ~100x between the input and the linear layer: each tensor
        // is judged on its own scale (floor 0.1% of the largest).
        o.rtol = 0.05; o.atol = 0.02; o.maxRelativeL2 = 0.03; o.floorFraction = 1e-3
        let recorder = PiecewisePattern(model.ctx)
        let report = finiteDifferenceCheck(tensors, options: o,
                                           pattern: { recorder.pattern(model.net, input: x.array, shape: x.shape) },
                                           loss: loss)
        recorder.uninstall()
        print("ResNet-18 width 2: \(report.summary)")
        if ProcessInfo.processInfo.environment["NN_VERBOSE"] == "1" { print(report) }
        assertGradientsMatch(report, "ResNet-18 whole network")
        // The parameters that matter most were really compared, not lost to kinks.
        for n in ["input", "0.0.weight", "0.1.weight", "2.0.conv3.weight", "7.weight"] {
            XCTAssertGreaterThanOrEqual(report[n].map { $0.checked - $0.skipped } ?? 0, 2, n)
        }
        restore()
    }

    /// The fused passes (the stem's batch norm pooling as it normalizes, `BatchNorm2D.fuse(pool:)`;
    /// each block's last batch norm adding the shortcut and applying the ReLU, `ResidualBlock.fusesSum`)
    /// give the bits of the layers apart: loss, every gradient, the buffers and eval logits after a
    /// training step, for each fusion alone and both; ResNet-18 and the bottleneck blocks of ResNet-50.
    func testFusedPassesGiveTheBitsOfTheLayersApart() {
        let saved = (BatchNorm2D.fusesPool, ResidualBlock.fusesSum)
        defer { (BatchNorm2D.fusesPool, ResidualBlock.fusesSum) = saved }
        for depth in [18, 50] {
            func step(pool: Bool, sum: Bool) -> [[Float]] {
                (BatchNorm2D.fusesPool, ResidualBlock.fusesSum) = (pool, sum)
                let model = ResNet(ResNetSpec(depth: depth, inChannels: 1, numClasses: 3, width: 2), seed: 5)
                XCTAssertEqual((model.leaves[1] as! BatchNorm2D).fusedPool != nil, pool)
                let blocks = model.net.children.flatMap { ($0 as? Sequential)?.children ?? [] }.compactMap { $0 as? ResidualBlock }
                XCTAssertEqual(blocks.count, depth == 18 ? 8 : 16)
                XCTAssertTrue(blocks.allSatisfy { ($0.summingBatchNorm != nil) == sum }, "ResNet-\(depth) sum \(sum)")
                let x = Tensor(shape: [3, 1, 37, 41], values: randomNormalArray(3 * 37 * 41, seed: 6))
                model.params.zeroGrad()
                let r = model.trainStep(x, labels: [2, 0, 1], normalizer: 3)
                return [[Float(r.loss)], Array(model.params.gradBuffer), Array(model.buffers.valueBuffer),
                        model.forward(x, training: false).array]
            }
            let apart = step(pool: false, sum: false)
            XCTAssertTrue(apart[1].contains { $0 != 0 } && !apart[1].contains { $0.isNaN })
            for (pool, sum) in [(true, false), (false, true), (true, true)] {
                let fused = step(pool: pool, sum: sum)
                for (i, name) in ["loss", "gradients", "buffers", "eval logits"].enumerated() {
                    XCTAssertEqual(apart[i].map(\.bitPattern), fused[i].map(\.bitPattern), "ResNet-\(depth) pool \(pool) sum \(sum): \(name)")
                }
            }
        }
    }

    /// A convolution a batch norm follows skips its bias gradient (`Conv2D.biasGradientVanishes`):
    /// in training the batch norm subtracts the batch mean, so the exact gradient is 0, and the pass
    /// over dY summed it to rounding noise. Marked are the stem and every conv of the main paths (and
    /// ResNet-50's downsampling conv), not ResNet-18's 1x1 shortcuts, whose output no batch norm takes:
    /// with the skip those biases are exactly 0, without it within 1e-5 of the largest gradient; every
    /// other gradient, the loss and the buffers are the same bits either way.
    func testBiasGradientsBeforeBatchNormAreExactlyZero() {
        let saved = Conv2D.skipsVanishingBiasGradient
        defer { Conv2D.skipsVanishingBiasGradient = saved }
        for depth in [18, 50] {
            func step(skip: Bool) -> (model: ResNet, values: [[Float]]) {
                Conv2D.skipsVanishingBiasGradient = skip
                let model = ResNet(ResNetSpec(depth: depth, inChannels: 1, numClasses: 3, width: 2), seed: 5)
                let x = Tensor(shape: [3, 1, 37, 41], values: randomNormalArray(3 * 37 * 41, seed: 6))
                model.params.zeroGrad()
                let r = model.trainStep(x, labels: [2, 0, 1], normalizer: 3)
                return (model, [[Float(r.loss)], Array(model.buffers.valueBuffer)])
            }
            let (on, a) = step(skip: true), (off, b) = step(skip: false)
            XCTAssertEqual(a.map { $0.map(\.bitPattern) }, b.map { $0.map(\.bitPattern) }, "ResNet-\(depth): loss and buffers")
            let convs = on.leaves.compactMap { $0 as? Conv2D }
            XCTAssertFalse(off.leaves.contains { ($0 as? Conv2D)?.biasGradientVanishes == true }, "ResNet-\(depth): marked with the skip off")
            let marked = convs.filter(\.biasGradientVanishes).compactMap(\.bias).map(\.name)
            let kept = convs.filter { !$0.biasGradientVanishes }.compactMap(\.bias).map(\.name)
            if depth == 18 {
                XCTAssertEqual(marked.count, 17, "the stem and the 16 convs of the main paths")
                XCTAssertEqual(kept, ["2.0.conv3.bias", "3.0.conv3.bias", "4.0.conv3.bias"])
            }
            XCTAssertFalse(marked.isEmpty)
            let largest = off.params.gradBuffer.reduce(0) { max($0, abs($1)) }
            for name in marked {
                XCTAssertEqual(on.params[name]!.grads, [Float](repeating: 0, count: on.params[name]!.count), "ResNet-\(depth) \(name)")
                let noise = off.params[name]!.grads.reduce(0) { max($0, abs($1)) }
                XCTAssertLessThan(noise, 1e-5 * largest, "ResNet-\(depth) \(name): the computed gradient is not rounding noise")
            }
            for name in kept { XCTAssertTrue(on.params[name]!.grads.contains { $0 != 0 }, "ResNet-\(depth) \(name)") }
            let all = on.leaves.flatMap(\.parameters).map(\.name)
            for name in all where !marked.contains(name) {
                XCTAssertEqual(on.params[name]!.grads.map(\.bitPattern), off.params[name]!.grads.map(\.bitPattern), "ResNet-\(depth) \(name)")
            }
        }
    }

    /// The stem conv skips its input gradient (returns zeros) without changing any parameter
    /// gradient.
    func testStemSkipsInputGradient() {
        let model = ResNet(ResNetSpec(depth: 18, inChannels: 1, numClasses: 3, width: 2), seed: 3)
        let stem = model.leaves[0] as! Conv2D
        let x = randomTensor([2, 1, 16, 16], seed: 4)
        let snapshot = Array(model.buffers.valueBuffer)
        var dx: [Float] = []
        model.ctx.inspector = { name, what, v in if name == "0.0" && what == "input gradient" { dx = Array(v) } }
        var grads: [[Float]] = []
        for needs in [false, true] {
            stem.needsInputGradient = needs
            for (i, v) in snapshot.enumerated() { model.buffers.valueBuffer[i] = v }
            model.params.zeroGrad()
            _ = model.trainStep(x, labels: [1, 2], normalizer: 2)
            grads.append(Array(model.params.gradBuffer))
            XCTAssertEqual(dx.count, x.count)
            if needs { XCTAssertTrue(dx.contains { $0 != 0 }) } else { XCTAssertTrue(dx.allSatisfy { $0 == 0 }) }
        }
        assertClose(grads[0], grads[1], rtol: 0, atol: 0, "parameter gradients")
    }

    /// trainStep adds into the gradient buffer; the same step twice doubles it.
    func testTrainStepAccumulates() {
        let model = ResNet(ResNetSpec(depth: 18, inChannels: 1, numClasses: 3, width: 2), seed: 3)
        let x = randomTensor([2, 1, 16, 16], seed: 4)
        let labels: [Int32] = [1, 2]
        model.params.zeroGrad()
        let snapshot = Array(model.buffers.valueBuffer)
        _ = model.trainStep(x, labels: labels, normalizer: 2)
        let once = Array(model.params.gradBuffer)
        for (i, v) in snapshot.enumerated() { model.buffers.valueBuffer[i] = v }
        _ = model.trainStep(x, labels: labels, normalizer: 2)
        assertClose(Array(model.params.gradBuffer), once.map { 2 * $0 }, rtol: 1e-4, atol: 1e-7, "accumulated")
        XCTAssertEqual(model.buffers["0.1.num_batches_tracked"]!.values, [1])
    }

    /// ResNet-34 and ResNet-50 at tiny width build and run a step with a finite loss and
    /// finite, non-zero gradients; their conv counts match the names (34 = 33 + fc, 50 = 49 + fc,
    /// plus the 1x1 shortcuts).
    /// Backward's input gradients come from one pool: it stops growing after the first step, a
    /// second identical step (buffers reused) gives bit-identical gradients, and it holds less
    /// than one gradient per layer output (measured: 0.48 of it for ResNet-18, 0.37 for
    /// ResNet-50 at width 4 on 40x40, where the stem's maps dominate, with ReLU, batch norm and
    /// the residual mask overwriting donated gradients; 0.75 / 0.65 without; a regression guard).
    func testGradientPoolIsReusedAcrossStepsAndSmallerThanOnePerLayer() {
        for depth in [18, 50] {
            let model = ResNet(ResNetSpec(depth: depth, inChannels: 1, numClasses: 5, width: 4), seed: 3)
            let x = randomTensor([4, 1, 40, 40], seed: 4)
            let labels: [Int32] = [0, 1, 2, 4]
            model.params.zeroGrad()
            _ = model.trainStep(x, labels: labels, normalizer: 4)
            let first = Array(model.params.gradBuffer), after1 = model.ctx.gradients.allocatedFloats
            resetBatchNormBuffers(model.ctx)
            model.params.zeroGrad()
            _ = model.trainStep(x, labels: labels, normalizer: 4)
            XCTAssertEqual(model.ctx.gradients.allocatedFloats, after1, "ResNet-\(depth): the pool grew in the second step")
            XCTAssertEqual(Array(model.params.gradBuffer), Array(first), "ResNet-\(depth): gradients of two identical steps")
            var shape = [4, 1, 40, 40], perLayer = 0
            for leaf in model.leaves { perLayer += shape.reduce(1, *); shape = leaf.outputShape(shape) }
            XCTAssertLessThan(after1, perLayer / 2, "ResNet-\(depth): pool \(after1) floats vs \(perLayer) for one gradient per layer")
        }
    }

    func testDeeperNetsRunAStep() {
        for (depth, convs, shortcuts) in [(34, 33, 3), (50, 49, 4)] {
            let model = ResNet(ResNetSpec(depth: depth, inChannels: 1, numClasses: 5, width: 2), seed: 5)
            let leaves = model.leaves
            let convCount = leaves.filter { $0 is Conv2D }.count
            XCTAssertEqual(convCount, convs + shortcuts, "depth \(depth)")
            XCTAssertEqual(leaves.filter { $0 is Linear }.count, 1)
            XCTAssertEqual(leaves.filter { $0 is BatchNorm2D }.count,
                           depth == 50 ? convs + shortcuts : convs)   // d2l's conv3 shortcut has no BN
            let x = randomTensor([2, 1, 32, 32], seed: 6)
            model.params.zeroGrad()
            let r = model.trainStep(x, labels: [0, 4], normalizer: 2)
            XCTAssertTrue(r.loss.isFinite && r.loss > 0, "depth \(depth) loss \(r.loss)")
            let g = model.params.gradBuffer
            XCTAssertTrue(g.allSatisfy { $0.isFinite }, "depth \(depth)")
            XCTAssertTrue(g.contains { $0 != 0 }, "depth \(depth)")
            XCTAssertTrue(model.params["7.weight"]!.grads.contains { $0 != 0 })
            XCTAssertTrue(model.params["0.0.weight"]!.grads.contains { $0 != 0 })
            XCTAssertEqual(model.params["7.weight"]!.shape, [5, depth == 50 ? 64 : 16])
            let e = model.evaluate(x, labels: [0, 4])
            XCTAssertTrue(e.lossSum.isFinite)
        }
        let r50 = ResNet(ResNetSpec(depth: 50, inChannels: 3, numClasses: 10, width: 1))
        XCTAssertNotNil(r50.params["1.0.downsample.0.weight"])
        XCTAssertNotNil(r50.params["2.0.downsample.1.bias"])
        XCTAssertNil(r50.params["2.1.downsample.0.weight"])
        XCTAssertNotNil(r50.params["4.2.conv3.weight"])
        XCTAssertEqual(r50.summary(input: [3, 64, 64]).map { $0.shape },
                       [[1, 16, 16], [4, 16, 16], [8, 8, 8], [16, 4, 4], [32, 2, 2], [32, 1, 1], [32], [10]])
    }

    /// evaluate() is the eval-mode forward with the summed loss.
    func testEvaluateUsesRunningStatistics() {
        let model = ResNet(ResNetSpec(depth: 18, inChannels: 1, numClasses: 3, width: 2), seed: 7)
        let x = randomTensor([2, 1, 16, 16], seed: 8)
        for _ in 0..<3 { _ = model.trainStep(x, labels: [0, 1], normalizer: 2) }
        let buffers = Array(model.buffers.valueBuffer)
        let z = model.forward(x, training: false).array
        let e = model.evaluate(x, labels: [0, 1])
        let ref = referenceCrossEntropy(z, classes: 3, labels: [0, 1])
        XCTAssertEqual(e.lossSum, ref.losses.reduce(0, +), accuracy: 1e-4)
        XCTAssertEqual(Array(model.buffers.valueBuffer), buffers, "eval changes no buffer")
        XCTAssertEqual(model.buffers["0.1.num_batches_tracked"]!.values, [3])
        // Eval differs from training-mode output (running stats are not the batch stats).
        let zt = model.forward(x, training: true).array
        XCTAssertNotEqual(z, zt)
    }

    // MARK: The seed's model: shapes, names, sizes

    func testSeedShapeTable() {
        let rows = Self.big.summary(input: [1, 224, 224])
        XCTAssertEqual(rows.map { $0.shape },
                       [[64, 56, 56], [64, 56, 56], [128, 28, 28], [256, 14, 14], [512, 7, 7], [512, 1, 1], [512], [10]])
        XCTAssertEqual(rows.map { $0.name }, ["0", "1", "2", "3", "4", "5", "6", "7"])
        XCTAssertEqual(rows.map { $0.type },
                       ["Sequential", "Sequential", "Sequential", "Sequential", "Sequential",
                        "GlobalAvgPool", "Flatten", "Linear"])
        XCTAssertEqual(rows.map { shapeString($0.shape) }[0], "(64,56,56)")
    }

    func testPyTorchNames() {
        let p = Self.big.params, b = Self.big.buffers
        for n in ["0.0.weight", "0.0.bias", "0.1.weight", "0.1.bias", "1.0.conv1.weight", "1.0.conv1.bias",
                  "1.0.bn1.weight", "2.0.conv3.weight", "2.0.conv3.bias", "4.1.bn2.bias", "7.weight", "7.bias"] {
            XCTAssertNotNil(p[n], "parameter \(n)")
        }
        for n in ["0.1.running_mean", "0.1.running_var", "0.1.num_batches_tracked"] { XCTAssertNotNil(b[n], "buffer \(n)") }
        XCTAssertNil(p["1.0.conv3.weight"])
        XCTAssertNil(p["0.1.running_mean"])
        XCTAssertNil(b["0.1.weight"])
        XCTAssertEqual(b["0.1.num_batches_tracked"]?.type, .int64)
        // The whole state_dict: every name and shape, parameters and buffers, as PyTorch has them.
        var ours: [String: [Int]] = [:]
        for h in p.entries + b.entries { XCTAssertNil(ours.updateValue(h.shape, forKey: h.name), "duplicate \(h.name)") }
        XCTAssertEqual(ours.count, torchResNet18StateDict.count)
        for (name, shape) in torchResNet18StateDict {
            XCTAssertEqual(ours[name], shape, "state_dict entry \(name)")
        }
        for name in ours.keys where torchResNet18StateDict[name] == nil { XCTFail("extra tensor \(name)") }
        XCTAssertEqual(p.entries.count, 76)
        XCTAssertEqual(b.entries.count, 51)
    }

    /// Kernel, stride and padding of every conv and max-pool as in the PyTorch model (the shape
    /// table alone cannot tell a stem padding of 2 from 3).
    func testLayerGeometryMatchesPyTorch() {
        var ours: [String: (Int, Int, Int, Int, Int)] = [:]
        for l in Self.big.leaves {
            if let c = l as? Conv2D { ours[c.name] = (c.inChannels, c.outChannels, c.kernel, c.stride, c.padding) }
            if let p = l as? MaxPool2D { ours[p.name] = (0, 0, p.kernel, p.stride, p.padding) }
        }
        XCTAssertEqual(ours.count, torchResNet18Geometry.count)
        for (name, cin, cout, k, s, p) in torchResNet18Geometry {
            guard let o = ours[name] else { XCTFail("missing layer \(name)"); continue }
            XCTAssertTrue(o == (cin, cout, k, s, p), "\(name): ours \(o), PyTorch \((cin, cout, k, s, p))")
        }
        let kinds = Self.big.leaves.map { $0.typeName }
        XCTAssertEqual(kinds.filter { $0 == "BatchNorm2D" }.count, 17)
        XCTAssertEqual(kinds.filter { $0 == "ReLU" }.count, 9)   // stem + one inside each of 8 blocks
        XCTAssertEqual(Array(kinds.suffix(3)), ["GlobalAvgPool", "Flatten", "Linear"])
    }

    func testParameterCountMatchesPyTorch() {
        XCTAssertEqual(Self.big.params.totalCount, torchResNet18ParameterCount)
        XCTAssertEqual(Self.big.params.entries.reduce(0) { $0 + $1.count }, torchResNet18ParameterCount)
        XCTAssertEqual(Self.big.buffers.totalCount, 7825)   // 2 * 3904 BN channels + 17 counters
    }

    /// PyTorch's default initialization: weights and biases in ±1/sqrt(fan_in), BN 1/0, stats 0/1.
    func testInitialization() {
        let m = Self.big
        for (name, fanIn) in [("0.0.weight", 49), ("0.0.bias", 49), ("2.0.conv3.weight", 64),
                              ("4.1.conv2.weight", 512 * 9), ("7.weight", 512), ("7.bias", 512)] {
            let v = m.params[name]!.values
            let bound = 1 / Float(fanIn).squareRoot()
            XCTAssertLessThanOrEqual(v.map { abs($0) }.max()!, bound, name)
            if v.count >= 400 {   // uniform over the whole interval, centred
                XCTAssertGreaterThan(v.map { abs($0) }.max()!, 0.99 * bound, name)
                XCTAssertEqual(Double(v.reduce(0, +)) / Double(v.count), 0, accuracy: Double(bound) / 5, name)
            }
        }
        XCTAssertTrue(m.params["3.1.bn1.weight"]!.values.allSatisfy { $0 == 1 })
        XCTAssertTrue(m.params["3.1.bn1.bias"]!.values.allSatisfy { $0 == 0 })
        XCTAssertTrue(m.buffers["3.1.bn1.running_var"]!.values.allSatisfy { $0 == 1 })
        XCTAssertTrue(m.buffers["3.1.bn1.running_mean"]!.values.allSatisfy { $0 == 0 })
        let a = ResNet(ResNetSpec(depth: 18, inChannels: 1, numClasses: 3, width: 2), seed: 9)
        let b = ResNet(ResNetSpec(depth: 18, inChannels: 1, numClasses: 3, width: 2), seed: 9)
        let c = ResNet(ResNetSpec(depth: 18, inChannels: 1, numClasses: 3, width: 2), seed: 10)
        XCTAssertEqual(Array(a.params.valueBuffer), Array(b.params.valueBuffer), "same seed, same weights")
        XCTAssertNotEqual(Array(a.params.valueBuffer), Array(c.params.valueBuffer))
    }

    // MARK: The flat layout

    func testFlatLayout() {
        for store in [Self.big.params, Self.big.buffers] {
            let e = store.entries
            XCTAssertEqual(e.last?.offset, 0, "the last declared tensor sits at offset 0")
            for i in 0..<(e.count - 1) {
                XCTAssertEqual(e[i].offset, e[i + 1].offset + e[i + 1].count, "\(e[i].name) follows \(e[i + 1].name)")
            }
            XCTAssertEqual(store.totalCount, e.reduce(0) { $0 + $1.count })
            XCTAssertEqual(e.first.map { $0.offset + $0.count }, store.totalCount)
            // No overlap: sorted by offset, each ends where the next begins.
            let sorted = e.sorted { $0.offset < $1.offset }
            var next = 0
            for h in sorted { XCTAssertEqual(h.offset, next, h.name); next = h.offset + h.count }
            // Views point into the flat buffers.
            XCTAssertEqual(e[3].value, store.values + e[3].offset)
            if store.hasGradients { XCTAssertEqual(e[3].grad, store.grads + e[3].offset) }
        }
        // BN's running statistics are values only: no gradient memory.
        XCTAssertFalse(Self.big.buffers.hasGradients)
        XCTAssertEqual(Self.big.buffers.gradBuffer.count, 0)
        XCTAssertEqual(Self.big.params["7.bias"]?.offset, 0)
        XCTAssertEqual(Self.big.params["7.weight"]?.offset, 10)
    }

    func testLayoutHash() {
        let spec = ResNetSpec(depth: 18, inChannels: 1, numClasses: 3, width: 2)
        let a = ResNet(spec, seed: 1), b = ResNet(spec, seed: 2)
        XCTAssertEqual(a.params.layoutHash, b.params.layoutHash)
        XCTAssertEqual(a.buffers.layoutHash, b.buffers.layoutHash)
        var wider = spec; wider.width = 4
        XCTAssertNotEqual(ResNet(wider).params.layoutHash, a.params.layoutHash)
        var classes = spec; classes.numClasses = 4
        XCTAssertNotEqual(ResNet(classes).params.layoutHash, a.params.layoutHash)
        var deeper = spec; deeper.depth = 34
        XCTAssertNotEqual(ResNet(deeper).params.layoutHash, a.params.layoutHash)
    }

    /// Backward finishes gradients from the front of the buffer: after each leaf's backward the
    /// finished tensors are exactly a prefix [0, k) of the flat gradient buffer (what lets the
    /// bucketed allreduce start early), and every parameter is announced exactly once.
    func testGradientsBecomeReadyAsAGrowingPrefix() {
        for depth in [18, 50] {
            let model = ResNet(ResNetSpec(depth: depth, inChannels: 1, numClasses: 3, width: 2), seed: 1)
            var ready: [ParamHandle] = []
            var prefixes: [Int] = []
            model.ctx.onGradientReady = { ready.append($0) }
            model.ctx.inspector = { name, what, _ in
                guard what == "input gradient" else { return }
                let covered = ready.reduce(0) { $0 + $1.count }
                let end = ready.map { $0.offset + $0.count }.max() ?? 0
                XCTAssertEqual(covered, end, "depth \(depth): after \(name), ready tensors are not a prefix")
                prefixes.append(end)
            }
            _ = model.trainStep(randomTensor([2, 1, 16, 16], seed: 2), labels: [0, 1], normalizer: 2)
            XCTAssertEqual(ready.count, model.params.entries.count)
            XCTAssertEqual(Set(ready.map { $0.name }).count, ready.count)
            XCTAssertEqual(prefixes, prefixes.sorted())
            XCTAssertEqual(prefixes.last, model.params.totalCount)
        }
    }

    // MARK: Debugging hooks

    /// A NaN in the input: the first leaf whose output is not finite is the stem conv.
    func testNaNInspectorFindsTheStemConv() {
        let model = ResNet(ResNetSpec(depth: 18, inChannels: 1, numClasses: 3, width: 2), seed: 1)
        var firstBad: String?
        var outputs: [String] = []
        model.ctx.inspector = { name, what, v in
            guard what == "output" else { return }
            outputs.append(name)
            if firstBad == nil && v.contains(where: { !$0.isFinite }) { firstBad = name }
        }
        let x = randomTensor([2, 1, 16, 16], seed: 3)
        _ = model.forward(x, training: true)
        XCTAssertNil(firstBad, "a clean input gives finite outputs everywhere")
        // Every leaf reports its output once. (`leaves` lists a block's shortcut first, the order
        // of declaration; forward runs it after the main path, or, when the main path's last batch
        // norm adds it, just before that batch norm.)
        XCTAssertEqual(outputs.sorted(), model.leaves.map { $0.name }.sorted())
        XCTAssertEqual(outputs.first, "0.0")
        x[37] = .nan
        outputs = []
        _ = model.forward(x, training: true)
        XCTAssertEqual(firstBad, "0.0")
    }
}
