// End-to-end tests of `resnet train` over real `mpirun` (issue 3, item 10): sync_bn makes N ranks
// match one process, replicas stay identical without it, a killed rank ends the job, a bad global
// batch is refused, only rank 0 writes, and a plain start is a single process without MPI.
//
// They run the RELEASE binary (debug builds are far too slow to train): resnetBinary() in
// ProcessSupport.swift ($RESNET_BIN, else <package>/.build/release/resnet, built once when
// missing). Every run is tiny (smoke config: ResNet-18 width 8 on 28x28 Fashion-MNIST, a handful of
// steps) and every subprocess has a timeout after which it (and any rank it left) is killed.
import Foundation
import XCTest
import TestSupport
import NN
#if canImport(Glibc)
import Glibc
#endif

final class TrainingMPITests: XCTestCase {

    // MARK: 1. sync_bn: 2 ranks match 1 process

    /// Global batch 64, shuffle and augment on, lr 0.01, 5 steps: with sync_bn the 2 ranks compute
    /// the same batch statistics and gradients as one process, up to float rounding.
    ///
    /// Why seed 2: this tiny net sits next to ReLU kinks. Any change in summation order (2 ranks,
    /// but equally 1 process with 2 BLAS/conv threads instead of 1) can flip the side of 0 on which
    /// one pre-activation falls; the gradient of everything upstream of that ReLU then jumps
    /// (measured: the BN biases upstream go from ~1e-6 to ~1e-3 relative in one step, the layers
    /// downstream stay at ~1e-7, and from there it grows ~10x per step). Against 2 ranks such a flip
    /// happens within 5 steps for 9 of the seeds 0-15 with im2col at the strided entries and dX by
    /// rotated kernels, and for 8 of them (0, 1, 4, 6, 7, 11, 13, 14) with F(4x4) stride 2 and the
    /// adjoint dX (2026-11-30): it is arithmetic, not MPI (most flip between 1 process on 1 and 2
    /// threads too), and which seeds flip moves with any change of rounding. Seed 2 flips in neither
    /// arithmetic, and with the second not against 4 ranks or 1 process on 2 or 3 threads either, in
    /// 5 or 6 steps (worst tensor ~3e-6). If this test fails after a change to the arithmetic, look at
    /// the per-tensor report: a kink flip shows as large differences only upstream of one BN/ReLU
    /// and not at step 1; a sync_bn bug shows from the first step (try train.max_steps=1).
    func testSyncBNTwoRanksMatchOneProcess() throws {
        _ = try resnetBinary()
        try requireMPI()
        let one = try cachedSingle(Self.equivalenceArgs(syncBN: true))
        let two = try cachedMPI(np: 2, Self.equivalenceArgs(syncBN: true))
        try assertWeightsClose(reference: one.dir, candidate: two.dir, tolerance: 1e-4,
                               label: "sync_bn, 1 process vs mpirun -np 2 (default transport)")
    }

    /// The same through the TCP transport used between cluster nodes.
    func testSyncBNTwoRanksMatchOneProcessOverTCP() throws {
        _ = try resnetBinary()
        try requireMPI()
        let one = try cachedSingle(Self.equivalenceArgs(syncBN: true))
        let two = try cachedMPI(np: 2, Self.equivalenceArgs(syncBN: true), mca: ["btl=tcp,self"])
        try assertWeightsClose(reference: one.dir, candidate: two.dir, tolerance: 1e-4,
                               label: "sync_bn, 1 process vs mpirun -np 2 --mca btl tcp,self")
    }

    /// Gradient accumulation (train.accumulate_steps): 1 process x 2 micro-batches of 32 gives the
    /// parameters of 2 ranks x 1 batch of 32 bit for bit, when the process has one worker thread
    /// as each rank does: each micro-batch's gradient is computed alone and the two are added, as
    /// the allreduce adds the ranks'. Without sync_bn: each batch norm sees one batch of 32 either
    /// way (with sync_bn the 2 ranks' BN would see 64 at once, which no accumulation can
    /// reproduce). BN running statistics are updated per micro-batch, so they differ by construction
    /// and are left out. The same process without accumulation (BN over 64) differs, so the
    /// comparison can fail.
    func testAccumulationMatchesMoreRanks() throws {
        _ = try resnetBinary()
        try requireMPI()
        let two = try assertAccumulationMatchesRanks(2)
        let whole = try cachedSingle(Self.equivalenceArgs(syncBN: false) + ["--set", "train.threads=1"])
        let (a, b) = (try Self.learnedParameters(two.dir), try Self.learnedParameters(whole.dir))
        XCTAssertGreaterThan(a.keys.map { relativeDifference(a[$0]!.values, b[$0]!.values) }.max() ?? 0, 1e-3,
                             "BN over 64 vs over 32 should differ")
    }

    /// The same with 4 ranks (oversubscribed, one worker thread each) against 1 process x 4
    /// micro-batches of 16: bit for bit, because the gradient sum adds the ranks in rank order,
    /// ((g0 + g1) + g2) + g3, exactly as accumulation adds the micro-batches (RankOrderSum.swift).
    /// With more than 2 terms the order shows in the bits (with 2 it cannot: a + b == b + a). Open
    /// MPI's own nonblocking allreduce, used before, sums 4 ranks around a ring, each slice starting
    /// at another rank, and fails this test.
    func testAccumulationMatchesFourRanksBitForBit() throws {
        _ = try resnetBinary()
        try requireMPI()
        try assertAccumulationMatchesRanks(4)
    }

    /// `mpirun -np N` of the equivalence recipe against 1 process (one worker thread) with N
    /// micro-batches: the learned tensors bit for bit. Returns the N-rank run.
    @discardableResult
    func assertAccumulationMatchesRanks(_ np: Int, file: StaticString = #filePath, line: UInt = #line) throws -> Run {
        let ranks = try cachedMPI(np: np, Self.equivalenceArgs(syncBN: false))
        let accumulated = try cachedSingle(Self.equivalenceArgs(syncBN: false) + ["--set", "train.accumulate_steps=\(np)", "--set", "train.threads=1"])
        assertBitIdentical(try Self.learnedParameters(ranks.dir), try Self.learnedParameters(accumulated.dir),
                           label: "1 process x \(np) micro-batches vs mpirun -np \(np)", file: file, line: line)
        return ranks
    }

    /// A run's learned tensors: its model file without the BN running statistics, which gradient
    /// accumulation updates per micro-batch (so they differ from N ranks' by construction).
    static func learnedParameters(_ dir: String) throws -> [String: NamedTensor] {
        try SafeTensors.read(path: dir + "/model.safetensors").tensors.filter { !$0.key.contains("running_") && !$0.key.hasSuffix("num_batches_tracked") }
    }

    // MARK: 2. Without sync_bn

    /// 60 steps on 2 ranks at the smoke recipe (lr 0.05): every step logged once, finite losses,
    /// the loss goes down and the final test accuracy is well above chance.
    func testWithoutSyncBNTwoRanksTrain() throws {
        _ = try resnetBinary()
        try requireMPI()
        let run = try cachedMPI(np: 2, ["--set", "train.max_steps=60", "--set", "train.sync_bn=false"])
        let lines = try metricsLines(run.dir)
        let steps = lines.filter { $0["kind"] as? String == "step" }
        XCTAssertEqual(steps.compactMap { $0["step"] as? Int }, Array(1...60), "one metrics line per step, in order")
        let losses = steps.map { ($0["loss"] as? Double) ?? .nan }
        XCTAssertTrue(losses.allSatisfy { $0.isFinite }, "non-finite training loss: \(losses)")
        if losses.count == 60 {
            let first = losses[0..<10].reduce(0, +) / 10, last = losses[50..<60].reduce(0, +) / 10
            XCTAssertLessThan(last, first, "training loss did not go down (first 10 steps \(first), last 10 \(last))")
        }
        // max_steps stops inside the epoch: its test evaluation is recorded as kind "eval".
        guard let epoch = lines.last(where: { $0["kind"] as? String == "eval" }) else {
            return XCTFail("metrics.jsonl has no eval line (test evaluation); stdout:\n\(run.stdout)")
        }
        let acc = (epoch["test_accuracy"] as? Double) ?? .nan
        let testLoss = (epoch["test_loss"] as? Double) ?? .nan
        XCTAssertTrue(testLoss.isFinite, "test loss \(testLoss)")
        XCTAssertGreaterThan(acc, 0.3, "test accuracy after 60 steps on 2 ranks")
        print("[TrainingMPITests] 2 ranks, no sync_bn, 60 steps: test accuracy \(acc), loss \(losses.first ?? .nan) -> \(losses.last ?? .nan)")
    }

    /// Without sync_bn each rank normalizes with its local batch (32 images): the trajectory and the
    /// BN running statistics (averaged over ranks at the end) differ from one process on the
    /// global batch — measurably, but not wildly (measured: running_mean up to ~0.3, running_var
    /// up to ~0.08 relative). Finite, positive variances, same step count.
    func testWithoutSyncBNRunningStatsAreRankAveragesOfLocalStats() throws {
        _ = try resnetBinary()
        try requireMPI()
        let one = try cachedSingle(Self.equivalenceArgs(syncBN: true))   // == sync_bn off for one process (test 6)
        let two = try cachedMPI(np: 2, Self.equivalenceArgs(syncBN: false))
        let a = try SafeTensors.read(path: one.dir + "/model.safetensors").tensors
        let b = try SafeTensors.read(path: two.dir + "/model.safetensors").tensors
        XCTAssertEqual(Set(a.keys), Set(b.keys), "tensor names differ")
        var worst = (name: "", rel: 0.0)
        var checked = 0
        for name in a.keys.sorted() where name.hasSuffix(".running_mean") || name.hasSuffix(".running_var") {
            guard let x = a[name], let y = b[name] else { continue }
            checked += 1
            XCTAssertTrue(y.values.allSatisfy { $0.isFinite }, "\(name): non-finite value on 2 ranks")
            if name.hasSuffix(".running_var") {
                XCTAssertTrue(y.values.allSatisfy { $0 > 0 }, "\(name): non-positive variance on 2 ranks")
            }
            let rel = relativeDifference(x.values, y.values)
            if rel > worst.rel { worst = (name, rel) }
            XCTAssertLessThan(rel, 1.0, "\(name): 2-rank running statistic is far from the 1-process one (relative \(rel))")
        }
        XCTAssertGreaterThan(checked, 0, "no running_mean/running_var tensors in model.safetensors")
        XCTAssertGreaterThan(worst.rel, 1e-3,
                             "without sync_bn the 2-rank BN running stats equal the 1-process ones (worst \(worst.name) \(worst.rel)): is sync_bn=false ignored?")
        for name in a.keys where name.hasSuffix("num_batches_tracked") {
            XCTAssertEqual(a[name]?.values, b[name]?.values, "\(name)")
        }
        print("[TrainingMPITests] no sync_bn, 2 ranks vs 1 process: BN running stats differ by up to \(worst.rel) (\(worst.name))")
    }

    /// Uses the test seam RESNET_TEST_DUMP_ALL_RANKS=1 (Sources/Coordinator/TestSeam.swift): when
    /// set, every rank r writes RUN_DIR/rank<r>.safetensors at the end, at the point where rank 0
    /// writes model.safetensors (after the final averaging of BN buffers), same tensors and names.
    /// Then, without sync_bn, the replicas must be bit-identical to each other and to
    /// model.safetensors.
    func testWithoutSyncBNReplicasAreIdentical() throws {
        _ = try resnetBinary()
        try requireMPI()
        let dir = try makeRunDir("dump")
        let r = runMPI(np: 2, executable: try resnetBinary(),
                       args: trainArgs(dir: dir, ["--set", "train.max_steps=3", "--set", "train.sync_bn=false",
                                                  "--set", "data.augment=true"]),
                       env: ["OPENBLAS_NUM_THREADS": "1", "RESNET_TEST_DUMP_ALL_RANKS": "1"], timeout: Self.mpiTimeout,
                       killMarker: dir)
        try assertSucceeded(r, "mpirun -np 2 with RESNET_TEST_DUMP_ALL_RANKS=1")
        let paths = (0..<2).map { "\(dir)/rank\($0).safetensors" }
        let missing = paths.filter { !FileManager.default.fileExists(atPath: $0) }
        guard missing.isEmpty else {
            return XCTFail("RESNET_TEST_DUMP_ALL_RANKS=1 did not make every rank write its weights: missing \(missing) (TestSeam.dumpAllRanks); files: \(listDir(dir))")
        }
        let r0 = try SafeTensors.read(path: paths[0]).tensors
        let r1 = try SafeTensors.read(path: paths[1]).tensors
        let model = try SafeTensors.read(path: dir + "/model.safetensors").tensors
        assertBitIdentical(r0, r1, label: "rank0.safetensors vs rank1.safetensors")
        assertBitIdentical(model, r0, label: "model.safetensors vs rank0.safetensors")
    }

    // MARK: 3. A killed rank ends the job

    /// SIGKILL rank 1 mid-run: mpirun must notice and exit non-zero within 30 s, taking rank 0 with it.
    func testKilledRankEndsTheJob() throws {
        #if os(Linux)
        let bin = try resnetBinary()
        try requireMPI()
        let dir = try makeRunDir("kill")
        let job = try BackgroundJob(mpiNP: 2, executable: bin,
                                    args: trainArgs(dir: dir, ["--set", "train.max_steps=2000", "--set", "train.log_every=1"]),
                                    environment: mpirunEnvironment(["OPENBLAS_NUM_THREADS": "1"]))
        defer { job.killEverything(matching: dir) }

        // Wait until training is under way (a few steps logged).
        let started = Date()
        while (try? metricsLines(dir).count) ?? 0 < 3 {
            if !job.isRunning {
                return XCTFail("the job ended before training started (status \(job.status)):\n\(job.stdout)\n\(job.stderr)")
            }
            if Date().timeIntervalSince(started) > 120 {
                return XCTFail("no 3 metrics lines after 120 s:\n\(job.stdout)\n\(job.stderr)")
            }
            usleep(100_000)
        }
        let ranks = rankProcesses(withArgumentContaining: dir)
        guard let victim = ranks[1], let survivor = ranks[0] else {
            return XCTFail("cannot find both rank processes (found ranks \(ranks.keys.sorted()))")
        }
        // Control for test 6: an MPI rank has OpenMPI's components (mca_*.so) mapped.
        XCTAssertTrue(mappedFiles(of: victim).contains { $0.contains("mca_") }, "rank 1 has no OpenMPI component mapped")

        XCTAssertEqual(kill(victim, SIGKILL), 0, "kill -9 \(victim)")
        let killedAt = Date()
        let exited = job.wait(timeout: 30)
        let seconds = Date().timeIntervalSince(killedAt)
        XCTAssertTrue(exited, "mpirun still running 30 s after rank 1 was killed\n\(job.stderr)")
        guard exited else { return }
        XCTAssertNotEqual(job.status, 0, "mpirun exited 0 although rank 1 was killed")
        // Rank 0 must not survive its job (it would wait forever in a collective).
        var survivorGone = false
        for _ in 0..<100 {
            if kill(survivor, 0) != 0 || isZombie(survivor) { survivorGone = true; break }
            usleep(100_000)
        }
        XCTAssertTrue(survivorGone, "rank 0 (pid \(survivor)) still alive 10 s after mpirun exited")
        print("[TrainingMPITests] rank 1 killed: mpirun exited with status \(job.status) after \(String(format: "%.1f", seconds)) s")
        #else
        throw XCTSkip("needs /proc (Linux)")
        #endif
    }

    // MARK: 4. Global batch not divisible by the world size

    /// Start-up agreement: ranks started with different configs (MPMD: two app contexts with
    /// different --set) refuse to start, naming the key that differs and both values.
    func testRanksWithDifferentConfigsRefuseToStart() throws {
        let bin = try resnetBinary()
        try requireMPI()
        for (other, expect) in [("optimizer.lr=0.02", "optimizer.lr is 0.05 on rank 0 but 0.02 on rank 1"),
                                ("model.width=4", "model.width is 8 on rank 0 but 4 on rank 1")] {
            let dir = try makeRunDir("mismatch")
            let a = trainArgs(dir: dir, ["--set", "train.max_steps=2"])
            let b = trainArgs(dir: dir, ["--set", "train.max_steps=2", "--set", other])
            let r = runProcess("/usr/bin/mpirun", ["--oversubscribe", "-np", "1", bin] + a + [":", "-np", "1", bin] + b,
                               environment: mpirunEnvironment(["OPENBLAS_NUM_THREADS": "1"]), timeout: 60, killMarker: dir)
            let text = r.stdout + r.stderr
            XCTAssertFalse(r.timedOut, "mpirun hung on mismatched configs")
            XCTAssertNotEqual(r.status, 0, "ranks with different configs (\(other)) started:\n\(text)")
            XCTAssertTrue(text.contains(expect), "no '\(expect)' mismatch named:\n\(text)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/model.safetensors"))
        }
    }

    func testGlobalBatchNotDivisibleByWorldSizeIsRefused() throws {
        _ = try resnetBinary()
        try requireMPI()
        let dir = try makeRunDir("batch63")
        let t0 = Date()
        let r = runMPI(np: 2, executable: try resnetBinary(),
                       args: trainArgs(dir: dir, ["--set", "train.batch_size=63"]),
                       env: ["OPENBLAS_NUM_THREADS": "1"], timeout: 60, killMarker: dir)
        let seconds = Date().timeIntervalSince(t0)
        XCTAssertFalse(r.timedOut, "mpirun hung on a bad batch size")
        XCTAssertNotEqual(r.status, 0, "a global batch of 63 on 2 ranks was accepted")
        XCTAssertLessThan(seconds, 30, "refusing the batch size took \(seconds) s")
        let text = r.stdout + r.stderr
        XCTAssertTrue(text.contains("divisible by the world size"), "no 'divisible by the world size' in the output:\n\(text)")
        XCTAssertTrue(text.contains("train.batch_size"), "the error does not name train.batch_size:\n\(text)")
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/model.safetensors"), "weights written by a refused run")
    }

    // MARK: 5. Only rank 0 reports and writes

    func testOnlyRankZeroReportsAndWrites() throws {
        _ = try resnetBinary()
        try requireMPI()
        let run = try cachedMPI(np: 2, Self.equivalenceArgs(syncBN: true))
        func count(_ needle: String, _ text: String) -> Int { text.components(separatedBy: needle).count - 1 }
        XCTAssertEqual(count("training ResNet", run.stdout), 1, "banner count in stdout:\n\(run.stdout)")
        XCTAssertTrue(run.stdout.contains("2 rank(s)"), "banner does not report 2 ranks:\n\(run.stdout)")
        // One progress stream: the last step is reported once (terminal or log-file style alike).
        XCTAssertEqual(count("5/5 epoch", run.stdout), 1, "progress of the last step, count in stdout:\n\(run.stdout)")
        XCTAssertEqual(count("final test accuracy", run.stdout), 1, "final line count in stdout:\n\(run.stdout)")
        XCTAssertEqual(count("wrote ", run.stdout), 1, "'wrote' line count in stdout:\n\(run.stdout)")

        let files = Set(listDir(run.dir))
        for needed in ["model.safetensors", "metrics.jsonl", "config.yaml", "curves.svg"] {
            XCTAssertTrue(files.contains(needed), "\(needed) missing from the run dir (\(files.sorted()))")
        }
        // One TensorBoard event file, rank 0's.
        let events = files.filter { $0.hasPrefix("events.out.tfevents.") }
        XCTAssertEqual(events.count, 1, "TensorBoard event files: \(events.sorted())")
        let allowed: Set<String> = ["model.safetensors", "metrics.jsonl", "config.yaml", "curves.svg", "checkpoints", ".lock"]
        XCTAssertTrue(files.subtracting(events).isSubset(of: allowed), "unexpected files in the run dir: \(files.subtracting(events).subtracting(allowed).sorted())")
        let checkpoints = listDir(run.dir + "/checkpoints")
        XCTAssertTrue(checkpoints.allSatisfy { !$0.contains("rank") && !$0.hasSuffix(".tmp") },
                      "per-rank or half-written checkpoint files: \(checkpoints)")
        // A second writer would duplicate, interleave or truncate lines.
        let lines = try metricsLines(run.dir)
        XCTAssertEqual(lines.filter { $0["kind"] as? String == "step" }.compactMap { $0["step"] as? Int }, [1, 2, 3, 4, 5])
        XCTAssertEqual(lines.filter { $0["kind"] as? String == "eval" }.count, 1, "one partial-epoch evaluation")
        XCTAssertEqual(lines.filter { $0["kind"] as? String == "system" }.count, 1, "one system record (CPU, BLAS kernel)")
        XCTAssertEqual(lines.count, 7, "metrics.jsonl lines")
    }

    // MARK: 6. Single process: no MPI

    /// Started without mpirun, with no OMPI_/PMIX_/PMI_/SLURM_ variables: one process trains and
    /// writes its outputs, and never initialises MPI (no OpenMPI component is ever loaded).
    func testSingleProcessRunsWithoutMPI() throws {
        let bin = try resnetBinary()
        let dir = try makeRunDir("single")
        let env = singleProcessEnvironment()
        XCTAssertTrue(env.keys.allSatisfy { !isLauncherVariable($0) })
        let job = try BackgroundJob(executable: bin,
                                    args: trainArgs(dir: dir, ["--set", "train.max_steps=60", "--set", "train.log_every=1"]),
                                    environment: env)
        defer { job.killEverything(matching: dir) }
        #if os(Linux)
        // While it trains, look inside: OpenMPI's components are dlopen'ed by MPI_Init.
        let started = Date()
        var sampled = false
        while job.isRunning && Date().timeIntervalSince(started) < 120 {
            if ((try? metricsLines(dir).count) ?? 0) >= 2 {
                let maps = mappedFiles(of: job.pid)
                let childEnv = processEnvironment(of: job.pid)
                if job.isRunning && !maps.isEmpty {
                    sampled = true
                    XCTAssertEqual(maps.filter { $0.contains("mca_") }, [], "OpenMPI components loaded: MPI_Init was called")
                    XCTAssertEqual(childEnv.keys.filter { isLauncherVariable($0) }.sorted(), [], "launcher variables in the child")
                }
                break
            }
            usleep(20_000)
        }
        XCTAssertTrue(sampled, "could not inspect the process while it trained (finished or stalled before 2 steps were logged)")
        #endif
        XCTAssertTrue(job.wait(timeout: Self.singleTimeout), "single-process run timed out")
        XCTAssertEqual(job.status, 0, "single-process run failed:\n\(job.stdout)\n\(job.stderr)")
        XCTAssertTrue(job.stdout.contains("1 rank(s)"), "banner does not report one rank:\n\(job.stdout)")
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/model.safetensors"))
        XCTAssertEqual(try metricsLines(dir).filter { $0["kind"] as? String == "step" }.count, 60)
    }

    /// In a world of one sync_bn has nothing to reduce: bit-identical weights with it on or off.
    func testSingleProcessSyncBNOnOffBitIdentical() throws {
        _ = try resnetBinary()
        let on = try cachedSingle(Self.equivalenceArgs(syncBN: true))
        let off = try cachedSingle(Self.equivalenceArgs(syncBN: false))
        let a = try SafeTensors.read(path: on.dir + "/model.safetensors").tensors
        let b = try SafeTensors.read(path: off.dir + "/model.safetensors").tensors
        assertBitIdentical(a, b, label: "1 process, sync_bn on vs off")
    }

    // MARK: - Run configurations

    static let singleTimeout = 180.0
    static let mpiTimeout = 240.0

    /// The equivalence recipe: synthetic data, global batch 64, shuffle + augment, lr 0.01, 5 steps.
    /// Not Fashion-MNIST: its exactly-zero backgrounds put whole regions of a channel at one
    /// pre-activation value next to the BN mean, so a rounding-level change of that mean flips the
    /// ReLU of the whole region at once; even 1 thread vs 2 threads in ONE process then differ by
    /// 25 % of the update after 5 steps (measured). Synthetic pixels have no such plateaus: 1 vs 2
    /// threads stay within 3e-6 per tensor after 5 steps even at lr 0.05 with momentum.
    static func equivalenceArgs(syncBN: Bool) -> [String] {
        ["--set", "train.sync_bn=\(syncBN)", "--set", "data.dataset=synthetic", "--set", "data.synthetic_count=1024",
         "--set", "data.augment=true", "--set", "data.shuffle=true", "--set", "train.seed=2",
         "--set", "optimizer.lr=0.01", "--set", "train.max_steps=5", "--set", "train.batch_size=64"]
    }

    // MARK: - Cached runs (several tests compare against the same run)

    struct Run { var dir: String; var stdout: String; var stderr: String }

    private static let runs = RunCache<Run>()
    private static let dirs = RunDirectories(prefix: "resnet-mpitest")

    func cachedSingle(_ extra: [String]) throws -> Run {
        try Self.cached(key: "single " + extra.joined(separator: " ")) { dir in
            let r = runProcess(try resnetBinary(), trainArgs(dir: dir, extra),
                               environment: singleProcessEnvironment(), timeout: Self.singleTimeout)
            return (r, "resnet train (1 process) " + extra.joined(separator: " "))
        }
    }

    func cachedMPI(np: Int, _ extra: [String], mca: [String] = []) throws -> Run {
        try Self.cached(key: "mpi \(np) \(mca) " + extra.joined(separator: " ")) { dir in
            let r = runMPI(np: np, executable: try resnetBinary(), args: trainArgs(dir: dir, extra),
                           extraMCA: mca, env: ["OPENBLAS_NUM_THREADS": "1"], timeout: Self.mpiTimeout, killMarker: dir)
            return (r, "mpirun -np \(np) \(mca) resnet train " + extra.joined(separator: " "))
        }
    }

    private static func cached(key: String, _ run: (String) throws -> (ProcessResult, String)) throws -> Run {
        try runs.value(for: key) {
            let dir = try dirs.make("cached")
            let (r, what) = try run(dir)
            if let problem = failureText(r, what) { throw TestFailure(problem) }
            return Run(dir: dir, stdout: r.stdout, stderr: r.stderr)
        }
    }

    override class func tearDown() {
        dirs.removeAll()
        runs.removeAll()
        super.tearDown()
    }

    func makeRunDir(_ tag: String) throws -> String {
        try Self.dirs.make(tag)
    }

    // MARK: - Checks

    func assertSucceeded(_ r: ProcessResult, _ what: String) throws {
        if let problem = Self.failureText(r, what) { throw TestFailure(problem) }
    }

    static func failureText(_ r: ProcessResult, _ what: String) -> String? {
        if r.timedOut { return "\(what): timed out and was killed\nstdout:\n\(r.stdout.suffix(3000))\nstderr:\n\(r.stderr.suffix(3000))" }
        if r.status != 0 { return "\(what): exit status \(r.status)\nstdout:\n\(r.stdout.suffix(3000))\nstderr:\n\(r.stderr.suffix(3000))" }
        return nil
    }

    /// Every tensor of candidate/model.safetensors within `tolerance` of reference's (same names
    /// and shapes); prints the worst tensors.
    /// `parametersOnly`: leave out BN's running statistics (buffers).
    func assertWeightsClose(reference: String, candidate: String, tolerance: Double, label: String, parametersOnly: Bool = false,
                            file: StaticString = #filePath, line: UInt = #line) throws {
        func load(_ dir: String) throws -> [String: NamedTensor] {
            let all = try SafeTensors.read(path: dir + "/model.safetensors").tensors
            return parametersOnly ? all.filter { !$0.key.contains("running_") && !$0.key.hasSuffix("num_batches_tracked") } : all
        }
        let a = try load(reference), b = try load(candidate)
        XCTAssertEqual(Set(a.keys), Set(b.keys), "\(label): tensor names differ", file: file, line: line)
        var rows: [(name: String, rel: Double)] = []
        for name in a.keys.sorted() {
            guard let x = a[name], let y = b[name] else { continue }
            XCTAssertEqual(x.shape, y.shape, "\(label): \(name) shape", file: file, line: line)
            XCTAssertTrue(y.values.allSatisfy { $0.isFinite }, "\(label): \(name) has non-finite values", file: file, line: line)
            rows.append((name, relativeDifference(x.values, y.values)))
        }
        rows.sort { $0.rel > $1.rel }
        let top = rows.prefix(5).map { "\($0.name) \(String(format: "%.2e", $0.rel))" }.joined(separator: ", ")
        print("[TrainingMPITests] \(label): \(rows.count) tensors, worst: \(top)")
        XCTAssertFalse(rows.isEmpty, "\(label): no tensors", file: file, line: line)
        let bad = rows.filter { !($0.rel <= tolerance) }
        XCTAssertTrue(bad.isEmpty,
                      "\(label): \(bad.count) tensor(s) beyond relative difference \(tolerance); worst: \(top)",
                      file: file, line: line)
    }

    func assertBitIdentical(_ a: [String: NamedTensor], _ b: [String: NamedTensor], label: String,
                            file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(Set(a.keys), Set(b.keys), "\(label): tensor names differ", file: file, line: line)
        XCTAssertFalse(a.isEmpty, "\(label): no tensors", file: file, line: line)
        var differing: [String] = []
        for name in a.keys.sorted() {
            guard let x = a[name], let y = b[name] else { continue }
            if x.shape != y.shape || x.values.map(\.bitPattern) != y.values.map(\.bitPattern) {
                differing.append("\(name) (max |diff| \(relativeDifference(x.values, y.values) ))")
            }
        }
        XCTAssertTrue(differing.isEmpty, "\(label): \(differing.count) tensor(s) not bit-identical: \(differing.prefix(8).joined(separator: ", "))",
                      file: file, line: line)
    }

}
