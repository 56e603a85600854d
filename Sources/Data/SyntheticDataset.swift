// Generated images for smoke runs and tests: deterministic from the seed, with a weak class
// signal (a brighter horizontal stripe whose position depends on the label) so a model can learn.

import NN

enum SyntheticDataset {
    static func make(count: Int, shape: (c: Int, h: Int, w: Int), numClasses: Int, seed: UInt64,
                     split: Split) -> ImageDataset {
        precondition(count >= 0 && numClasses > 0, "synthetic dataset needs count >= 0 and numClasses > 0")
        let (c, h, w) = shape
        precondition(c > 0 && h > 0 && w > 0, "synthetic image shape must be positive, got \(c)x\(h)x\(w)")
        // The test split uses another derived seed so it is not a copy of the training images.
        var rng = SplitMix64(seed: mixSeed(seed, split == .train ? 0x7472_6169_6E : 0x7465_7374))
        var labels = [Int32](repeating: 0, count: count)
        for i in 0..<count { labels[i] = Int32(rng.next() % UInt64(numClasses)) }
        let perImage = c * h * w
        let floats = UnsafeMutablePointer<Float>.allocate(capacity: max(count * perImage, 1))
        let stripe = max(1, h / numClasses)
        for i in 0..<count {
            let img = floats + i * perImage
            let k = Int(labels[i])
            let top = (k * h / numClasses) % h
            for ch in 0..<c {
                for y in 0..<h {
                    let inStripe = y >= top && y < top + stripe
                    let row = img + (ch * h + y) * w
                    for x in 0..<w {
                        let u = rng.nextUnit()
                        row[x] = inStripe ? 0.5 + 0.5 * u : 0.6 * u  // in [0, 1)
                    }
                }
            }
        }
        return ImageDataset(name: "synthetic-\(split)", channels: c, height: h, width: w,
                            numClasses: numClasses, labels: labels, takingFloats: floats)
    }
}
