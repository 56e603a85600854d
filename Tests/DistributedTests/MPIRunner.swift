// Launching real `mpirun` jobs (and plain processes) from tests, with a timeout.
// Shared by the Distributed tests (mpi-selftest) and the end-to-end tests of `resnet`.
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `mpirun` on PATH, or nil (tests skip then).
func mpirunPath() -> String? {
    findOnPath("mpirun") ?? findOnPath("mpiexec")
}

func findOnPath(_ name: String) -> String? {
    let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
    for dir in path.split(separator: ":") {
        let candidate = "\(dir)/\(name)"
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
    }
    return nil
}

/// The path of an executable product built with this test bundle (e.g. "mpi-selftest",
/// "resnet"), or nil. Looks, in order: in $BUILT_PRODUCTS_DIR; next to the running test bundle
/// (where `swift test` puts every product of the package); then in the package's build
/// directories found from this file's path (.build*, debug before release, newest first).
func findBuiltProduct(_ name: String, file: String = #filePath) -> String? {
    let fm = FileManager.default
    var dirs: [String] = []
    if let dir = ProcessInfo.processInfo.environment["BUILT_PRODUCTS_DIR"] { dirs.append(dir) }

    // Next to the test bundle: on Linux the bundle is an executable `<Package>PackageTests.xctest`
    // in the products dir; on macOS a bundle directory in it, run by xctest.
    var bundlePaths = [Bundle.main.bundlePath, Bundle(for: MPIRunnerAnchor.self).bundlePath]
    if let executable = Bundle.main.executablePath { bundlePaths.append(executable) }
    bundlePaths.append(CommandLine.arguments.first ?? "")
    for path in bundlePaths where !path.isEmpty {
        let url = URL(fileURLWithPath: path)
        if isDirectory(path) && url.pathExtension != "xctest" { dirs.append(path) }
        dirs.append(url.deletingLastPathComponent().path)
        // "…/debug/X.xctest/Contents/MacOS/X" → "…/debug"
        let components = url.pathComponents
        if let i = components.lastIndex(where: { $0.hasSuffix(".xctest") }), i > 0 {
            dirs.append(NSString.path(withComponents: Array(components[..<i])))
        }
    }
    for dir in dirs {
        let candidate = "\(dir)/\(name)"
        if fm.isExecutableFile(atPath: candidate) && !isDirectory(candidate) { return candidate }
    }

    // From the source tree: <package>/Tests/DistributedTests/MPIRunner.swift
    let packageRoot = URL(fileURLWithPath: file).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()
    var found: [(path: String, debug: Bool, modified: Date)] = []
    let scratchDirs = ((try? fm.contentsOfDirectory(atPath: packageRoot.path)) ?? [])
        .filter { $0.hasPrefix(".build") }
    for scratch in scratchDirs {
        let base = packageRoot.appendingPathComponent(scratch)
        var configDirs = ["debug", "release"].map { base.appendingPathComponent($0) }
        for sub in (try? fm.contentsOfDirectory(atPath: base.path)) ?? [] where sub.contains("-") {
            configDirs += ["debug", "release"].map { base.appendingPathComponent(sub).appendingPathComponent($0) }
        }
        for dir in configDirs {
            let candidate = dir.appendingPathComponent(name).path
            guard fm.isExecutableFile(atPath: candidate), !isDirectory(candidate) else { continue }
            let modified = (try? fm.attributesOfItem(atPath: candidate)[.modificationDate] as? Date) ?? nil
            found.append((candidate, dir.lastPathComponent == "debug", modified ?? .distantPast))
        }
    }
    return found.sorted { a, b in
        a.debug != b.debug ? a.debug : a.modified > b.modified
    }.first?.path
}

private final class MPIRunnerAnchor {}

private func isDirectory(_ path: String) -> Bool {
    var isDir: ObjCBool = false
    return FileManager.default.fileExists(atPath: path, isDirectory: &isDir) && isDir.boolValue
}

/// Runs `mpirun -np <np> --oversubscribe [--mca name value]... <executable> <args>` and waits
/// at most `timeout` seconds. `extraMCA` entries are "name=value" (e.g. "btl=tcp,self").
/// The environment is this process's (minus variables of an enclosing MPI job), plus
/// OMPI_ALLOW_RUN_AS_ROOT(_CONFIRM)=1 (containers run as root), plus `env`.
/// On overrun mpirun gets SIGTERM, then 5 s later its process group gets SIGKILL; the result
/// then has timedOut == true.
func runMPI(np: Int, executable: String, args: [String], extraMCA: [String] = [],
            env: [String: String] = [:], timeout: Double)
    -> (status: Int32, stdout: String, stderr: String, timedOut: Bool)
{
    guard let mpirun = mpirunPath() else {
        return (127, "", "mpirun not found on PATH", false)
    }
    var arguments = ["-np", String(np), "--oversubscribe"]
    for setting in extraMCA {
        guard let eq = setting.firstIndex(of: "=") else {
            preconditionFailure("extraMCA entry \"\(setting)\" is not name=value")
        }
        arguments += ["--mca", String(setting[..<eq]), String(setting[setting.index(after: eq)...])]
    }
    arguments.append(executable)
    arguments += args

    var environment = ProcessInfo.processInfo.environment.filter { key, _ in
        !(key.hasPrefix("OMPI_") || key.hasPrefix("PMIX_") || key.hasPrefix("PMI_"))
    }
    environment["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
    environment["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
    environment.merge(env) { _, new in new }
    return runProcess(mpirun, arguments, environment: environment, timeout: timeout)
}

/// Runs one process with the given environment (nil: inherit) and waits at most `timeout`
/// seconds; output goes through temporary files so a chatty child never blocks on a pipe.
func runProcess(_ executable: String, _ arguments: [String], environment: [String: String]? = nil,
                timeout: Double) -> (status: Int32, stdout: String, stderr: String, timedOut: Bool)
{
    let fm = FileManager.default
    let stamp = "\(getpid())-\(UInt64.random(in: 0 ... .max))"
    let outURL = fm.temporaryDirectory.appendingPathComponent("run-\(stamp).out")
    let errURL = fm.temporaryDirectory.appendingPathComponent("run-\(stamp).err")
    _ = fm.createFile(atPath: outURL.path, contents: nil)
    _ = fm.createFile(atPath: errURL.path, contents: nil)
    defer {
        try? fm.removeItem(at: outURL)
        try? fm.removeItem(at: errURL)
    }
    func read(_ url: URL) -> String {
        (try? String(contentsOf: url, encoding: .utf8)) ?? ""
    }

    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    if let environment { process.environment = environment }
    process.standardInput = FileHandle.nullDevice
    guard let outHandle = try? FileHandle(forWritingTo: outURL),
          let errHandle = try? FileHandle(forWritingTo: errURL) else {
        return (127, "", "cannot create output files in \(fm.temporaryDirectory.path)", false)
    }
    defer {
        try? outHandle.close()
        try? errHandle.close()
    }
    process.standardOutput = outHandle
    process.standardError = errHandle

    let exited = DispatchSemaphore(value: 0)
    process.terminationHandler = { _ in exited.signal() }
    do {
        try process.run()
    } catch {
        return (127, "", "cannot launch \(executable): \(error)", false)
    }

    var timedOut = false
    if exited.wait(timeout: .now() + timeout) == .timedOut {
        timedOut = true
        let pid = process.processIdentifier
        kill(pid, SIGTERM) // mpirun forwards this and cleans up its ranks
        if exited.wait(timeout: .now() + 5) == .timedOut {
            // Foundation starts the child in its own process group: take everything in it.
            kill(-pid, SIGKILL)
            kill(pid, SIGKILL)
            exited.wait()
        }
    }
    return (process.terminationStatus, read(outURL), read(errURL), timedOut)
}
