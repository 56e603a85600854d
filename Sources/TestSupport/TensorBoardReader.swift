// TensorBoard's own reader (EventAccumulator, from the venv `WITH_TENSORBOARD=1 launch/setup.sh`
// makes in .build/tensorboard-venv) over a folder of event files: every scalar by tag, in order.
import Foundation
import XCTest

/// tag -> [(step, value)] as TensorBoard reads `dir`. Throws XCTSkip only with
/// RESNET_SKIP_TENSORBOARD=1 when the venv is missing; otherwise a missing venv is a failure.
public func tensorBoardScalars(_ dir: String) throws -> [String: [(step: Int, value: Double)]] {
    let python = packageRoot + "/.build/tensorboard-venv/bin/python"
    guard FileManager.default.isExecutableFile(atPath: python) else {
        if ProcessInfo.processInfo.environment["RESNET_SKIP_TENSORBOARD"] == "1" {
            throw XCTSkip("!!!!!!!! TensorBoard's reader NOT checked (RESNET_SKIP_TENSORBOARD=1): \(python) missing")
        }
        throw TestFailure("\(python) missing: run WITH_TENSORBOARD=1 launch/setup.sh (launch/test.sh does)")
    }
    let script = """
    import sys
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(sys.argv[1], size_guidance={'scalars': 0})
    acc.Reload()
    for tag in sorted(acc.Tags()['scalars']):
        for e in acc.Scalars(tag):
            print(tag, e.step, repr(e.value))
    """
    let r = runProcess(python, ["-c", script, dir], timeout: 120)
    guard r.status == 0 else { throw TestFailure("TensorBoard's reader failed (status \(r.status)): \(r.stderr.suffix(1000))") }
    var scalars: [String: [(step: Int, value: Double)]] = [:]
    for line in r.stdout.split(separator: "\n") {
        let f = line.split(separator: " ")
        guard f.count == 3, let step = Int(f[1]), let value = Double(f[2]) else { throw TestFailure("unexpected reader line '\(line)'") }
        scalars[String(f[0]), default: []].append((step, value))
    }
    return scalars
}
