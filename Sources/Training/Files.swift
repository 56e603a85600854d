// Small file helpers: folders, whole-file writes that never leave a half-written file.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

public func makeDirectories(_ path: String) throws {
    do { try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true) } catch {
        throw TrainingError("cannot create folder \(path): \(error.localizedDescription)")
    }
}

/// Writes to PATH.tmp, then renames it over PATH (atomic on POSIX file systems).
public func writeTextFile(_ path: String, _ text: String) throws {
    let tmp = path + ".tmp"
    do { try Data(text.utf8).write(to: URL(fileURLWithPath: tmp)) } catch {
        unlink(tmp)
        throw TrainingError("cannot write \(path): \(error.localizedDescription)")
    }
    if rename(tmp, path) != 0 {
        let reason = String(cString: strerror(errno))
        unlink(tmp)
        throw TrainingError("cannot write \(path): \(reason)")
    }
}

/// Why a path from the user cannot name a file on Linux, checked before anything is created
/// (so a too-long `output.dir` fails at once instead of leaving half its folders behind):
/// nil when it is fine.
public func pathProblem(_ path: String) -> String? {
    let bytes = path.utf8
    if bytes.contains(0) { return "a path without NUL characters" }
    if bytes.count >= Int(PATH_MAX) { return "a path shorter than \(PATH_MAX) bytes (found \(bytes.count))" }
    for part in path.split(separator: "/") where part.utf8.count > Int(NAME_MAX) {
        return "a path whose every folder or file name is at most \(NAME_MAX) bytes (one has \(part.utf8.count))"
    }
    return nil
}
