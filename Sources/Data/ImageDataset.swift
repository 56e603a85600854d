// An in-memory labelled image set. Pixels are kept as the files ship them (UInt8, CHW per
// image) or as Float for generated data; `pixels(_:into:)` turns one image into Float [0,1].

/// An error a user can cause (missing or corrupt dataset file); the message names the file.
public struct DatasetError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// An in-memory labelled image set, pixels as UInt8 (CHW per image) or Float.
public final class ImageDataset: @unchecked Sendable {
    public let name: String
    public let count: Int
    public let channels: Int
    public let height: Int
    public let width: Int
    public let numClasses: Int

    /// Floats per image: channels * height * width.
    public var imageSize: Int { channels * height * width }

    private enum Storage {
        case bytes(UnsafeMutablePointer<UInt8>)   // (count, C, H, W), 0...255
        case floats(UnsafeMutablePointer<Float>)  // (count, C, H, W), [0, 1]
    }
    private let storage: Storage
    private let labels: UnsafeMutablePointer<Int32>  // (count)

    private init(name: String, channels: Int, height: Int, width: Int, numClasses: Int,
                 labels: [Int32], storage: Storage) {
        precondition(channels > 0 && height > 0 && width > 0, "bad image shape \(channels)x\(height)x\(width)")
        precondition(numClasses > 0, "numClasses must be positive")
        precondition(labels.allSatisfy { $0 >= 0 && Int($0) < numClasses }, "label outside 0..<\(numClasses)")
        self.name = name
        self.count = labels.count
        self.channels = channels
        self.height = height
        self.width = width
        self.numClasses = numClasses
        self.storage = storage
        self.labels = .allocate(capacity: max(labels.count, 1))
        labels.withUnsafeBufferPointer { self.labels.initialize(from: $0.baseAddress!, count: labels.count) }
    }

    /// A dataset over 8-bit pixels: `pixels` holds labels.count images of channels*height*width bytes (CHW).
    public convenience init(name: String, channels: Int, height: Int, width: Int, numClasses: Int,
                            labels: [Int32], pixels: [UInt8]) {
        let n = labels.count * channels * height * width
        precondition(pixels.count == n, "\(pixels.count) pixel bytes for \(labels.count) images of \(channels)x\(height)x\(width)")
        let p = UnsafeMutablePointer<UInt8>.allocate(capacity: max(n, 1))
        pixels.withUnsafeBufferPointer { p.initialize(from: $0.baseAddress!, count: n) }
        self.init(name: name, channels: channels, height: height, width: width, numClasses: numClasses,
                  labels: labels, storage: .bytes(p))
    }

    /// A dataset over Float pixels in [0, 1]: labels.count images of channels*height*width floats (CHW).
    public convenience init(name: String, channels: Int, height: Int, width: Int, numClasses: Int,
                            labels: [Int32], floatPixels: [Float]) {
        let n = labels.count * channels * height * width
        precondition(floatPixels.count == n, "\(floatPixels.count) pixel floats for \(labels.count) images of \(channels)x\(height)x\(width)")
        let p = UnsafeMutablePointer<Float>.allocate(capacity: max(n, 1))
        floatPixels.withUnsafeBufferPointer { p.initialize(from: $0.baseAddress!, count: n) }
        self.init(name: name, channels: channels, height: height, width: width, numClasses: numClasses,
                  labels: labels, storage: .floats(p))
    }

    /// Takes ownership of `bytes` (count*C*H*W, allocated with UnsafeMutablePointer.allocate).
    convenience init(name: String, channels: Int, height: Int, width: Int, numClasses: Int,
         labels: [Int32], takingBytes bytes: UnsafeMutablePointer<UInt8>) {
        self.init(name: name, channels: channels, height: height, width: width, numClasses: numClasses,
                  labels: labels, storage: .bytes(bytes))
    }

    /// Takes ownership of `floats` (count*C*H*W, allocated with UnsafeMutablePointer.allocate).
    convenience init(name: String, channels: Int, height: Int, width: Int, numClasses: Int,
         labels: [Int32], takingFloats floats: UnsafeMutablePointer<Float>) {
        self.init(name: name, channels: channels, height: height, width: width, numClasses: numClasses,
                  labels: labels, storage: .floats(floats))
    }

    deinit {
        switch storage {
        case .bytes(let p): p.deallocate()
        case .floats(let p): p.deallocate()
        }
        labels.deallocate()
    }

    public func label(_ i: Int) -> Int32 {
        precondition(i >= 0 && i < count, "image index \(i) outside 0..<\(count) in \(name)")
        return labels[i]
    }

    /// Writes image i as Float in [0,1] (CHW) into dst (channels*height*width floats).
    /// 8-bit pixels become v / 255, as torchvision's ToTensor does.
    public func pixels(_ i: Int, into dst: UnsafeMutablePointer<Float>) {
        precondition(i >= 0 && i < count, "image index \(i) outside 0..<\(count) in \(name)")
        let n = imageSize
        switch storage {
        case .bytes(let p):
            let src = p + i * n
            for k in 0..<n { dst[k] = Float(src[k]) / 255 }
        case .floats(let p):
            dst.update(from: p + i * n, count: n)
        }
    }

    /// How many images carry each label (index = class).
    public func classCounts() -> [Int] {
        var counts = [Int](repeating: 0, count: numClasses)
        for i in 0..<count { counts[Int(labels[i])] += 1 }
        return counts
    }
}
