import XCTest
import Foundation
@testable import NN

final class SafeTensorsTests: XCTestCase {
    private func sample() -> [NamedTensor] {
        [
            NamedTensor(name: "0.0.weight", shape: [2, 1, 3, 3], values: (0..<18).map { Float($0) * 0.25 - 2 }),
            NamedTensor(name: "0.1.running_mean", shape: [2], values: [0.5, -1.5]),
            NamedTensor(name: "0.1.num_batches_tracked", shape: [], type: .int64, values: [1234]),
            NamedTensor(name: "7.bias", shape: [3], values: [.infinity, -0.0, 1e-30]),
        ]
    }

    private func header(of bytes: [UInt8]) throws -> [String: Any] {
        let n = Int(bytes[0..<8].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) })
        return try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(bytes[8..<(8 + n)])) as? [String: Any])
    }

    /// A file from a hand-written header and data block (for malformed and foreign files).
    private func rawFile(header: String, data: [UInt8]) -> [UInt8] {
        var h = Array(header.utf8)
        while h.count % 8 != 0 { h.append(0x20) }
        var out: [UInt8] = []
        var n = UInt64(h.count).littleEndian
        withUnsafeBytes(of: &n) { out += $0 }
        return out + h + data
    }

    private func assertThrows(_ bytes: [UInt8], _ fragment: String, file: StaticString = #filePath, line: UInt = #line) {
        do {
            _ = try SafeTensors.decode(bytes, file: "bad.safetensors")
            XCTFail("decoded a malformed file (expected '\(fragment)')", file: file, line: line)
        } catch let e as SafeTensorsError {
            XCTAssertTrue(e.description.contains("bad.safetensors"), e.description, file: file, line: line)
            XCTAssertTrue(e.description.contains(fragment), "'\(e.description)' lacks '\(fragment)'", file: file, line: line)
        } catch {
            XCTFail("unexpected error \(error)", file: file, line: line)
        }
    }

    // MARK: Round trip and format

    func testRoundTripF32AndI64Scalar() throws {
        let tensors = sample()
        let bytes = SafeTensors.encode(tensors, metadata: ["format": "pt", "step": "42"])
        let (decoded, order, metadata) = try SafeTensors.decode(bytes, file: "x")
        XCTAssertEqual(order, tensors.map(\.name))
        XCTAssertEqual(metadata, ["format": "pt", "step": "42"])
        for t in tensors {
            let d = try XCTUnwrap(decoded[t.name])
            XCTAssertEqual(d.shape, t.shape); XCTAssertEqual(d.type, t.type)
            XCTAssertEqual(d.values.map(\.bitPattern), t.values.map(\.bitPattern), t.name)
        }
    }

    func testHeaderIsWhatSafetensorsExpects() throws {
        let bytes = SafeTensors.encode(sample(), metadata: ["format": "pt"])
        let n = Int(bytes[0..<8].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) })
        XCTAssertEqual(n % 8, 0)
        XCTAssertEqual(bytes[8], UInt8(ascii: "{"))
        let h = try header(of: bytes)
        XCTAssertEqual(h["__metadata__"] as? [String: String], ["format": "pt"])
        XCTAssertEqual(Set(h.keys), Set(sample().map(\.name) + ["__metadata__"]))

        let w = try XCTUnwrap(h["0.0.weight"] as? [String: Any])
        XCTAssertEqual(Set(w.keys), ["dtype", "shape", "data_offsets"])
        XCTAssertEqual(w["dtype"] as? String, "F32")
        XCTAssertEqual(w["shape"] as? [Int], [2, 1, 3, 3])
        XCTAssertEqual(w["data_offsets"] as? [Int], [0, 72])

        let nbt = try XCTUnwrap(h["0.1.num_batches_tracked"] as? [String: Any])
        XCTAssertEqual(nbt["dtype"] as? String, "I64")
        XCTAssertEqual(nbt["shape"] as? [Int], [])
        XCTAssertEqual(nbt["data_offsets"] as? [Int], [80, 88])
        // The int64 is little-endian in the data block.
        let dataStart = 8 + n
        XCTAssertEqual(Array(bytes[(dataStart + 80)..<(dataStart + 88)]), [0xD2, 0x04, 0, 0, 0, 0, 0, 0])
        // Offsets tile the data block exactly.
        let last = try XCTUnwrap(h["7.bias"] as? [String: Any])
        XCTAssertEqual(last["data_offsets"] as? [Int], [88, 100])
        XCTAssertEqual(bytes.count, dataStart + 100)
    }

    func testEmptyFileAndNoMetadata() throws {
        let bytes = SafeTensors.encode([], metadata: [:])
        let (t, order, meta) = try SafeTensors.decode(bytes, file: "e")
        XCTAssertTrue(t.isEmpty); XCTAssertTrue(order.isEmpty); XCTAssertTrue(meta.isEmpty)
    }

    func testWriteIsAtomicAndReadsBack() throws {
        let dir = NSTemporaryDirectory() + "st-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/model.safetensors"
        try SafeTensors.write(sample(), metadata: ["a": "b"], to: path)
        try SafeTensors.write(sample(), metadata: ["a": "c"], to: path)   // replaces
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["model.safetensors"])
        let (t, _, meta) = try SafeTensors.read(path: path)
        XCTAssertEqual(meta, ["a": "c"])
        XCTAssertEqual(t["0.1.running_mean"]?.values, [0.5, -1.5])
        XCTAssertThrowsError(try SafeTensors.read(path: dir + "/missing.safetensors")) {
            XCTAssertTrue("\($0)".contains("missing.safetensors"))
        }
        XCTAssertThrowsError(try SafeTensors.write(sample(), metadata: [:], to: dir + "/no/such/dir/x.safetensors"))
    }

    func testForeignDtypesConvertToFloat() throws {
        var data: [UInt8] = []
        func le<T: FixedWidthInteger>(_ v: T) { var x = v.littleEndian; withUnsafeBytes(of: &x) { data += $0 } }
        le((1.5 as Double).bitPattern); le((-2.25 as Double).bitPattern)      // F64 [2]   0..16
        le(UInt16(0x3C00)); le(UInt16(0xC000)); le(UInt16(0x0001))            // F16 [3]  16..22 = 1, -2, 2^-24
        le(UInt16(0x3F80)); le(UInt16(0x4049))                                // BF16 [2] 22..26 = 1, 3.140625
        le(Int32(-7))                                                         // I32 []   26..30
        let header = #"{"a":{"dtype":"F64","shape":[2],"data_offsets":[0,16]},"b":{"dtype":"F16","shape":[3],"data_offsets":[16,22]},"c":{"dtype":"BF16","shape":[2],"data_offsets":[22,26]},"d":{"dtype":"I32","shape":[],"data_offsets":[26,30]}}"#
        let (t, order, _) = try SafeTensors.decode(rawFile(header: header, data: data), file: "f")
        XCTAssertEqual(order, ["a", "b", "c", "d"])
        XCTAssertEqual(t["a"]?.values, [1.5, -2.25])
        XCTAssertEqual(t["b"]?.values, [1, -2, 0x1p-24])
        XCTAssertEqual(t["c"]?.values, [1, 3.140625])
        XCTAssertEqual(t["d"]?.values, [-7]); XCTAssertEqual(t["d"]?.type, .int64)
        XCTAssertEqual(SafeTensors.halfToFloat(0x7C00), .infinity)
        XCTAssertEqual(SafeTensors.halfToFloat(0x7BFF), 65504)
        XCTAssertTrue(SafeTensors.halfToFloat(0x7E00).isNaN)
    }

    // MARK: Malformed files

    func testMalformedHeadersThrowNamingReason() {
        assertThrows([1, 2, 3], "too short")
        assertThrows([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f] + Array(repeating: 0x20, count: 8), "exceeds the limit")
        assertThrows([64, 0, 0, 0, 0, 0, 0, 0, 0x7b, 0x7d], "past the end")
        assertThrows(rawFile(header: "[1,2]", data: []), "start with '{'")
        assertThrows(rawFile(header: "{\"a\": ", data: []), "not valid JSON")
        assertThrows(rawFile(header: #"{"a":{"dtype":"Q8","shape":[1],"data_offsets":[0,1]}}"#, data: [0]), "unsupported dtype Q8")
        assertThrows(rawFile(header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0]), "needs 8 bytes")
        assertThrows(rawFile(header: #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,8]}}"#, data: [0, 0, 0, 0]), "outside the data block")
        assertThrows(rawFile(header: #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}"#, data: [0, 0, 0, 0]), "outside the data block")
        assertThrows(rawFile(header: #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#,
                             data: [0, 0, 0, 0]), "overlap")
        assertThrows(rawFile(header: #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#, data: Array(repeating: 0, count: 8)), "gap")
        assertThrows(rawFile(header: #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, data: Array(repeating: 0, count: 9)), "trailing")
        assertThrows(rawFile(header: #"{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0]), "non-negative integers")
        assertThrows(rawFile(header: #"{"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0]), "non-negative integers")
        assertThrows(rawFile(header: #"{"a":{"dtype":"F32","shape":[true],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0]), "non-negative integers")
        assertThrows(rawFile(header: #"{"a":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0]), "more elements")
        assertThrows(rawFile(header: #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0]}}"#, data: [0, 0, 0, 0]), "data_offsets")
        assertThrows(rawFile(header: #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"extra":1}}"#, data: [0, 0, 0, 0]), "unexpected field")
        assertThrows(rawFile(header: #"{"a":{"shape":[1],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0]), "dtype")
        assertThrows(rawFile(header: #"{"a":5}"#, data: []), "not an object")
        assertThrows(rawFile(header: #"{"__metadata__":{"k":1}}"#, data: []), "__metadata__")
        assertThrows(rawFile(header: #"{"__metadata__":[1]}"#, data: []), "__metadata__")
    }

    func testTruncationAtEveryOffsetThrows() {
        let bytes = SafeTensors.encode(sample(), metadata: ["format": "pt"])
        for cut in 0..<bytes.count {
            XCTAssertThrowsError(try SafeTensors.decode(Array(bytes[0..<cut]), file: "cut.safetensors"), "cut at \(cut)") {
                XCTAssertTrue("\($0)".contains("cut.safetensors"))
            }
        }
        XCTAssertNoThrow(try SafeTensors.decode(bytes, file: "whole"))
    }

    func testRandomBitFlipsNeverCrash() {
        let bytes = SafeTensors.encode(sample(), metadata: ["format": "pt"])
        var rng = SplitMix64(seed: 2024)
        var threw = 0
        for _ in 0..<200 {
            var b = bytes
            let flips = 1 + Int(rng.next() % 3)
            for _ in 0..<flips {
                let i = Int(rng.next() % UInt64(b.count))
                b[i] ^= UInt8(1) << UInt8(rng.next() % 8)
            }
            do { _ = try SafeTensors.decode(b, file: "flip") } catch { threw += 1 }
        }
        XCTAssertGreaterThan(threw, 0)
        // Random garbage too.
        for len in [0, 7, 8, 9, 16, 64, 300] {
            let junk = (0..<len).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            XCTAssertThrowsError(try SafeTensors.decode(junk, file: "junk"))
        }
    }

    // MARK: Stores

    private func makeStores() -> (ParameterStore, ParameterStore) {
        let params = ParameterStore()
        _ = params.declare("0.0.weight", shape: [2, 1, 3, 3])
        _ = params.declare("7.bias", shape: [3])
        params.finalize()
        let buffers = ParameterStore()
        _ = buffers.declare("0.1.running_mean", shape: [2])
        _ = buffers.declare("0.1.num_batches_tracked", shape: [], type: .int64)
        buffers.finalize()
        return (params, buffers)
    }

    func testCollectAndLoadRoundTrip() throws {
        let (p, b) = makeStores()
        for i in 0..<p.totalCount { p.values[i] = Float(i) * 0.5 }
        for i in 0..<b.totalCount { b.values[i] = Float(i) + 1 }
        let collected = SafeTensors.collect([p, b])
        XCTAssertEqual(collected.map(\.name), ["0.0.weight", "7.bias", "0.1.running_mean", "0.1.num_batches_tracked"])
        XCTAssertEqual(collected[3].type, .int64); XCTAssertEqual(collected[3].shape, [])

        let bytes = SafeTensors.encode(collected, metadata: [:])
        let (p2, b2) = makeStores()
        try SafeTensors.load(try SafeTensors.decode(bytes, file: "m").tensors, into: [p2, b2], file: "m")
        XCTAssertEqual(Array(p2.valueBuffer), Array(p.valueBuffer))
        XCTAssertEqual(Array(b2.valueBuffer), Array(b.valueBuffer))
    }

    func testStrictLoadErrors() throws {
        let (p, b) = makeStores()
        var tensors = Dictionary(uniqueKeysWithValues: SafeTensors.collect([p, b]).map { ($0.name, $0) })

        var missing = tensors
        missing["7.bias"] = nil
        XCTAssertThrowsError(try SafeTensors.load(missing, into: [p, b], file: "w.safetensors")) {
            XCTAssertTrue("\($0)".contains("w.safetensors")); XCTAssertTrue("\($0)".contains("missing tensor 7.bias"))
        }

        var extra = tensors
        extra["8.weight"] = NamedTensor(name: "8.weight", shape: [1], values: [0])
        XCTAssertThrowsError(try SafeTensors.load(extra, into: [p, b], file: "w")) {
            XCTAssertTrue("\($0)".contains("unexpected tensor 8.weight"))
        }
        XCTAssertNoThrow(try SafeTensors.load(extra, into: [p, b], file: "w", ignoring: ["8.weight"]))

        p["0.0.weight"]!.value[0] = 99
        tensors["0.0.weight"] = NamedTensor(name: "0.0.weight", shape: [2, 1, 9], values: Array(repeating: 1, count: 18))
        XCTAssertThrowsError(try SafeTensors.load(tensors, into: [p, b], file: "w")) {
            XCTAssertTrue("\($0)".contains("tensor 0.0.weight: file has shape [2, 1, 9], model expects [2, 1, 3, 3]"), "\($0)")
        }
        XCTAssertEqual(p["0.0.weight"]!.value[0], 99, "nothing is copied when a check fails")
        // Ignored names are neither required nor loaded.
        XCTAssertNoThrow(try SafeTensors.load(tensors, into: [p, b], file: "w", ignoring: ["0.0.weight"]))
        XCTAssertEqual(p["0.0.weight"]!.value[0], 99)
    }
}
