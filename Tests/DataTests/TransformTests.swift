import XCTest
import NN
@testable import Data

final class TransformTests: XCTestCase {
    func resize(_ input: [Float], c: Int = 1, inH: Int, inW: Int, outH: Int, outW: Int) -> [Float] {
        let r = BilinearResizer(channels: c, inH: inH, inW: inW, outH: outH, outW: outW)
        var out = [Float](repeating: .nan, count: c * outH * outW)
        var scratch = [Float](repeating: 0, count: r.scratchCount)
        input.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                scratch.withUnsafeMutableBufferPointer { s in r.resize(src.baseAddress!, into: dst.baseAddress!, scratch: s.baseAddress!) }
            }
        }
        return out
    }

    /// PyTorch: F.interpolate(torch.tensor([[[[0.,1],[2,3]]]]), size=(4,4), mode='bilinear', align_corners=False)
    let upsampled2x2: [Float] = [0.0, 0.25, 0.75, 1.0,
                                 0.5, 0.75, 1.25, 1.5,
                                 1.5, 1.75, 2.25, 2.5,
                                 2.0, 2.25, 2.75, 3.0]

    func testBilinear2x2To4x4MatchesPyTorch() {
        assertClose(resize([0, 1, 2, 3], inH: 2, inW: 2, outH: 4, outW: 4), upsampled2x2, tol: 0)
    }

    func testBilinearDownscaleByHand() {
        // 3 -> 2: scale 1.5, src = 0.25 and 1.75.
        assertClose(resize([0, 10, 20], inH: 1, inW: 3, outH: 1, outW: 2), [2.5, 17.5])
        // Two channels are resized independently.
        assertClose(resize([0, 1, 2, 3, 0, 10, 20, 30], c: 2, inH: 2, inW: 2, outH: 4, outW: 4),
                    upsampled2x2 + upsampled2x2.map { $0 * 10 }, tol: 1e-5)
    }

    func testBilinear28To96AgainstNaiveFormula() {
        var rng = SplitMix64(seed: 5)
        let input = (0..<(28 * 28)).map { _ in rng.nextUnit() }
        let out = resize(input, inH: 28, inW: 28, outH: 96, outW: 96)
        func src(_ d: Int) -> (Int, Int, Double) {
            let s = max((Double(d) + 0.5) * 28 / 96 - 0.5, 0)
            let i0 = min(Int(s), 27)
            return (i0, min(i0 + 1, 27), s - Double(i0))
        }
        var expected = [Float]()
        for y in 0..<96 {
            let (y0, y1, ly) = src(y)
            for x in 0..<96 {
                let (x0, x1, lx) = src(x)
                let p = { (yy: Int, xx: Int) in Double(input[yy * 28 + xx]) }
                let v = (1 - ly) * ((1 - lx) * p(y0, x0) + lx * p(y0, x1)) + ly * ((1 - lx) * p(y1, x0) + lx * p(y1, x1))
                expected.append(Float(v))
            }
        }
        assertClose(out, expected, tol: 1e-5)
    }

    // MARK: BatchLoader

    /// 2x2 gray images with byte values [0, 85, 170, 255] (i.e. [0, 1/3, 2/3, 1]).
    func tinyDataset(count: Int = 1) -> ImageDataset {
        ImageDataset(name: "tiny", channels: 1, height: 2, width: 2, numClasses: 10,
                     labels: (0..<count).map { Int32($0 % 10) },
                     pixels: (0..<count).flatMap { _ in [UInt8]([0, 85, 170, 255]) })
    }

    func testLoaderResizesLikePyTorch() {
        let loader = BatchLoader(dataset: tinyDataset(), transform: TransformConfig(imageSize: 4))
        XCTAssertTrue(loader.outputShape == (1, 4, 4))
        let x = Tensor(shape: [1, 1, 4, 4])
        var label: Int32 = -1
        loader.fill(indices: [0], x: x, labels: &label, augment: true, seed: 0, epoch: 0)
        assertClose(x.array, upsampled2x2.map { $0 / 3 }, tol: 1e-6)
        XCTAssertEqual(label, 0)
    }

    func testNormalize() {
        let loader = BatchLoader(dataset: tinyDataset(), transform: TransformConfig(normalize: ([0.5], [0.25])))
        let x = Tensor(shape: [1, 1, 2, 2])
        var label: Int32 = -1
        loader.fill(indices: [0], x: x, labels: &label, augment: false, seed: 0, epoch: 0)
        assertClose(x.array, [0, 1.0 / 3, 2.0 / 3, 1].map { (Float($0) - 0.5) / 0.25 }, tol: 1e-6)
    }

    func synthetic(_ n: Int) throws -> ImageDataset {
        try loadDataset(kind: .synthetic, root: "", split: .train, syntheticCount: n,
                        syntheticShape: (3, 6, 5), numClasses: 10, seed: 9)
    }

    func batch(_ loader: BatchLoader, _ idx: [Int], augment: Bool = true, seed: UInt64 = 7, epoch: Int = 3) -> (x: [Float], labels: [Int32]) {
        let (c, h, w) = loader.outputShape
        let x = Tensor(shape: [idx.count, c, h, w])
        var labels = [Int32](repeating: -1, count: idx.count)
        labels.withUnsafeMutableBufferPointer { loader.fill(indices: idx, x: x, labels: $0.baseAddress!, augment: augment, seed: seed, epoch: epoch) }
        return (x.array, labels)
    }

    func testAugmentationIndependentOfBatchComposition() throws {
        let ds = try synthetic(16)
        let cfg = TransformConfig(imageSize: 8, normalize: ([0.5, 0.4, 0.3], [0.2, 0.3, 0.4]), randomCropPadding: 2, horizontalFlip: true)
        let all = batch(BatchLoader(dataset: ds, transform: cfg), Array(0..<16))
        let per = 3 * 8 * 8
        // Another loader (another rank), other indices, other order, ArraySlice entry point.
        let other = BatchLoader(dataset: ds, transform: cfg)
        let order = [13, 2, 7, 0, 11]
        let part = batch(other, Array(([99] + order)[1...]))
        for (slot, i) in order.enumerated() {
            XCTAssertEqual(Array(part.x[(slot * per)..<((slot + 1) * per)]), Array(all.x[(i * per)..<((i + 1) * per)]), "image \(i)")
            XCTAssertEqual(part.labels[slot], ds.label(i))
        }
        // ArraySlice with a non-zero start index.
        let slice = Array(0..<16)[4..<6]
        let x = Tensor(shape: [2, 3, 8, 8])
        var labels: [Int32] = [0, 0]
        labels.withUnsafeMutableBufferPointer { other.fill(indices: slice, x: x, labels: $0.baseAddress!, augment: true, seed: 7, epoch: 3) }
        XCTAssertEqual(x.array, Array(all.x[(4 * per)..<(6 * per)]))
        // Another epoch draws other augmentations for at least some images.
        let next = batch(other, Array(0..<16), epoch: 4)
        XCTAssertNotEqual(next.x, all.x)
        // The draws are spread: some images flipped, some not, several crop offsets.
        let augs = (0..<16).map { other.augmentation(index: $0, seed: 7, epoch: 3) }
        XCTAssertTrue(augs.contains { $0.flip } && augs.contains { !$0.flip })
        XCTAssertGreaterThan(Set(augs.map { $0.top * 10 + $0.left }).count, 3)
        XCTAssertTrue(augs.allSatisfy { (0...4).contains($0.top) && (0...4).contains($0.left) })
    }

    func testCropAndFlipMatchDefinition() throws {
        let ds = try synthetic(12)
        let mean: [Float] = [0.1, 0.2, 0.3], std: [Float] = [0.5, 0.6, 0.7]
        let plain = BatchLoader(dataset: ds, transform: TransformConfig(normalize: (mean, std)))
        let aug = BatchLoader(dataset: ds, transform: TransformConfig(normalize: (mean, std), randomCropPadding: 3, horizontalFlip: true))
        let (c, h, w) = (3, 6, 5)
        let idx = Array(0..<12)
        let base = batch(plain, idx, augment: false)
        let got = batch(aug, idx)
        let noAug = batch(aug, idx, augment: false)
        XCTAssertEqual(noAug.x, base.x, "augment=false must be the centered crop without flip")
        for i in idx {
            let a = aug.augmentation(index: i, seed: 7, epoch: 3)
            for ch in 0..<c { for y in 0..<h { for x in 0..<w {
                let sx = (a.flip ? w - 1 - x : x) + a.left - 3, sy = y + a.top - 3
                let expected = (sy >= 0 && sy < h && sx >= 0 && sx < w)
                    ? base.x[((i * c + ch) * h + sy) * w + sx]
                    : (0 - mean[ch]) / std[ch]
                XCTAssertEqual(got.x[((i * c + ch) * h + y) * w + x], expected, "image \(i) c\(ch) y\(y) x\(x)")
            }}}
        }
    }

    func testFlipOnlyMirrors() throws {
        let ds = try synthetic(8)
        let plain = BatchLoader(dataset: ds, transform: TransformConfig())
        let flip = BatchLoader(dataset: ds, transform: TransformConfig(horizontalFlip: true))
        let base = batch(plain, Array(0..<8), augment: false), got = batch(flip, Array(0..<8))
        var flipped = 0
        for i in 0..<8 {
            let a = flip.augmentation(index: i, seed: 7, epoch: 3)
            XCTAssertEqual(a.top, 0); XCTAssertEqual(a.left, 0)
            if a.flip { flipped += 1 }
            for r in 0..<(3 * 6) { for x in 0..<5 {
                let o = (i * 18 + r) * 5
                XCTAssertEqual(got.x[o + x], base.x[o + (a.flip ? 4 - x : x)])
            }}
        }
        XCTAssertGreaterThan(flipped, 0)
    }

    func testFillWithEveryTransformIsFinite() throws {
        // 256 Fashion-MNIST-sized images upsampled to 96x96 with crop, flip and normalize.
        // (Speed is measured by `resnet bench`, never by a unit test.)
        let ds = try loadDataset(kind: .synthetic, root: "", split: .train, syntheticCount: 256, syntheticShape: (1, 28, 28))
        let loader = BatchLoader(dataset: ds, transform: TransformConfig(imageSize: 96, normalize: ([0.286], [0.353]),
                                                                         randomCropPadding: 4, horizontalFlip: true))
        let x = Tensor(shape: [256, 1, 96, 96])
        var labels = [Int32](repeating: 0, count: 256)
        labels.withUnsafeMutableBufferPointer { loader.fill(indices: Array(0..<256), x: x, labels: $0.baseAddress!, augment: true, seed: 1, epoch: 0) }
        XCTAssertTrue(x.array.allSatisfy { $0.isFinite })
        XCTAssertEqual(labels, (0..<256).map { ds.label($0) })
    }
}
