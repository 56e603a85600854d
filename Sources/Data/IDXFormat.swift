// The IDX format of MNIST and Fashion-MNIST: a big-endian header (magic, dimension sizes)
// followed by raw unsigned bytes. Images: magic 0x00000803, dims (n, rows, cols).
// Labels: magic 0x00000801, dims (n). Files may be gzipped (as Debian ships them) or not.

enum IDXFormat {
    static let imagesMagic: UInt32 = 0x0000_0803
    static let labelsMagic: UInt32 = 0x0000_0801
    static let numClasses = 10

    /// Largest payload (pixels or labels) one file may announce: 8 GiB (Fashion-MNIST's train
    /// images are 47 MB). Checked on the header, before anything else is read.
    static let maxPayloadBytes = 1 << 33
    /// Largest image side accepted (MNIST's is 28).
    static let maxSide = 1 << 16
    /// Bytes past the announced payload that are counted (to name the excess) before the file
    /// is refused without reading further.
    static let extraMargin = 1 << 20

    struct Images {
        var count: Int
        var rows: Int
        var cols: Int
        var pixels: [UInt8]  // (count, rows, cols), header stripped
    }

    /// Reads an IDX image file: the 16-byte header first (magic, dimensions, their product
    /// checked for overflow and against the limits), then exactly the announced bytes, then
    /// at most `extraMargin` more to check that nothing follows.
    static func readImages(path: String) throws -> Images {
        let reader = try CompressedFileReader(path: path)
        let header = try reader.read(upTo: 16)
        guard header.count == 16 else {
            throw DatasetError("\(path) truncated: \(header.count) bytes, too short for the 16-byte IDX image header")
        }
        let magic = bigEndian(header, 0)
        guard magic == imagesMagic else {
            throw DatasetError("\(path): expected magic \(hex(imagesMagic)) (IDX images), found \(hex(magic))")
        }
        let n = Int(bigEndian(header, 4)), rows = Int(bigEndian(header, 8)), cols = Int(bigEndian(header, 12))
        guard rows > 0, cols > 0 else {
            throw DatasetError("\(path): header says images of \(rows)x\(cols); both sizes must be positive")
        }
        guard rows <= maxSide, cols <= maxSide else {
            throw DatasetError("\(path): implausible header: images of \(rows)x\(cols) (the limit is \(maxSide) per side)")
        }
        let (perImage, o1) = rows.multipliedReportingOverflow(by: cols)
        let (expected, o2) = n.multipliedReportingOverflow(by: perImage)
        guard !o1, !o2, expected <= maxPayloadBytes else {
            throw DatasetError("\(path): implausible header: \(n) images of \(rows)x\(cols) "
                + "(more than the limit of \(maxPayloadBytes) bytes)")
        }
        let pixels = try reader.read(upTo: expected)
        try checkPayload(reader, found: pixels.count, expected: expected,
                         announced: "header says \(n) images of \(rows)x\(cols) (\(expected) bytes)")
        return Images(count: n, rows: rows, cols: cols, pixels: pixels)
    }

    /// Reads an IDX label file (header first, then exactly the announced labels) and checks
    /// magic, size and that every label is below 10.
    static func readLabels(path: String) throws -> [Int32] {
        let reader = try CompressedFileReader(path: path)
        let header = try reader.read(upTo: 8)
        guard header.count == 8 else {
            throw DatasetError("\(path) truncated: \(header.count) bytes, too short for the 8-byte IDX label header")
        }
        let magic = bigEndian(header, 0)
        guard magic == labelsMagic else {
            throw DatasetError("\(path): expected magic \(hex(labelsMagic)) (IDX labels), found \(hex(magic))")
        }
        let n = Int(bigEndian(header, 4))   // < 2^32, below maxPayloadBytes
        let bytes = try reader.read(upTo: n)
        try checkPayload(reader, found: bytes.count, expected: n, announced: "header says \(n) labels (\(n) bytes)")
        var labels = [Int32](repeating: 0, count: n)
        for i in 0..<n {
            let v = bytes[i]
            guard Int(v) < numClasses else {
                throw DatasetError("\(path): label \(v) of item \(i) is outside 0..<\(numClasses)")
            }
            labels[i] = Int32(v)
        }
        return labels
    }

    /// After the payload: too short is truncation; anything left is refused, naming how much
    /// (exactly up to `extraMargin`, "more than" beyond, without reading further).
    private static func checkPayload(_ reader: CompressedFileReader, found: Int, expected: Int, announced: String) throws {
        let path = reader.path
        if found < expected {
            throw DatasetError("\(path) truncated: \(announced) but only \(found) bytes follow")
        }
        let extra = try reader.countRemaining(upTo: extraMargin)
        if extra > extraMargin {
            throw DatasetError("\(path): \(announced) but more than \(expected + extraMargin) bytes follow "
                + "(more than \(extraMargin) extra; the rest was not read)")
        }
        if extra > 0 {
            throw DatasetError("\(path): \(announced) but \(expected + extra) bytes follow (\(extra) extra)")
        }
    }

    /// Loads one split from a pair of IDX files and checks that they agree.
    static func load(name: String, imagesPath: String, labelsPath: String) throws -> ImageDataset {
        let images = try readImages(path: imagesPath)
        let labels = try readLabels(path: labelsPath)
        guard images.count > 0 else {
            throw DatasetError("\(imagesPath): header says 0 images; a dataset needs at least one")
        }
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
