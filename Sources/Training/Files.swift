// Small file helpers: folders, whole-file writes that never leave a half-written file.
import Foundation

public func makeDirectories(_ path: String) throws {
    do { try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true) } catch {
        throw TrainingError("cannot create folder \(path): \(error.localizedDescription)")
    }
}

/// Writes to PATH.tmp then renames over PATH.
public func writeTextFile(_ path: String, _ text: String) throws {
    let tmp = path + ".tmp"
    do {
        try Data(text.utf8).write(to: URL(fileURLWithPath: tmp))
        if FileManager.default.fileExists(atPath: path) { _ = try FileManager.default.replaceItemAt(URL(fileURLWithPath: path), withItemAt: URL(fileURLWithPath: tmp)) }
        else { try FileManager.default.moveItem(atPath: tmp, toPath: path) }
    } catch {
        try? FileManager.default.removeItem(atPath: tmp)
        throw TrainingError("cannot write \(path): \(error.localizedDescription)")
    }
}
