// The Swift kernel sets (Sources/NN/Core/KernelSet.swift): every set this CPU runs gives the same
// bits as the baseline build in every layer that dispatches to Sources/Kernels (the sets with FMA
// agree among themselves where they use their own gemm, the weight gradient by output channels); the set in use is
// the widest the CPU runs; and RESNET_KERNELS's values are checked.
import XCTest
@testable import NN
import TestSupport

final class KernelSetTests: XCTestCase {
    /// Outputs of every dispatching path with the active set: a Conv2D on F(4x4) by images and by
    /// output channels (forward, dX, dW, each dW path), one on F(4x4) stride 2, batch norm with and without its fused ReLU
    /// (odd plane sizes for the SIMD tails, a NaN), and stride-2 max pooling with ties and a NaN.
    func outputs() -> [String: [Float]] {
        var out: [String: [Float]] = [:]
        let savedF = Conv2D.forwardByChannelsRatio, savedW = Conv2D.weightGradientByChannelsRatio
        defer { Conv2D.forwardByChannelsRatio = savedF; Conv2D.weightGradientByChannelsRatio = savedW }
        for (i, s) in [(n: 2, c: 16, side: 11), (n: 3, c: 12, side: 7)].enumerated() {   // F(4x4), partial tiles on 11x11
            for ratio in [0.0, 1e9] {
                Conv2D.forwardByChannelsRatio = ratio; Conv2D.weightGradientByChannelsRatio = ratio
                let (_, conv) = makeConv(ConvCase(n: s.n, cin: s.c, cout: s.c + 5, h: s.side, w: s.side, bias: false), seed: UInt64(2100 + i))
                let x = randomTensor([s.n, s.c, s.side, s.side], seed: UInt64(2200 + i))
                XCTAssertTrue("\(conv.strategy(x.shape))".hasPrefix("winograd4x4"), "\(s): \(conv.strategy(x.shape))")
                let dy = randomTensor(conv.outputShape(x.shape), seed: UInt64(2300 + i))
                let path = ratio == 0 ? "by images" : "by channels"
                withWorkers(2) {
                    conv.weight.grad.update(repeating: 0, count: conv.weight.count)
                    out["conv \(s) \(path) y"] = conv.forward(x, training: true).array
                    out["conv \(s) \(path) dx"] = conv.backward(dy).array
                    out["conv \(s) \(path) dw"] = conv.weight.grads
                }
            }
        }
        let savedS2 = Conv2D.winogradStride2MaxCost
        Conv2D.winogradStride2MaxCost = 100   // F(4x4) stride 2 on a 17x15 map: 9x8 outputs, partial tiles
        defer { Conv2D.winogradStride2MaxCost = savedS2 }
        do {
            let (_, conv) = makeConv(ConvCase(n: 3, cin: 10, cout: 13, h: 17, w: 15, k: 3, stride: 2, padding: 1, bias: true), seed: 2150)
            let x = randomTensor([3, 10, 17, 15], seed: 2151)
            XCTAssertEqual("\(conv.strategy(x.shape))", "winogradStride2")
            let dy = randomTensor(conv.outputShape(x.shape), seed: 2152)
            withWorkers(2) {
                conv.weight.grad.update(repeating: 0, count: conv.weight.count)
                out["conv stride 2 y"] = conv.forward(x, training: true).array
                out["conv stride 2 dx"] = conv.backward(dy).array
                out["conv stride 2 dw"] = conv.weight.grads
            }
        }
        for fused in [false, true] {
            let ctx = ModelContext()
            let bn = BatchNorm2D(ctx, name: "bn", channels: 5)
            let relu = ReLU(name: "relu", inPlace: true)
            ctx.finalize()
            bn.resetParameters()
            fillUniform(bn.weight, seed: 7, lo: -1.5, hi: 1.5)
            fillUniform(bn.bias, seed: 8, lo: -0.5, hi: 0.5)
            if fused { bn.fuse(relu) }
            let x = randomTensor([3, 5, 7, 5], seed: 2400, lo: -2, hi: 3)
            x[17] = .nan   // channel 0 all NaN; the others must stay finite (checked below)
            let dy = randomTensor(x.shape, seed: 2401)
            withWorkers(2) {
                bn.weight.grad.update(repeating: 0, count: 5); bn.bias.grad.update(repeating: 0, count: 5)
                out["bn \(fused) y"] = bn.forward(x, training: true).array
                out["bn \(fused) dx"] = bn.backward(dy).array
                out["bn \(fused) dgamma"] = bn.weight.grads
                out["bn \(fused) dbeta"] = bn.bias.grads
                out["bn \(fused) running"] = bn.runningMean.values + bn.runningVar.values
            }
            XCTAssertEqual(out["bn \(fused) dgamma"]!.filter(\.isNaN).count, 1, "only channel 0 holds the NaN")
        }
        let pool = MaxPool2D(name: "pool", kernel: 3, stride: 2, padding: 1)
        let x = randomTensor([2, 3, 19, 37], seed: 2500)
        for q in stride(from: 0, to: x.count, by: 11) { x[q] = 0.5 }   // ties
        x[40] = .nan
        let dy = randomTensor(pool.outputShape(x.shape), seed: 2501)
        withWorkers(2) {
            out["pool y"] = pool.forward(x, training: true).array
            out["pool dx"] = pool.backward(dy).array
        }
        return out
    }

    /// The weight gradient by output channels, whose Winograd-domain product the sets with FMA
    /// compute with their own gemm (`panelGemm`) and the baseline with OpenBLAS: those sets agree
    /// with each other bit for bit (PanelGemmTests checks the gemm itself) and with the baseline
    /// as OpenBLAS's kernels agree among themselves, to rounding.
    static func isOwnGemm(_ key: String) -> Bool { key.hasSuffix("by channels dw") }

    func testEverySetThisCPURunsGivesTheBaselineBits() throws {
        let saved = KernelSet.active
        defer { KernelSet.active = saved }
        KernelSet.active = .baseline
        let reference = outputs()
        let sets = KernelSet.runnable(on: BLASKernel.cpuFeatures).filter { $0 != .baseline }
        if sets.isEmpty { throw XCTSkip("this CPU runs only the baseline set: nothing to compare") }
        XCTAssertEqual(reference.keys.filter(Self.isOwnGemm).count, 2)
        var firstFMA: [String: [Float]]?
        for set in sets {
            KernelSet.active = set
            let got = outputs()
            XCTAssertEqual(Set(got.keys), Set(reference.keys))
            for (key, want) in reference {
                let have = got[key] ?? []
                XCTAssertEqual(have.count, want.count, "\(set) \(key)")
                if Self.isOwnGemm(key) {
                    assertCloseScaled(have, want.map(Double.init), tol: 2e-5, "\(set): \(key) against the baseline's OpenBLAS product")
                    guard let fma = firstFMA?[key] else { continue }
                    let differing = zip(have, fma).filter { $0.bitPattern != $1.bitPattern }.count
                    XCTAssertEqual(differing, 0, "\(set): \(key) differs from the \(sets[0]) build in \(differing) of \(fma.count) values")
                    continue
                }
                let differing = zip(have, want).filter { $0.bitPattern != $1.bitPattern }.count
                XCTAssertEqual(differing, 0, "\(set): \(key) differs from the baseline build in \(differing) of \(want.count) values")
            }
            if firstFMA == nil { firstFMA = got }
        }
    }

    /// The feature bits against the kernel's own account (/proc/cpuinfo's flags): a CPU whose flags
    /// list the Haswell (or Skylake-AVX512) set runs that build, so a broken detection cannot
    /// quietly leave every set comparison skipped.
    func testTheCPUsFlagsAndTheRunnableSetsAgree() throws {
        guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
              let line = info.split(separator: "\n").first(where: { $0.hasPrefix("flags") }) else {
            throw XCTSkip("no /proc/cpuinfo flags here")
        }
        let flags = Set(line.split(separator: " ").map(String.init))
        let runnable = KernelSet.runnable(on: BLASKernel.cpuFeatures)
        let haswell = ["avx", "avx2", "fma", "bmi1", "bmi2", "f16c", "abm", "movbe"]
        let skylake = haswell + ["avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"]
        if KernelSet.compiled.contains(.avx2) {
            XCTAssertEqual(runnable.contains(.avx2), haswell.allSatisfy(flags.contains), "flags \(haswell.filter { !flags.contains($0) }) missing")
        }
        if KernelSet.compiled.contains(.avx512) {
            XCTAssertEqual(runnable.contains(.avx512), skylake.allSatisfy(flags.contains), "flags \(skylake.filter { !flags.contains($0) }) missing")
        }
    }

    func testTheSetInUseIsTheWidestTheCPURuns() throws {
        if let value = ProcessInfo.processInfo.environment[KernelSet.variable], !value.isEmpty {
            throw XCTSkip("\(KernelSet.variable)=\(value) is set: the user's choice wins")
        }
        let f = BLASKernel.cpuFeatures
        let runnable = KernelSet.runnable(on: f)
        XCTAssertEqual(KernelSet.active, runnable.last)
        // a CPU with AVX2 (or AVX-512) runs a set that uses it, when the binary has one
        if f.isSuperset(of: KernelSet.avx512.required), KernelSet.compiled.contains(.avx512) { XCTAssertEqual(KernelSet.active, .avx512) }
        else if f.isSuperset(of: KernelSet.avx2.required), KernelSet.compiled.contains(.avx2) { XCTAssertEqual(KernelSet.active, .avx2) }
        XCTAssertTrue(BLASKernel.summary.contains("Swift kernels \(KernelSet.active.rawValue)"), BLASKernel.summary)
        #if arch(x86_64)
        if ProcessInfo.processInfo.environment["RESNET_PORTABLE_BUILD"] != "1" {
            XCTAssertEqual(KernelSet.compiled, [.baseline, .avx2, .avx512])
        }
        #endif
    }

    func testRequestedSetsAreChecked() {
        let all: BLASKernel.Features = KernelSet.avx512.required
        func message(_ r: Result<KernelSet?, KernelSetError>) -> String? {
            if case .failure(let e) = r { return e.message } else { return nil }
        }
        XCTAssertNil(try KernelSet.requested(nil, features: []).get())
        XCTAssertNil(try KernelSet.requested("", features: []).get())
        XCTAssertEqual(try KernelSet.requested("baseline", features: []).get(), .baseline)
        XCTAssertEqual(message(KernelSet.requested("sse9", features: all)),
                       "RESNET_KERNELS=sse9: expected one of baseline, avx2, avx512")
        if KernelSet.compiled.contains(.avx512) {
            XCTAssertEqual(try KernelSet.requested("AVX512", features: all).get(), .avx512)
            let refusal = message(KernelSet.requested("avx512", features: KernelSet.avx2.required)) ?? ""
            XCTAssertTrue(refusal.hasPrefix("RESNET_KERNELS=avx512: this CPU (AVX2+FMA) cannot run it; it runs baseline, avx2"), refusal)
            // AVX2 without the rest of the Haswell set (BMI, LZCNT, ...) is not enough for the Haswell build
            let short = message(KernelSet.requested("avx2", features: [.avx, .avx2, .fma])) ?? ""
            XCTAssertTrue(short.hasPrefix("RESNET_KERNELS=avx2: this CPU"), short)
        } else {
            let refusal = message(KernelSet.requested("avx2", features: all)) ?? ""
            XCTAssertTrue(refusal.hasPrefix("RESNET_KERNELS=avx2: this binary was built without it"), refusal)
        }
    }
}
