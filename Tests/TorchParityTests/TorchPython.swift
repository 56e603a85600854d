// Runs the PyTorch side of the parity tests (torch/reference.py, torch/load_check.py) with
// Debian's /usr/bin/python3, which has PyTorch 1.13, and compares tensors llm.c-style: one line
// per tensor with its max abs diff, a failure naming every tensor outside tolerance.
import Foundation
import XCTest
import NN

enum TorchPython {
    static let python = "/usr/bin/python3"
    /// Tests/TorchParityTests/torch (not compiled: excluded in Package.swift).
    static let scriptDir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("torch").path

    struct Failure: Error, CustomStringConvertible { let description: String }

    struct Output { var status: Int32; var stdout: String; var stderr: String }

    static func run(_ arguments: [String]) throws -> Output {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: python)
        p.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        env["PYTHONDONTWRITEBYTECODE"] = "1"   // no __pycache__ inside Tests/
        env["OMP_NUM_THREADS"] = "1"
        p.environment = env
        let out = Pipe(), err = Pipe()
        p.standardOutput = out; p.standardError = err
        try p.run()
        // Read both pipes concurrently so neither can fill up and block the child.
        final class Box: @unchecked Sendable { var data = Data() }
        let errBox = Box()
        let group = DispatchGroup()
        group.enter()
        DispatchQueue.global().async { errBox.data = err.fileHandleForReading.readDataToEndOfFile(); group.leave() }
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        let errData = errBox.data
        p.waitUntilExit()
        return Output(status: p.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                      stderr: String(decoding: errData, as: UTF8.self))
    }

    /// nil when /usr/bin/python3 imports torch, otherwise why not.
    static let torchProblem: String? = {
        guard FileManager.default.isExecutableFile(atPath: python) else { return "\(python) does not exist" }
        do {
            let r = try run(["-c", "import torch, numpy"])
            return r.status == 0 ? nil : "\(python) cannot import torch: \(r.stderr.suffix(400))"
        } catch { return "cannot run \(python): \(error)" }
    }()

    /// Call first in every test. Fails (or, with RESNET_SKIP_TORCH=1, skips loudly) without torch.
    static func requireTorch() throws {
        guard let problem = torchProblem else { return }
        if ProcessInfo.processInfo.environment["RESNET_SKIP_TORCH"] == "1" {
            let msg = "\n!!!!!!!! TORCH PARITY NOT CHECKED (SKIPPED because RESNET_SKIP_TORCH=1) !!!!!!!!\n"
                + "!!!!!!!! \(problem)\n"
                + "!!!!!!!! This is NOT a pass: install PyTorch with `apt-get install -y python3-torch`.\n"
            print(msg)
            throw XCTSkip(msg)
        }
        let msg = "PyTorch parity cannot run: \(problem). Install it with `apt-get install -y python3-torch` "
            + "(for /usr/bin/python3), or set RESNET_SKIP_TORCH=1 to skip these checks explicitly."
        throw Failure(description: msg)   // a thrown error fails the test with this message
    }

    /// A fresh temporary folder, removed when the test process exits.
    static func makeTemporaryDirectory(_ label: String) throws -> String {
        let path = (NSTemporaryDirectory() as NSString).appendingPathComponent("torch-parity-\(label)-\(getpid())-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        temporaryDirectories.append(path)
        if temporaryDirectories.count == 1 {
            atexit { for d in TorchPython.temporaryDirectories { try? FileManager.default.removeItem(atPath: d) } }
        }
        return path
    }
    nonisolated(unsafe) static var temporaryDirectories: [String] = []
}

/// The files written by torch/reference.py, generated once per test process.
struct TorchReferenceFiles {
    let directory: String
    let seconds: Double
    var weights: String { directory + "/weights.safetensors" }
    var reference: String { directory + "/reference.safetensors" }
    var sgd: String { directory + "/sgd.safetensors" }

    private static let generated: Result<TorchReferenceFiles, Error> = Result {
        let dir = try TorchPython.makeTemporaryDirectory("reference")
        let t0 = Date()
        let r = try TorchPython.run([TorchPython.scriptDir + "/reference.py", dir])
        guard r.status == 0 else {
            throw TorchPython.Failure(description: "reference.py exited with status \(r.status):\n\(r.stdout)\n\(r.stderr)")
        }
        let files = TorchReferenceFiles(directory: dir, seconds: Date().timeIntervalSince(t0))
        print("torch reference: \(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) (\(String(format: "%.1f", files.seconds)) s)")
        return files
    }

    /// Requires torch (see `TorchPython.requireTorch`), then runs reference.py once.
    static func get() throws -> TorchReferenceFiles {
        try TorchPython.requireTorch()
        return try generated.get()
    }

    // Decoded once and shared by the tests (a debug build decodes ~45 MB in about a second).
    private static let weightTensors = Result { try SafeTensors.read(path: generated.get().weights).tensors }
    private static let referenceTensors = Result { try SafeTensors.read(path: generated.get().reference).tensors }
    /// weights.safetensors: the state_dict before the training forward.
    func weightTensors() throws -> [String: NamedTensor] { try Self.weightTensors.get() }
    /// reference.safetensors: x, labels, logits, loss, grad.*, after.*, logits_eval.
    func referenceTensors() throws -> [String: NamedTensor] { try Self.referenceTensors.get() }
}

/// Per-tensor comparison rows, printed as a table and failed together at the end.
final class ParityReport {
    struct Row {
        let name: String; let count: Int
        let maxAbs: Double, maxRef: Double
        let used: Double          // max over elements of |a - b| / bound: above 1 fails
        let worst: Int, failures: Int
        let actual: Float, expected: Float
    }
    private(set) var rows: [Row] = []
    let title: String
    init(_ title: String) { self.title = title }

    /// Element-wise |a - b| <= atol + rtol * |b| + scaled * max|b| (b: PyTorch's value).
    @discardableResult
    func check(_ name: String, _ actual: [Float], _ expected: [Float],
               rtol: Double = 0, atol: Double = 0, scaled: Double = 0) -> Bool {
        guard actual.count == expected.count else {
            rows.append(Row(name: name + " (SIZE \(actual.count) vs \(expected.count))", count: expected.count,
                            maxAbs: .infinity, maxRef: 0, used: .infinity, worst: -1,
                            failures: max(actual.count, expected.count), actual: .nan, expected: .nan))
            return false
        }
        var maxRef = 0.0
        for v in expected { maxRef = max(maxRef, Double(v.magnitude)) }
        let floor = atol + scaled * maxRef
        var maxAbs = 0.0, used = 0.0, worst = 0, failures = 0
        for i in 0..<expected.count {
            let a = Double(actual[i]), b = Double(expected[i])
            let d = (a - b).magnitude, bound = floor + rtol * b.magnitude
            if d > maxAbs || d.isNaN { maxAbs = d; worst = i }
            let u = d == 0 ? 0 : d / bound
            if u > used || u.isNaN { used = u }
            if !(d <= bound) { failures += 1 }
        }
        rows.append(Row(name: name, count: expected.count, maxAbs: maxAbs, maxRef: maxRef, used: used,
                        worst: worst, failures: failures,
                        actual: actual.isEmpty ? 0 : actual[worst], expected: expected.isEmpty ? 0 : expected[worst]))
        return failures == 0
    }

    /// Prints every row and fails with the list of tensors outside tolerance.
    func finish(file: StaticString = #filePath, line: UInt = #line) {
        func e(_ v: Double) -> String { String(format: "%.2e", v) }
        var text = "== \(title): \(rows.count) tensors; maxdiff = max |swift - torch|, "
            + "used = the largest diff as a fraction of its tolerance (> 1 fails)\n"
        for r in rows {
            text += (r.failures == 0 ? "  OK   " : "  FAIL ") + r.name.padding(toLength: 36, withPad: " ", startingAt: 0)
            text += " n=\(r.count)".padding(toLength: 10, withPad: " ", startingAt: 0)
            text += " maxdiff \(e(r.maxAbs))  max|torch| \(e(r.maxRef))  used \(String(format: "%.3f", r.used))"
            if r.failures > 0 { text += "  \(r.failures) outside; worst [\(r.worst)] swift \(r.actual) torch \(r.expected)" }
            text += "\n"
        }
        if let w = rows.max(by: { $0.used < $1.used }) {
            text += "== \(title): \(rows.filter { $0.failures > 0 }.count) of \(rows.count) tensors outside tolerance; "
                + "most of its tolerance used: \(w.name) \(String(format: "%.3f", w.used))"
        }
        print(text)
        let failed = rows.filter { $0.failures > 0 }
        if !failed.isEmpty {
            XCTFail("\(title): \(failed.count) of \(rows.count) tensors differ from PyTorch: "
                    + failed.map { "\($0.name) (maxdiff \(e($0.maxAbs)), max|torch| \(e($0.maxRef)), \($0.failures) of \($0.count) outside)" }
                        .joined(separator: "; "), file: file, line: line)
        }
    }
}

extension Dictionary where Key == String, Value == NamedTensor {
    /// The named tensor or a failure naming the file.
    func tensor(_ name: String, in file: String) throws -> NamedTensor {
        guard let t = self[name] else { throw TorchPython.Failure(description: "\(file): no tensor \(name)") }
        return t
    }
}
