// Which instruction set this program's own SIMD loops run with, chosen at run time from the CPU's
// feature bits (as BLASKernel.swift does for OpenBLAS's gemms).
//
// Swift compiles SIMD8<Float> for the target's baseline: on x86-64, SSE2, so one 8-lane operation is
// two 4-lane instructions and a 6x6 Winograd tile of 8 lanes does not fit the 16 registers. Swift has
// no per-function target attribute, so the hottest of these loops live in their own module,
// Sources/Kernels (Winograd F(4x4, 3x3)'s transforms and kernel-gradient lanes, batch norm's passes,
// max pooling's stride-2 scan), which
// Package.swift builds three times: for the baseline (`Kernels`), for Haswell (AVX2 + FMA,
// `KernelsAVX2`) and for Skylake-AVX512 (`KernelsAVX512`); the two extra folders are links to the
// first, so the code has one home. The wrappers below call the copy this CPU can run.
//
// Every set does the same operations in the same order (Swift does not contract a * b + c into an
// FMA), so the results are the same bits whichever set runs (NNTests/KernelSetTests).
//
// RESNET_KERNELS=baseline|avx2|avx512 chooses by hand, as OPENBLAS_CORETYPE does for OpenBLAS; the
// command line refuses a set this binary or this CPU does not have. `RESNET_PORTABLE_BUILD=1 swift
// build` builds the baseline alone (no unsafe compiler flags, for use as a versioned dependency).
import Kernels
#if RESNET_KERNEL_SETS   // Package.swift defines it when it builds the two (not canImport: a stale module may linger in .build)
import KernelsAVX2
import KernelsAVX512
#endif
#if canImport(Glibc)
import Glibc
#endif

public enum KernelSet: String, CaseIterable, Sendable {
    case baseline, avx2, avx512

    /// The environment variable that chooses a set by hand.
    public static let variable = "RESNET_KERNELS"

    /// The sets built into this binary, lowest first.
    public static var compiled: [KernelSet] {
        #if RESNET_KERNEL_SETS
        return [.baseline, .avx2, .avx512]
        #else
        return [.baseline]
        #endif
    }

    /// What a CPU must have to run this set (the features LLVM's haswell and skylake-avx512 targets
    /// use for this code, with the OS saving their registers).
    public var required: BLASKernel.Features {
        switch self {
        case .baseline: return []
        case .avx2: return [.avx, .avx2, .fma, .haswellExtras]
        case .avx512: return BLASKernel.Features.avx512.union([.avx, .avx2, .fma, .haswellExtras])
        }
    }

    /// What the set was built for, e.g. "AVX-512 (Skylake-AVX512) build".
    public var description: String {
        switch self {
        case .baseline: return "baseline build (SSE2 on x86-64)"
        case .avx2: return "AVX2+FMA (Haswell) build"
        case .avx512: return "AVX-512 (Skylake-AVX512) build"
        }
    }

    /// The sets of this binary that a CPU with features `f` runs, lowest first.
    public static func runnable(on f: BLASKernel.Features) -> [KernelSet] {
        compiled.filter { f.isSuperset(of: $0.required) }
    }

    /// The user's choice in `value` (RESNET_KERNELS): nil for none, else the set, or why it cannot run here.
    public static func requested(_ value: String?, features f: BLASKernel.Features) -> Result<KernelSet?, KernelSetError> {
        guard let value, !value.isEmpty else { return .success(nil) }
        guard let set = KernelSet(rawValue: value.lowercased()) else {
            return .failure(KernelSetError(message: "\(variable)=\(value): expected one of \(allCases.map(\.rawValue).joined(separator: ", "))"))
        }
        guard compiled.contains(set) else {
            return .failure(KernelSetError(message: "\(variable)=\(value): this binary was built without it (built: \(compiled.map(\.rawValue).joined(separator: ", ")); RESNET_PORTABLE_BUILD builds the baseline alone)"))
        }
        guard f.isSuperset(of: set.required) else {
            return .failure(KernelSetError(message: "\(variable)=\(value): this CPU (\(BLASKernel.levelName(BLASKernel.level(of: f)))) cannot run it; it runs \(runnable(on: f).map(\.rawValue).joined(separator: ", "))"))
        }
        return .success(set)
    }

    /// RESNET_KERNELS as this process found it, checked: the command line stops on a refusal at start;
    /// the library then runs the best set instead.
    public static let environmentRequest = requested(getenv(variable).map { String(cString: $0) }, features: BLASKernel.cpuFeatures)

    /// The set in use: RESNET_KERNELS if it can run, else the best this binary has for the CPU.
    /// Tests switch it to compare the sets.
    nonisolated(unsafe) public static var active: KernelSet = {
        if case .success(let set?) = environmentRequest { return set }
        return runnable(on: BLASKernel.cpuFeatures).last ?? .baseline
    }()

    /// How the set in use was chosen, for logs.
    public static var choice: String {
        if case .success(let set?) = environmentRequest, set == active { return "\(variable)=\(set.rawValue) set by the user" }
        return "chosen for this CPU"
    }
}

public struct KernelSetError: Error, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}

// MARK: - The dispatched kernels (Sources/Kernels documents each)

/// `Kernels.winograd43TransformWeights` in the active set.
public func winograd43TransformWeights(_ w: UnsafePointer<Float>, cout: Int, cin: Int, into u: UnsafeMutablePointer<Float>,
                                       forInputGradient: Bool, rows: Range<Int>, band: Int? = nil) {
    switch KernelSet.active {
    #if RESNET_KERNEL_SETS
    case .avx512: KernelsAVX512.winograd43TransformWeights(w, cout: cout, cin: cin, into: u, forInputGradient: forInputGradient, rows: rows, band: band)
    case .avx2: KernelsAVX2.winograd43TransformWeights(w, cout: cout, cin: cin, into: u, forInputGradient: forInputGradient, rows: rows, band: band)
    #endif
    default: Kernels.winograd43TransformWeights(w, cout: cout, cin: cin, into: u, forInputGradient: forInputGradient, rows: rows, band: band)
    }
}

/// `Kernels.winograd43InputTransform` in the active set.
func winograd43InputTransform(_ x: UnsafePointer<Float>, _ v: UnsafeMutablePointer<Float>, _ pbuf: UnsafeMutablePointer<Float>,
                              _ g: Winograd43Geometry, plane: Int, cin: Int, first: Int, nt: Int,
                              channels: Range<Int>? = nil, ld: Int? = nil) {
    switch KernelSet.active {
    #if RESNET_KERNEL_SETS
    case .avx512: KernelsAVX512.winograd43InputTransform(x, v, pbuf, h: g.h, w: g.w, tw: g.tw, tpi: g.tpi, lw: g.lw, plane: plane, cin: cin,
                                                         first: first, nt: nt, channels: channels, ld: ld)
    case .avx2: KernelsAVX2.winograd43InputTransform(x, v, pbuf, h: g.h, w: g.w, tw: g.tw, tpi: g.tpi, lw: g.lw, plane: plane, cin: cin,
                                                     first: first, nt: nt, channels: channels, ld: ld)
    #endif
    default: Kernels.winograd43InputTransform(x, v, pbuf, h: g.h, w: g.w, tw: g.tw, tpi: g.tpi, lw: g.lw, plane: plane, cin: cin,
                                              first: first, nt: nt, channels: channels, ld: ld)
    }
}

/// `Kernels.winograd43OutputTransform` in the active set.
func winograd43OutputTransform(_ m: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ bias: UnsafePointer<Float>?,
                               plane: Int, cout: Int, h: Int, w: Int, tw: Int, tpi: Int, first: Int, nt: Int,
                               channels: Range<Int>? = nil, ld: Int? = nil) {
    switch KernelSet.active {
    #if RESNET_KERNEL_SETS
    case .avx512: KernelsAVX512.winograd43OutputTransform(m, y, bias, plane: plane, cout: cout, h: h, w: w, tw: tw, tpi: tpi,
                                                          first: first, nt: nt, channels: channels, ld: ld)
    case .avx2: KernelsAVX2.winograd43OutputTransform(m, y, bias, plane: plane, cout: cout, h: h, w: w, tw: tw, tpi: tpi,
                                                      first: first, nt: nt, channels: channels, ld: ld)
    #endif
    default: Kernels.winograd43OutputTransform(m, y, bias, plane: plane, cout: cout, h: h, w: w, tw: tw, tpi: tpi,
                                               first: first, nt: nt, channels: channels, ld: ld)
    }
}

/// `Kernels.winograd43OutputGradientTransform` in the active set.
func winograd43OutputGradientTransform(_ dy: UnsafePointer<Float>, _ d: UnsafeMutablePointer<Float>, _ qbuf: UnsafeMutablePointer<Float>,
                                       _ g: Winograd43Geometry, plane: Int, cout: Int, first: Int, nt: Int,
                                       channels: Range<Int>? = nil, ld: Int? = nil) {
    switch KernelSet.active {
    #if RESNET_KERNEL_SETS
    case .avx512: KernelsAVX512.winograd43OutputGradientTransform(dy, d, qbuf, h: g.h, w: g.w, tw: g.tw, tpi: g.tpi, lw: g.lw, plane: plane,
                                                                  cout: cout, first: first, nt: nt, channels: channels, ld: ld)
    case .avx2: KernelsAVX2.winograd43OutputGradientTransform(dy, d, qbuf, h: g.h, w: g.w, tw: g.tw, tpi: g.tpi, lw: g.lw, plane: plane,
                                                              cout: cout, first: first, nt: nt, channels: channels, ld: ld)
    #endif
    default: Kernels.winograd43OutputGradientTransform(dy, d, qbuf, h: g.h, w: g.w, tw: g.tw, tpi: g.tpi, lw: g.lw, plane: plane,
                                                       cout: cout, first: first, nt: nt, channels: channels, ld: ld)
    }
}

/// `Kernels.winograd43InputGradientTransform` in the active set.
func winograd43InputGradientTransform(_ m: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>, _ rbuf: UnsafeMutablePointer<Float>,
                                      _ g: Winograd43Geometry, plane: Int, cin: Int, images: Range<Int>, ld: Int) {
    switch KernelSet.active {
    #if RESNET_KERNEL_SETS
    case .avx512: KernelsAVX512.winograd43InputGradientTransform(m, dx, rbuf, h: g.h, w: g.w, tw: g.tw, tpi: g.tpi, lw: g.lw, plane: plane,
                                                                 cin: cin, images: images, ld: ld)
    case .avx2: KernelsAVX2.winograd43InputGradientTransform(m, dx, rbuf, h: g.h, w: g.w, tw: g.tw, tpi: g.tpi, lw: g.lw, plane: plane,
                                                             cin: cin, images: images, ld: ld)
    #endif
    default: Kernels.winograd43InputGradientTransform(m, dx, rbuf, h: g.h, w: g.w, tw: g.tw, tpi: g.tpi, lw: g.lw, plane: plane,
                                                      cin: cin, images: images, ld: ld)
    }
}

/// `Kernels.addKernelGradients43` in the active set.
func addKernelGradients43(_ partials: [UnsafePointer<Float>], plane: Int, dw: UnsafeMutablePointer<Float>, kernels: Range<Int>) {
    switch KernelSet.active {
    #if RESNET_KERNEL_SETS
    case .avx512: KernelsAVX512.addKernelGradients43(partials, plane: plane, dw: dw, kernels: kernels)
    case .avx2: KernelsAVX2.addKernelGradients43(partials, plane: plane, dw: dw, kernels: kernels)
    #endif
    default: Kernels.addKernelGradients43(partials, plane: plane, dw: dw, kernels: kernels)
    }
}

/// `Kernels.winograd43s2TransformWeights` in the active set.
func winograd43s2TransformWeights(_ w: UnsafePointer<Float>, cout: Int, cin: Int, into u: UnsafeMutablePointer<Float>,
                                  transposed: Bool, rows: Range<Int>) {
    switch KernelSet.active {
    #if RESNET_KERNEL_SETS
    case .avx512: KernelsAVX512.winograd43s2TransformWeights(w, cout: cout, cin: cin, into: u, transposed: transposed, rows: rows)
    case .avx2: KernelsAVX2.winograd43s2TransformWeights(w, cout: cout, cin: cin, into: u, transposed: transposed, rows: rows)
    #endif
    default: Kernels.winograd43s2TransformWeights(w, cout: cout, cin: cin, into: u, transposed: transposed, rows: rows)
    }
}

/// `Kernels.winograd43s2InputTransform` in the active set.
func winograd43s2InputTransform(_ x: UnsafePointer<Float>, _ v: UnsafeMutablePointer<Float>, _ pbuf: UnsafeMutablePointer<Float>,
                                _ g: Winograd43s2Geometry, plane: Int, cin: Int, images: Range<Int>, ld: Int) {
    switch KernelSet.active {
    #if RESNET_KERNEL_SETS
    case .avx512: KernelsAVX512.winograd43s2InputTransform(x, v, pbuf, h: g.h, w: g.w, th: g.th, tw: g.tw, lw: g.lw, plane: plane, cin: cin, images: images, ld: ld)
    case .avx2: KernelsAVX2.winograd43s2InputTransform(x, v, pbuf, h: g.h, w: g.w, th: g.th, tw: g.tw, lw: g.lw, plane: plane, cin: cin, images: images, ld: ld)
    #endif
    default: Kernels.winograd43s2InputTransform(x, v, pbuf, h: g.h, w: g.w, th: g.th, tw: g.tw, lw: g.lw, plane: plane, cin: cin, images: images, ld: ld)
    }
}

/// `Kernels.winograd43s2OutputTransform` in the active set.
func winograd43s2OutputTransform(_ m: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ bias: UnsafePointer<Float>?,
                                 plane: Int, _ g: Winograd43s2Geometry, cout: Int, images: Range<Int>, ld: Int) {
    switch KernelSet.active {
    #if RESNET_KERNEL_SETS
    case .avx512: KernelsAVX512.winograd43s2OutputTransform(m, y, bias, plane: plane, cout: cout, ho: g.ho, wo: g.wo, th: g.th, tw: g.tw, images: images, ld: ld)
    case .avx2: KernelsAVX2.winograd43s2OutputTransform(m, y, bias, plane: plane, cout: cout, ho: g.ho, wo: g.wo, th: g.th, tw: g.tw, images: images, ld: ld)
    #endif
    default: Kernels.winograd43s2OutputTransform(m, y, bias, plane: plane, cout: cout, ho: g.ho, wo: g.wo, th: g.th, tw: g.tw, images: images, ld: ld)
    }
}

/// `Kernels.winograd43s2OutputGradientTransform` in the active set.
func winograd43s2OutputGradientTransform(_ dy: UnsafePointer<Float>, _ d: UnsafeMutablePointer<Float>, _ qbuf: UnsafeMutablePointer<Float>,
                                         _ g: Winograd43s2Geometry, plane: Int, cout: Int, images: Range<Int>, ld: Int) {
    switch KernelSet.active {
    #if RESNET_KERNEL_SETS
    case .avx512: KernelsAVX512.winograd43s2OutputGradientTransform(dy, d, qbuf, ho: g.ho, wo: g.wo, th: g.th, tw: g.tw, lw4: g.lw4, plane: plane, cout: cout, images: images, ld: ld)
    case .avx2: KernelsAVX2.winograd43s2OutputGradientTransform(dy, d, qbuf, ho: g.ho, wo: g.wo, th: g.th, tw: g.tw, lw4: g.lw4, plane: plane, cout: cout, images: images, ld: ld)
    #endif
    default: Kernels.winograd43s2OutputGradientTransform(dy, d, qbuf, ho: g.ho, wo: g.wo, th: g.th, tw: g.tw, lw4: g.lw4, plane: plane, cout: cout, images: images, ld: ld)
    }
}

/// `Kernels.winograd43s2InputGradientTransform` in the active set.
func winograd43s2InputGradientTransform(_ m: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>, _ rbuf: UnsafeMutablePointer<Float>,
                                        _ g: Winograd43s2Geometry, plane: Int, cin: Int, images: Range<Int>, ld: Int) {
    switch KernelSet.active {
    #if RESNET_KERNEL_SETS
    case .avx512: KernelsAVX512.winograd43s2InputGradientTransform(m, dx, rbuf, h: g.h, w: g.w, th: g.th, tw: g.tw, lw: g.lw, plane: plane, cin: cin, images: images, ld: ld)
    case .avx2: KernelsAVX2.winograd43s2InputGradientTransform(m, dx, rbuf, h: g.h, w: g.w, th: g.th, tw: g.tw, lw: g.lw, plane: plane, cin: cin, images: images, ld: ld)
    #endif
    default: Kernels.winograd43s2InputGradientTransform(m, dx, rbuf, h: g.h, w: g.w, th: g.th, tw: g.tw, lw: g.lw, plane: plane, cin: cin, images: images, ld: ld)
    }
}

/// `Kernels.addKernelGradients43s2` in the active set.
func addKernelGradients43s2(_ partials: [UnsafePointer<Float>], plane: Int, dw: UnsafeMutablePointer<Float>, kernels: Range<Int>) {
    switch KernelSet.active {
    #if RESNET_KERNEL_SETS
    case .avx512: KernelsAVX512.addKernelGradients43s2(partials, plane: plane, dw: dw, kernels: kernels)
    case .avx2: KernelsAVX2.addKernelGradients43s2(partials, plane: plane, dw: dw, kernels: kernels)
    #endif
    default: Kernels.addKernelGradients43s2(partials, plane: plane, dw: dw, kernels: kernels)
    }
}

/// `Kernels.maxPoolScanStride2` in the active set.
func maxPoolScanStride2(_ xp: UnsafePointer<Float>, h: Int, w: Int, ho: Int, wo: Int, bw: Int, kernel: Int, padding: Int,
                        _ buf: UnsafeMutablePointer<Float>, _ vals: UnsafeMutablePointer<Float>,
                        _ idx: UnsafeMutablePointer<Int32>, row: (Int) -> Void) {
    switch KernelSet.active {
    #if RESNET_KERNEL_SETS
    case .avx512: KernelsAVX512.maxPoolScanStride2(xp, h: h, w: w, ho: ho, wo: wo, bw: bw, kernel: kernel, padding: padding, buf, vals, idx, row: row)
    case .avx2: KernelsAVX2.maxPoolScanStride2(xp, h: h, w: w, ho: ho, wo: wo, bw: bw, kernel: kernel, padding: padding, buf, vals, idx, row: row)
    #endif
    default: Kernels.maxPoolScanStride2(xp, h: h, w: w, ho: ho, wo: wo, bw: bw, kernel: kernel, padding: padding, buf, vals, idx, row: row)
    }
}

/// `Kernels.batchNormShiftedSums` in the active set.
func batchNormShiftedSums(_ x: UnsafePointer<Float>, n: Int, c: Int, hw: Int, channel: Int, shift: Double) -> (Double, Double) {
    switch KernelSet.active {
    #if RESNET_KERNEL_SETS
    case .avx512: return KernelsAVX512.batchNormShiftedSums(x, n: n, c: c, hw: hw, channel: channel, shift: shift)
    case .avx2: return KernelsAVX2.batchNormShiftedSums(x, n: n, c: c, hw: hw, channel: channel, shift: shift)
    #endif
    default: return Kernels.batchNormShiftedSums(x, n: n, c: c, hw: hw, channel: channel, shift: shift)
    }
}

/// `Kernels.batchNormNormalize` in the active set.
func batchNormNormalize(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, n: Int, c: Int, hw: Int, channel: Int,
                        mean: Float, invstd: Float, gamma: Float, beta: Float, relu: Bool, adding: UnsafePointer<Float>? = nil) {
    switch KernelSet.active {
    #if RESNET_KERNEL_SETS
    case .avx512: KernelsAVX512.batchNormNormalize(x, y, n: n, c: c, hw: hw, channel: channel, mean: mean, invstd: invstd, gamma: gamma, beta: beta, relu: relu, adding: adding)
    case .avx2: KernelsAVX2.batchNormNormalize(x, y, n: n, c: c, hw: hw, channel: channel, mean: mean, invstd: invstd, gamma: gamma, beta: beta, relu: relu, adding: adding)
    #endif
    default: Kernels.batchNormNormalize(x, y, n: n, c: c, hw: hw, channel: channel, mean: mean, invstd: invstd, gamma: gamma, beta: beta, relu: relu, adding: adding)
    }
}

/// `Kernels.batchNormGradientSums` in the active set.
func batchNormGradientSums(_ dy: UnsafePointer<Float>, _ x: UnsafePointer<Float>, n: Int, c: Int, hw: Int, channel: Int,
                           mean: Float, invstd: Float, relu: (gamma: Float, beta: Float)?, dyPlanes: Int? = nil) -> (Double, Double) {
    switch KernelSet.active {
    #if RESNET_KERNEL_SETS
    case .avx512: return KernelsAVX512.batchNormGradientSums(dy, x, n: n, c: c, hw: hw, channel: channel, mean: mean, invstd: invstd, relu: relu, dyPlanes: dyPlanes)
    case .avx2: return KernelsAVX2.batchNormGradientSums(dy, x, n: n, c: c, hw: hw, channel: channel, mean: mean, invstd: invstd, relu: relu, dyPlanes: dyPlanes)
    #endif
    default: return Kernels.batchNormGradientSums(dy, x, n: n, c: c, hw: hw, channel: channel, mean: mean, invstd: invstd, relu: relu, dyPlanes: dyPlanes)
    }
}

/// `Kernels.batchNormInputGradient` in the active set.
func batchNormInputGradient(_ dy: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>,
                            n: Int, c: Int, hw: Int, channel: Int, k: Float, m: Float, dbeta: Float, dgamma: Float,
                            mean: Float, invstd: Float, relu: (gamma: Float, beta: Float)?, dyPlanes: Int? = nil) {
    switch KernelSet.active {
    #if RESNET_KERNEL_SETS
    case .avx512: KernelsAVX512.batchNormInputGradient(dy, x, dx, n: n, c: c, hw: hw, channel: channel, k: k, m: m, dbeta: dbeta, dgamma: dgamma, mean: mean, invstd: invstd, relu: relu, dyPlanes: dyPlanes)
    case .avx2: KernelsAVX2.batchNormInputGradient(dy, x, dx, n: n, c: c, hw: hw, channel: channel, k: k, m: m, dbeta: dbeta, dgamma: dgamma, mean: mean, invstd: invstd, relu: relu, dyPlanes: dyPlanes)
    #endif
    default: Kernels.batchNormInputGradient(dy, x, dx, n: n, c: c, hw: hw, channel: channel, k: k, m: m, dbeta: dbeta, dgamma: dgamma, mean: mean, invstd: invstd, relu: relu, dyPlanes: dyPlanes)
    }
}

extension KernelSet {
    /// Whether the set multiplies with FMA: the AVX2 and AVX-512 builds. The Winograd weight gradients'
    /// own gemm (`panelGemm`) runs only there; the baseline keeps OpenBLAS for that product.
    public var fusesMultiplyAdd: Bool { self != .baseline }
}

/// `Kernels.packPanels` in the active set.
func packPanels(_ src: UnsafePointer<Float>, ld: Int, n: Int, k: Int, into dst: UnsafeMutablePointer<Float>) {
    switch KernelSet.active {
    #if RESNET_KERNEL_SETS
    case .avx512: KernelsAVX512.packPanels(src, ld: ld, n: n, k: k, into: dst)
    case .avx2: KernelsAVX2.packPanels(src, ld: ld, n: n, k: k, into: dst)
    #endif
    default: Kernels.packPanels(src, ld: ld, n: n, k: k, into: dst)
    }
}

/// `Kernels.panelGemm` in the active set.
func panelGemm(m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int, panels: UnsafePointer<Float>,
               c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool) {
    switch KernelSet.active {
    #if RESNET_KERNEL_SETS
    case .avx512: KernelsAVX512.panelGemm(m: m, n: n, k: k, a: a, lda: lda, panels: panels, c: c, ldc: ldc, accumulate: accumulate)
    case .avx2: KernelsAVX2.panelGemm(m: m, n: n, k: k, a: a, lda: lda, panels: panels, c: c, ldc: ldc, accumulate: accumulate)
    #endif
    default: Kernels.panelGemm(m: m, n: n, k: k, a: a, lda: lda, panels: panels, c: c, ldc: ldc, accumulate: accumulate)
    }
}
