// Launching real `mpirun` jobs from tests, with a timeout (plain processes and jobs watched while
// they run: ProcessSupport.swift). Shared by the Distributed tests (mpi-selftest) and the
// end-to-end tests of `resnet`.
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `mpirun` on PATH, or nil (tests skip then).
public func mpirunPath() -> String? {
    findOnPath("mpirun") ?? findOnPath("mpiexec")
}

public func findOnPath(_ name: String) -> String? {
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
/// directories (.build*, debug before release, newest first).
public func findBuiltProduct(_ name: String) -> String? {
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

    // From the source tree.
    let root = URL(fileURLWithPath: packageRoot)
    var found: [(path: String, debug: Bool, modified: Date)] = []
    let scratchDirs = ((try? fm.contentsOfDirectory(atPath: root.path)) ?? [])
        .filter { $0.hasPrefix(".build") }
    for scratch in scratchDirs {
        let base = root.appendingPathComponent(scratch)
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

/// The arguments of `mpirun -np <np> --oversubscribe [--mca name value]... <executable> <args>`.
/// `extraMCA` entries are "name=value" (e.g. "btl=tcp,self").
public func mpirunArguments(np: Int, executable: String, args: [String], extraMCA: [String] = []) -> [String] {
    var arguments = ["-np", String(np), "--oversubscribe"]
    for setting in extraMCA {
        guard let eq = setting.firstIndex(of: "=") else {
            preconditionFailure("extraMCA entry \"\(setting)\" is not name=value")
        }
        arguments += ["--mca", String(setting[..<eq]), String(setting[setting.index(after: eq)...])]
    }
    return arguments + [executable] + args
}

/// The environment of an `mpirun` started from a test: `base` (default: this process's
/// environment minus the variables of an enclosing MPI job, OMPI_* PMIX_* PMI_*), plus
/// OMPI_ALLOW_RUN_AS_ROOT(_CONFIRM)=1 (containers run as root), plus `env`.
public func mpirunEnvironment(_ env: [String: String] = [:], base: [String: String]? = nil) -> [String: String] {
    var environment = base ?? ProcessInfo.processInfo.environment.filter { key, _ in
        !(key.hasPrefix("OMPI_") || key.hasPrefix("PMIX_") || key.hasPrefix("PMI_"))
    }
    environment["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
    environment["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
    environment.merge(env) { _, new in new }
    return environment
}

/// Runs `mpirun -np <np> --oversubscribe [--mca name value]... <executable> <args>` in
/// mpirunEnvironment(env) and waits at most `timeout` seconds. On overrun mpirun gets SIGTERM,
/// then 5 s later it and its process group get SIGKILL, and so does every process whose arguments
/// contain `killMarker` (when given: something unique to this job, such as its run folder — Open
/// MPI puts each rank in a process group of its own); the result then has timedOut == true.
public func runMPI(np: Int, executable: String, args: [String], extraMCA: [String] = [],
            env: [String: String] = [:], timeout: Double, killMarker: String? = nil) -> ProcessResult {
    guard let mpirun = mpirunPath() else {
        return (127, "", "mpirun not found on PATH", false)
    }
    return runProcess(mpirun, mpirunArguments(np: np, executable: executable, args: args, extraMCA: extraMCA),
                      environment: mpirunEnvironment(env), timeout: timeout, killMarker: killMarker)
}
