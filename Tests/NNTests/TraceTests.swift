// The step timeline (Trace module) as the layers record it: a training step traced gives the same
// bits as untraced, a forward and a backward span for every leaf layer on the main thread, worker
// spans named after the layer on the worker threads. (The Chrome trace file: TrainingTests'
// TraceFileTests, CommandLineTests' RunObservabilityTests.)
import Foundation
import XCTest
import NN
import Trace
import TestSupport

final class TraceTests: XCTestCase {
    func testTracedStepIsBitwiseTheSameAndHasEveryLayer() throws {
        let spec = ResNetSpec(depth: 18, inChannels: 1, numClasses: 3, width: 2)
        let x = randomTensor([4, 1, 24, 24], seed: 9)
        let labels: [Int32] = [0, 2, 1, 1]
        var results: [(Double, [Float], [Float])] = []
        var recorder: TraceRecorder?
        for traced in [false, true] {
            let model = ResNet(spec, seed: 4)
            if traced { recorder = TraceRecorder(); Trace.recorder = recorder }
            defer { Trace.recorder = nil }
            model.params.zeroGrad()
            let r = model.trainStep(x, labels: labels, normalizer: 4)
            results.append((r.loss, Array(model.params.gradBuffer), Array(UnsafeBufferPointer(start: model.params.values, count: model.params.totalCount))))
        }
        XCTAssertEqual(results[0].0, results[1].0, "loss")
        XCTAssertEqual(results[0].1, results[1].1, "gradients")
        XCTAssertEqual(results[0].2, results[1].2, "parameters")

        let spans = try XCTUnwrap(recorder).spans
        let model = ResNet(spec, seed: 4)
        let leaves = model.leaves.map(\.name)
        let main = spans.filter { $0.category == "forward" || $0.category == "backward" }
        XCTAssertEqual(Set(main.map(\.thread)).count, 1, "layer spans run on the main thread")
        XCTAssertEqual(Set(main.filter { $0.category == "forward" }.map(\.name)), Set(leaves.map { "\($0) forward" }))
        XCTAssertEqual(Set(main.filter { $0.category == "backward" }.map(\.name)), Set(leaves.map { "\($0) backward" }))
        // Backward spans come after the last forward span ends.
        let lastForward = main.filter { $0.category == "forward" }.map { $0.start + $0.duration }.max()!
        XCTAssertTrue(main.filter { $0.category == "backward" }.allSatisfy { $0.start >= lastForward - 1 })
        if Parallel.workers > 1 {
            let workers = spans.filter { $0.category == "worker" }
            XCTAssertFalse(workers.isEmpty)
            XCTAssertTrue(workers.allSatisfy { $0.name.hasSuffix(" forward") || $0.name.hasSuffix(" backward") }, "\(workers.prefix(3))")
            XCTAssertGreaterThan(Set(workers.map(\.thread)).count, 1, "worker spans on more than one thread")
        }

    }
}
