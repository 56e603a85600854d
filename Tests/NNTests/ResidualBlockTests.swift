// Residual blocks (the seed's basic block with and without the 1x1 shortcut, the bottleneck
// with and without downsample): finite-difference gradients of input and every parameter.
import XCTest
import NN
import TestSupport

final class ResidualBlockTests: XCTestCase {
    func check(_ build: (ModelContext) -> ResidualBlock, input shape: [Int], expectOutput: [Int],
               expectNames: [String], _ label: String, file: StaticString = #filePath, line: UInt = #line) {
        let ctx = ModelContext()
        let block = build(ctx)
        ctx.finalize()
        randomizeParameters(ctx, seed: 21)
        XCTAssertEqual(ctx.params.entries.map { $0.name }, expectNames, label, file: file, line: line)
        XCTAssertEqual(block.outputShape(shape), expectOutput, label, file: file, line: line)
        let x = randomTensor(shape, seed: 22)
        XCTAssertEqual(block.forward(x, training: true).shape, expectOutput, label, file: file, line: line)
        let r = assertLayerGradients(block, ctx: ctx, input: x, label, file: file, line: line)
        print("\(label): \(r.summary)")
    }

    func testBasicIdentityShortcut() {
        check({ ResidualBlock.basic($0, name: "1.0", inChannels: 3, outChannels: 3) },
              input: [3, 3, 5, 4], expectOutput: [3, 3, 5, 4],
              expectNames: ["1.0.conv1.weight", "1.0.conv1.bias", "1.0.bn1.weight", "1.0.bn1.bias",
                            "1.0.conv2.weight", "1.0.conv2.bias", "1.0.bn2.weight", "1.0.bn2.bias"],
              "basic identity")
    }

    func testBasicWithConv3Stride2() {
        check({ ResidualBlock.basic($0, name: "2.0", inChannels: 2, outChannels: 4, use1x1: true, stride: 2) },
              input: [3, 2, 7, 6], expectOutput: [3, 4, 4, 3],
              expectNames: ["2.0.conv3.weight", "2.0.conv3.bias",
                            "2.0.conv1.weight", "2.0.conv1.bias", "2.0.bn1.weight", "2.0.bn1.bias",
                            "2.0.conv2.weight", "2.0.conv2.bias", "2.0.bn2.weight", "2.0.bn2.bias"],
              "basic conv3 stride 2")
    }

    func testBasicWithConv3Stride1() {
        check({ ResidualBlock.basic($0, name: "b", inChannels: 2, outChannels: 3, use1x1: true, stride: 1) },
              input: [3, 2, 4, 5], expectOutput: [3, 3, 4, 5],
              expectNames: ["b.conv3.weight", "b.conv3.bias", "b.conv1.weight", "b.conv1.bias", "b.bn1.weight",
                            "b.bn1.bias", "b.conv2.weight", "b.conv2.bias", "b.bn2.weight", "b.bn2.bias"],
              "basic conv3 stride 1")
    }

    func testBottleneckWithDownsample() {
        let main = ["conv1.weight", "conv1.bias", "bn1.weight", "bn1.bias", "conv2.weight", "conv2.bias",
                    "bn2.weight", "bn2.bias", "conv3.weight", "conv3.bias", "bn3.weight", "bn3.bias"]
        check({ ResidualBlock.bottleneck($0, name: "2.0", inChannels: 4, midChannels: 2, stride: 2) },
              input: [3, 4, 5, 6], expectOutput: [3, 8, 3, 3],
              expectNames: ["2.0.downsample.0.weight", "2.0.downsample.0.bias", "2.0.downsample.1.weight",
                            "2.0.downsample.1.bias"] + main.map { "2.0." + $0 },
              "bottleneck downsample stride 2")
    }

    func testBottleneckIdentity() {
        check({ ResidualBlock.bottleneck($0, name: "3.1", inChannels: 8, midChannels: 2) },
              input: [3, 8, 3, 4], expectOutput: [3, 8, 3, 4],
              expectNames: ["conv1.weight", "conv1.bias", "bn1.weight", "bn1.bias", "conv2.weight", "conv2.bias",
                            "bn2.weight", "bn2.bias", "conv3.weight", "conv3.bias", "bn3.weight", "bn3.bias"]
                .map { "3.1." + $0 },
              "bottleneck identity")
    }

    /// y = relu(main(x) + shortcut(x)) computed from the parts.
    func testBasicForwardComposition() {
        let ctx = ModelContext()
        let block = ResidualBlock.basic(ctx, name: "b", inChannels: 2, outChannels: 3, use1x1: true, stride: 2)
        ctx.finalize()
        randomizeParameters(ctx, seed: 5)
        let x = randomTensor([3, 2, 6, 6], seed: 6)
        let y = block.forward(x, training: true).array
        resetBatchNormBuffers(ctx)
        var h = x
        for l in block.main { h = l.forward(h, training: true) }
        let s = block.shortcut!.forward(x, training: true)
        assertClose(y, zip(h.array, s.array).map { max($0 + $1, 0) }, rtol: 1e-6, atol: 1e-6, "composition")
        XCTAssertEqual(block.leaves.map { $0.name }, ["b.conv3", "b.conv1", "b.bn1", "b.relu", "b.conv2", "b.bn2"])
    }
}
