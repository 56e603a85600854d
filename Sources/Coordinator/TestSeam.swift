// The one place where tests reach into a running binary, through environment variables named
// RESNET_TEST_*: nothing else in the program reads a test-only switch.
#if canImport(Glibc)
import Glibc
#endif

public enum TestSeam {
    /// RESNET_TEST_CHECKPOINT_PAUSE=SECONDS: a checkpoint write sleeps after its temporary file is
    /// written and fsynced, before the rename (the tests SIGKILL a rank inside this window).
    public static let checkpointPause: (() -> Void)? = {
        guard let v = getenv("RESNET_TEST_CHECKPOINT_PAUSE"), let s = Double(String(cString: v)), s > 0 else { return nil }
        return { usleep(UInt32(s * 1_000_000)) }
    }()

    /// RESNET_TEST_DUMP_ALL_RANKS=1: every rank writes its replica's weights after the final BN
    /// sync, not only rank 0 (the tests compare the replicas).
    public static var dumpAllRanks: Bool {
        guard let v = getenv("RESNET_TEST_DUMP_ALL_RANKS") else { return false }
        return String(cString: v) == "1"
    }
}
