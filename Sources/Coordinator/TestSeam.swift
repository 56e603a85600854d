// The one place where tests reach into a running binary, through environment variables named
// RESNET_TEST_*: nothing else in the program reads a test-only switch.
#if canImport(Glibc)
import Glibc
#endif

public enum TestSeam {
    /// RESNET_TEST_CHECKPOINT_PAUSE=SECONDS: a checkpoint write sleeps after its temporary file is
    /// written and fsynced, before the rename (the tests SIGKILL a rank inside this window).
    public static let checkpointPause = pause("RESNET_TEST_CHECKPOINT_PAUSE")

    /// RESNET_TEST_STARTUP_PAUSE=SECONDS: `resnet train` sleeps at start-up, its SIGTERM/SIGINT
    /// held, before the handler is installed (the tests signal it inside this window).
    public static let startupPause = pause("RESNET_TEST_STARTUP_PAUSE")

    /// A sleep of the seconds in `variable`, nil when it is unset or not a positive number.
    private static func pause(_ variable: String) -> (() -> Void)? {
        guard let v = getenv(variable), let s = Double(String(cString: v)), s > 0 else { return nil }
        return { usleep(UInt32(min(s, 3600) * 1_000_000)) }
    }

    /// RESNET_TEST_DUMP_ALL_RANKS=1: every rank writes its replica's weights after the final BN
    /// sync, not only rank 0 (the tests compare the replicas).
    public static var dumpAllRanks: Bool {
        guard let v = getenv("RESNET_TEST_DUMP_ALL_RANKS") else { return false }
        return String(cString: v) == "1"
    }
}
