// The IDX format of MNIST and Fashion-MNIST: a big-endian header (magic, dimension sizes)
// followed by raw unsigned bytes. Images: magic 0x00000803, dims (n, rows, cols).
// Labels: magic 0x00000801, dims (n). Files may be gzipped (as Debian ships them) or not.

enum IDXFormat {
    static let imagesMagic: UInt32 = 0x0000_0803
    static let labelsMagic: UInt32 = 0x0000_0801
    static let numClasses = 10

    struct Images {
        var count: Int
        var rows: Int
        var cols: Int
        var pixels: [UInt8]  // (count, rows, cols), header stripped
    }

    /// Reads an IDX image file and checks magic, dimensions and that exactly the announced bytes follow.
    static func readImages(path: String) throws -> Images {
        let bytes = try CompressedFileReader(path: path).readAll()
        guard bytes.count >= 16 else {
            throw DatasetError("\(path) truncated: \(bytes.count) bytes, too short for the 16-byte IDX image header")
        }
        let magic = bigEndian(bytes, 0)
        guard magic == imagesMagic else {
            throw DatasetError("\(path): expected magic \(hex(imagesMagic)) (IDX images), found \(hex(magic))")
        }
        let n = Int(bigEndian(bytes, 4)), rows = Int(bigEndian(bytes, 8)), cols = Int(bigEndian(bytes, 12))
        guard rows > 0, cols > 0 else {
            throw DatasetError("\(path): header says images of \(rows)x\(cols); both sizes must be positive")
        }
        let (perImage, o1) = rows.multipliedReportingOverflow(by: cols)
        let (expected, o2) = n.multipliedReportingOverflow(by: perImage)
        guard !o1, !o2 else {
            throw DatasetError("\(path): implausible header: \(n) images of \(rows)x\(cols)")
        }
        let follow = bytes.count - 16
        let announced = "header says \(n) images of \(rows)x\(cols) (\(expected) bytes)"
        if follow < expected {
            throw DatasetError("\(path) truncated: \(announced) but only \(follow) bytes follow")
        }
        if follow > expected {
            throw DatasetError("\(path): \(announced) but \(follow) bytes follow (\(follow - expected) extra)")
        }
        return Images(count: n, rows: rows, cols: cols, pixels: Array(bytes[16...]))
    }

    /// Reads an IDX label file and checks magic, size and that every label is below 10.
    static func readLabels(path: String) throws -> [Int32] {
        let bytes = try CompressedFileReader(path: path).readAll()
        guard bytes.count >= 8 else {
            throw DatasetError("\(path) truncated: \(bytes.count) bytes, too short for the 8-byte IDX label header")
        }
        let magic = bigEndian(bytes, 0)
        guard magic == labelsMagic else {
            throw DatasetError("\(path): expected magic \(hex(labelsMagic)) (IDX labels), found \(hex(magic))")
        }
        let n = Int(bigEndian(bytes, 4))
        let follow = bytes.count - 8
        let announced = "header says \(n) labels (\(n) bytes)"
        if follow < n {
            throw DatasetError("\(path) truncated: \(announced) but only \(follow) bytes follow")
        }
        if follow > n {
            throw DatasetError("\(path): \(announced) but \(follow) bytes follow (\(follow - n) extra)")
        }
        var labels = [Int32](repeating: 0, count: n)
        for i in 0..<n {
            let v = bytes[8 + i]
            guard Int(v) < numClasses else {
                throw DatasetError("\(path): label \(v) of item \(i) is outside 0..<\(numClasses)")
            }
            labels[i] = Int32(v)
        }
        return labels
    }

    /// Loads one split from a pair of IDX files and checks that they agree.
    static func load(name: String, imagesPath: String, labelsPath: String) throws -> ImageDataset {
        let images = try readImages(path: imagesPath)
        let labels = try readLabels(path: labelsPath)
        guard labels.count == images.count else {
            throw DatasetError("\(labelsPath) holds \(labels.count) labels but \(imagesPath) holds \(images.count) images; they must match")
        }
        return ImageDataset(name: name, channels: 1, height: images.rows, width: images.cols,
                            numClasses: numClasses, labels: labels, pixels: images.pixels)
    }

    private static func bigEndian(_ b: [UInt8], _ at: Int) -> UInt32 {
        UInt32(b[at]) << 24 | UInt32(b[at + 1]) << 16 | UInt32(b[at + 2]) << 8 | UInt32(b[at + 3])
    }
}

func hex(_ v: UInt32) -> String {
    let s = String(v, radix: 16)
    return "0x" + String(repeating: "0", count: max(0, 8 - s.count)) + s
}
