// Error lines for the user, written to stderr at once (no buffering that a crash or an
// MPI_Abort could lose), one line per call.
#if canImport(Glibc)
import Glibc
#endif

public enum StandardError {
    /// Writes `s` and a newline (unless it ends in one) to stderr and flushes it.
    public static func print(_ s: String) {
        let line = s.hasSuffix("\n") ? s : s + "\n"
        line.withCString { p in _ = fputs(p, stderr) }
        fflush(stderr)
    }
}
