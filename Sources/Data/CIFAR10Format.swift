// The CIFAR-10 binary version: each record is 1 label byte followed by 3072 pixel bytes,
// the R, G and B planes of a 32x32 image (already CHW). Train = data_batch_1..5.bin,
// test = test_batch.bin, either directly in the root or in root/cifar-10-batches-bin/.
#if canImport(Glibc)
import Glibc
#endif

enum CIFAR10Format {
    static let channels = 3, side = 32
    static let numClasses = 10
    static let imageBytes = channels * side * side  // 3072
    static let recordBytes = 1 + imageBytes         // 3073
    static let trainFiles = (1...5).map { "data_batch_\($0).bin" }
    static let testFiles = ["test_batch.bin"]
    static let subdirectory = "cifar-10-batches-bin"

    /// Most records one file may hold: 60000, all of CIFAR-10 in one file (the official files
    /// hold 10000 each). A gzipped file is decompressed at most this far (184 MB) before it is
    /// refused.
    static let maxRecordsPerFile = 60_000
    static let maxFileBytes = maxRecordsPerFile * recordBytes

    /// Splits the records of one file into labels and pixels, appending to both.
    static func parse(_ bytes: [UInt8], path: String, labels: inout [Int32], pixels: inout [UInt8]) throws {
        guard !bytes.isEmpty, bytes.count % recordBytes == 0 else { throw badSize(path, "\(bytes.count) bytes") }
        guard bytes.count <= maxFileBytes else { throw tooLarge(path, "\(bytes.count) bytes") }
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

    /// Reads one file without holding more than `maxFileBytes` + 1 decompressed bytes: a plain
    /// file's size is checked before reading, a gzipped one is refused as soon as it passes
    /// the limit.
    static func readFile(path: String, labels: inout [Int32], pixels: inout [UInt8]) throws {
        var st = stat()
        if stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, !isGzip(path) {
            let size = Int(st.st_size)
            if size > maxFileBytes { throw tooLarge(path, "\(size) bytes") }
            if size == 0 || size % recordBytes != 0 { throw badSize(path, "\(size) bytes") }
        }
        let bytes = try CompressedFileReader(path: path).read(upTo: maxFileBytes + 1)
        if bytes.count > maxFileBytes { throw tooLarge(path, "more than \(maxFileBytes) bytes (the rest was not read)") }
        try parse(bytes, path: path, labels: &labels, pixels: &pixels)
    }

    private static func badSize(_ path: String, _ size: String) -> DatasetError {
        DatasetError("\(path): size \(size) is not a positive multiple of the \(recordBytes)-byte CIFAR-10 record (1 label byte + 3x32x32 pixels); the file is truncated or not CIFAR-10 binary")
    }

    private static func tooLarge(_ path: String, _ size: String) -> DatasetError {
        DatasetError("\(path): size \(size) exceeds the limit of \(maxRecordsPerFile) CIFAR-10 records (\(maxFileBytes) bytes) per file")
    }

    /// Whether the file starts with the gzip magic bytes (1f 8b).
    private static func isGzip(_ path: String) -> Bool {
        guard let f = fopen(path, "rb") else { return false }
        defer { fclose(f) }
        var magic: (UInt8, UInt8) = (0, 0)
        return withUnsafeMutableBytes(of: &magic) { fread($0.baseAddress, 1, 2, f) } == 2 && magic == (0x1f, 0x8b)
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
