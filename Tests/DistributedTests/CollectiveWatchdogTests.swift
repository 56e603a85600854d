// The collective watchdog alone (no MPI): when it fires, what its message says, and that a
// collective finishing in time never triggers it. The end-to-end case (a stopped rank under
// mpirun ends the job within the bound) is in TrainingMPITests.
import Foundation
import XCTest
@testable import Distributed

final class CollectiveWatchdogTests: XCTestCase {
    /// A watchdog installed as the process's, whose expiry is recorded instead of ending the process.
    private final class Recorder: @unchecked Sendable {
        let lock = NSLock()
        var messages: [String] = []
        let fired = DispatchSemaphore(value: 0)
        func record(_ m: String) { lock.lock(); messages.append(m); lock.unlock(); fired.signal() }
        var all: [String] { lock.lock(); defer { lock.unlock() }; return messages }
    }

    private func install(timeout: Double, startup: Double) -> (CollectiveWatchdog, Recorder) {
        let r = Recorder()
        let w = CollectiveWatchdog(timeout: timeout, startupTimeout: startup, rank: 3, host: "node-b") { r.record($0) }
        CollectiveWatchdog.install(w)
        addTeardownBlock { w.stop() }
        return (w, r)
    }

    func testFiresNamingRankHostStepAndPurpose() {
        let (w, r) = install(timeout: 0.3, startup: 30)
        w.firstStepCompleted()
        w.setStep(142)
        let began = Date()
        CollectiveWatchdog.describing("allreduce of gradient bucket 3/12") {
            w.watch("gradient sum (exchange of slices)") { _ = r.fired.wait(timeout: .now() + 5) }
        }
        let elapsed = Date().timeIntervalSince(began)
        XCTAssertEqual(r.all, ["[rank 3 on host node-b] step 142: allreduce of gradient bucket 3/12 not completed after 0.3 s (collective timeout); ending the job"])
        XCTAssertGreaterThanOrEqual(elapsed, 0.3)
        XCTAssertLessThan(elapsed, 2.5, "fired late")
    }

    func testOperationNameWithoutPurposeAndStartupDeadline() {
        let (w, r) = install(timeout: 100, startup: 0.2)
        w.watch("MPI_Bcast(bytes, root 0)") { _ = r.fired.wait(timeout: .now() + 5) }
        XCTAssertEqual(r.all, ["[rank 3 on host node-b] startup: MPI_Bcast(bytes, root 0) not completed after 0.2 s (collective timeout of startup and the first step); ending the job"])
    }

    /// Many collectives, each shorter than the deadline, add up to far more than it: no expiry.
    func testCollectivesInTimeNeverFire() {
        let (w, r) = install(timeout: 0.25, startup: 0.25)
        for i in 0..<12 {
            w.setStep(i)
            w.watch("MPI_Allreduce") { Thread.sleep(forTimeInterval: 0.05) }
            Thread.sleep(forTimeInterval: 0.05)   // time outside a collective does not count
        }
        Thread.sleep(forTimeInterval: 0.4)        // and neither does idle time after the last one
        XCTAssertEqual(r.all, [])
        // A nested watch belongs to the outer collective's deadline.
        w.watch("outer") { w.watch("inner") { _ = r.fired.wait(timeout: .now() + 5) } }
        XCTAssertEqual(r.all.count, 1)
        XCTAssertTrue(r.all.first?.contains("step 11: outer not completed") == true, "\(r.all)")
    }

    /// Without an installed watchdog, `describing` only runs its body.
    func testNoWatchdogNoDeadline() {
        CollectiveWatchdog.shared?.stop()
        XCTAssertNil(CollectiveWatchdog.shared)
        XCTAssertEqual(CollectiveWatchdog.describing("x") { 42 }, 42)
    }
}
