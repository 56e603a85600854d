// The command-line tool: `resnet train | eval | summary | bench | export`.
import ArgumentParser
import NN
import Training
import Distributed
import Coordinator
import Data
#if canImport(Glibc)
import Glibc
#endif

@main
struct ResnetCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "resnet",
        abstract: "Data-parallel ResNet training over MPI with hand-written backward passes.",
        discussion: "Run under mpirun/srun for N ranks; started directly it is a single process (no MPI).",
        subcommands: [Train.self, Eval.self, Summary.self, Bench.self, Export.self, SysInfo.self, ConfigReference.self, ConfigShow.self])

    static func main() {
        Preemption.hold()   // a SIGTERM before train's handler is in place waits (Preemption.swift)
        prepareOpenBLAS()
        if case .failure(let error) = KernelSet.environmentRequest {
            StandardError.print("error: \(error)")
            Glibc.exit(1)
        }
        if CommandLine.arguments.dropFirst().first == "train" {
            TestSeam.startupPause?()
            Preemption.install()
        } else {
            Preemption.release()
        }
        Self.main(nil)
    }
}

/// Settings OpenBLAS only reads when the library loads, so the program re-executes itself (once,
/// before MPI_Init: under mpirun the rank simply continues as the new image) when either changes:
///
/// - Threads. The layers run their own worker threads and call OpenBLAS single-threaded from
///   each. A pool of more than one OpenBLAS thread slows concurrent single-threaded calls down
///   (~15 % measured here) even after openblas_set_num_threads(1), so OPENBLAS_NUM_THREADS=1,
///   the requested count kept in RESNET_WORKER_THREADS.
/// - Kernel. When the kernel family OpenBLAS picked uses less than the CPU has (Prescott on an
///   AVX-512 Xeon it does not know), OPENBLAS_CORETYPE is set to the best one for the CPU's
///   feature bits (`BLASKernel`); a user-set OPENBLAS_CORETYPE always wins.
func prepareOpenBLAS() {
    var changed = false
    let threads = getenv("OPENBLAS_NUM_THREADS").map { String(cString: $0) }
    if threads != "1" {
        if getenv("RESNET_WORKER_THREADS") == nil { setenv("RESNET_WORKER_THREADS", threads ?? "auto", 1) }
        setenv("OPENBLAS_NUM_THREADS", "1", 1)
        changed = true
    }
    if getenv("OPENBLAS_CORETYPE") == nil {
        let detected = BLASKernel.coreInUse
        if let better = BLASKernel.upgrade(autodetected: detected, cpuLevel: BLASKernel.level(of: BLASKernel.cpuFeatures)) {
            setenv("OPENBLAS_CORETYPE", better, 1)
            setenv(BLASKernel.autodetectedVariable, detected, 1)
            changed = true
        }
    }
    if changed { execv("/proc/self/exe", CommandLine.unsafeArgv) }
    // exec failed (no /proc): carry on with OpenBLAS as loaded; results are the same, only slower.
}

/// Options every command that reads a run configuration shares.
struct ConfigOptions: ParsableArguments {
    @Option(name: .long, help: "YAML run configuration (see configs/).")
    var config: String?

    @Option(name: .customLong("set"), help: "Override one key, e.g. --set train.batch_size=64 (repeatable).")
    var overrides: [String] = []

    func load(extra: [String] = []) throws -> RunConfig {
        try RunConfig.load(path: config, overrides: overrides + extra)
    }
}

/// Runs `body` with a communicator (MPI under a launcher, else a world of one). Any error is
/// printed with the rank and ends the whole job: MPI_Abort under MPI, exit status 1 alone.
/// First of all, the ranks check that they run the same command (an MPMD launch with `train` on
/// one rank and `eval` on another would otherwise wait forever in mismatched collectives).
func withCommunicator(command: String, _ body: (Communicator) throws -> Void) {
    let comm: Communicator
    do { comm = try Launch.makeCommunicator() } catch {
        StandardError.print("error: \(error)")
        exit(1)
    }
    do {
        if comm.size > 1 {
            let all = try comm.allgather(Array(command.utf8))
            for (r, c) in all.enumerated() where c != all[0] {
                throw ReplicaMismatchError("rank \(r) runs 'resnet \(String(decoding: c, as: UTF8.self))' but rank 0 runs 'resnet \(String(decoding: all[0], as: UTF8.self))': every rank of a job must run the same command")
            }
        }
        try body(comm)
        try comm.barrier()
        try comm.finalize()
    } catch {
        if comm.size > 1 {
            StandardError.print("[rank \(comm.rank)] error: \(error)")
            comm.abort(code: 1)
        }
        StandardError.print("error: \(error)")
        exit(1)
    }
}

/// Worker threads for this rank: the config's value, else OPENBLAS_NUM_THREADS as the user (or
/// a launch script) set it — kept in RESNET_WORKER_THREADS across the re-exec, "auto" when unset
/// — else the cores divided among the ranks on this node.
func configureThreads(_ requested: Int) {
    if requested > 0 { Parallel.setWorkers(requested); return }
    let wish = (getenv("RESNET_WORKER_THREADS") ?? getenv("OPENBLAS_NUM_THREADS")).map { String(cString: $0) }
    if let w = wish, let n = Int(w), n > 0 { Parallel.setWorkers(n); return }
    let cores = Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
    let local = getenv("OMPI_COMM_WORLD_LOCAL_SIZE").flatMap { Int(String(cString: $0)) } ?? 1
    Parallel.setWorkers(max(1, cores / max(local, 1)))
}

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Train a ResNet (metrics, curves and weights go to output.dir).")
    @OptionGroup var options: ConfigOptions
    @Flag(help: "Check every layer's output and gradient for NaN/Inf and name the first layer where one appears.")
    var debug = false
    @Option(help: "'auto' (newest valid checkpoint in output.dir/checkpoints, else a fresh start) or a checkpoint file.")
    var resume: String?
    @Flag(help: "Start over in an output.dir that holds an earlier run, deleting its metrics, weights and checkpoints.")
    var overwrite = false
    @Option(help: "Write a Chrome trace (Perfetto, chrome://tracing) of the steps train.trace_steps to this file.")
    var trace: String?
    @Option(help: .hidden) var restartNote: String?   // launch/elastic.sh: why this launch is a restart (a metrics.jsonl record)

    func validate() throws {
        if overwrite && resume != nil {
            throw ValidationError("--overwrite and --resume cannot apply together: --resume continues the run in output.dir, --overwrite deletes it")
        }
        if let r = resume, r.isEmpty { throw ValidationError("--resume: expected 'auto' or a checkpoint file, got ''") }
        if let t = trace, t.isEmpty { throw ValidationError("--trace: expected a file to write the trace to, got ''") }
    }

    func run() throws {
        let config = try options.load(extra: debug ? ["train.debug=true"] : [])
        configureThreads(config.train.threads)
        withCommunicator(command: "train") { comm in
            let trainer = try Trainer(config: config, comm: comm)
            trainer.overwrite = overwrite
            trainer.traceFile = trace
            trainer.restartNote = restartNote
            if let r = resume { try trainer.resume(ResumeRequest(r)) }
            try trainer.run()
        }
    }
}

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Evaluate a weights file on the test split.")
    @OptionGroup var options: ConfigOptions
    @Option(help: "A safetensors weights file (PyTorch names); needs --config for the model and data.")
    var weights: String?
    @Option(help: "A checkpoint; its stored config gives the model and data (--set still overrides).")
    var checkpoint: String?

    func validate() throws {
        guard (weights == nil) != (checkpoint == nil) else { throw ValidationError("give exactly one of --weights FILE or --checkpoint FILE") }
        if checkpoint != nil && options.config != nil {
            throw ValidationError("--config cannot be used with --checkpoint: the checkpoint's stored config builds the model and names the data; change data keys with --set (e.g. --set data.root=DIR)")
        }
    }

    func run() throws {
        var config = try options.load()
        var source = weights ?? ""
        if let ckpt = checkpoint {
            config = try checkpointConfig(ckpt, overrides: options.overrides)
            source = ckpt
        } else if let w = weights {
            try checkWeightsMatchModel(w, config: config, configGiven: options.config != nil)
        }
        configureThreads(config.train.threads)
        withCommunicator(command: "eval") { comm in
            let r = try evaluateWeights(config: config, weights: source, comm: comm)
            if comm.rank == 0 {
                print(String(format: "test loss %.4f  accuracy %.4f  (%d images)", r.loss, r.accuracy, r.count))
            }
        }
    }
}

struct Summary: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the layer-shape table for an input size.")
    @OptionGroup var options: ConfigOptions
    @Option(help: "Input size CxHxW, e.g. 1x224x224 (default: in_channels x image_size x image_size).")
    var input: String?

    func run() throws {
        let config = try options.load()
        let plan = try RunPlan(config)
        let spec = plan.spec
        var shape = plan.inputShape
        if let s = input {
            let sides = 1...65_536
            let parts = s.split(separator: "x", omittingEmptySubsequences: false).map { Int($0) }
            guard parts.count == 3, let c = parts[0], let h = parts[1], let w = parts[2], c > 0, sides.contains(h), sides.contains(w) else {
                throw ValidationError("--input: expected CxHxW with positive integers (H and W at most \(sides.upperBound)), e.g. 1x224x224, got '\(clippedForMessage(s))'")
            }
            guard c == spec.inChannels else {
                throw ValidationError("--input has \(c) channel(s) but model.in_channels is \(spec.inChannels)")
            }
            shape = [c, h, w]
        }
        // Shapes only: nothing the size of the model is allocated, whatever model.width is.
        guard let footprint = ResNet.footprint(spec, input: shape) else {
            throw ValidationError("input \(shapeString(shape)) shrinks to nothing inside ResNet-\(spec.depth) (a stride-2 stem, a max pool and three stride-2 stages): use H and W of at least 32")
        }
        print("ResNet-\(spec.depth), width \(spec.width), input \(shapeString(shape))")
        for row in ResNet.summary(spec, input: shape) {
            print("\(row.name.padding(toLength: 3, withPad: " ", startingAt: 0)) \(row.type.padding(toLength: 20, withPad: " ", startingAt: 0)) output shape: \(shapeString(row.shape))")
        }
        print("parameters: \(footprint.parameters)")
    }
}

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Write a checkpoint's weights as a plain safetensors file for PyTorch.")
    @Argument(help: "The checkpoint file.") var checkpoint: String
    @Option(help: "Output weights file.") var out: String

    func validate() throws {
        guard !out.isEmpty else { throw ValidationError("--out: expected the path of the weights file to write, got ''") }
        guard !checkpoint.isEmpty else { throw ValidationError("expected a checkpoint file, got ''") }
    }

    func run() throws {
        do {
            let n = try exportWeights(checkpoint: checkpoint, to: out)
            print("wrote \(out) (\(n) tensors; load with model.load_state_dict(..., strict=True))")
        } catch {
            StandardError.print("error: \(error)")
            throw ExitCode(1)
        }
    }
}

struct ConfigReference: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "config-reference",
        abstract: "Print the table of config keys, defaults and meanings (the README's, made from the config schema).")

    func run() throws { print(RunConfig.referenceTable, terminator: "") }
}

struct ConfigShow: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "config-show",
        abstract: "Print the resolved config (--config and --set applied, defaults filled in) as YAML, or the values of the given keys, one per line.")
    @OptionGroup var options: ConfigOptions
    @Argument(help: "Keys such as train.batch_size (none: the whole config).") var keys: [String] = []

    func run() throws {
        let config = try options.load()
        guard !keys.isEmpty else { print(config.yamlString(), terminator: ""); return }
        let values = Dictionary(config.flatValues().map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a })
        for key in keys {
            guard let v = values[key] else { throw ValidationError("unknown config key '\(key)' (resnet config-reference lists them)") }
            print(v)
        }
    }
}

struct SysInfo: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "sysinfo",
        abstract: "Print the CPU, its vector features, the OpenBLAS kernel and the Swift kernel set in use, and check sgemm against a plain loop.")

    func run() throws {
        let f = BLASKernel.cpuFeatures
        let names: [(BLASKernel.Features, String)] = [(.avx, "avx"), (.avx2, "avx2"), (.fma, "fma"), (.avx512f, "avx512f"),
            (.avx512bw, "avx512bw"), (.avx512dq, "avx512dq"), (.avx512vl, "avx512vl"), (.avx512cd, "avx512cd"), (.avx512bf16, "avx512_bf16"),
            (.haswellExtras, "bmi1 bmi2 f16c lzcnt movbe")]
        print(BLASKernel.summary)
        print("cpu level: \(BLASKernel.level(of: f)) (\(BLASKernel.levelName(BLASKernel.level(of: f))))")
        print("cpu features: \(names.filter { f.contains($0.0) }.map(\.1).joined(separator: " "))")
        print("kernel: \(BLASKernel.coreInUse), level \(BLASKernel.level(ofCore: BLASKernel.coreInUse).map(String.init) ?? "unknown")")
        print("swift kernels: \(KernelSet.active.rawValue), \(KernelSet.active.description) (\(KernelSet.choice)); built: \(KernelSet.compiled.map(\.rawValue).joined(separator: " ")); this CPU runs: \(KernelSet.runnable(on: f).map(\.rawValue).joined(separator: " "))")
        let (err, gflops) = BLASKernel.sgemmCheck()
        print(String(format: "sgemm vs reference loop: max relative error %.2e; 1024^3 sgemm %.1f GFLOP/s on one core", err, gflops))
    }
}
