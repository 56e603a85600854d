// 2-D convolution, NCHW, weight [Cout, Cin, kH, kW] (PyTorch's nn.Conv2d), optional bias [Cout].
// The batch is split over the worker threads; each worker takes groups of its images, im2cols
// them into its own workspace and runs one single-threaded gemm per group (darknet's scheme):
//   forward:  Y[Cout, g*Ho*Wo] = W[Cout, Cin*kH*kW] * cols[Cin*kH*kW, g*Ho*Wo]  (+ bias)
//   backward: dW += dY * cols^T ; db += sum(dY) (0 before a batch norm) ; dcols = W^T * dY, col2im(dcols) = dX
// Three other ways, chosen by shape alone (`strategy`):
// - 3x3 stride-1 padding-1 convolutions on maps of 7x7 or more use Winograd F(4x4, 3x3)
//   (Winograd43.swift) for the forward pass and for dX (= the same convolution of dY with W transposed
//   and rotated 180°): 4x fewer multiplications than im2col; on 3x3 to 6x6 maps F(2x2, 3x3)
//   (Winograd.swift, 2.25x fewer); dW with the same tile size (Winograd43WeightGradient.swift,
//   WinogradWeightGradient.swift).
// - On maps with no more pixels than the kernel has taps (2x2, 1x1) the convolution runs as one
//   dense matrix over the whole batch (ConvUnrolled.swift): no im2col, no multiplications by padding.

public final class Conv2D: Layer {
    public let name: String
    public let inChannels, outChannels, kernel, stride, padding: Int
    public let weight: ParamHandle          // [Cout, Cin, k, k]
    public let bias: ParamHandle?           // [Cout]
    private let ctx: ModelContext
    private var input: Tensor?              // (N, Cin, H, W), kept for backward
    private var out: Tensor?                // (N, Cout, Ho, Wo)
    /// F(4x4)'s U[36][Cout][Cin] from the last training forward, kept for backward's dX (the exact
    /// adjoint multiplies by it); nil until a forward needs it.
    private var keptU: UnsafeMutableBufferPointer<Float>?
    private var keptUValid = false
    /// False for the stem: nothing needs the gradient of the images, so backward skips
    /// W^T * dY and col2im and returns a zero tensor.
    public var needsInputGradient = true
    /// Set when a batch norm takes this layer's output (`fuseBatchNorms`): in training it subtracts
    /// the batch mean, bias included, so the loss does not depend on the bias and its gradient is
    /// exactly 0; backward skips the pass over dY that would sum it to rounding noise.
    public internal(set) var biasGradientVanishes = false
    /// Whether `fuseBatchNorms` marks such convolutions (on by default; off only to compare).
    nonisolated(unsafe) public static var skipsVanishingBiasGradient = true
    /// Columns per gemm (images x output pixels) a worker aims for: wide enough for an efficient
    /// gemm, small enough that its im2col block stays in cache (2048 measured best here, vs 1024/4096).
    nonisolated(unsafe) public static var targetColumns = 2048
    /// At most this many floats (4 MiB) of im2col columns per worker: deep layers (K = Cin·k² up
    /// to 4608) take fewer columns rather than a larger buffer.
    public static let maxColumnFloats = 1 << 20

    public init(_ ctx: ModelContext, name: String, inChannels: Int, outChannels: Int,
                kernel: Int, stride: Int = 1, padding: Int = 0, bias: Bool = true) {
        self.ctx = ctx; self.name = name
        self.inChannels = inChannels; self.outChannels = outChannels
        self.kernel = kernel; self.stride = stride; self.padding = padding
        weight = ctx.params.declare(joinName(name, "weight"), shape: [outChannels, inChannels, kernel, kernel])
        self.bias = bias ? ctx.params.declare(joinName(name, "bias"), shape: [outChannels]) : nil
    }

    public var parameters: [ParamHandle] { [weight] + (bias.map { [$0] } ?? []) }

    deinit { keptU?.deallocate() }

    /// The layer's own U buffer (36 x Cin x Cout floats).
    private func keptWeights() -> UnsafeMutablePointer<Float> {
        let count = 36 * inChannels * outChannels
        if keptU == nil { keptU = .allocate(capacity: count) }
        return keptU!.baseAddress!
    }

    /// How a convolution of this input shape is computed. The choice depends only on the shapes
    /// (never on the CPU), so results do not either. Thresholds from `resnet bench` and a per-layer
    /// micro-benchmark (min of 8, forward + backward) on this project's machine: see docs/performance.md.
    enum Strategy {
        case unrolled(UnrolledConv)   // H·W ≤ k²: one dense matrix per pass (ConvUnrolled.swift)
        case winograd4x4              // 3x3 s1 p1 on maps ≥ winograd4x4MinSide: F(4x4, 3x3) forward, dX, dW
        case winograd3x3              // 3x3 s1 p1 on 3x3, 5x5, 6x6, 9x9 maps: F(3x3, 3x3) forward, dX, dW
        case winograd2x2              // 3x3 s1 p1 on other maps ≥ 3 (4x4, 8x8 below winograd4x4MinSide): F(2x2, 3x3)
        case winogradStride2          // 3x3 s2 p1 where 4x4 tiles cover the output well: F(4x4, 3x3) stride 2, all three passes
        case im2col                   // everything else: im2col + gemm, col2im for dX
        var isWinograd: Bool { switch self { case .winograd4x4, .winograd3x3, .winograd2x2: return true; default: return false } }
        var unrolledForm: UnrolledConv? { if case .unrolled(let u) = self { return u }; return nil }
    }
    /// Maps at least this wide may use F(4x4, 3x3): below it, F(2x2) was as fast or faster (one 4x4
    /// tile per small map leaves F(4x4)'s gemms narrow).
    nonisolated(unsafe) public static var winograd4x4MinSide = 7
    /// 3x3 stride-2 padding-1 convolutions use F(4x4, 3x3) stride 2 (Winograd43Stride2.swift) where its
    /// multiplications per output, 81 per 4x4 tile over the tiles' share of real outputs, are at most this
    /// fraction of im2col's 9: 0.5625 where the 4x4 tiles cover the map exactly (ResNet-18's stage 2 at
    /// 224x224, stages 2-3 at 96x96, stage 2 at 28x28), 0.73 on 14x14 and 7x7 outputs and 1 on 6x6, where
    /// im2col was as fast or faster (per-layer micro-benchmark, docs/performance.md). 0 turns it off.
    nonisolated(unsafe) public static var winogradStride2MaxCost = 0.6
    /// F(3x3, 3x3), whose transforms gather across images, is used on maps up to this wide (3 tiles a side).
    nonisolated(unsafe) public static var winograd3x3MaxSide = 9
    /// F(4x4) and F(3x3) dW by output-channel chunks (`winograd43WeightGradientByChannels`) when
    /// tiles x (Cin + Cout) <= this x workers x Cin x Cout, i.e. when the workers' partial sums would be
    /// at least twice the transformed tiles: stage 4 of ResNet-18 at batch 16 224x224 and at batch 64
    /// 96x96 (backward 35 -> 30 ms and 23-27 -> 19-20 ms, per-layer min of 6, 2 workers); at stage 3
    /// (ratio 1) it was no faster. 0 turns it off.
    nonisolated(unsafe) public static var weightGradientByChannelsRatio = 0.5
    /// F(4x4) and F(3x3) forward and dX by output-channel chunks (`winograd43/33ForwardByChannels`), each
    /// chunk's weights transformed in cache, when columns x (Cin + Cout) <= this x Cin x Cout, i.e. when
    /// U would outweigh the tiles' V and M: stage 4 of ResNet-18 at batch 16 224x224 and at batch 64
    /// 96x96 (ratio 0.25 both); at ratio 1 (stage 4 at batch 256 96x96) and 2 (stage 3 at batch 16
    /// 224x224) it was slower (forward 22.7 -> 26.5 ms and 16.9 -> 25 ms), hence 0.5. 0 turns it off.
    nonisolated(unsafe) public static var forwardByChannelsRatio = 0.5
    /// F(4x4) by images with at most this many input and output channels computes dX in its dW pass
    /// as the exact adjoint of the forward (the training forward keeps U; `A dY A^T` shared with dW)
    /// rather than as a convolution of dY with the rotated kernels: 16x64x56x56 backward 18.0 -> 16.1 ms.
    /// With 128 and 256 channels it was 2 % and 6 % slower (its U^T gemm takes OpenBLAS's packed path,
    /// where the other's banded gemms take the small-matrix one), hence 64. 0 turns it off.
    nonisolated(unsafe) public static var winograd43AdjointMaxChannels = 64
    /// Output channels per chunk of that forward.
    nonisolated(unsafe) public static var forwardByChannelsRows = 16
    /// Output channels per chunk of that dW (32 measured a little faster than 16).
    nonisolated(unsafe) public static var weightGradientRows = 32

    func strategy(_ x: [Int]) -> Strategy {
        let os = outputShape(x)
        let u = UnrolledConv(cin: inChannels, cout: outChannels, k: kernel, s: stride, p: padding,
                             h: x[2], w: x[3], ho: os[2], wo: os[3])
        // The dense matrix does no more work than im2col where H·W ≤ k²; it must stay small (≤ 16 MiB:
        // it and its gradient are scratch shared by all layers).
        if x[2] * x[3] <= kernel * kernel && u.rows * u.cols <= UnrolledConv.maxEntries { return .unrolled(u) }
        if kernel == 3 && stride == 2 && padding == 1 {
            let tiles = Double(winograd43s2Columns(n: 1, h: x[2], w: x[3]))
            if 81 * tiles <= Conv2D.winogradStride2MaxCost * 9 * Double(os[2] * os[3]) { return .winogradStride2 }
        }
        guard kernel == 3 && stride == 1 && padding == 1 && min(x[2], x[3]) >= 3 else { return .im2col }
        // The tile size with the fewest multiplications per channel pair, (tiles per map) x (m+2)²;
        // ties go to the larger tile. F(3x3) (up to winograd3x3MaxSide) wins on 3, 5, 6 and 9 (25, 100, 100, 225 against F(2x2)'s 64, 144,
        // 144, 400 and F(4x4)'s 324 on 9x9).
        func cost(_ m: Int) -> Int { ((x[2] + m - 1) / m) * ((x[3] + m - 1) / m) * (m + 2) * (m + 2) }
        let f4 = min(x[2], x[3]) >= Conv2D.winograd4x4MinSide ? cost(4) : Int.max
        if f4 <= cost(2) && (f4 <= cost(3) || max(x[2], x[3]) > Conv2D.winograd3x3MaxSide) { return .winograd4x4 }
        return max(x[2], x[3]) <= Conv2D.winograd3x3MaxSide && cost(3) < min(cost(2), f4) ? .winograd3x3 : .winograd2x2
    }

    /// Runs forward (x -> y) or dX (dY -> dX) with Winograd, F(4x4), F(3x3) or F(2x2) as `strategy` says.
    private func winogradPass(_ strategy: Strategy, _ input: Tensor, _ output: Tensor, bias: UnsafePointer<Float>?,
                              forInputGradient: Bool, keep: Bool = false, _ p: Plan) {
        let (ci, co) = forInputGradient ? (outChannels, inChannels) : (inChannels, outChannels)
        switch strategy {
        case .winograd4x4, .winograd3x3:
            let f4: Bool = if case .winograd4x4 = strategy { true } else { false }
            if Double(winogradColumns(f4, p) * (ci + co)) <= Conv2D.forwardByChannelsRatio * Double(ci * co) {
                if f4 {
                    winograd43ForwardByChannels(x: input.data, w: weight.value, bias: bias, y: output.data, cin: ci, cout: co,
                                                h: p.h, w: p.w, n: p.n, forInputGradient: forInputGradient, workers: Parallel.workers,
                                                rows: Conv2D.forwardByChannelsRows)
                } else {
                    winograd33ForwardByChannels(x: input.data, w: weight.value, bias: bias, y: output.data, cin: ci, cout: co,
                                                h: p.h, w: p.w, n: p.n, forInputGradient: forInputGradient, workers: Parallel.workers,
                                                rows: Conv2D.forwardByChannelsRows)
                }
                return
            }
            // A training forward of F(4x4) keeps its U for backward's dX; the rest use scratch all layers share.
            let keeps = keep && f4 && !forInputGradient && max(inChannels, outChannels) <= Conv2D.winograd43AdjointMaxChannels
            let u = keeps ? keptWeights()
                : Workspace.shared.buffer(worker: 0, slot: Workspace.winogradWeights, count: (f4 ? 36 : 25) * inChannels * outChannels)
            keptUValid = keeps
            Parallel.forRanges(co) { rows in
                if f4 {
                    winograd43TransformWeights(self.weight.value, cout: self.outChannels, cin: self.inChannels, into: u,
                                               forInputGradient: forInputGradient, rows: rows)
                } else {
                    winograd33TransformWeights(self.weight.value, cout: self.outChannels, cin: self.inChannels, into: u,
                                               forInputGradient: forInputGradient, rows: rows)
                }
            }
            if f4 {
                forImagePieces(p, tilesPerImage: winograd43Columns(n: 1, h: p.h, w: p.w), target: winograd43TargetTiles) { wk, images in
                    winograd43Forward(x: input.data, u: u, bias: bias, y: output.data, cin: ci, cout: co,
                                      h: p.h, w: p.w, images: images, worker: wk)
                }
            } else {   // F(3x3) runs 8 images in SIMD lanes: a share of the batch per worker
                Parallel.forRanges(p.workers) { workers in for wk in workers {
                    winograd33Forward(x: input.data, u: u, bias: bias, y: output.data, cin: ci, cout: co,
                                      h: p.h, w: p.w, images: p.images(wk), worker: wk)
                }}
            }
        default:
            let u = transformedWeights(forInputGradient: forInputGradient)
            Parallel.forRanges(p.workers) { workers in for wk in workers {
                winogradForward(x: input.data, u: u, bias: bias, y: output.data, cin: ci, cout: co,
                                h: p.h, w: p.w, images: p.images(wk), worker: wk)
            }}
        }
    }

    /// `body(worker, images)` on pieces of whole images of about `target` tiles (and at least 4 pieces
    /// of a batch of 4 or more), handed out as workers finish: for passes whose images write disjoint
    /// outputs. The pieces depend on the batch, not on the worker count.
    private func forImagePieces(_ p: Plan, tilesPerImage tpi: Int, target: Int, _ body: (_ worker: Int, _ images: Range<Int>) -> Void) {
        let per = max(1, min((target + tpi - 1) / tpi, (p.n + 3) / 4))
        Parallel.forItems((p.n + per - 1) / per, parts: p.workers) { wk, item in body(wk, item * per ..< min(p.n, (item + 1) * per)) }
    }

    /// dW from Winograd-domain partial sums: `partial(wk)` over worker wk's share of the images (fixed
    /// shares, so the sums and their order do not depend on timing; nil for none), then the kernels split
    /// over the workers for the transform back, `add(partials, kernels)`, added straight into the gradient.
    private func weightGradientFromPartials(_ p: Plan, partial: (_ worker: Int) -> UnsafePointer<Float>?,
                                            add: (_ partials: [UnsafePointer<Float>], _ kernels: Range<Int>) -> Void) {
        let parts = UnsafeMutableBufferPointer<UnsafePointer<Float>?>.allocate(capacity: p.workers)
        defer { parts.deallocate() }
        parts.initialize(repeating: nil)
        Parallel.forRanges(p.workers) { workers in for wk in workers { parts[wk] = partial(wk) } }
        let list = parts.compactMap { $0 }
        Parallel.forRanges(outChannels * inChannels, minChunk: 512) { r in add(list, r) }
    }

    /// F(4x4, 3x3) stride 2 forward: U once, then pieces of whole images.
    private func stride2Forward(_ x: Tensor, _ y: Tensor, bias: UnsafePointer<Float>?, _ p: Plan) {
        let (ci, co) = (inChannels, outChannels)
        let u = Workspace.shared.buffer(worker: 0, slot: Workspace.winogradWeights, count: 81 * ci * co)
        winograd43s2Weights(weight.value, cout: co, cin: ci, into: u, transposed: false)
        forImagePieces(p, tilesPerImage: winograd43s2Columns(n: 1, h: p.h, w: p.w), target: winograd43s2TargetTiles) { wk, images in
            winograd43s2Forward(x: x.data, u: u, bias: bias, y: y.data, cin: ci, cout: co, h: p.h, w: p.w, images: images, worker: wk)
        }
    }

    /// F(4x4, 3x3) stride 2 backward: each worker sums its images' DY ⊙ V and writes their dX in one
    /// pass, then the transform back (G^T Σ G).
    private func stride2Backward(_ x: Tensor, _ dy: Tensor, _ d: Tensor, _ p: Plan) {
        let (ci, co) = (inChannels, outChannels)
        var ut: UnsafeMutablePointer<Float>? = nil
        if needsInputGradient {
            ut = Workspace.shared.buffer(worker: 0, slot: Workspace.winogradWeights, count: 81 * ci * co)
            winograd43s2Weights(weight.value, cout: co, cin: ci, into: ut!, transposed: true)
        }
        let dx: UnsafeMutablePointer<Float>? = needsInputGradient ? d.data : nil, wg = weight.grad
        weightGradientFromPartials(p, partial: { wk in
            winograd43s2Backward(x: x.data, dy: dy.data, ut: ut, dx: dx, cin: ci, cout: co, h: p.h, w: p.w, images: p.images(wk), worker: wk)
        }, add: { list, r in addKernelGradients43s2(list, plane: co * ci + 16, dw: wg, kernels: r) })
    }

    /// Gemm columns of the whole batch in F(4x4) (`f4`) or F(3x3) form: what the by-channels rules weigh.
    private func winogradColumns(_ f4: Bool, _ p: Plan) -> Int {
        f4 ? winograd43Columns(n: p.n, h: p.h, w: p.w) : winograd33Columns(n: p.n, h: p.h, w: p.w)
    }

    /// Winograd-transformed weights F(2x2) for forward, U[16][Cout][Cin], or for dX, U'[16][Cin][Cout],
    /// computed for each use into scratch that all layers share.
    private func transformedWeights(forInputGradient: Bool) -> UnsafeMutablePointer<Float> {
        let u = Workspace.shared.buffer(worker: 0, slot: Workspace.winogradWeights, count: 16 * inChannels * outChannels)
        let (w, co, ci) = (weight.value, outChannels, inChannels)
        // Split by output rows of the transformed convolution (Cout forward, Cin for dX).
        Parallel.forRanges(forInputGradient ? ci : co) { rows in
            if forInputGradient { winogradTransformWeightsForInputGradient(w, cout: co, cin: ci, into: u, rows: rows) }
            else { winogradTransformWeights(w, cout: co, cin: ci, into: u, rows: rows) }
        }
        return u
    }

    /// Shape of the last forward's output (for FLOP counts).
    public var lastOutputShape: [Int]? { out?.shape }

    public func outputShape(_ s: [Int]) -> [Int] {
        [s[0], outChannels, (s[2] + 2 * padding - kernel) / stride + 1, (s[3] + 2 * padding - kernel) / stride + 1]
    }

    /// How the batch is cut: `workers` contiguous image ranges, each processed `group` images
    /// per gemm (enough columns for an efficient gemm, a bounded workspace).
    private struct Plan {
        let n, h, w, ho, wo, hw, kdim, workers, group: Int
        func images(_ worker: Int) -> Range<Int> { (n * worker / workers)..<(n * (worker + 1) / workers) }
    }

    private func plan(_ x: [Int]) -> Plan {
        let os = outputShape(x)
        let hw = os[2] * os[3]
        let workers = max(1, min(Parallel.workers, x[0]))
        let perWorker = (x[0] + workers - 1) / workers
        return Plan(n: x[0], h: x[2], w: x[3], ho: os[2], wo: os[3], hw: hw, kdim: inChannels * kernel * kernel,
                    workers: workers, group: max(1, min(perWorker, Conv2D.targetColumns / max(hw, 1),
                                                        Conv2D.maxColumnFloats / max(hw * inChannels * kernel * kernel, 1))))
    }

    public func forward(_ x: Tensor, training: Bool) -> Tensor {
        precondition(x.rank == 4 && x.shape[1] == inChannels, "\(name): input \(x.shape), expected (N,\(inChannels),H,W)")
        input = x
        let y = Tensor.reuse(out, outputShape(x.shape)); out = y
        let p = plan(x.shape)
        let strategy = self.strategy(x.shape)
        if case .unrolled(let u) = strategy {
            let wu = Workspace.shared.buffer(worker: 0, slot: Workspace.unrolledMatrix, count: u.rows * u.cols)
            let bv = bias?.value
            ctx.timed("Conv2D forward unrolled") {
                Parallel.forRanges(outChannels) { r in u.build(self.weight.value, into: wu, channels: r) }
                Parallel.forRanges(p.n) { r in   // Y[images r] = X[images r] · Wu^T
                    gemm(transB: true, m: r.count, n: u.rows, k: u.cols, a: x.data + r.lowerBound * u.cols, lda: u.cols,
                         b: wu, ldb: u.cols, c: y.data + r.lowerBound * u.rows, ldc: u.rows)
                    if let bv = bv {
                        for i in r { for c in 0..<self.outChannels {
                            let yc = y.data + i * u.rows + c * p.hw
                            for j in 0..<p.hw { yc[j] += bv[c] }
                        }}
                    }
                }
            }
            return y
        }
        if strategy.isWinograd {
            let bv = bias.map { UnsafePointer($0.value) }
            keptUValid = false
            ctx.timed("Conv2D forward winograd") { winogradPass(strategy, x, y, bias: bv, forInputGradient: false, keep: training, p) }
            return y
        }
        if case .winogradStride2 = strategy {
            let bv = bias.map { UnsafePointer($0.value) }
            ctx.timed("Conv2D forward winograd stride 2") { stride2Forward(x, y, bias: bv, p) }
            return y
        }
        if p.group == 1 {
            ctx.timed("Conv2D forward by rows") { forwardByRows(x, y, p) }
            return y
        }
        let inImage = inChannels * p.h * p.w, outImage = outChannels * p.hw
        let ws = (0..<p.workers).map { w in
            (cols: Workspace.shared.buffer(worker: w, slot: 0, count: p.kdim * p.group * p.hw),
             yg: Workspace.shared.buffer(worker: w, slot: 1, count: outChannels * p.group * p.hw))
        }
        let bv = bias?.value
        let clock = PhaseClock(enabled: ctx.profiler != nil)
        Parallel.forRanges(p.workers) { workers in for wk in workers {
            let (cols, yg) = ws[wk]
            let mine = p.images(wk)
            var n0 = mine.lowerBound
            while n0 < mine.upperBound {
                let gi = min(p.group, mine.upperBound - n0), ncols = gi * p.hw
                clock.start(wk)
                for i in 0..<gi {
                    self.im2col(x.data + (n0 + i) * inImage, p, cols, ld: ncols, col0: i * p.hw)
                }
                clock.lap(wk, 0)
                gemm(m: self.outChannels, n: ncols, k: p.kdim, a: self.weight.value, lda: p.kdim,
                     b: cols, ldb: ncols, c: yg, ldc: ncols)
                clock.lap(wk, 1)
                for i in 0..<gi {   // (Cout, g, HoWo) -> (g, Cout, HoWo), plus bias
                    let dst = y.data + (n0 + i) * outImage
                    for c in 0..<self.outChannels {
                        let b = bv?[c] ?? 0
                        let src = yg + c * ncols + i * p.hw, d = dst + c * p.hw
                        for j in 0..<p.hw { d[j] = src[j] + b }
                    }
                }
                clock.lap(wk, 2)
                n0 += gi
            }
        }}
        clock.report(ctx.profiler, ["Conv2D forward im2col", "Conv2D forward gemm", "Conv2D forward scatter"])
        return y
    }

    public func backward(_ dy: Tensor) -> Tensor {
        guard let x = input else { preconditionFailure("\(name): backward before forward") }
        let strategy = self.strategy(x.shape), winograd = strategy.isWinograd
        let stride2: Bool = if case .winogradStride2 = strategy { true } else { false }
        // Winograd and the unrolled gemm overwrite dX; col2im adds into it.
        let d = GradientPool.take(x.shape, zeroed: !((winograd || stride2 || strategy.unrolledForm != nil) && needsInputGradient))
        let needDX = needsInputGradient && !winograd
        let p = plan(x.shape)
        let inImage = inChannels * p.h * p.w, outImage = outChannels * p.hw
        let wcount = outChannels * p.kdim
        if let b = bias, !biasGradientVanishes {   // db[c] += sum over images and pixels of dY
            let g = b.grad
            Parallel.forRanges(outChannels) { r in
                for c in r { for i in 0..<p.n { g[c] += sumFloats(dy.data + i * outImage + c * p.hw, p.hw) } }
            }
        }
        if let u = strategy.unrolledForm {
            unrolledBackward(u, x: x, dy: dy, dx: d)
            return d
        }
        if stride2 {
            ctx.timed("Conv2D backward winograd stride 2") { stride2Backward(x, dy, d, p) }
            return d
        }
        if !winograd && p.group == 1 {
            ctx.timed("Conv2D backward by rows") { backwardByRows(x, dy, d, p, needDX: needDX) }
            return d
        }
        let columns = winograd ? 1 : p.group * p.hw   // Winograd needs only the dW partial sums
        // F(4x4) and F(3x3): each worker sums its images in the Winograd domain, then the workers split
        // the kernels for the transform back (G^T Σ G), added straight into the gradient.
        let splitDW: Bool = switch strategy { case .winograd4x4, .winograd3x3: true; default: false }
        let ws = (0..<p.workers).map { w in
            (cols: Workspace.shared.buffer(worker: w, slot: 0, count: p.kdim * columns),
             g: Workspace.shared.buffer(worker: w, slot: 1, count: outChannels * columns),
             // Worker 0 accumulates straight into the gradient buffer; the others into partial sums.
             dw: w == 0 || splitDW ? weight.grad : Workspace.shared.buffer(worker: w, slot: 2, count: wcount))
        }
        var dxDone = false   // dX written with dW (F(4x4) by images)
        if winograd {   // dW with Winograd too: G^T [ sum_tiles (A dY A^T) ⊙ (B^T x B) ] G
            ctx.timed("Conv2D backward winograd dW") {
                if splitDW {
                    let f4: Bool = if case .winograd4x4 = strategy { true } else { false }
                    let (ci, co) = (self.inChannels, self.outChannels)
                    // Few tiles, many channels: the workers' partial sums (workers x planes x Cin x Cout)
                    // would outweigh the transformed tiles (planes x tiles x (Cin + Cout)).
                    if Double(self.winogradColumns(f4, p) * (ci + co)) <= Conv2D.weightGradientByChannelsRatio * Double(Parallel.workers * ci * co) {
                        if f4 {
                            winograd43WeightGradientByChannels(x: x.data, dy: dy.data, dw: self.weight.grad, cin: ci, cout: co,
                                                               h: p.h, w: p.w, n: p.n, workers: Parallel.workers, rows: Conv2D.weightGradientRows)
                        } else {
                            winograd33WeightGradientByChannels(x: x.data, dy: dy.data, dw: self.weight.grad, cin: ci, cout: co,
                                                               h: p.h, w: p.w, n: p.n, workers: Parallel.workers, rows: Conv2D.weightGradientRows)
                        }
                        return
                    }
                    // F(4x4) after a training forward: dX in the same pass, the exact adjoint with the kept U.
                    let u: UnsafePointer<Float>? = f4 && self.needsInputGradient && self.keptUValid ? UnsafePointer(self.keptWeights()) : nil
                    let dx: UnsafeMutablePointer<Float>? = u != nil ? d.data : nil, wg = self.weight.grad
                    dxDone = u != nil
                    self.weightGradientFromPartials(p, partial: { wk in
                        f4 ? winograd43WeightGradientPartial(x: x.data, dy: dy.data, u: u, dx: dx, cin: ci, cout: co, h: p.h, w: p.w,
                                                             images: p.images(wk), worker: wk)
                           : winograd33WeightGradientPartial(x: x.data, dy: dy.data, cin: ci, cout: co, h: p.h, w: p.w, images: p.images(wk), worker: wk)
                    }, add: { list, r in
                        if f4 { winograd43AddKernelGradients(list, cin: ci, cout: co, dw: wg, kernels: r) }
                        else { winograd33AddKernelGradients(list, cin: ci, cout: co, dw: wg, kernels: r) }
                    })
                    return
                }
                Parallel.forRanges(p.workers) { workers in for wk in workers {   // F(2x2): a partial dW per worker
                    let dw = ws[wk].dw
                    if wk > 0 { dw.update(repeating: 0, count: wcount) }
                    winogradWeightGradient(x: x.data, dy: dy.data, dw: dw, cin: self.inChannels, cout: self.outChannels,
                                           h: p.h, w: p.w, images: p.images(wk), worker: wk)
                }}
            }
        }
        let clock = PhaseClock(enabled: ctx.profiler != nil)
        if !winograd { Parallel.forRanges(p.workers) { workers in for wk in workers {
            let (cols, g, dw) = ws[wk]
            if wk > 0 { dw.update(repeating: 0, count: wcount) }
            let mine = p.images(wk)
            var n0 = mine.lowerBound
            while n0 < mine.upperBound {
                let gi = min(p.group, mine.upperBound - n0), ncols = gi * p.hw
                clock.start(wk)
                for i in 0..<gi {   // gather dY (g, Cout, HoWo) -> (Cout, g*HoWo); recompute the columns
                    let src = dy.data + (n0 + i) * outImage
                    for c in 0..<self.outChannels { (g + c * ncols + i * p.hw).update(from: src + c * p.hw, count: p.hw) }
                    self.im2col(x.data + (n0 + i) * inImage, p, cols, ld: ncols, col0: i * p.hw)
                }
                clock.lap(wk, 0)
                // dW[Cout, K] += dY[Cout, cols] * cols[K, cols]^T
                gemm(transB: true, m: self.outChannels, n: p.kdim, k: ncols, a: g, lda: ncols,
                     b: cols, ldb: ncols, beta: 1, c: dw, ldc: p.kdim)
                clock.lap(wk, 1)
                if needDX {
                    // dcols[K, cols] = W^T * dY
                    gemm(transA: true, m: p.kdim, n: ncols, k: self.outChannels, a: self.weight.value, lda: p.kdim,
                         b: g, ldb: ncols, c: cols, ldc: ncols)
                    clock.lap(wk, 2)
                    for i in 0..<gi { self.col2im(cols, ld: ncols, col0: i * p.hw, p, d.data + (n0 + i) * inImage) }
                    clock.lap(wk, 3)
                }
                n0 += gi
            }
        }}}
        clock.report(ctx.profiler, ["Conv2D backward gather+im2col", "Conv2D backward gemm dW",
                                    "Conv2D backward gemm dX", "Conv2D backward col2im"])
        if winograd && needsInputGradient && !dxDone {   // dX = conv(dY, W transposed and rotated 180°)
            ctx.timed("Conv2D backward winograd dX") { winogradPass(strategy, dy, d, bias: nil, forInputGradient: true, p) }
        }
        if !splitDW { addPartialWeightGradients(ws.dropFirst().map { $0.dw }) }
        return d
    }

    /// Output rows per band of the by-rows passes: the band's columns (kdim x rows x Wo) stay within
    /// `bandFloats` (512 KiB, half this machine's L2).
    private func bandRows(_ p: Plan) -> Int { max(1, min(p.ho, Conv2D.bandFloats / max(1, p.kdim * p.wo))) }
    nonisolated(unsafe) public static var bandFloats = 1 << 17
    /// Whether `backwardByRows` computes dW on the band's im2row in small-matrix chunks (else as one
    /// `dY · cols^T` per band).
    nonisolated(unsafe) public static var weightGradientByRowsIm2row = true

    /// Forward for maps too large to group images (p.group == 1, e.g. the stem): per image, per band
    /// of output rows, im2col the band in cache and multiply straight into Y (its rows are the band's
    /// columns, ldc = Ho·Wo), so there is no copy out:  Y[:, band] = W[Cout, K] · cols[K, band] (+ bias).
    private func forwardByRows(_ x: Tensor, _ y: Tensor, _ p: Plan) {
        let inImage = inChannels * p.h * p.w, outImage = outChannels * p.hw, rows = bandRows(p)
        let cols = (0..<p.workers).map { Workspace.shared.buffer(worker: $0, slot: 0, count: p.kdim * rows * p.wo) }
        let bv = bias?.value
        Parallel.forRanges(p.workers) { workers in for wk in workers {
            for i in p.images(wk) {
                var oy = 0
                while oy < p.ho {
                    let band = oy..<min(p.ho, oy + rows), nc = band.count * p.wo
                    self.im2col(x.data + i * inImage, p, cols[wk], ld: nc, col0: 0, rows: band)
                    let yb = y.data + i * outImage + oy * p.wo
                    gemmInBands(m: self.outChannels, n: nc, k: p.kdim, a: self.weight.value, lda: p.kdim,
                                b: cols[wk], ldb: nc, c: yb, ldc: p.hw)
                    if let bv = bv { for c in 0..<self.outChannels { let r = yb + c * p.hw; for j in 0..<nc { r[j] += bv[c] } } }
                    oy = band.upperBound
                }
            }
        }}
    }

    /// Backward of `forwardByRows`, band by band: dW += dY[:, band] · rows (dY read in place, lda =
    /// Ho·Wo; `rows` the band's im2row, one row of K taps per output pixel), in chunks of pixels that
    /// fit OpenBLAS's small-matrix path (an untransposed product, which skips packing: 93 against 69–78
    /// GFLOP/s for the stem's 64 x 147 on one core as `dY · cols^T`); dcols = W^T · dY[:, band],
    /// col2im(dcols) into dX (zeroed by the caller). Each worker sums its images into its own dW
    /// (worker 0 straight into the gradient), added up in order after.
    private func backwardByRows(_ x: Tensor, _ dy: Tensor, _ d: Tensor, _ p: Plan, needDX: Bool) {
        let inImage = inChannels * p.h * p.w, outImage = outChannels * p.hw, rows = bandRows(p)
        let wcount = outChannels * p.kdim
        let chunk = max(1, gemmSmallLimit / max(1, outChannels * p.kdim))   // pixels per dW gemm
        let ws = (0..<p.workers).map { w in
            (cols: Workspace.shared.buffer(worker: w, slot: 0, count: p.kdim * rows * p.wo + 8),
             dw: w == 0 ? weight.grad : Workspace.shared.buffer(worker: w, slot: 2, count: wcount))
        }
        Parallel.forRanges(p.workers) { workers in for wk in workers {
            let (cols, dw) = ws[wk]
            if wk > 0 { dw.update(repeating: 0, count: wcount) }
            for i in p.images(wk) {
                var oy = 0
                while oy < p.ho {
                    let band = oy..<min(p.ho, oy + rows), nc = band.count * p.wo
                    let dyb = dy.data + i * outImage + oy * p.wo
                    if Conv2D.weightGradientByRowsIm2row {
                        self.im2row(x.data + i * inImage, p, cols, rows: band)
                        var j = 0
                        while j < nc {
                            gemm(m: self.outChannels, n: p.kdim, k: min(chunk, nc - j), a: dyb + j, lda: p.hw,
                                 b: cols + j * p.kdim, ldb: p.kdim, beta: 1, c: dw, ldc: p.kdim)
                            j += chunk
                        }
                    } else {
                        self.im2col(x.data + i * inImage, p, cols, ld: nc, col0: 0, rows: band)
                        gemm(transB: true, m: self.outChannels, n: p.kdim, k: nc, a: dyb, lda: p.hw,
                             b: cols, ldb: nc, beta: 1, c: dw, ldc: p.kdim)
                    }
                    if needDX {
                        gemm(transA: true, m: p.kdim, n: nc, k: self.outChannels, a: self.weight.value, lda: p.kdim,
                             b: dyb, ldb: p.hw, c: cols, ldc: nc)
                        self.col2im(cols, ld: nc, col0: 0, p, d.data + i * inImage, rows: band)
                    }
                    oy = band.upperBound
                }
            }
        }}
        addPartialWeightGradients(ws.dropFirst().map { $0.dw })
    }

    /// Adds workers 1...'s partial dW (worker 0 summed into the gradient itself) into the gradient, in order.
    private func addPartialWeightGradients(_ partials: [UnsafeMutablePointer<Float>]) {
        guard !partials.isEmpty else { return }
        let wg = weight.grad
        Parallel.forRanges(weight.count, minChunk: 4096) { r in
            for dw in partials { for i in r { wg[i] += dw[i] } }
        }
    }

    /// dW += fold(dY^T · X), dX = dY · Wu, for the dense-matrix form (bias gradient done by the caller).
    private func unrolledBackward(_ u: UnrolledConv, x: Tensor, dy: Tensor, dx: Tensor) {
        let n = x.shape[0], hw = u.ho * u.wo
        let dwu = Workspace.shared.buffer(worker: 0, slot: Workspace.unrolledGradient, count: u.rows * u.cols)
        let wu = needsInputGradient ? Workspace.shared.buffer(worker: 0, slot: Workspace.unrolledMatrix, count: u.rows * u.cols) : nil
        ctx.timed("Conv2D backward unrolled") {
            Parallel.forRanges(outChannels) { r in   // rows of output channels r: dWu = dY^T · X, then fold
                gemm(transA: true, m: r.count * hw, n: u.cols, k: n, a: dy.data + r.lowerBound * hw, lda: u.rows,
                     b: x.data, ldb: u.cols, c: dwu + r.lowerBound * hw * u.cols, ldc: u.cols)
                u.fold(dwu, into: self.weight.grad, channels: r)
                if let wu = wu { u.build(self.weight.value, into: wu, channels: r) }
            }
            guard let wu = wu else { return }
            Parallel.forRanges(n) { r in   // dX[images r] = dY[images r] · Wu
                gemm(m: r.count, n: u.cols, k: u.rows, a: dy.data + r.lowerBound * u.rows, lda: u.rows,
                     b: wu, ldb: u.cols, c: dx.data + r.lowerBound * u.cols, ldc: u.cols)
            }
        }
    }

    /// cols[(c*k + ki)*k + kj, col0 + (oy - rows.lowerBound)*wo + ox] = x[c, oy*s - p + ki, ox*s - p + kj]
    /// (0 outside), for the output rows `rows` (all by default).
    private func im2col(_ x: UnsafePointer<Float>, _ pl: Plan, _ cols: UnsafeMutablePointer<Float>, ld: Int, col0: Int,
                        rows: Range<Int>? = nil) {
        let (k, s, p, h, w, wo) = (kernel, stride, padding, pl.h, pl.w, pl.wo)
        let rows = rows ?? 0..<pl.ho
        if k == 1 && s == 1 && p == 0 {
            let n = rows.count * w, at = rows.lowerBound * w
            for c in 0..<inChannels { (cols + c * ld + col0).update(from: x + c * h * w + at, count: n) }
            return
        }
        for c in 0..<inChannels {
            let xc = x + c * h * w
            for ki in 0..<k { for kj in 0..<k {
                let row = cols + ((c * k + ki) * k + kj) * ld + col0
                // valid output columns: 0 <= ox*s - p + kj < w
                let lo = min(wo, max(0, (p - kj + s - 1) / s)), hi = max(lo, min(wo, (w + p - kj + s - 1) / s))
                for oy in rows {
                    let iy = oy * s - p + ki
                    let r = row + (oy - rows.lowerBound) * wo
                    if iy < 0 || iy >= h { r.update(repeating: 0, count: wo); continue }
                    let xr = xc + iy * w - p + kj
                    if lo > 0 { r.update(repeating: 0, count: lo) }
                    if s == 1 { (r + lo).update(from: xr + lo, count: hi - lo) }
                    else if s == 2 {   // every other input: 8 outputs from 16 inputs (the last read stays inside the row)
                        var ox = lo
                        while ox + 8 < hi {
                            UnsafeMutableRawPointer(r + ox).storeBytes(
                                of: UnsafeRawPointer(xr + 2 * ox).loadUnaligned(as: SIMD16<Float>.self).evenHalf, as: SIMD8<Float>.self)
                            ox += 8
                        }
                        while ox < hi { r[ox] = xr[2 * ox]; ox += 1 }
                    }
                    else { for ox in lo..<hi { r[ox] = xr[ox * s] } }
                    if hi < wo { (r + hi).update(repeating: 0, count: wo - hi) }
                }
            }}
        }
    }

    /// rows[j * K + (c * k + ki) * k + kj] = x[c, oy * s - p + ki, ox * s - p + kj] (zero outside the
    /// map) for the output pixels j = (oy - rows.lowerBound) * Wo + ox of the output rows `rows`: the
    /// transpose of im2col, one pixel's K taps contiguous. A kernel row (k ≤ 8 taps, contiguous in x)
    /// is one 8-float copy where it lies inside the map; the 8th float lands on the next row's first,
    /// written after it (the buffer has 8 floats to spare for the last).
    private func im2row(_ x: UnsafePointer<Float>, _ pl: Plan, _ out: UnsafeMutablePointer<Float>, rows: Range<Int>) {
        let (k, s, p, h, w, wo) = (kernel, stride, padding, pl.h, pl.w, pl.wo)
        // the pixels whose window starts inside the map's columns with 8 floats readable in each row
        let lo = min(wo, (p + s - 1) / s), inner = k <= 8 ? lo ..< max(lo, min(wo, (w - 8 + p) / s + 1)) : 0..<0
        for oy in rows {
            let iy0 = oy * s - p, rowsInside = iy0 >= 0 && iy0 + k <= h
            for ox in 0..<wo {
                let r = out + ((oy - rows.lowerBound) * wo + ox) * pl.kdim, ix0 = ox * s - p
                if rowsInside && inner.contains(ox) {   // the window inside the map: no bounds to check
                    let src = x + iy0 * w + ix0
                    for c in 0..<inChannels { for ki in 0..<k {
                        UnsafeMutableRawPointer(r + (c * k + ki) * k).storeBytes(
                            of: UnsafeRawPointer(src + (c * h + ki) * w).loadUnaligned(as: SIMD8<Float>.self), as: SIMD8<Float>.self)
                    }}
                    continue
                }
                for c in 0..<inChannels { for ki in 0..<k {
                    let dst = r + (c * k + ki) * k, iy = iy0 + ki
                    if iy < 0 || iy >= h { for kj in 0..<k { dst[kj] = 0 }; continue }
                    let xr = x + (c * h + iy) * w
                    for kj in 0..<k { let ix = ix0 + kj; dst[kj] = ix >= 0 && ix < w ? xr[ix] : 0 }
                }}
            }
        }
    }

    /// dx[c, iy, ix] += dcols[row, col] — the adjoint of im2col (for the output rows `rows`, all by default).
    private func col2im(_ cols: UnsafePointer<Float>, ld: Int, col0: Int, _ pl: Plan, _ dx: UnsafeMutablePointer<Float>,
                        rows: Range<Int>? = nil) {
        let (k, s, p, h, w, wo) = (kernel, stride, padding, pl.h, pl.w, pl.wo)
        let rows = rows ?? 0..<pl.ho
        for c in 0..<inChannels {
            let dxc = dx + c * h * w
            for ki in 0..<k { for kj in 0..<k {
                let row = cols + ((c * k + ki) * k + kj) * ld + col0
                let lo = min(wo, max(0, (p - kj + s - 1) / s)), hi = max(lo, min(wo, (w + p - kj + s - 1) / s))
                for oy in rows {
                    let iy = oy * s - p + ki
                    if iy < 0 || iy >= h { continue }
                    let r = row + (oy - rows.lowerBound) * wo, dr = dxc + iy * w - p + kj
                    if s == 1 { for ox in lo..<hi { dr[ox] += r[ox] } }
                    else { for ox in lo..<hi { dr[ox * s] += r[ox] } }
                }
            }}
        }
    }
}
