// Helpers for the Data tests: temporary directories and small IDX / CIFAR files.
import Foundation
import XCTest
import CZlib
@testable import Data

final class TempDir {
    let path: String
    init() {
        path = NSTemporaryDirectory() + "datatests-" + UUID().uuidString
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }

    @discardableResult
    func write(_ name: String, _ bytes: [UInt8], gzip: Bool = false) -> String {
        let p = path + "/" + name
        let dir = (p as NSString).deletingLastPathComponent
        try! FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        if gzip {
            let f = gzopen(p, "wb")!
            let n = bytes.withUnsafeBytes { gzwrite(f, $0.baseAddress, UInt32($0.count)) }
            precondition(Int(n) == bytes.count)
            gzclose(f)
        } else {
            precondition(FileManager.default.createFile(atPath: p, contents: Foundation.Data(bytes)))
        }
        return p
    }
}

func bigEndian32(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8(v >> 16 & 0xff), UInt8(v >> 8 & 0xff), UInt8(v & 0xff)] }

/// An IDX image file: magic, n, rows, cols, then the pixels.
func idxImages(n: Int, rows: Int, cols: Int, pixels: [UInt8]? = nil, magic: UInt32 = 0x803) -> [UInt8] {
    let body = pixels ?? (0..<(n * rows * cols)).map { UInt8($0 % 256) }
    return bigEndian32(magic) + bigEndian32(UInt32(n)) + bigEndian32(UInt32(rows)) + bigEndian32(UInt32(cols)) + body
}

/// An IDX label file: magic, n, then the labels.
func idxLabels(_ labels: [UInt8], count: Int? = nil, magic: UInt32 = 0x801) -> [UInt8] {
    bigEndian32(magic) + bigEndian32(UInt32(count ?? labels.count)) + labels
}

/// `error` must be a DatasetError whose description contains every one of `parts`.
func assertDatasetError(_ body: @autoclosure () throws -> Any, contains parts: [String],
                        file: StaticString = #filePath, line: UInt = #line) {
    do {
        _ = try body()
        XCTFail("expected a DatasetError containing \(parts)", file: file, line: line)
    } catch let e as DatasetError {
        for p in parts {
            XCTAssertTrue(e.description.contains(p), "\"\(e.description)\" does not contain \"\(p)\"", file: file, line: line)
        }
    } catch {
        XCTFail("unexpected error type \(error)", file: file, line: line)
    }
}

func assertClose(_ a: [Float], _ b: [Float], tol: Float = 1e-6, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.count, b.count, "counts differ", file: file, line: line)
    var worst: Float = 0, at = -1
    for i in 0..<min(a.count, b.count) where abs(a[i] - b[i]) > worst { worst = abs(a[i] - b[i]); at = i }
    XCTAssertLessThanOrEqual(worst, tol, "max diff \(worst) at \(at): \(at >= 0 ? "\(a[at]) vs \(b[at])" : "")", file: file, line: line)
}

extension ImageDataset {
    func image(_ i: Int) -> [Float] {
        var out = [Float](repeating: 0, count: imageSize)
        out.withUnsafeMutableBufferPointer { pixels(i, into: $0.baseAddress!) }
        return out
    }
}
