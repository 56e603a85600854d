// SIGTERM / SIGINT (what SLURM sends before a job's time runs out, or Ctrl-C): the first
// signal asks the run to finish its step, write a checkpoint and exit 0; a second one exits at once.
#if canImport(Glibc)
import Glibc
#endif

public enum Preemption {
    nonisolated(unsafe) static var flag: sig_atomic_t = 0

    public static var requested: Bool { flag != 0 }

    public static func install() {
        for sig in [SIGTERM, SIGINT] {
            signal(sig) { s in
                if Preemption.flag != 0 { _exit(128 + s) }
                Preemption.flag = 1
            }
        }
    }
}

