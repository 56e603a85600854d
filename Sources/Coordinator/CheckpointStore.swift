// Checkpoint files: safetensors (tensors under the seed's PyTorch names, so the weights inside
// load into PyTorch directly; optimizer state under `optimizer.`; everything else in
// `__metadata__`), written atomically (temp file in the same folder, fsync, rename, folder
// fsync) and protected by a CRC-32 over every byte of the file.
//
// The checksum lives in the metadata as "crc32:XXXXXXXX". It is computed over the whole file
// with that field holding "crc32:00000000" and then written in place (same length, so no offset
// moves); verifying repeats the computation. Any truncation or flipped bit is caught.
import NN
import CZlib
#if canImport(Glibc)
import Glibc
#endif

public struct CheckpointError: Error, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}

public struct CheckpointStore {
    public static let formatName = "resnet-swift-checkpoint"
    public static let formatVersion = "1"
    static let placeholder = "crc32:00000000"

    public let folder: String
    public let keep: Int

    public init(folder: String, keep: Int) {
        self.folder = folder; self.keep = max(keep, 1)
    }

    public static func fileName(step: Int) -> String {
        "ckpt-step-" + String(repeating: "0", count: max(0, 9 - String(step).count)) + String(step) + ".safetensors"
    }

    // MARK: Encoding and verification

    /// The file's bytes, checksum included.
    public static func encode(_ tensors: [NamedTensor], metadata: [String: String]) -> [UInt8] {
        var meta = metadata
        meta["format_name"] = formatName; meta["format_version"] = formatVersion
        meta["checksum"] = placeholder
        var bytes = SafeTensors.encode(tensors, metadata: meta)
        guard let at = find(Array(placeholder.utf8), in: bytes, limit: headerEnd(bytes)) else {
            preconditionFailure("checkpoint encoding lost its checksum placeholder")
        }
        let crc = crc32Of(bytes)
        let value = Array(("crc32:" + hex8(crc)).utf8)
        for i in 0..<value.count { bytes[at + i] = value[i] }
        return bytes
    }

    /// Decodes and checks a checkpoint: header, format, checksum. Errors name the file and the reason.
    public static func verify(_ bytes: [UInt8], file: String) throws -> (tensors: [String: NamedTensor], metadata: [String: String]) {
        let decoded: (tensors: [String: NamedTensor], order: [String], metadata: [String: String])
        do { decoded = try SafeTensors.decode(bytes, file: file) } catch {
            throw CheckpointError("\(file): bad header or layout: \(error)")
        }
        let meta = decoded.metadata
        guard meta["format_name"] == formatName else {
            throw CheckpointError("\(file): not a checkpoint of this program (no '\(formatName)' format tag; a plain weights file? use train.init_weights for those)")
        }
        guard meta["format_version"] == formatVersion else {
            throw CheckpointError("\(file): checkpoint format version \(meta["format_version"].map { clippedForMessage($0, limit: 40) } ?? "?"), this program reads \(formatVersion)")
        }
        guard let stored = meta["checksum"], stored.hasPrefix("crc32:"), stored.utf8.count == placeholder.utf8.count,
              let at = find(Array(stored.utf8), in: bytes, limit: headerEnd(bytes)) else {
            throw CheckpointError("\(file): checksum missing from the metadata")
        }
        var copy = bytes
        let zero = Array(placeholder.utf8)
        for i in 0..<zero.count { copy[at + i] = zero[i] }
        let actual = "crc32:" + hex8(crc32Of(copy))
        guard actual == stored else {
            throw CheckpointError("\(file): checksum mismatch (stored \(stored), computed \(actual)): the file is corrupt or truncated")
        }
        return (decoded.tensors, meta)
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
                _ = try CheckpointStore.verify(bytes, file: path)
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
                do { _ = try CheckpointStore.verify(try CheckpointStore.readFile(path), file: path); valid = true } catch {
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

    static func headerEnd(_ b: [UInt8]) -> Int {
        guard b.count >= 8 else { return 0 }
        var n: UInt64 = 0
        for i in 0..<8 { n |= UInt64(b[i]) << (8 * UInt64(i)) }
        return Int(min(UInt64(b.count), 8 &+ min(n, UInt64(b.count))))
    }

    static func find(_ needle: [UInt8], in hay: [UInt8], limit: Int) -> Int? {
        guard needle.count > 0, limit >= needle.count else { return nil }
        var i = 8
        while i + needle.count <= limit {
            if hay[i] == needle[0] && Array(hay[i..<(i + needle.count)]) == needle { return i }
            i += 1
        }
        return nil
    }

    static func crc32Of(_ b: [UInt8]) -> UInt32 {
        b.withUnsafeBufferPointer { p in
            var crc = crc32(0, nil, 0)
            var off = 0
            while off < p.count {   // zlib takes a 32-bit length
                let n = min(p.count - off, 1 << 30)
                crc = crc32(crc, p.baseAddress! + off, UInt32(n))
                off += n
            }
            return UInt32(crc)
        }
    }

    static func hex8(_ v: UInt32) -> String {
        let s = String(v, radix: 16)
        return String(repeating: "0", count: 8 - s.count) + s
    }

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
