import XCTest
import Foundation
import CZlib
import NN
@testable import Data

/// Dataset readers under hostile input: gzip bombs, absurd headers, truncation. Every case
/// must end in a DatasetError naming the file, after reading no more than the header announces
/// (plus a small margin) — never by inflating the whole file or trapping.
final class BoundedInputTests: XCTestCase {
    /// Writes `prefix` followed by `zeros` zero bytes, gzip-compressed (zeros compress ~1000:1,
    /// so 200 MB of them make a file of about 200 KB).
    @discardableResult
    func writeGzipBomb(_ dir: TempDir, _ name: String, prefix: [UInt8], zeros: Int) -> String {
        let p = dir.path + "/" + name
        try! FileManager.default.createDirectory(atPath: (p as NSString).deletingLastPathComponent,
                                                 withIntermediateDirectories: true)
        let f = gzopen(p, "wb1")!
        prefix.withUnsafeBytes { _ = gzwrite(f, $0.baseAddress, UInt32($0.count)) }
        let chunk = [UInt8](repeating: 0, count: 1 << 20)
        var left = zeros
        while left > 0 {
            let n = min(left, chunk.count)
            chunk.withUnsafeBytes { precondition(gzwrite(f, $0.baseAddress, UInt32(n)) == n) }
            left -= n
        }
        gzclose(f)
        return p
    }

    func header(magic: UInt32 = 0x803, _ dims: [UInt32]) -> [UInt8] {
        bigEndian32(magic) + dims.flatMap { bigEndian32($0) }
    }

    // MARK: IDX

    func testGzipBombAfterValidImagesIsRefusedWithoutInflatingIt() throws {
        let dir = TempDir()
        let valid = idxImages(n: 10, rows: 28, cols: 28)
        let p = writeGzipBomb(dir, "train-images-idx3-ubyte.gz", prefix: valid, zeros: 200 << 20)
        let size = try XCTUnwrap(FileManager.default.attributesOfItem(atPath: p)[.size] as? Int)
        XCTAssertLessThan(size, 1 << 20, "the bomb should be small on disk")
        dir.write("train-labels-idx1-ubyte", idxLabels([UInt8](repeating: 1, count: 10)))
        assertDatasetError(try IDXFormat.readImages(path: p),
                           contains: [p, "header says 10 images of 28x28 (7840 bytes)",
                                      "but more than \(7840 + IDXFormat.extraMargin) bytes follow", "extra", "not read"])
        assertDatasetError(try loadDataset(kind: .mnist, root: dir.path, split: .train), contains: [p, "extra"])
    }

    func testGzipBombAfterLabelsIsRefused() {
        let dir = TempDir()
        let p = writeGzipBomb(dir, "t10k-labels-idx1-ubyte.gz", prefix: idxLabels([1, 2, 3]), zeros: 50 << 20)
        assertDatasetError(try IDXFormat.readLabels(path: p),
                           contains: [p, "header says 3 labels (3 bytes) but more than", "extra"])
    }

    func testBombBehindAnAbsurdHeaderIsRefusedFromTheHeaderAlone() {
        let dir = TempDir()
        // 2^31 images of 28x28 = 1.7 TB announced: refused before a pixel is read.
        let p = writeGzipBomb(dir, "a.gz", prefix: header([1 << 31, 28, 28]), zeros: 20 << 20)
        assertDatasetError(try IDXFormat.readImages(path: p),
                           contains: [p, "implausible header", "2147483648 images of 28x28", "limit"])
    }

    func testAbsurdDimensionsRefused() {
        let dir = TempDir()
        // The product of the three dimensions overflows Int.
        let p1 = dir.write("overflow", header([0xFFFF_FFFF, 0xFFFF, 0xFFFF]))
        assertDatasetError(try IDXFormat.readImages(path: p1), contains: [p1, "implausible header", "4294967295 images"])
        // A side beyond the limit.
        let p2 = dir.write("wide", header([1, 1, 0xFFFF_FFFF]) + [0])
        assertDatasetError(try IDXFormat.readImages(path: p2), contains: [p2, "implausible header", "limit"])
        // Zero sizes.
        let p3 = dir.write("flat", header([1, 0, 28]))
        assertDatasetError(try IDXFormat.readImages(path: p3), contains: [p3, "must be positive"])
        // 4 billion labels announced, 3 present: a truncation error, no 4 GB buffer.
        let p4 = dir.write("labels", idxLabels([1, 2, 3], count: 0xFFFF_FFFF))
        assertDatasetError(try IDXFormat.readLabels(path: p4),
                           contains: [p4 + " truncated", "header says 4294967295 labels", "only 3 bytes follow"])
    }

    func testTruncatedFilesRefused() {
        let dir = TempDir()
        let full = idxImages(n: 10, rows: 28, cols: 28)
        for gzip in [false, true] {
            let name = gzip ? "t.gz" : "t"
            // Cut in the header.
            let p1 = dir.write(name, Array(full.prefix(9)), gzip: gzip)
            assertDatasetError(try IDXFormat.readImages(path: p1), contains: [p1 + " truncated", "9 bytes", "16-byte IDX image header"])
            // Cut in the pixels.
            let p2 = dir.write(name, Array(full.prefix(16 + 7000)), gzip: gzip)
            assertDatasetError(try IDXFormat.readImages(path: p2),
                               contains: [p2 + " truncated", "(7840 bytes) but only 7000 bytes follow"])
            // A million images announced, ten present.
            let p3 = dir.write(name, header([1_000_000, 28, 28]) + Array(full.dropFirst(16)), gzip: gzip)
            assertDatasetError(try IDXFormat.readImages(path: p3),
                               contains: [p3 + " truncated", "1000000 images of 28x28 (784000000 bytes) but only 7840 bytes follow"])
        }
        // A gzip stream cut short inside the pixels.
        let gz = dir.write("cut.gz", full, gzip: true)
        let bytes = [UInt8](FileManager.default.contents(atPath: gz)!)
        dir.write("cut.gz", Array(bytes.prefix(bytes.count / 2)))
        assertDatasetError(try IDXFormat.readImages(path: gz), contains: [gz])
    }

    func testFewExtraBytesAreCountedExactly() {
        let dir = TempDir()
        let p = dir.write("x.gz", idxImages(n: 10, rows: 28, cols: 28) + [UInt8](repeating: 7, count: 1000), gzip: true)
        assertDatasetError(try IDXFormat.readImages(path: p), contains: [p, "but 8840 bytes follow (1000 extra)"])
    }

    func testZeroImagesRefused() {
        let dir = TempDir()
        dir.write("train-images-idx3-ubyte", header([0, 28, 28]))
        dir.write("train-labels-idx1-ubyte", idxLabels([]))
        assertDatasetError(try loadDataset(kind: .mnist, root: dir.path, split: .train), contains: ["header says 0 images"])
    }

    func testValidFilesStillLoad() throws {
        for gzip in [false, true] {
            let dir = TempDir()
            let suffix = gzip ? ".gz" : ""
            let pixels = (0..<(10 * 784)).map { UInt8(($0 * 7) % 256) }
            dir.write("train-images-idx3-ubyte" + suffix, idxImages(n: 10, rows: 28, cols: 28, pixels: pixels), gzip: gzip)
            dir.write("train-labels-idx1-ubyte" + suffix, idxLabels((0..<10).map { UInt8($0) }), gzip: gzip)
            let ds = try loadDataset(kind: .fashionMNIST, root: dir.path, split: .train)
            XCTAssertEqual(ds.count, 10)
            XCTAssertEqual([ds.height, ds.width], [28, 28])
            XCTAssertEqual((0..<10).map { ds.label($0) }, (0..<10).map { Int32($0) })
            XCTAssertEqual(ds.image(9), pixels[(9 * 784)...].map { Float($0) / 255 })
        }
    }

    // MARK: CIFAR-10

    func cifarRecord(_ label: UInt8) -> [UInt8] { [label] + [UInt8](repeating: 9, count: 3072) }

    func testCIFARGzipBombRefusedAtTheLimit() {
        let dir = TempDir()
        let p = writeGzipBomb(dir, "test_batch.bin.gz", prefix: cifarRecord(1) + cifarRecord(2), zeros: 200 << 20)
        assertDatasetError(try loadDataset(kind: .cifar10, root: dir.path, split: .test),
                           contains: [p, "more than \(CIFAR10Format.maxFileBytes) bytes",
                                      "limit of \(CIFAR10Format.maxRecordsPerFile) CIFAR-10 records"])
    }

    func testCIFARHugePlainFileRefusedFromItsSize() throws {
        let dir = TempDir()
        let p = dir.write("test_batch.bin", cifarRecord(1))
        // A sparse file: 300 MB long, no disk blocks, refused on its size alone.
        XCTAssertEqual(truncate(p, 300 << 20), 0)
        assertDatasetError(try loadDataset(kind: .cifar10, root: dir.path, split: .test),
                           contains: [p, "size \(300 << 20) bytes exceeds the limit"])
    }

    func testCIFARTruncatedAndEmptyRefused() {
        let dir = TempDir()
        let p = dir.write("test_batch.bin", cifarRecord(1) + Array(cifarRecord(2).prefix(100)))
        assertDatasetError(try loadDataset(kind: .cifar10, root: dir.path, split: .test),
                           contains: [p, "size 3173 bytes is not a positive multiple of the 3073-byte"])
        dir.write("test_batch.bin", [])
        assertDatasetError(try loadDataset(kind: .cifar10, root: dir.path, split: .test), contains: ["size 0 bytes"])
        let gz = dir.write("g/test_batch.bin.gz", cifarRecord(1) + [1], gzip: true)
        assertDatasetError(try loadDataset(kind: .cifar10, root: dir.path + "/g", split: .test),
                           contains: [gz, "size 3074 bytes is not a positive multiple"])
    }

    func testCIFARValidGzippedFileLoads() throws {
        let dir = TempDir()
        dir.write("test_batch.bin.gz", cifarRecord(4) + cifarRecord(7), gzip: true)
        let ds = try loadDataset(kind: .cifar10, root: dir.path, split: .test)
        XCTAssertEqual(ds.count, 2)
        XCTAssertEqual([ds.label(0), ds.label(1)], [4, 7])
    }

    // MARK: safetensors

    /// A safetensors file from a header (JSON text, padded to a multiple of 8) and data.
    func safetensors(_ header: String, _ data: [UInt8] = []) -> [UInt8] {
        var h = Array(header.utf8)
        while h.count % 8 != 0 { h.append(0x20) }
        var n = UInt64(h.count).littleEndian
        return withUnsafeBytes(of: &n) { Array($0) } + h + data
    }

    func assertSafeTensorsError(_ bytes: [UInt8], _ parts: [String], file: StaticString = #filePath, line: UInt = #line) {
        do {
            _ = try SafeTensors.decode(bytes, file: "w.safetensors")
            XCTFail("expected an error containing \(parts)", file: file, line: line)
        } catch {
            let text = "\(error)"
            for p in parts { XCTAssertTrue(text.contains(p), "\"\(text.prefix(500))\" does not contain \"\(p)\"", file: file, line: line) }
            XCTAssertLessThan(text.utf8.count, 1000, "message too long", file: file, line: line)
        }
    }

    func testSafeTensorsHostileHeaders() {
        // Offsets at Int's limits: no overflow in end - begin or in the coverage check.
        assertSafeTensorsError(safetensors(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,9223372036854775807]}}"#, [0, 0, 0, 0]),
                               ["w.safetensors", "outside the data block"])
        assertSafeTensorsError(safetensors(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[-1,4]}}"#, [0, 0, 0, 0]),
                               ["outside the data block"])
        assertSafeTensorsError(safetensors(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[-9223372036854775808,4]}}"#, [0, 0, 0, 0]),
                               ["data_offsets"])
        assertSafeTensorsError(safetensors(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,18446744073709551615]}}"#, [0, 0, 0, 0]),
                               ["data_offsets is not a pair of integers"])
        // Shapes whose product overflows, or exceeds the file.
        assertSafeTensorsError(safetensors(#"{"a":{"dtype":"F64","shape":[3037000500,3037000500,2],"data_offsets":[0,8]}}"#, [UInt8](repeating: 0, count: 8)),
                               ["more elements than the file has bytes"])
        // A zero-element tensor still may not have dimensions whose product overflows (code
        // that multiplies some of them, e.g. the trailing ones, would trap).
        assertSafeTensorsError(safetensors(#"{"a":{"dtype":"F32","shape":[0,9223372036854775807,2],"data_offsets":[0,0]}}"#),
                               ["more elements than the file has bytes"])
        // A header length at the format's limit, in an 8-byte file.
        assertSafeTensorsError([0x00, 0xe1, 0xf5, 0x05, 0, 0, 0, 0], ["header length 100000000 runs past the end"])
        assertSafeTensorsError([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], ["exceeds the limit"])
        // Deeply nested JSON.
        assertSafeTensorsError(safetensors("{\"a\":" + String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000) + "}"),
                               ["w.safetensors"])
    }

    func testSafeTensorsMessagesClipNamesFromTheFile() {
        let long = String(repeating: "n", count: 10_000)
        assertSafeTensorsError(safetensors("{\"\(long)\":5}"), ["tensor nnnn", "10000 characters in all", "not an object"])
        assertSafeTensorsError(safetensors("{\"a\":{\"dtype\":\"\(long)\",\"shape\":[],\"data_offsets\":[0,0]}}"),
                               ["unsupported dtype nnn", "characters in all"])
        assertSafeTensorsError(safetensors("{\"__metadata__\":{\"\(long)\":1}}"), ["__metadata__ value of 'nnn", "characters in all"])
    }

    func testSafeTensorsReadsOnlyRegularFiles() throws {
        XCTAssertThrowsError(try SafeTensors.read(path: "/dev/zero")) { XCTAssertTrue("\($0)".contains("not a regular file"), "\($0)") }
        let dir = TempDir()
        XCTAssertThrowsError(try SafeTensors.read(path: dir.path)) { XCTAssertTrue("\($0)".contains("is a directory"), "\($0)") }
        XCTAssertThrowsError(try SafeTensors.read(path: dir.path + "/none")) { XCTAssertTrue("\($0)".contains("no such file"), "\($0)") }
        let p = dir.write("w.safetensors", SafeTensors.encode([NamedTensor(name: "a", shape: [2], values: [1, 2])], metadata: [:]))
        XCTAssertEqual(try SafeTensors.read(path: p).tensors["a"]?.values, [1, 2])
    }
}
