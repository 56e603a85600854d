// Turns dataset indices into a batch tensor: resize, random crop, random flip, normalize.
// The random choices for an image depend only on (seed, epoch, image index), never on the
// rank or on the other images of the batch, so any world size sees the same augmentations.
import NN

public final class BatchLoader {
    public let dataset: ImageDataset
    public let transform: TransformConfig
    /// (C, H, W) of one output image.
    public var outputShape: (c: Int, h: Int, w: Int) { (channels, size.h, size.w) }

    private let channels: Int
    private let size: (h: Int, w: Int)   // after resize
    private let padding: Int
    private let resizer: BilinearResizer?
    private let mean: UnsafeMutablePointer<Float>   // (C)
    private let std: UnsafeMutablePointer<Float>    // (C)
    private let source: UnsafeMutablePointer<Float>        // (C, H0, W0) one dataset image in [0,1]
    private let resizeScratch: UnsafeMutablePointer<Float> // resizer.scratchCount
    private let resized: UnsafeMutablePointer<Float>       // (C, H, W)

    public init(dataset: ImageDataset, transform: TransformConfig) {
        let c = dataset.channels
        self.dataset = dataset
        self.transform = transform
        channels = c
        let side = transform.imageSize
        precondition(side == nil || side! > 0, "imageSize must be positive, got \(side!)")
        size = side.map { ($0, $0) } ?? (dataset.height, dataset.width)
        precondition(transform.randomCropPadding >= 0, "randomCropPadding must be >= 0")
        padding = transform.randomCropPadding
        if size.h != dataset.height || size.w != dataset.width {
            resizer = BilinearResizer(channels: c, inH: dataset.height, inW: dataset.width, outH: size.h, outW: size.w)
        } else {
            resizer = nil
        }
        mean = .allocate(capacity: c)
        std = .allocate(capacity: c)
        if let (m, s) = transform.normalize {
            precondition(m.count == c && s.count == c,
                         "normalize needs \(c) means and stds for \(c)-channel \(dataset.name), got \(m.count) and \(s.count)")
            precondition(s.allSatisfy { $0 > 0 }, "normalize std must be positive, got \(s)")
            for i in 0..<c { mean[i] = m[i]; std[i] = s[i] }
        } else {
            mean.initialize(repeating: 0, count: c)
            std.initialize(repeating: 1, count: c)
        }
        source = .allocate(capacity: dataset.imageSize)
        resizeScratch = .allocate(capacity: max(resizer?.scratchCount ?? 0, 1))
        resized = resizer == nil ? source : .allocate(capacity: c * size.h * size.w)
    }

    deinit {
        mean.deallocate(); std.deallocate()
        if resized != source { resized.deallocate() }
        source.deallocate(); resizeScratch.deallocate()
    }

    /// The random choices for one image: crop offset in the padded image and whether to flip.
    /// Always drawn in the same order (top, left, flip) so switching one augmentation off does
    /// not change the others.
    public struct Augmentation: Equatable {
        public var top: Int, left: Int, flip: Bool
    }

    /// The augmentation of image `index` in `epoch`, from SplitMix64(mixSeed(seed, epoch, index)).
    public func augmentation(index: Int, seed: UInt64, epoch: Int) -> Augmentation {
        var rng = SplitMix64(seed: mixSeed(seed, UInt64(bitPattern: Int64(epoch)), UInt64(bitPattern: Int64(index))))
        let span = UInt64(2 * padding + 1)
        let top = Int(rng.next() % span), left = Int(rng.next() % span)
        let flip = rng.nextUnit() < 0.5
        return Augmentation(top: padding > 0 ? top : padding, left: padding > 0 ? left : padding,
                            flip: transform.horizontalFlip && flip)
    }

    /// Fills x ([indices.count, C, H, W]; a larger first dimension is allowed, only the first
    /// indices.count images are written) and labels for the given dataset indices.
    /// augment=false means no random transforms (resize/normalize still applied).
    public func fill(indices: ArraySlice<Int>, x: Tensor, labels: UnsafeMutablePointer<Int32>,
                     augment: Bool, seed: UInt64, epoch: Int) {
        let (c, h, w) = outputShape
        let perImage = c * h * w
        let shape = x.shape
        precondition(shape.count == 4 && shape[1] == c && shape[2] == h && shape[3] == w && shape[0] >= indices.count,
                     "batch tensor \(shapeString(shape)) cannot hold \(indices.count) images of (\(c),\(h),\(w))")
        var slot = 0
        for index in indices {
            dataset.pixels(index, into: source)
            labels[slot] = dataset.label(index)
            if let r = resizer { r.resize(source, into: resized, scratch: resizeScratch) }
            let aug = augment ? augmentation(index: index, seed: seed, epoch: epoch)
                              : Augmentation(top: padding, left: padding, flip: false)
            place(aug, into: x.data + slot * perImage)
            slot += 1
        }
    }

    public func fill(indices: [Int], x: Tensor, labels: UnsafeMutablePointer<Int32>,
                     augment: Bool, seed: UInt64, epoch: Int) {
        fill(indices: indices[...], x: x, labels: labels, augment: augment, seed: seed, epoch: epoch)
    }

    /// Crops `resized` at (top, left) of its zero-padded version, flips and normalizes into dst (C, H, W).
    /// Output (y, x) reads resized (y + dy, x + dx) unflipped or (y + dy, W - 1 - x + dx) flipped.
    private func place(_ aug: Augmentation, into dst: UnsafeMutablePointer<Float>) {
        let (h, w) = size
        let dy = aug.top - padding, dx = aug.left - padding
        // Output columns whose source column lies inside the image.
        let xLo = aug.flip ? max(0, dx) : max(0, -dx)
        let xHi = aug.flip ? min(w, w + dx) : min(w, w - dx)
        for ch in 0..<channels {
            let m = mean[ch], s = std[ch]
            let fillValue = (0 - m) / s  // padding is black before normalization, as in torchvision
            let plane = resized + ch * h * w
            for y in 0..<h {
                let out = dst + (ch * h + y) * w
                let sy = y + dy
                if sy < 0 || sy >= h || xLo >= xHi {
                    out.update(repeating: fillValue, count: w)
                    continue
                }
                let row = plane + sy * w
                for x in 0..<xLo { out[x] = fillValue }
                if aug.flip {
                    let base = row + (w - 1 + dx)
                    for x in xLo..<xHi { out[x] = (base[-x] - m) / s }
                } else {
                    let base = row + dx
                    for x in xLo..<xHi { out[x] = (base[x] - m) / s }
                }
                for x in xHi..<w { out[x] = fillValue }
            }
        }
    }
}
