// Reads a file that may be gzip-compressed. zlib's gzread passes plain files through
// unchanged, so one reader serves both `train-images-idx3-ubyte` and `…-ubyte.gz`.
// The reader is sequential and bounded: callers read a header, derive from it how many bytes
// must follow, read exactly those and then count at most a small margin past them, so a
// gzip bomb is never inflated beyond what its header announces (plus the margin).
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

    /// Reads `count` bytes, or fewer when the data ends first. The buffer grows with the bytes
    /// that actually arrive (never allocated from `count` alone), so a header announcing
    /// terabytes in front of a short file costs nothing, and no more than `count` bytes are
    /// ever decompressed.
    func read(upTo count: Int) throws -> [UInt8] {
        precondition(count >= 0)
        let chunk = 1 << 20
        let buf = UnsafeMutableRawPointer.allocate(byteCount: chunk, alignment: 16)
        defer { buf.deallocate() }
        var out: [UInt8] = []
        out.reserveCapacity(min(count, 1 << 20))   // grows geometrically with what arrives
        var left = count
        while left > 0 {
            let want = min(left, chunk)
            let got = try read(into: buf, count: want)
            out.append(contentsOf: UnsafeRawBufferPointer(start: buf, count: got))
            left -= got
            if got < want { break }
        }
        return out
    }

    /// How many bytes are left, counting at most `limit` + 1 of them: the result is the exact
    /// count when it is <= `limit`, else `limit` + 1 (and nothing past that is decompressed).
    func countRemaining(upTo limit: Int) throws -> Int {
        precondition(limit >= 0 && limit < Int.max)
        let chunk = 1 << 16
        let buf = UnsafeMutableRawPointer.allocate(byteCount: chunk, alignment: 16)
        defer { buf.deallocate() }
        var total = 0
        while total <= limit {
            let want = min(chunk, limit + 1 - total)
            let got = try read(into: buf, count: want)
            total += got
            if got < want { break }
        }
        return total
    }

    private func readError() -> DatasetError {
        var code: Int32 = 0
        let msg = gzerror(file, &code).map { String(cString: $0) } ?? "unknown error"
        var reason = code == Z_ERRNO ? String(cString: strerror(errno)) : msg
        if reason.hasPrefix(path + ": ") { reason.removeFirst(path.count + 2) }  // zlib repeats the path
        return DatasetError("\(path): read failed (\(reason)); the file is corrupt or truncated")
    }
}
