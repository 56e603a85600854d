// The Checkpoint type: what a trainer writes comes back exactly (weights, momentum, each
// replica's BN buffers at the world size it was written at, the position, config and metrics),
// export keeps only the weights, absurd positions are refused naming the field, and the chosen
// file reaches every rank unchanged (ReplicaSync.broadcastCheckpoint).
import XCTest
import NN
import Distributed
import Coordinator

final class CheckpointTests: XCTestCase {
    static let spec = ResNetSpec(depth: 18, inChannels: 1, numClasses: 4, width: 4)
    static let position = CheckpointPosition(globalStep: 21, epoch: 2, stepInEpoch: 5,
                                             epochLossSum: 0.1 + 0.2, epochCorrect: 17, epochSeen: 160)

    /// A model of `spec` at `seed`, its momentum and two replicas' BN buffers, encoded.
    func written(seed: UInt64) -> (model: ResNet, velocity: [Float], replicas: [[Float]], bytes: [UInt8]) {
        let model = ResNet(Self.spec, seed: seed)
        let velocity = (0..<model.params.totalCount).map { Float($0 % 97) * 1e-3 - 0.05 }
        // Whole numbers: num_batches_tracked is stored as an integer.
        let replicas = (0..<2).map { r in (0..<model.buffers.totalCount).map { Float($0 % 13 + 20 * r) } }
        let bytes = Checkpoint.encode(model: model, velocity: velocity, replicas: replicas, position: Self.position, seed: 7,
                                      worldSize: 2, config: "model:\n  width: 4\n", metrics: "{\"kind\":\"step\",\"step\":1}\n")
        return (model, velocity, replicas, bytes)
    }

    func testWhatIsWrittenComesBackExactly() throws {
        let w = written(seed: 3)
        let ck = try Checkpoint(bytes: w.bytes, file: "ck")
        XCTAssertEqual(try ck.storedConfig(), "model:\n  width: 4\n")
        XCTAssertEqual(ck.metrics, "{\"kind\":\"step\",\"step\":1}\n")
        XCTAssertEqual(try ck.position(globalSteps: 0...1000, epochs: 0...10, stepsPerEpoch: 8), Self.position)

        // Rank 1 at the world size it was written at: its own BN buffers; the weights; the momentum.
        let back = ResNet(Self.spec, seed: 99)
        let velocity = try ck.restore(into: back, rank: 1, worldSize: 2)
        XCTAssertEqual(velocity.map(\.bitPattern), w.velocity.map(\.bitPattern))
        XCTAssertEqual(Array(back.params.valueBuffer).map(\.bitPattern), Array(w.model.params.valueBuffer).map(\.bitPattern))
        XCTAssertEqual(Array(back.buffers.valueBuffer), w.replicas[1])
        // Another world size: the (averaged) buffers stored under the PyTorch names.
        let other = ResNet(Self.spec, seed: 99)
        _ = try ck.restore(into: other, rank: 0, worldSize: 3)
        XCTAssertEqual(Array(other.buffers.valueBuffer).map(\.bitPattern), Array(w.model.buffers.valueBuffer).map(\.bitPattern))

        // Export: every weight, no training state, step and epoch kept.
        let (weights, meta) = ck.weights
        XCTAssertEqual(weights.map(\.name), (w.model.params.entries + w.model.buffers.entries).map(\.name).sorted())
        XCTAssertEqual(meta, ["format": "pt", "global_step": "21", "epoch": "2"])
        XCTAssertEqual(ck.tensors.count, weights.count + w.model.params.entries.count + 2 * w.model.buffers.entries.count)
        XCTAssertTrue(ck.tensors.keys.filter(Checkpoint.isTrainingState).allSatisfy { $0.hasPrefix("optimizer.momentum.") || $0.hasPrefix("replica.") })
    }

    func testAbsurdPositionsAndMissingMomentumAreRefusedNamingTheField() throws {
        let ck = try Checkpoint(bytes: written(seed: 1).bytes, file: "ck.safetensors")
        let cases: [(ClosedRange<Int>, ClosedRange<Int>, Int, String)] = [
            (0...20, 0...10, 8, "global_step"), (0...1000, 0...1, 8, "epoch"), (0...1000, 0...10, 4, "step_in_epoch 5 exceeds the 4 steps"),
        ]
        for (steps, epochs, perEpoch, field) in cases {
            XCTAssertThrowsError(try ck.position(globalSteps: steps, epochs: epochs, stepsPerEpoch: perEpoch), field) {
                XCTAssertTrue("\($0)".contains(field) && "\($0)".contains("ck.safetensors"), "\($0)")
            }
        }
        let model = ResNet(Self.spec)
        let noMomentum = Checkpoint.encode(SafeTensors.collect([model.params, model.buffers]), metadata: ["config": ""])
        XCTAssertThrowsError(try Checkpoint(bytes: noMomentum, file: "plain").restore(into: model, rank: 0, worldSize: 1)) {
            XCTAssertTrue("\($0)".contains("missing tensor optimizer.momentum."), "\($0)")
        }
    }

    func testBroadcastCheckpointHandsTheChosenFileOn() throws {
        let comm = LocalCommunicator()
        let bytes: [UInt8] = [1, 0, 255, 7] + Array("é".utf8)
        let got = try XCTUnwrap(ReplicaSync.broadcastCheckpoint(("run/checkpoints/ckpt-step-000000012.safetensors", bytes), comm))
        XCTAssertEqual(got.path, "run/checkpoints/ckpt-step-000000012.safetensors")
        XCTAssertEqual(got.bytes, bytes)
        XCTAssertNil(try ReplicaSync.broadcastCheckpoint(nil, comm), "no checkpoint: a fresh start")
    }
}
