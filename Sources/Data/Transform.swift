// Image transforms, following torchvision: Resize (bilinear) -> RandomCrop(padding, zero fill)
// -> RandomHorizontalFlip(p = 0.5) -> ToTensor -> Normalize(mean, std).

/// What is done to every image before it enters the network.
public struct TransformConfig {
    /// Bilinear resize to imageSize x imageSize; nil keeps the dataset's size.
    public var imageSize: Int?
    /// Per-channel (v - mean[c]) / std[c] after the pixels are scaled to [0, 1].
    public var normalize: (mean: [Float], std: [Float])?
    /// 0 = off; zero-pad by this many pixels on every side, then crop back to the (resized)
    /// size at a random offset.
    public var randomCropPadding: Int
    /// Flip left-right with probability 0.5.
    public var horizontalFlip: Bool

    public init(imageSize: Int? = nil, normalize: (mean: [Float], std: [Float])? = nil,
                randomCropPadding: Int = 0, horizontalFlip: Bool = false) {
        self.imageSize = imageSize
        self.normalize = normalize
        self.randomCropPadding = randomCropPadding
        self.horizontalFlip = horizontalFlip
    }
}

/// Bilinear resampling along one axis as PyTorch's upsample_bilinear2d with
/// align_corners=False computes it: src = (dst + 0.5) * in/out - 0.5, negative values
/// clamped to 0, the upper neighbour clamped to in - 1. All arithmetic in Float, as PyTorch
/// does for float tensors.
struct LinearResampleTable {
    let lo: [Int]       // (out) lower source index
    let hi: [Int]       // (out) upper source index (== lo at the last source pixel)
    let wLo: [Float]    // (out) weight of lo
    let wHi: [Float]    // (out) weight of hi

    init(input: Int, output: Int) {
        precondition(input > 0 && output > 0, "resize sizes must be positive")
        let scale = Float(input) / Float(output)
        var lo = [Int](repeating: 0, count: output), hi = lo
        var wLo = [Float](repeating: 0, count: output), wHi = wLo
        for d in 0..<output {
            let src = max(scale * (Float(d) + 0.5) - 0.5, 0)
            let i0 = min(Int(src), input - 1)
            let i1 = i0 + (i0 < input - 1 ? 1 : 0)
            let l1 = src - Float(i0)
            lo[d] = i0; hi[d] = i1; wHi[d] = l1; wLo[d] = 1 - l1
        }
        self.lo = lo; self.hi = hi; self.wLo = wLo; self.wHi = wHi
    }
}

/// Resizes CHW float images with fixed sizes; tables are built once.
/// Separable: each source row is resampled horizontally into `rowsScratch`, then output rows
/// blend two of those, which is exactly PyTorch's h0*(w0*a + w1*b) + h1*(w0*c + w1*d).
struct BilinearResizer {
    let channels: Int, inH: Int, inW: Int, outH: Int, outW: Int
    private let rows: LinearResampleTable
    private let cols: LinearResampleTable

    init(channels: Int, inH: Int, inW: Int, outH: Int, outW: Int) {
        self.channels = channels; self.inH = inH; self.inW = inW; self.outH = outH; self.outW = outW
        rows = LinearResampleTable(input: inH, output: outH)
        cols = LinearResampleTable(input: inW, output: outW)
    }

    /// Floats `resize` needs as scratch: channels * inH * outW.
    var scratchCount: Int { channels * inH * outW }

    /// src (C, inH, inW) -> dst (C, outH, outW); scratch holds `scratchCount` floats.
    func resize(_ src: UnsafePointer<Float>, into dst: UnsafeMutablePointer<Float>,
                scratch: UnsafeMutablePointer<Float>) {
        cols.lo.withUnsafeBufferPointer { x0 in
        cols.hi.withUnsafeBufferPointer { x1 in
        cols.wLo.withUnsafeBufferPointer { wx0 in
        cols.wHi.withUnsafeBufferPointer { wx1 in
            for r in 0..<(channels * inH) {  // horizontal pass: (C*inH, inW) -> (C*inH, outW)
                let s = src + r * inW, t = scratch + r * outW
                for x in 0..<outW { t[x] = wx0[x] * s[x0[x]] + wx1[x] * s[x1[x]] }
            }
        }}}}
        rows.lo.withUnsafeBufferPointer { y0 in
        rows.hi.withUnsafeBufferPointer { y1 in
        rows.wLo.withUnsafeBufferPointer { wy0 in
        rows.wHi.withUnsafeBufferPointer { wy1 in
            for c in 0..<channels {  // vertical pass: (C, inH, outW) -> (C, outH, outW)
                let plane = scratch + c * inH * outW
                for y in 0..<outH {
                    let a = plane + y0[y] * outW, b = plane + y1[y] * outW
                    let w0 = wy0[y], w1 = wy1[y]
                    let t = dst + (c * outH + y) * outW
                    for x in 0..<outW { t[x] = w0 * a[x] + w1 * b[x] }
                }
            }
        }}}}
    }
}
