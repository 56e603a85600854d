// TensorBoard event files: the CRC-32C and its mask against published values, the TFRecord
// framing read back by hand, and TensorBoard's own Python reader (EventAccumulator, from the
// venv launch/setup.sh makes with WITH_TENSORBOARD=1) reading every scalar with its step.
import Foundation
import XCTest
@testable import TensorBoard

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
        let python = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent(".build/tensorboard-venv/bin/python").path
        guard FileManager.default.isExecutableFile(atPath: python) else {
            if ProcessInfo.processInfo.environment["RESNET_SKIP_TENSORBOARD"] == "1" {
                throw XCTSkip("!!!!!!!! TensorBoard reader NOT checked (RESNET_SKIP_TENSORBOARD=1): \(python) missing")
            }
            return XCTFail("\(python) missing: run WITH_TENSORBOARD=1 launch/setup.sh (launch/test.sh does)")
        }
        let dir = try temporaryDirectory()
        let w = try EventFileWriter(directory: dir, host: "node-a")
        var expected: [String: [(Int, Float)]] = [:]
        for step in [1, 2, 5, 10, 11] {
            let scalars = [("train/loss", 3.0 / Double(step)), ("train/accuracy", Double(step) / 20), ("test/loss", Double(step) * 0.25)]
            try w.add(step: step, scalars: scalars)
            for (tag, value) in scalars { expected[tag, default: []].append((step, Float(value))) }
        }
        let script = """
        import sys
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
        acc = EventAccumulator(sys.argv[1], size_guidance={'scalars': 0})
        acc.Reload()
        for tag in sorted(acc.Tags()['scalars']):
            for e in acc.Scalars(tag):
                print(tag, e.step, repr(e.value))
        """
        let p = Process()
        p.executableURL = URL(fileURLWithPath: python)
        p.arguments = ["-c", script, dir]
        let out = Pipe(); p.standardOutput = out; p.standardError = FileHandle.nullDevice
        try p.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0)
        var read: [String: [(Int, Float)]] = [:]
        for line in text.split(separator: "\n") {
            let f = line.split(separator: " ")
            guard f.count == 3, let step = Int(f[1]), let value = Double(f[2]) else { XCTFail("line \(line)"); continue }
            read[String(f[0]), default: []].append((step, Float(value)))
        }
        XCTAssertEqual(Set(read.keys), Set(expected.keys))
        for (tag, values) in expected {
            XCTAssertEqual(read[tag]?.map(\.0), values.map(\.0), "steps of \(tag)")
            XCTAssertEqual(read[tag]?.map(\.1), values.map(\.1), "values of \(tag)")
        }
    }

    private func temporaryDirectory() throws -> String {
        let dir = NSTemporaryDirectory() + "tb-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        return dir
    }
}
