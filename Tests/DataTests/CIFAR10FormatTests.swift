import XCTest
@testable import Data

final class CIFAR10FormatTests: XCTestCase {
    /// One record: label byte then R, G, B planes; plane c of record r is filled with 10*r + c.
    func record(label: UInt8, r: Int) -> [UInt8] {
        [label] + (0..<3).flatMap { c in [UInt8](repeating: UInt8(10 * r + c), count: 1024) }
    }

    func testParsesTestBatchInSubdirectory() throws {
        let dir = TempDir()
        dir.write("cifar-10-batches-bin/test_batch.bin", record(label: 3, r: 0) + record(label: 9, r: 1))
        let ds = try loadDataset(kind: .cifar10, root: dir.path, split: .test)
        XCTAssertEqual(ds.count, 2)
        XCTAssertEqual(ds.channels, 3)
        XCTAssertEqual(ds.height, 32)
        XCTAssertEqual(ds.width, 32)
        XCTAssertEqual([ds.label(0), ds.label(1)], [3, 9])
        let img = ds.image(1)
        XCTAssertEqual(img[0], 10 / 255)     // R plane
        XCTAssertEqual(img[1024], 11 / 255)  // G plane
        XCTAssertEqual(img[3071], 12 / 255)  // B plane
    }

    func testTrainConcatenatesFiveBatches() throws {
        let dir = TempDir()
        for b in 1...5 { dir.write("data_batch_\(b).bin", record(label: UInt8(b), r: b)) }
        let ds = try loadDataset(kind: .cifar10, root: dir.path, split: .train)
        XCTAssertEqual(ds.count, 5)
        XCTAssertEqual((0..<5).map { ds.label($0) }, [1, 2, 3, 4, 5])
        XCTAssertEqual(ds.image(4)[0], 50 / 255)
    }

    func testMissingTrainBatchIsNamed() {
        let dir = TempDir()
        for b in [1, 2, 4, 5] { dir.write("data_batch_\(b).bin", record(label: 0, r: 0)) }
        assertDatasetError(try loadDataset(kind: .cifar10, root: dir.path, split: .train),
                           contains: [dir.path + "/data_batch_3.bin"])
    }

    func testBadSizeNamesFile() {
        let dir = TempDir()
        let p = dir.write("test_batch.bin", record(label: 1, r: 0) + [1, 2, 3])
        assertDatasetError(try loadDataset(kind: .cifar10, root: dir.path, split: .test),
                           contains: [p, "3076", "3073"])
    }

    func testBadLabelNamesFile() {
        let dir = TempDir()
        let p = dir.write("test_batch.bin", record(label: 1, r: 0) + record(label: 200, r: 0))
        assertDatasetError(try loadDataset(kind: .cifar10, root: dir.path, split: .test),
                           contains: [p, "record 1", "label 200"])
    }

    func testMissingCIFARSaysWhereToPutFiles() {
        let root = "/nonexistent/cifar-\(UInt32.random(in: 0...UInt32.max))"
        assertDatasetError(try loadDataset(kind: .cifar10, root: root, split: .test),
                           contains: [root + "/test_batch.bin", root + "/cifar-10-batches-bin/test_batch.bin", "binary version"])
    }
}
