// The on/off decisions of a network's piecewise-linear parts: which ReLU inputs are positive
// (the ReLU layers and the ReLU closing every residual block) and which element each max-pool
// window picks. A finite difference whose +eps or -eps evaluation changes this pattern has
// straddled a kink, and its value says nothing about the derivative at the point.
//
// Leaf outputs are captured through `ModelContext.inspector`; a residual block's sum
// main(x) + shortcut(x) (not a leaf output) is rebuilt from its children's outputs (or recorded
// by the batch norm that ends the main path, when it adds the shortcut itself), and so is
// the output of a batch norm that pools as it normalizes (`BatchNorm2D.fuse(pool:)`, the stem):
// from its input and its batch statistics, with the forward's operations.
import NN

public final class PiecewisePattern {
    private var outputs: [String: [Float]] = [:]
    private let ctx: ModelContext
    private let previous: ((String, String, UnsafeBufferPointer<Float>) -> Void)?

    /// Starts recording leaf outputs of `ctx` (replacing its inspector until `uninstall`).
    public init(_ ctx: ModelContext) {
        self.ctx = ctx
        previous = ctx.inspector
        ctx.inspector = { [unowned self] name, what, v in if what == "output" { self.outputs[name] = Array(v) } }
    }

    public func uninstall() { ctx.inspector = previous }

    /// The pattern of the last forward of `root` on an input of shape `inputShape` with values `x`
    /// (a training forward: a pooling batch norm's decisions are rebuilt from its batch statistics).
    public func pattern(_ root: Layer, input x: [Float], shape: [Int]) -> [Int32] {
        var p: [Int32] = []
        _ = walk(root, x, shape, &p)
        return p
    }

    /// Layers applied in order. The ReLU and the max pooling a pooling batch norm took over pass its
    /// pooled output on: their decisions are recorded with the batch norm's.
    private func walkChain(_ layers: [Layer], _ x: [Float], _ shape: [Int], _ p: inout [Int32]) -> ([Float], [Int]) {
        var (h, hs) = (x, shape)
        var pooledUntil: MaxPool2D? = nil
        for l in layers {
            if let pool = pooledUntil {
                hs = l.outputShape(hs)
                if l === pool { pooledUntil = nil }
                continue
            }
            (h, hs) = walk(l, h, hs, &p)
            pooledUntil = (l as? BatchNorm2D)?.fusedPool
        }
        return (h, hs)
    }

    private func walk(_ l: Layer, _ x: [Float], _ shape: [Int], _ p: inout [Int32]) -> ([Float], [Int]) {
        if let s = l as? Sequential { return walkChain(s.children, x, shape, &p) }
        if let b = l as? ResidualBlock {
            let (h, hs) = walkChain(b.main, x, shape, &p)
            let s = b.shortcut.map { walk($0, x, shape, &p).0 } ?? x
            precondition(s.count == h.count, "\(b.name): shortcut and main path differ")
            if b.summingBatchNorm != nil {   // its last batch norm recorded relu(main + shortcut) itself
                for v in h { p.append(v > 0 ? 1 : 0) }
                return (h, hs)
            }
            var y = [Float](repeating: 0, count: h.count)
            for i in 0..<h.count {
                let v = h[i] + s[i]
                p.append(v > 0 ? 1 : 0); y[i] = max(v, 0)
            }
            return (y, hs)
        }
        precondition(l.isLeaf, "\(l.name): unknown container \(l.typeName)")
        guard let y = outputs[l.name] else { preconditionFailure("\(l.name): no output recorded") }
        let ys = l.outputShape(shape)
        if let bn = l as? BatchNorm2D, let pool = bn.fusedPool {
            let (mean, invstd) = bn.batchStatistics
            let (c, hw) = (shape[1], shape[2] * shape[3])
            var full = [Float](repeating: 0, count: x.count)
            for i in 0..<x.count {
                let ch = (i / hw) % c
                full[i] = (x[i] - mean[ch]) * invstd[ch] * bn.weight.value[ch] + bn.bias.value[ch]
            }
            if bn.fusedReLU { for i in full.indices { p.append(full[i] > 0 ? 1 : 0); full[i] = full[i] <= 0 ? 0 : full[i] } }
            p += maxPoolArgmax(full, shape: shape, kernel: pool.kernel, stride: pool.stride, padding: pool.padding)
            return (y, ys)
        }
        if l is ReLU { for v in y { p.append(v > 0 ? 1 : 0) } }
        if let mp = l as? MaxPool2D { p += maxPoolArgmax(x, shape: shape, kernel: mp.kernel, stride: mp.stride, padding: mp.padding) }
        return (y, ys)
    }
}

/// For each max-pool window, the index (within its plane) of the first maximum.
public func maxPoolArgmax(_ x: [Float], shape xs: [Int], kernel k: Int, stride s: Int, padding pd: Int) -> [Int32] {
    let (planes, h, w) = (xs[0] * xs[1], xs[2], xs[3])
    let ho = (h + 2 * pd - k) / s + 1, wo = (w + 2 * pd - k) / s + 1
    var out: [Int32] = []
    out.reserveCapacity(planes * ho * wo)
    for pl in 0..<planes { for oy in 0..<ho { for ox in 0..<wo {
        var best = -Float.infinity, bi = -1
        for ki in 0..<k { for kj in 0..<k {
            let iy = oy * s - pd + ki, ix = ox * s - pd + kj
            guard iy >= 0, iy < h, ix >= 0, ix < w else { continue }
            let v = x[(pl * h + iy) * w + ix]
            if bi < 0 || v > best { best = v; bi = iy * w + ix }
        }}
        out.append(Int32(bi))
    }}}
    return out
}
