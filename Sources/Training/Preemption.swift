// SIGTERM / SIGINT (what SLURM sends before a job's time runs out, or Ctrl-C): the first
// signal asks the run to finish its step, write a checkpoint and exit 0; a second one exits at once.
//
// `resnet train` holds both signals from its first line (`hold`, a blocked signal stays pending,
// also across the re-exec of prepareOpenBLAS) until the handler is in place (`install`): a
// SIGTERM during start-up (SLURM sends its --signal=TERM@N warning up to a minute early, so a
// requeued job can get it while its ranks start) becomes a stop after the first step, not a kill.
#if canImport(Glibc)
import Glibc
#endif

public enum Preemption {
    nonisolated(unsafe) static var flag: sig_atomic_t = 0

    public static var requested: Bool { flag != 0 }

    private static func mask(_ how: Int32) {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGTERM); sigaddset(&set, SIGINT)
        pthread_sigmask(how, &set, nil)
    }

    /// Blocks SIGTERM and SIGINT in this (the main) thread: they wait, pending, for `install` or `release`.
    public static func hold() { mask(SIG_BLOCK) }

    /// Unblocks them with their default action (commands that do not checkpoint).
    public static func release() { mask(SIG_UNBLOCK) }

    /// The handler, then unblocks: a signal held since `hold` is delivered to it now.
    public static func install() {
        for sig in [SIGTERM, SIGINT] {
            signal(sig) { s in
                if Preemption.flag != 0 { _exit(128 + s) }
                Preemption.flag = 1
            }
        }
        release()
    }
}
