// TensorBoard event files: the CRC-32C and its mask against published values, the TFRecord
// framing read back by hand, and TensorBoard's own Python reader (EventAccumulator, from the
// venv launch/setup.sh makes with WITH_TENSORBOARD=1) reading every scalar with its step.
import Foundation
import XCTest
@testable import TensorBoard
import TestSupport

final class EventFileWriterTests: XCTestCase {
    func testCRC32CKnownValues() {
        XCTAssertEqual(CRC32C.checksum(Array("123456789".utf8)), 0xE306_9283)   // the standard check value
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0, count: 32)), 0x8A91_36AA)   // RFC 3720 B.4
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)), 0x62A8_AB43)
        let crc = CRC32C.checksum(Array("123456789".utf8))
        XCTAssertEqual(CRC32C.masked(Array("123456789".utf8)), ((crc >> 15) | (crc << 17)) &+ 0xA282_EAD8)
    }

    /// Every record of a written file: length, both masked CRCs, and the Event they frame.
    func testRecordsFrameTheEvents() throws {
        let dir = try temporaryDirectory()
        let w = try EventFileWriter(directory: dir, host: "node-a", now: Date(timeIntervalSince1970: 1_700_000_000))
        try w.add(step: 3, scalars: [("train/loss", 2.5), ("train/lr", 0.1)], wallTime: Date(timeIntervalSince1970: 1_700_000_010))
        XCTAssertEqual((w.path as NSString).lastPathComponent, "events.out.tfevents.1700000000.node-a")
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: w.path)))
        var offset = 0, events: [Resnet_Tensorboard_Event] = []
        func u32(_ at: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(bytes[at + $1]) << (8 * $1) } }
        while offset < bytes.count {
            let length = (0..<8).reduce(0) { $0 | Int(bytes[offset + $1]) << (8 * $1) }
            XCTAssertEqual(u32(offset + 8), CRC32C.masked(bytes[offset..<(offset + 8)]), "length CRC")
            let data = bytes[(offset + 12)..<(offset + 12 + length)]
            XCTAssertEqual(u32(offset + 12 + length), CRC32C.masked(data), "data CRC")
            events.append(try Resnet_Tensorboard_Event(serializedBytes: Array(data)))
            offset += 16 + length
        }
        XCTAssertEqual(offset, bytes.count)
        XCTAssertEqual(events.count, 2)
        XCTAssertEqual(events[0].fileVersion, "brain.Event:2")
        XCTAssertEqual(events[1].step, 3)
        XCTAssertEqual(events[1].wallTime, 1_700_000_010)
        XCTAssertEqual(events[1].summary.value.map(\.tag), ["train/loss", "train/lr"])
        XCTAssertEqual(events[1].summary.value.map(\.simpleValue), [2.5, 0.1])
    }

    func testUnwritableDirectoryIsNamed() {
        XCTAssertThrowsError(try EventFileWriter(directory: "/nonexistent/run")) { error in
            XCTAssertTrue("\(error)".contains("cannot create the TensorBoard event file /nonexistent/run/events.out.tfevents."), "\(error)")
        }
    }

    /// TensorBoard's EventAccumulator reads back every scalar with its step and value.
    func testTensorBoardReadsEveryScalar() throws {
        let dir = try temporaryDirectory()
        let w = try EventFileWriter(directory: dir, host: "node-a")
        var expected: [String: [(Int, Float)]] = [:]
        for step in [1, 2, 5, 10, 11] {
            let scalars = [("train/loss", 3.0 / Double(step)), ("train/accuracy", Double(step) / 20), ("test/loss", Double(step) * 0.25)]
            try w.add(step: step, scalars: scalars)
            for (tag, value) in scalars { expected[tag, default: []].append((step, Float(value))) }
        }
        let read = try tensorBoardScalars(dir)
        XCTAssertEqual(Set(read.keys), Set(expected.keys))
        for (tag, values) in expected {
            XCTAssertEqual(read[tag]?.map(\.step), values.map(\.0), "steps of \(tag)")
            XCTAssertEqual(read[tag]?.map { Float($0.value) }, values.map(\.1), "values of \(tag)")
        }
    }

    private func temporaryDirectory() throws -> String {
        let dir = NSTemporaryDirectory() + "tb-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        return dir
    }
}
