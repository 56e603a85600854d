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
