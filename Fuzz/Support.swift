// Shared by every fuzz target (compiled into each): a per-process scratch folder on tmpfs,
// writing the input there (optionally gzip-compressed, so mutations reach the parsers behind
// zlib with valid streams), and the checks every target applies to a thrown error.
import Foundation
import CZlib

enum FuzzSupport {
    /// /dev/shm/resnet-fuzz-PID (or $TMPDIR), created once, removed at exit.
    static let folder: String = {
        let base = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
        let dir = base + "/resnet-fuzz-\(getpid())"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        atexit { try? FileManager.default.removeItem(atPath: FuzzSupport.folder) }
        return dir
    }()

    /// Writes `bytes` to `folder/name`, gzip-compressed when `gzip`; returns the path.
    @discardableResult
    static func write(_ bytes: UnsafeRawBufferPointer, to name: String, gzip: Bool) -> String {
        let path = folder + "/" + name
        if gzip {
            guard let f = gzopen(path, "wb1") else { fatalError("fuzz harness: cannot create \(path)") }
            if bytes.count > 0 { _ = gzwrite(f, bytes.baseAddress, UInt32(bytes.count)) }
            gzclose(f)
        } else {
            let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
            guard fd >= 0 else { fatalError("fuzz harness: cannot create \(path)") }
            var done = 0
            while done < bytes.count {
                let n = Foundation.write(fd, bytes.baseAddress! + done, bytes.count - done)
                guard n > 0 else { fatalError("fuzz harness: cannot write \(path)") }
                done += n
            }
            close(fd)
        }
        return path
    }

    /// The longest error message accepted: messages quote user input only clipped.
    static let maxMessage = 4096

    /// A thrown error is the expected outcome for most inputs; it must be one of the
    /// documented user-facing types (`allowed`) and its message must stay short.
    static func check(_ error: Error, allowed: [Any.Type]) {
        let t = type(of: error as Any)
        guard allowed.contains(where: { $0 == t }) else {
            fatalError("unexpected error type \(t): \(error)")
        }
        let message = String(describing: error)
        guard message.utf8.count <= maxMessage else {
            fatalError("error message of \(message.utf8.count) bytes (limit \(maxMessage)): \(message.prefix(600))…")
        }
    }
}
