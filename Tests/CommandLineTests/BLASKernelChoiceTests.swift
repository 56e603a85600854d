// The released binary runs a BLAS kernel that uses what the CPU has (issue 8): with no
// OPENBLAS_CORETYPE set, on a CPU with AVX2+FMA (or AVX-512) the kernel in use is of that level
// (chosen by the program when OpenBLAS's own table falls short), its sgemm agrees with a plain
// loop, and a user-set OPENBLAS_CORETYPE always wins. The same for the program's own SIMD loops
// (Sources/NN/Core/KernelSet.swift): the release binary trains to the same bits with every Swift
// kernel set this CPU runs, and RESNET_KERNELS is checked.
import XCTest
import TestSupport
import Foundation

final class BLASKernelChoiceTests: XCTestCase {
    func sysinfo(_ coretype: String?) throws -> [String: String] {
        var env = singleProcessEnvironment()
        env.removeValue(forKey: "OPENBLAS_CORETYPE"); env.removeValue(forKey: "RESNET_BLAS_AUTODETECTED")
        if let coretype { env["OPENBLAS_CORETYPE"] = coretype }
        let r = runProcess(try resnetBinary(), ["sysinfo"], environment: env, timeout: 60)
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        var out: [String: String] = ["summary": r.stdout.split(separator: "\n").first.map(String.init) ?? ""]
        for line in r.stdout.split(separator: "\n") {
            if let colon = line.firstIndex(of: ":") { out[String(line[..<colon])] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces) }
        }
        return out
    }

    func level(_ s: String?, after prefix: String) -> Int? {
        guard let s, let r = s.range(of: prefix) else { return nil }
        return Int(s[r.upperBound...].prefix { $0.isNumber })
    }

    func testTheKernelInUseUsesWhatTheCPUHas() throws {
        let info = try sysinfo(nil)
        let cpu = try XCTUnwrap(info["cpu level"].flatMap { Int($0.prefix { $0.isNumber }) }, "\(info)")
        let kernel = try XCTUnwrap(level(info["kernel"], after: "level "), "\(info)")
        if cpu >= 2 {
            XCTAssertGreaterThanOrEqual(kernel, min(cpu, 4), "CPU level \(cpu) runs a kernel of level \(kernel): \(info["summary"] ?? "")")
        }
        XCTAssertTrue(info["summary"]?.hasPrefix("CPU ") ?? false, "\(info)")
        let err = try XCTUnwrap(Double(info["sgemm vs reference loop"]?.split(separator: " ").dropFirst(3).first?.filter { $0 != ";" } ?? ""), "\(info)")
        XCTAssertLessThan(err, 1e-5, "sgemm under the chosen kernel vs a plain loop")
    }

    func testAUserSetCoreTypeAlwaysWins() throws {
        let info = try sysinfo("Prescott")
        XCTAssertTrue(info["kernel"]?.hasPrefix("Prescott") ?? false, "\(info)")
        XCTAssertTrue(info["summary"]?.contains("OPENBLAS_CORETYPE=Prescott set by the user") ?? false, "\(info)")
    }

    /// A few training steps (ResNet-18 width 8, 28x28 synthetic data: F(4x4) on 7x7, batch norm with
    /// fused ReLUs, max pooling) with each set this CPU runs: model.safetensors byte for byte equal.
    func testEverySwiftKernelSetTrainsToTheSameBits() throws {
        let runs = try XCTUnwrap(sysinfo(nil)["swift kernels"]?.components(separatedBy: "this CPU runs: ").last)
            .split(separator: " ").map(String.init)
        XCTAssertEqual(runs.first, "baseline")
        if runs.count < 2 { throw XCTSkip("this CPU runs only the baseline set: nothing to compare") }
        let temp = RunDirectories(prefix: "kernel-sets")
        defer { temp.removeAll() }
        var files: [String: Data] = [:]
        for set in runs {
            let dir = try temp.make(set)
            var env = singleProcessEnvironment()
            env["RESNET_KERNELS"] = set
            let r = runProcess(try resnetBinary(), trainArgs(dir: dir, ["--set", "data.dataset=synthetic", "--set", "data.synthetic_count=256",
                                                                       "--set", "train.max_steps=4", "--set", "train.threads=2"]),
                               environment: env, timeout: 300)
            XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
            XCTAssertTrue(r.stdout.contains("Swift kernels \(set) (RESNET_KERNELS=\(set) set by the user)"), r.stdout)
            files[set] = FileManager.default.contents(atPath: dir + "/model.safetensors")
            XCTAssertNotNil(files[set], "\(set): no model.safetensors in \(listDir(dir))")
        }
        for set in runs.dropFirst() {
            XCTAssertTrue(files[set] == files["baseline"], "RESNET_KERNELS=\(set): the trained weights differ from the baseline set's")
        }
    }

    /// (Sets left out of the build or beyond the CPU: NNTests/KernelSetTests.testRequestedSetsAreChecked.)
    func testAnUnknownKernelSetIsRefused() throws {
        var env = singleProcessEnvironment()
        env["RESNET_KERNELS"] = "sse9"
        let r = runProcess(try resnetBinary(), ["sysinfo"], environment: env, timeout: 60)
        XCTAssertEqual(r.status, 1, r.stdout + r.stderr)
        XCTAssertTrue(r.stderr.contains("error: RESNET_KERNELS=sse9: expected one of baseline, avx2, avx512"), r.stderr)
        XCTAssertEqual(r.stdout, "")
    }
}
