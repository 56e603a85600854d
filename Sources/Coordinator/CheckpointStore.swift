// The checkpoint files of a run folder: written atomically (temp file in the same folder,
// fsync, rename, folder fsync), found newest first, verified (`Checkpoint.verify`), and pruned
// to the newest `keep` valid ones. What a file holds and how it is encoded: Checkpoint.swift.
import NN
#if canImport(Glibc)
import Glibc
#endif

public struct CheckpointStore {
    public let folder: String
    public let keep: Int

    public init(folder: String, keep: Int) {
        self.folder = folder; self.keep = max(keep, 1)
    }

    public static func fileName(step: Int) -> String {
        "ckpt-step-" + String(repeating: "0", count: max(0, 9 - String(step).count)) + String(step) + ".safetensors"
    }

    // MARK: Folder

    /// Writes the checkpoint for `step` atomically, then deletes all but the newest `keep`.
    /// A failure (disk full, no permission) leaves earlier checkpoints untouched.
    @discardableResult
    public func write(step: Int, bytes: [UInt8]) throws -> String {
        do {
            try makeFolder(folder)
            let path = folder + "/" + CheckpointStore.fileName(step: step)
            try SafeTensors.writeAtomically(bytes, to: path, beforeRename: TestSeam.checkpointPause)
            prune(justWritten: path)
            return path
        } catch let e as CheckpointError { throw e } catch {
            throw CheckpointError("cannot write checkpoint into \(folder): \(error)")
        }
    }

    /// Checkpoint files in the folder, newest (highest step) first.
    public func candidates() -> [String] {
        var found: [(step: Int, name: String)] = []
        for name in entries() where name.hasPrefix("ckpt-step-") && name.hasSuffix(".safetensors") {
            if let step = Int(name.dropFirst("ckpt-step-".count).dropLast(".safetensors".count)) { found.append((step, name)) }
        }
        return found.sorted { $0.step > $1.step }.map { folder + "/" + $0.name }
    }

    private func entries() -> [String] {
        guard let dir = opendir(folder) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let e = readdir(dir) {
            names.append(withUnsafePointer(to: e.pointee.d_name) { String(cString: UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self)) })
        }
        return names
    }

    /// The newest checkpoint that verifies, with its bytes; each invalid newer one is reported
    /// through `log` ("... is invalid (reason); falling back to the previous one").
    public func newestValid(log: (String) -> Void) -> (path: String, bytes: [UInt8])? {
        for path in candidates() {
            do {
                let bytes = try CheckpointStore.readFile(path)
                _ = try Checkpoint.verify(bytes, file: path)
                return (path, bytes)
            } catch {
                log("checkpoint \(path) is invalid (\(error)); falling back to the previous one")
            }
        }
        return nil
    }

    /// Keeps the newest `keep` VALID checkpoints and deletes older valid ones. A file that does
    /// not verify is neither counted nor deleted (so retention can never remove the only good
    /// checkpoint while keeping a corrupt one, and the corrupt file stays for inspection); it is
    /// reported through `log`. Also removes temporary files a killed writer left (only rank 0
    /// writes, one checkpoint at a time, so none of them is in progress).
    func prune(justWritten: String? = nil, log: (String) -> Void = { StandardError.print($0) }) {
        var kept = 0
        for path in candidates() {
            let valid: Bool
            if path == justWritten { valid = true } else {
                do { _ = try Checkpoint.verify(try CheckpointStore.readFile(path), file: path); valid = true } catch {
                    log("checkpoint retention: \(path) is invalid (\(error)); not counted, left in place")
                    valid = false
                }
            }
            guard valid else { continue }
            if kept < keep { kept += 1 } else { unlink(path) }
        }
        for name in entries() where name.hasPrefix(".ckpt-step-") && name.contains(".tmp.") { unlink(folder + "/" + name) }
    }

    public static func readFile(_ path: String) throws -> [UInt8] {
        var st = stat()
        guard stat(path, &st) == 0 else {
            throw CheckpointError("\(path): cannot open: \(String(cString: strerror(errno)))")
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw CheckpointError("\(path): not a regular file") }
        guard let f = fopen(path, "rb") else {
            throw CheckpointError("\(path): cannot open: \(String(cString: strerror(errno)))")
        }
        defer { fclose(f) }
        let size = Int(st.st_size)
        var bytes = [UInt8](repeating: 0, count: size)
        let got = bytes.withUnsafeMutableBytes { fread($0.baseAddress, 1, size, f) }
        guard got == size else { throw CheckpointError("\(path): short read (\(got) of \(size) bytes)") }
        return bytes
    }

    // MARK: Helpers

    func makeFolder(_ path: String) throws {
        var cur = path.hasPrefix("/") ? "" : "."
        for part in path.split(separator: "/") {
            cur += "/" + part
            if mkdir(cur, 0o755) != 0 && errno != EEXIST {
                throw CheckpointError("cannot create folder \(cur): \(String(cString: strerror(errno)))")
            }
        }
    }
}
