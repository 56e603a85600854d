// One run per output folder, and nothing of an earlier run lost by accident.
//
// Rank 0 takes an exclusive lock (flock) on OUTPUT_DIR/.lock for the life of the process and
// writes who holds it (pid, host, start time) into the file; a second run on the same folder is
// refused naming that holder. The lock goes away with the process, also when it is killed, so a
// crashed run never leaves a stale lock behind.
//
// A folder that already holds a run (config.yaml, metrics.jsonl, model.safetensors or a
// checkpoint) is only written into when the user says how: `--resume auto|FILE` continues it,
// `--overwrite` deletes the earlier run's outputs first (so its checkpoints, whose step numbers
// would look newer, can never shadow or prune the new run's). Otherwise the run is refused
// before anything is written.
import Foundation
import Coordinator
#if canImport(Glibc)
import Glibc
#endif

public final class RunFolder {
    public let path: String
    private let fd: Int32

    /// The files of a run this program writes into its folder (checkpoints are under checkpoints/).
    static let runFiles = ["config.yaml", "metrics.jsonl", "model.safetensors", "curves.svg"]

    /// Locks `path` (creating it) for this process, or throws naming the holder.
    public init(locking path: String) throws {
        self.path = path
        try makeDirectories(path)
        let lockPath = path + "/.lock"
        let fd = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw TrainingError("cannot open \(lockPath): \(String(cString: strerror(errno)))") }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let reason = errno
            var buf = [UInt8](repeating: 0, count: 512)
            let n = pread(fd, &buf, buf.count, 0)
            close(fd)
            guard reason == EWOULDBLOCK else {
                throw TrainingError("cannot lock \(lockPath): \(String(cString: strerror(reason)))")
            }
            let holder = n > 0 ? String(decoding: buf[0..<n], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) : "another process"
            throw TrainingError("output.dir \(path) is in use by another run (\(holder)); wait for it to end or choose another output.dir")
        }
        self.fd = fd
        var host = [CChar](repeating: 0, count: 256)
        gethostname(&host, host.count - 1)
        let stamp = ISO8601DateFormatter().string(from: Date())
        let text = "pid \(getpid()) on host \(String(cString: host)), started \(stamp)\n"
        _ = ftruncate(fd, 0)
        _ = text.withCString { pwrite(fd, $0, strlen($0), 0) }
    }

    deinit { close(fd) }   // releases the lock

    /// What of an earlier run the folder holds, e.g. ["config.yaml", "metrics.jsonl", "2 checkpoints"].
    public func earlierRun() -> [String] {
        var found = RunFolder.runFiles.filter { FileManager.default.fileExists(atPath: path + "/" + $0) }
        let n = CheckpointStore(folder: path + "/checkpoints", keep: 1).candidates().count
        if n > 0 { found.append("\(n) checkpoint\(n == 1 ? "" : "s")") }
        let events = eventFiles().count
        if events > 0 { found.append("\(events) TensorBoard event file\(events == 1 ? "" : "s")") }
        return found
    }

    /// TensorBoard event files of earlier runs (output.tensorboard).
    func eventFiles() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? [])
            .filter { $0.hasPrefix("events.out.tfevents.") }.map { path + "/" + $0 }
    }

    /// Whether `file` lies directly in `folder` (both resolved: symlinks, "..", relative paths).
    static func sameFolder(_ file: String, _ folder: String) -> Bool {
        func resolved(_ p: String) -> String? {
            guard let r = realpath(p, nil) else { return nil }
            defer { free(r) }
            return String(cString: r)
        }
        guard let f = resolved(file), let d = resolved(folder) else { return false }
        return (f as NSString).deletingLastPathComponent == d
    }

    /// Deletes an earlier run's outputs (only the files this program writes).
    public func clearEarlierRun() throws {
        for name in RunFolder.runFiles where unlink(path + "/" + name) != 0 && errno != ENOENT {
            throw TrainingError("--overwrite: cannot delete \(path)/\(name): \(String(cString: strerror(errno)))")
        }
        for file in CheckpointStore(folder: path + "/checkpoints", keep: 1).candidates() + eventFiles() where unlink(file) != 0 && errno != ENOENT {
            throw TrainingError("--overwrite: cannot delete \(file): \(String(cString: strerror(errno)))")
        }
    }
}
