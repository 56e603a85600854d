// Reads a file that may be gzip-compressed. zlib's gzread passes plain files through
// unchanged, so one reader serves both `train-images-idx3-ubyte` and `…-ubyte.gz`.
import CZlib
#if canImport(Glibc)
import Glibc
#endif

/// Returns `base` if it exists, else `base.gz` if that exists, else nil.
func existingFile(_ base: String) -> String? {
    if fileExists(base) { return base }
    if fileExists(base + ".gz") { return base + ".gz" }
    return nil
}

func fileExists(_ path: String) -> Bool {
    var st = stat()
    return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG
}

func directoryExists(_ path: String) -> Bool {
    var st = stat()
    return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
}

/// Sequential reader of the (decompressed) bytes of one file.
final class CompressedFileReader {
    let path: String
    private var file: gzFile?

    init(path: String) throws {
        self.path = path
        guard let f = gzopen(path, "rb") else {
            throw DatasetError("\(path): cannot open (\(String(cString: strerror(errno))))")
        }
        file = f
        gzbuffer(f, 1 << 17)
    }

    deinit { if let f = file { gzclose(f) } }

    /// Reads up to `count` bytes into `dst`; returns how many were read (< count only at end of file).
    func read(into dst: UnsafeMutableRawPointer, count: Int) throws -> Int {
        var done = 0
        while done < count {
            let want = UInt32(min(count - done, 1 << 30))
            let got = gzread(file, dst + done, want)
            if got < 0 { throw readError() }
            if got == 0 {
                // End of data, or a truncated gzip stream (zlib reports Z_BUF_ERROR then).
                var code: Int32 = 0
                _ = gzerror(file, &code)
                if code != Z_OK { throw readError() }
                break
            }
            done += Int(got)
        }
        return done
    }

    /// Reads and counts whatever bytes are left.
    func countRemaining() throws -> Int {
        let chunk = UnsafeMutableRawPointer.allocate(byteCount: 1 << 16, alignment: 16)
        defer { chunk.deallocate() }
        var total = 0
        while true {
            let got = try read(into: chunk, count: 1 << 16)
            total += got
            if got < 1 << 16 { return total }
        }
    }

    /// Reads the whole (remaining) content.
    func readAll() throws -> [UInt8] {
        var capacity = 1 << 20, used = 0
        var buffer = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 16)
        defer { buffer.deallocate() }
        while true {
            let got = try read(into: buffer + used, count: capacity - used)
            used += got
            if used < capacity { break }
            let bigger = UnsafeMutableRawPointer.allocate(byteCount: capacity * 2, alignment: 16)
            bigger.copyMemory(from: buffer, byteCount: used)
            buffer.deallocate()
            buffer = bigger
            capacity *= 2
        }
        if used == 0 { return [] }
        return [UInt8](unsafeUninitializedCapacity: used) { out, n in
            out.baseAddress!.initialize(from: buffer.assumingMemoryBound(to: UInt8.self), count: used)
            n = used
        }
    }

    private func readError() -> DatasetError {
        var code: Int32 = 0
        let msg = gzerror(file, &code).map { String(cString: $0) } ?? "unknown error"
        var reason = code == Z_ERRNO ? String(cString: strerror(errno)) : msg
        if reason.hasPrefix(path + ": ") { reason.removeFirst(path.count + 2) }  // zlib repeats the path
        return DatasetError("\(path): read failed (\(reason)); the file is corrupt or truncated")
    }
}
