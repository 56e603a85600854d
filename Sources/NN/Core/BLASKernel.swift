// Which OpenBLAS kernel family runs the gemms, chosen from the CPU's feature bits rather than
// left to OpenBLAS's CPU-model table.
//
// Debian's OpenBLAS 0.3.21 (DYNAMIC_ARCH) picks its kernels by CPU model; a CPU newer than its
// table (e.g. an Intel Xeon with AVX-512 in a VM reporting the generic model string "Intel(R)
// Xeon(R) Processor") falls back to Prescott (SSE3): a 2048³ sgemm ran at 21 GFLOP/s on one core
// there against 118 with the SkylakeX kernel. The program reads the feature bits (cpuid + XCR0,
// `resnet_cpu_features` in the CBLAS shim) and, when the kernel OpenBLAS picked uses less than
// the CPU has, re-executes itself with OPENBLAS_CORETYPE set to the best kernel this OpenBLAS
// has for it (Sources/resnet, together with the OPENBLAS_NUM_THREADS pin). A user-set
// OPENBLAS_CORETYPE always wins.
import CBLAS
#if canImport(Glibc)
import Glibc
#endif

public enum BLASKernel {
    public struct Features: OptionSet, Sendable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        public static let avx = Features(rawValue: 1), avx2 = Features(rawValue: 2), fma = Features(rawValue: 4)
        public static let avx512f = Features(rawValue: 8), avx512bw = Features(rawValue: 16), avx512dq = Features(rawValue: 32)
        public static let avx512vl = Features(rawValue: 64), avx512cd = Features(rawValue: 128), avx512bf16 = Features(rawValue: 256)
        /// BMI1, BMI2, F16C, LZCNT and MOVBE: with AVX2 and FMA, what code built for Haswell may use.
        public static let haswellExtras = Features(rawValue: 512)
        static let avx512: Features = [.avx512f, .avx512bw, .avx512dq, .avx512vl, .avx512cd]
    }

    /// This CPU's features (with OS support for their registers).
    public static var cpuFeatures: Features { Features(rawValue: UInt32(resnet_cpu_features())) }

    /// Vector level: 0 SSE only, 1 AVX, 2 AVX2 + FMA, 3 AVX-512 (F, BW, DQ, VL, CD), 4 that + BF16.
    public static func level(of f: Features) -> Int {
        if f.isSuperset(of: Features.avx512.union([.avx2, .fma])) { return f.contains(.avx512bf16) ? 4 : 3 }
        if f.isSuperset(of: [.avx2, .fma]) { return 2 }
        return f.contains(.avx) ? 1 : 0
    }

    public static func levelName(_ l: Int) -> String {
        ["SSE", "AVX", "AVX2+FMA", "AVX-512", "AVX-512 with BF16"][max(0, min(l, 4))]
    }

    /// The level an OpenBLAS 0.3.x kernel family is written for (OpenBLAS's core names, any case);
    /// nil for a name this table does not know (then OpenBLAS's choice is left alone).
    public static func level(ofCore name: String) -> Int? {
        switch name.lowercased() {
        case "cooperlake", "sapphirerapids": return 4
        case "skylakex": return 3
        case "haswell", "zen", "excavator": return 2
        case "sandybridge", "bulldozer", "piledriver", "steamroller": return 1
        case "katmai", "coppermine", "northwood", "prescott", "banias", "atom", "core2", "penryn", "dunnington",
             "nehalem", "athlon", "opteron", "opteron_sse3", "barcelona", "bobcat", "nano", "generic": return 0
        default: return nil
        }
    }

    /// The best kernel family Debian's OpenBLAS 0.3.21 provides for a level (nil below AVX2,
    /// where its own choice is as good as any).
    public static func bestCore(forLevel l: Int) -> String? {
        switch l {
        case 4...: return "Cooperlake"
        case 3: return "SkylakeX"
        case 2: return "Haswell"
        default: return nil
        }
    }

    /// The kernel to request instead of the one OpenBLAS picked, or nil to keep it.
    public static func upgrade(autodetected: String, cpuLevel: Int) -> String? {
        guard let best = bestCore(forLevel: cpuLevel), let have = level(ofCore: autodetected), have < cpuLevel else { return nil }
        return best
    }

    /// The kernel family in use in this process.
    public static var coreInUse: String { openblas_get_corename().map { String(cString: $0) } ?? "unknown" }

    /// "0.3.21" from OpenBLAS's build configuration string.
    public static var openBLASVersion: String {
        guard let c = openblas_get_config() else { return "?" }
        let words = String(cString: c).split(separator: " ")
        return words.count > 1 && words[0] == "OpenBLAS" ? String(words[1]) : "?"
    }

    /// /proc/cpuinfo's model name ("AMD EPYC", "Intel(R) Xeon(R) Processor").
    public static var cpuModel: String {
        guard let f = fopen("/proc/cpuinfo", "r") else { return "unknown CPU" }
        defer { fclose(f) }
        var line = [CChar](repeating: 0, count: 512)
        while fgets(&line, Int32(line.count), f) != nil {
            let s = String(cString: line)
            if s.hasPrefix("model name"), let colon = s.firstIndex(of: ":") {
                return s[s.index(after: colon)...].trimmingCharacters(in: [" ", "\t", "\n"])
            }
        }
        return "unknown CPU"
    }

    /// Environment variable the launcher sets when it overrode OpenBLAS's pick (its value: what
    /// OpenBLAS picked by itself).
    public static let autodetectedVariable = "RESNET_BLAS_AUTODETECTED"

    /// How the kernel in use was chosen: "autodetected by OpenBLAS", "OPENBLAS_CORETYPE=X (set by the
    /// user)" or "chosen for AVX-512 (OpenBLAS alone picked Prescott)".
    public static var choice: String {
        let env = { (k: String) in getenv(k).map { String(cString: $0) } }
        if let detected = env(autodetectedVariable) {
            return "chosen for \(levelName(level(of: cpuFeatures))); OpenBLAS alone picked \(detected)"
        }
        if let user = env("OPENBLAS_CORETYPE") { return "OPENBLAS_CORETYPE=\(user) set by the user" }
        return "autodetected by OpenBLAS"
    }

    /// One line for logs: "CPU AMD EPYC (AVX-512 with BF16), OpenBLAS 0.3.21 kernel Cooperlake (autodetected by
    /// OpenBLAS); Swift kernels avx512 (chosen for this CPU)" (the second part from `KernelSet`).
    public static var summary: String {
        "CPU \(cpuModel) (\(levelName(level(of: cpuFeatures)))), OpenBLAS \(openBLASVersion) kernel \(coreInUse) (\(choice)); "
            + "Swift kernels \(KernelSet.active.rawValue) (\(KernelSet.choice))"
    }
}

extension BLASKernel {
    /// sgemm of the kernel in use against a plain Double loop, on odd sizes in all four
    /// transpose combinations (max |c - ref| / max |ref|), and the GFLOP/s of one 1024³ sgemm
    /// on one core (the sgemm peak figure `bench` compares against).
    public static func sgemmCheck() -> (maxRelativeError: Double, gflops: Double) {
        var rng = SplitMix64(seed: 0x5e33)
        let (m, n, k) = (37, 53, 71)
        let a = (0..<(m * k)).map { _ in rng.uniform(-1, 1) }, b = (0..<(k * n)).map { _ in rng.uniform(-1, 1) }
        var worst = 0.0
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            var c = [Float](repeating: 0, count: m * n)
            gemm(transA: ta, transB: tb, m: m, n: n, k: k, a: a, lda: ta ? m : k, b: b, ldb: tb ? k : n, c: &c, ldc: n)
            var err = 0.0, scale = 0.0
            for i in 0..<m {
                for j in 0..<n {
                    var ref = 0.0
                    for p in 0..<k {
                        let x = Double(ta ? a[p * m + i] : a[i * k + p]), y = Double(tb ? b[j * k + p] : b[p * n + j])
                        ref += x * y
                    }
                    err = max(err, abs(Double(c[i * n + j]) - ref)); scale = max(scale, abs(ref))
                }
            }
            worst = max(worst, err / max(scale, 1e-30))
        }
        let size = 1024
        let x = [Float](repeating: 0.5, count: size * size), y = [Float](repeating: 0.25, count: size * size)
        var z = [Float](repeating: 0, count: size * size)
        gemm(m: size, n: size, k: size, a: x, lda: size, b: y, ldb: size, c: &z, ldc: size)   // warm-up
        var t0 = timespec(), t1 = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t0)
        gemm(m: size, n: size, k: size, a: x, lda: size, b: y, ldb: size, c: &z, ldc: size)
        clock_gettime(CLOCK_MONOTONIC, &t1)
        let seconds = Double(t1.tv_sec - t0.tv_sec) + Double(t1.tv_nsec - t0.tv_nsec) * 1e-9
        return (worst, 2 * Double(size * size * size) / max(seconds, 1e-9) / 1e9)
    }
}

extension String {
    fileprivate func trimmingCharacters(in set: [Character]) -> String {
        var s = Substring(self)
        while let c = s.first, set.contains(c) { s = s.dropFirst() }
        while let c = s.last, set.contains(c) { s = s.dropLast() }
        return String(s)
    }
}

extension Substring {
    fileprivate func trimmingCharacters(in set: [Character]) -> String { String(self).trimmingCharacters(in: set) }
}
