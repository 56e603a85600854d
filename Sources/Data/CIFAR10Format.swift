// The CIFAR-10 binary version: each record is 1 label byte followed by 3072 pixel bytes,
// the R, G and B planes of a 32x32 image (already CHW). Train = data_batch_1..5.bin,
// test = test_batch.bin, either directly in the root or in root/cifar-10-batches-bin/.

enum CIFAR10Format {
    static let channels = 3, side = 32
    static let numClasses = 10
    static let imageBytes = channels * side * side  // 3072
    static let recordBytes = 1 + imageBytes         // 3073
    static let trainFiles = (1...5).map { "data_batch_\($0).bin" }
    static let testFiles = ["test_batch.bin"]
    static let subdirectory = "cifar-10-batches-bin"

    /// Splits the records of one file into labels and pixels, appending to both.
    static func parse(_ bytes: [UInt8], path: String, labels: inout [Int32], pixels: inout [UInt8]) throws {
        guard !bytes.isEmpty, bytes.count % recordBytes == 0 else {
            throw DatasetError("\(path): size \(bytes.count) bytes is not a positive multiple of the \(recordBytes)-byte CIFAR-10 record (1 label byte + 3x32x32 pixels); the file is truncated or not CIFAR-10 binary")
        }
        let n = bytes.count / recordBytes
        labels.reserveCapacity(labels.count + n)
        pixels.reserveCapacity(pixels.count + n * imageBytes)
        for r in 0..<n {
            let at = r * recordBytes
            let label = bytes[at]
            guard Int(label) < numClasses else {
                throw DatasetError("\(path): record \(r) has label \(label), outside 0..<\(numClasses)")
            }
            labels.append(Int32(label))
            pixels.append(contentsOf: bytes[(at + 1)..<(at + recordBytes)])
        }
    }

    static func readFile(path: String, labels: inout [Int32], pixels: inout [UInt8]) throws {
        let bytes = try CompressedFileReader(path: path).readAll()
        try parse(bytes, path: path, labels: &labels, pixels: &pixels)
    }

    static func load(root: String, split: Split) throws -> ImageDataset {
        let names = split == .train ? trainFiles : testFiles
        let candidates = [root, root + "/" + subdirectory]
        guard let dir = candidates.first(where: { existingFile($0 + "/" + names[0]) != nil }) else {
            throw DatasetError("CIFAR-10 not found: looked for \(candidates.map { $0 + "/" + names[0] }.joined(separator: " and ")). "
                + "Put the binary version (data_batch_1.bin … data_batch_5.bin and test_batch.bin, from cifar-10-binary.tar.gz) "
                + "in \(root) or in \(root)/\(subdirectory)")
        }
        var labels = [Int32](), pixels = [UInt8]()
        for name in names {
            let base = dir + "/" + name
            guard let path = existingFile(base) else {
                throw DatasetError("CIFAR-10 is incomplete: \(base) is missing (the train split needs data_batch_1.bin … data_batch_5.bin)")
            }
            try readFile(path: path, labels: &labels, pixels: &pixels)
        }
        return ImageDataset(name: "cifar10-\(split)", channels: channels, height: side, width: side,
                            numClasses: numClasses, labels: labels, pixels: pixels)
    }
}
