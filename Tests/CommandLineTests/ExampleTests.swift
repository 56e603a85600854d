// The single-process example (Sources/single-process-example, named in the README) builds and
// trains: every step printed, finite losses, and the loss of the last steps below the first.
import XCTest
import TestSupport
import Foundation

final class ExampleTests: XCTestCase {
    func testSingleProcessExampleTrains() throws {
        let binary = try releaseProduct("single-process-example")
        let r = runProcess(binary, [], timeout: 300)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertFalse(r.timedOut)
        let losses = r.stdout.split(separator: "\n").compactMap { line -> Double? in
            guard line.hasPrefix("step "), let l = line.range(of: "loss "), let c = line.range(of: ",", range: l.upperBound..<line.endIndex)
            else { return nil }
            return Double(line[l.upperBound..<c.lowerBound])
        }
        XCTAssertEqual(losses.count, 30, r.stdout)
        guard losses.count == 30 else { return }
        XCTAssertTrue(losses.allSatisfy { $0.isFinite }, "\(losses)")
        let last = losses.suffix(5).reduce(0, +) / 5
        XCTAssertLessThan(last, 0.7 * losses[0], "loss \(losses[0]) at the first step, \(last) over the last five")
    }
}
