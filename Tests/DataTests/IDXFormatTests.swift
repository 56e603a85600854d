import XCTest
@testable import Data

final class IDXFormatTests: XCTestCase {
    // 3 train images of 2x3, 2 test images.
    func writeSet(_ dir: TempDir, gzip: Bool) {
        let suffix = gzip ? ".gz" : ""
        dir.write("train-images-idx3-ubyte" + suffix, idxImages(n: 3, rows: 2, cols: 3), gzip: gzip)
        dir.write("train-labels-idx1-ubyte" + suffix, idxLabels([7, 0, 9]), gzip: gzip)
        dir.write("t10k-images-idx3-ubyte" + suffix, idxImages(n: 2, rows: 2, cols: 3, pixels: [UInt8](repeating: 255, count: 12)), gzip: gzip)
        dir.write("t10k-labels-idx1-ubyte" + suffix, idxLabels([1, 2]), gzip: gzip)
    }

    func checkLoads(gzip: Bool) throws {
        let dir = TempDir()
        writeSet(dir, gzip: gzip)
        let train = try loadDataset(kind: .mnist, root: dir.path, split: .train)
        XCTAssertEqual(train.count, 3)
        XCTAssertEqual(train.channels, 1)
        XCTAssertEqual(train.height, 2)
        XCTAssertEqual(train.width, 3)
        XCTAssertEqual(train.numClasses, 10)
        XCTAssertEqual((0..<3).map { train.label($0) }, [7, 0, 9])
        XCTAssertEqual(train.image(1), (6..<12).map { Float($0) / 255 })
        let test = try loadDataset(kind: .fashionMNIST, root: dir.path, split: .test)
        XCTAssertEqual(test.count, 2)
        XCTAssertEqual((0..<2).map { test.label($0) }, [1, 2])
        XCTAssertEqual(test.image(1), [Float](repeating: 1, count: 6))
    }

    func testLoadsPlainFiles() throws { try checkLoads(gzip: false) }
    func testLoadsGzippedFiles() throws { try checkLoads(gzip: true) }

    func testBadImageMagic() {
        let dir = TempDir()
        writeSet(dir, gzip: true)
        let p = dir.write("train-images-idx3-ubyte.gz", idxImages(n: 3, rows: 2, cols: 3, magic: 0x801), gzip: true)
        assertDatasetError(try loadDataset(kind: .mnist, root: dir.path, split: .train),
                           contains: [p, "expected magic 0x00000803", "found 0x00000801"])
    }

    func testBadLabelMagic() {
        let dir = TempDir()
        writeSet(dir, gzip: false)
        let p = dir.write("train-labels-idx1-ubyte", idxLabels([1, 2, 3], magic: 0x12345678))
        assertDatasetError(try loadDataset(kind: .mnist, root: dir.path, split: .train),
                           contains: [p, "expected magic 0x00000801", "found 0x12345678"])
    }

    func testTruncatedImages() {
        let dir = TempDir()
        writeSet(dir, gzip: true)
        let p = dir.write("train-images-idx3-ubyte.gz", Array(idxImages(n: 3, rows: 2, cols: 3).dropLast()), gzip: true)
        assertDatasetError(try loadDataset(kind: .mnist, root: dir.path, split: .train),
                           contains: [p + " truncated", "header says 3 images of 2x3 (18 bytes) but only 17 bytes follow"])
    }

    func testTruncatedHeader() {
        let dir = TempDir()
        writeSet(dir, gzip: false)
        let p = dir.write("train-images-idx3-ubyte", [0, 0, 8, 3, 0, 0])
        assertDatasetError(try loadDataset(kind: .mnist, root: dir.path, split: .train), contains: [p, "truncated"])
    }

    func testExtraBytes() {
        let dir = TempDir()
        writeSet(dir, gzip: false)
        let p = dir.write("train-images-idx3-ubyte", idxImages(n: 3, rows: 2, cols: 3) + [1, 2])
        assertDatasetError(try loadDataset(kind: .mnist, root: dir.path, split: .train),
                           contains: [p, "but 20 bytes follow (2 extra)"])
    }

    func testTruncatedLabels() {
        let dir = TempDir()
        writeSet(dir, gzip: false)
        let p = dir.write("train-labels-idx1-ubyte", idxLabels([1, 2], count: 3))
        assertDatasetError(try loadDataset(kind: .mnist, root: dir.path, split: .train),
                           contains: [p + " truncated", "header says 3 labels (3 bytes) but only 2 bytes follow"])
    }

    func testCountMismatch() {
        let dir = TempDir()
        writeSet(dir, gzip: false)
        let p = dir.write("train-labels-idx1-ubyte", idxLabels([1, 2, 3, 4]))
        assertDatasetError(try loadDataset(kind: .mnist, root: dir.path, split: .train),
                           contains: [p, "4 labels", "train-images-idx3-ubyte", "3 images"])
    }

    func testLabelOutOfRange() {
        let dir = TempDir()
        writeSet(dir, gzip: false)
        let p = dir.write("train-labels-idx1-ubyte", idxLabels([1, 10, 3]))
        assertDatasetError(try loadDataset(kind: .mnist, root: dir.path, split: .train),
                           contains: [p, "label 10", "item 1"])
    }

    func testCorruptGzipStream() {
        let dir = TempDir()
        writeSet(dir, gzip: true)
        // A gzip stream cut short: zlib must report it rather than return a short read silently.
        let full = dir.write("train-images-idx3-ubyte.gz", idxImages(n: 3, rows: 2, cols: 3), gzip: true)
        let bytes = [UInt8](FileManager.default.contents(atPath: full)!)
        dir.write("train-images-idx3-ubyte.gz", Array(bytes.prefix(bytes.count - 10)))
        assertDatasetError(try loadDataset(kind: .mnist, root: dir.path, split: .train), contains: [full])
    }

    func testPlainFilePreferredOverGzip() throws {
        let dir = TempDir()
        writeSet(dir, gzip: true)
        dir.write("train-images-idx3-ubyte", idxImages(n: 3, rows: 2, cols: 3, pixels: [UInt8](repeating: 51, count: 18)))
        let train = try loadDataset(kind: .mnist, root: dir.path, split: .train)
        XCTAssertEqual(train.image(0), [Float](repeating: 0.2, count: 6))
    }

    func testMissingFashionMNISTNamesPackage() {
        let root = "/nonexistent/fashion-mnist-\(UInt32.random(in: 0...UInt32.max))"
        assertDatasetError(try loadDataset(kind: .fashionMNIST, root: root, split: .train),
                           contains: [root + "/train-images-idx3-ubyte", "apt-get install -y dataset-fashion-mnist"])
    }

    func testMissingMNISTSaysWhereToPutFiles() {
        let dir = TempDir()
        dir.write("train-images-idx3-ubyte", idxImages(n: 3, rows: 2, cols: 3))
        assertDatasetError(try loadDataset(kind: .mnist, root: dir.path, split: .train),
                           contains: [dir.path + "/train-labels-idx1-ubyte", "put the four IDX files"])
    }

    func testRealFashionMNIST() throws {
        let root = "/usr/share/datasets/fashion-mnist"
        guard FileManager.default.fileExists(atPath: root) else {
            throw XCTSkip("\(root) is absent (apt-get install -y dataset-fashion-mnist)")
        }
        let train = try loadDataset(kind: .fashionMNIST, root: root, split: .train)
        XCTAssertEqual(train.count, 60000)
        XCTAssertEqual(train.channels, 1)
        XCTAssertEqual(train.height, 28)
        XCTAssertEqual(train.width, 28)
        XCTAssertEqual(train.classCounts(), [Int](repeating: 6000, count: 10))
        let test = try loadDataset(kind: .fashionMNIST, root: "", split: .test)  // "" = default root
        XCTAssertEqual(test.count, 10000)
        XCTAssertEqual(test.classCounts(), [Int](repeating: 1000, count: 10))
        let img = train.image(0)
        XCTAssertTrue(img.allSatisfy { $0 >= 0 && $0 <= 1 })
        XCTAssertGreaterThan(img.reduce(0, +), 10)  // not blank
    }
}
