// Checkpoint files in-process (issue 4): the file format (safetensors + format tag + CRC-32 over
// every byte), refusal of truncated / bit-flipped / foreign / checksum-less files with an error
// naming the file, the folder logic of CheckpointStore (newest valid first, falling back past
// invalid files, pruning to the newest K) and atomic writes that leave the previous checkpoint
// intact when they fail. (The Trainer's side, resumability and export: TrainingTests.)
//
// Everything here runs on tiny hand-made checkpoints in unique temporary folders: fast.
import XCTest
import Foundation
import NN
import Coordinator
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

final class CheckpointStoreTests: XCTestCase {

    // MARK: - Fixtures

    static func sampleBytes(step: Int = 12) -> [UInt8] {
        var meta = CheckpointSamples.metadata
        meta["global_step"] = "\(step)"
        return Checkpoint.encode(CheckpointSamples.tensors(), metadata: meta)
    }

    static let fileLabel = "run/checkpoints/ckpt-step-000000012.safetensors"

    private var tempDirs: [String] = []

    override func tearDown() {
        for d in tempDirs { try? FileManager.default.removeItem(atPath: d) }
        tempDirs = []
        super.tearDown()
    }

    func makeTempDir() throws -> String {
        let dir = FileManager.default.temporaryDirectory
            .appendingPathComponent("ckptstore-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        tempDirs.append(dir)
        return dir
    }

    /// Header length, header end and file length of an encoded file.
    static func layout(_ bytes: [UInt8]) -> (headerLength: Int, dataStart: Int, total: Int) {
        var n = 0
        for i in 0..<8 { n |= Int(bytes[i]) << (8 * i) }
        return (n, 8 + n, bytes.count)
    }

    /// verify() must throw a CheckpointError naming `file`; returns its description.
    @discardableResult
    func assertRefused(_ bytes: [UInt8], file: String = fileLabel, _ what: String,
                       fileID: StaticString = #filePath, line: UInt = #line) -> String? {
        do {
            _ = try Checkpoint.verify(bytes, file: file)
            XCTFail("\(what): accepted", file: fileID, line: line)
            return nil
        } catch let e as CheckpointError {
            XCTAssertTrue(e.description.contains(file), "\(what): error does not name the file: \(e.description)",
                          file: fileID, line: line)
            return e.description
        } catch {
            XCTFail("\(what): not a CheckpointError: \(type(of: error)) \(error)", file: fileID, line: line)
            return nil
        }
    }

    // MARK: - Encoding and verification

    func testFileNamesAreZeroPaddedToNineDigits() {
        XCTAssertEqual(CheckpointStore.fileName(step: 0), "ckpt-step-000000000.safetensors")
        XCTAssertEqual(CheckpointStore.fileName(step: 7), "ckpt-step-000000007.safetensors")
        XCTAssertEqual(CheckpointStore.fileName(step: 1234), "ckpt-step-000001234.safetensors")
        XCTAssertEqual(CheckpointStore.fileName(step: 123_456_789), "ckpt-step-123456789.safetensors")
    }

    func testEncodeVerifyRoundTrip() throws {
        let bytes = Self.sampleBytes()
        XCTAssertEqual(bytes, Self.sampleBytes(), "encoding is not deterministic")
        let (tensors, meta) = try Checkpoint.verify(bytes, file: Self.fileLabel)
        let expected = CheckpointSamples.tensors()
        XCTAssertEqual(Set(tensors.keys), Set(expected.map(\.name)))
        for t in expected {
            guard let got = tensors[t.name] else { continue }
            XCTAssertEqual(got.shape, t.shape, t.name)
            XCTAssertEqual(got.type, t.type, t.name)
            XCTAssertEqual(got.values.map(\.bitPattern), t.values.map(\.bitPattern), "\(t.name): values not bit-identical")
        }
        for (k, v) in CheckpointSamples.metadata { XCTAssertEqual(meta[k], v, "metadata \(k)") }
        XCTAssertEqual(meta["format_name"], Checkpoint.formatName)
        XCTAssertEqual(meta["format_version"], Checkpoint.formatVersion)
        let checksum = try XCTUnwrap(meta["checksum"])
        XCTAssertTrue(checksum.hasPrefix("crc32:") && checksum.count == 14, "checksum field \(checksum)")

        // Still a plain safetensors file (PyTorch's loader reads it).
        let plain = try SafeTensors.decode(bytes, file: "x")
        XCTAssertEqual(Set(plain.tensors.keys), Set(expected.map(\.name)))
    }

    /// The documented format exactly: CRC-32 (zlib's polynomial) over the whole file with the
    /// field holding "crc32:00000000", as 8 lowercase hex digits. Checked with an independent
    /// CRC-32, and a file edited *and* re-checksummed that way must then be accepted.
    func testChecksumIsCRC32OfTheWholeFileWithAZeroPlaceholder() throws {
        var bytes = Self.sampleBytes()
        let meta = try Checkpoint.verify(bytes, file: "x").metadata
        let stored = try XCTUnwrap(meta["checksum"])
        let at = try XCTUnwrap(Self.find(Array(stored.utf8), in: bytes), "checksum text not in the file")
        var zeroed = bytes
        for (i, c) in "crc32:00000000".utf8.enumerated() { zeroed[at + i] = c }
        XCTAssertEqual(stored, "crc32:" + Self.hex8(Self.referenceCRC32(zeroed)))

        // Edit one data byte, recompute the CRC the documented way: accepted, with the new value.
        let data = Self.layout(bytes).dataStart
        bytes[data] ^= 0x01
        zeroed[data] ^= 0x01
        let fixed = Array(("crc32:" + Self.hex8(Self.referenceCRC32(zeroed))).utf8)
        for i in 0..<fixed.count { bytes[at + i] = fixed[i] }
        let t = try Checkpoint.verify(bytes, file: "x").tensors
        XCTAssertNotEqual(t["0.0.weight"]?.values.first?.bitPattern, CheckpointSamples.tensors()[0].values.first?.bitPattern)
    }

    // MARK: - Truncation

    /// One offset of each class: inside the 8-byte length, inside the JSON header, inside the
    /// data, one byte short (and the boundaries between them).
    func testTruncationAtEveryOffsetClassIsRefusedNamingTheFile() {
        let bytes = Self.sampleBytes()
        let (n, data, total) = Self.layout(bytes)
        XCTAssertGreaterThan(total - data, 16, "fixture has too little data")
        let cases: [(String, Int)] = [
            ("empty file", 0),
            ("inside the 8-byte length (4 bytes)", 4),
            ("length only (8 bytes)", 8),
            ("inside the JSON header (1 byte of it)", 9),
            ("inside the JSON header (half of it)", 8 + n / 2),
            ("inside the JSON header (all but its last byte)", 8 + n - 1),
            ("header complete, no data", data),
            ("inside the data (half of it)", data + (total - data) / 2),
            ("one byte short", total - 1),
        ]
        for (what, k) in cases {
            let text = assertRefused(Array(bytes[0..<k]), "truncated to \(k) of \(total) bytes (\(what))")
            print("[CheckpointStoreTests] truncated to \(k) (\(what)): \(text ?? "-")")
        }
        // The reasons say what is wrong.
        XCTAssertTrue(assertRefused(Array(bytes[0..<4]), "4 bytes")?.contains("too short") ?? false)
        XCTAssertTrue(assertRefused(Array(bytes[0..<(8 + n / 2)]), "half header")?.contains("truncated") ?? false)
    }

    /// Every prefix of a small checkpoint: never a crash, always a CheckpointError naming the file.
    func testTruncationAtEveryByteOffsetAlwaysThrows() {
        let bytes = Self.sampleBytes()
        var accepted: [Int] = [], otherErrors: [String] = [], unnamed: [Int] = []
        for k in 0..<bytes.count {
            do {
                _ = try Checkpoint.verify(Array(bytes[0..<k]), file: Self.fileLabel)
                accepted.append(k)
            } catch let e as CheckpointError {
                if !e.description.contains(Self.fileLabel) { unnamed.append(k) }
            } catch {
                otherErrors.append("\(k): \(error)")
            }
        }
        XCTAssertEqual(accepted, [], "prefixes accepted as valid checkpoints (lengths)")
        XCTAssertEqual(otherErrors, [], "errors that are not CheckpointError")
        XCTAssertEqual(unnamed, [], "errors not naming the file (prefix lengths)")
        // Trailing garbage is refused too.
        assertRefused(bytes + [0], "one extra byte")
        assertRefused(bytes + bytes, "file written twice")
    }

    // MARK: - Bit flips

    /// 300 single-bit flips (reproducible positions; the first 8 hit every byte of the length,
    /// then the checksum field, the rest uniformly): every one refused.
    func testThreeHundredRandomBitFlipsAreAllRefused() throws {
        let bytes = Self.sampleBytes()
        let stored = try XCTUnwrap(try Checkpoint.verify(bytes, file: "x").metadata["checksum"])
        let at = try XCTUnwrap(Self.find(Array(stored.utf8), in: bytes))
        var rng = SplitMix64(seed: 0x5EED_C4EC)
        var flips: [(Int, Int)] = (0..<8).map { ($0, Int(rng.next() % 8)) }
        flips += (0..<14).map { (at + $0, Int(rng.next() % 8)) }
        while flips.count < 300 { flips.append((Int(rng.next() % UInt64(bytes.count)), Int(rng.next() % 8))) }
        let (_, data, _) = Self.layout(bytes)
        XCTAssertTrue(flips.contains { $0.0 >= data }, "no flip landed in the data")
        var accepted: [String] = []
        for (offset, bit) in flips {
            var b = bytes
            b[offset] ^= UInt8(1 << bit)
            do {
                _ = try Checkpoint.verify(b, file: Self.fileLabel)
                accepted.append("byte \(offset) bit \(bit)")
            } catch let e as CheckpointError {
                XCTAssertTrue(e.description.contains(Self.fileLabel), "byte \(offset) bit \(bit): \(e.description)")
            } catch {
                XCTFail("byte \(offset) bit \(bit): not a CheckpointError: \(error)")
            }
        }
        XCTAssertEqual(accepted, [], "bit flips not detected")
    }

    /// And exhaustively: every bit of every byte of the small checkpoint (~8000 flips, ~1 s).
    func testEverySingleBitFlipIsRefused() {
        let bytes = Self.sampleBytes()
        var accepted: [String] = [], otherErrors = 0
        for offset in 0..<bytes.count {
            for bit in 0..<8 {
                var b = bytes
                b[offset] ^= UInt8(1 << bit)
                do {
                    _ = try Checkpoint.verify(b, file: Self.fileLabel)
                    accepted.append("byte \(offset) bit \(bit)")
                } catch is CheckpointError {
                } catch {
                    otherErrors += 1
                }
            }
        }
        XCTAssertEqual(accepted, [], "bit flips not detected")
        XCTAssertEqual(otherErrors, 0, "errors that are not CheckpointError")
    }

    /// A flip in the tensor data passes every structural check: only the checksum catches it,
    /// and the error says so.
    func testFlipInTheDataIsReportedAsAChecksumMismatch() {
        var b = Self.sampleBytes()
        b[b.count - 3] ^= 0x10
        let text = assertRefused(b, "data byte flipped") ?? ""
        XCTAssertTrue(text.contains("checksum"), text)
        XCTAssertTrue(text.contains("corrupt"), text)
    }

    // MARK: - Foreign files and missing fields

    /// A plain safetensors file (what SafeTensors.write or PyTorch produce) is not a checkpoint.
    func testForeignSafetensorsFileIsRefusedWithAClearReason() throws {
        let dir = try makeTempDir()
        let path = dir + "/model.safetensors"
        try SafeTensors.write(CheckpointSamples.tensors(), metadata: ["format": "pt"], to: path)
        let bytes = try CheckpointStore.readFile(path)
        let text = assertRefused(bytes, file: path, "plain safetensors with format=pt") ?? ""
        XCTAssertTrue(text.contains("not a checkpoint"), text)
        XCTAssertTrue(text.contains(Checkpoint.formatName), text)

        let bare = SafeTensors.encode(CheckpointSamples.tensors(), metadata: [:])
        let text2 = assertRefused(bare, "safetensors without metadata") ?? ""
        XCTAssertTrue(text2.contains("not a checkpoint"), text2)

        // Not safetensors at all.
        let text3 = assertRefused(Array("model:\n  depth: 18\n  width: 8\n".utf8), "a YAML file") ?? ""
        XCTAssertTrue(text3.contains("header"), text3)
    }

    func testChecksumMissingIsRefused() {
        var meta = CheckpointSamples.metadata
        meta["format_name"] = Checkpoint.formatName
        meta["format_version"] = Checkpoint.formatVersion
        let noChecksum = SafeTensors.encode(CheckpointSamples.tensors(), metadata: meta)
        let text = assertRefused(noChecksum, "format tag but no checksum") ?? ""
        XCTAssertTrue(text.contains("checksum missing"), text)

        for bad in ["sha256:0123abcd", "crc32:1234", "crc32:0123456789", ""] {
            meta["checksum"] = bad
            let t = assertRefused(SafeTensors.encode(CheckpointSamples.tensors(), metadata: meta), "checksum '\(bad)'") ?? ""
            XCTAssertTrue(t.contains("checksum"), t)
        }
    }

    func testOtherFormatVersionIsRefused() {
        var meta = CheckpointSamples.metadata
        meta["format_name"] = Checkpoint.formatName
        meta["format_version"] = "2"
        meta["checksum"] = "crc32:00000000"
        let text = assertRefused(SafeTensors.encode(CheckpointSamples.tensors(), metadata: meta), "format version 2") ?? ""
        XCTAssertTrue(text.contains("version 2"), text)
    }

    // MARK: - Folder: writing, candidates, newest valid, pruning

    func testWriteIsAtomicAndLeavesNoTemporaryFile() throws {
        let dir = try makeTempDir()
        let store = CheckpointStore(folder: dir + "/a/b/checkpoints", keep: 3)   // folders created as needed
        let path = try store.write(step: 12, bytes: Self.sampleBytes())
        XCTAssertEqual(path, dir + "/a/b/checkpoints/ckpt-step-000000012.safetensors")
        XCTAssertEqual(try CheckpointStore.readFile(path), Self.sampleBytes())
        XCTAssertEqual(listDir(store.folder), ["ckpt-step-000000012.safetensors"], "stray files after a write")
        XCTAssertEqual(store.candidates(), [path])
    }

    func testCandidatesAreNewestFirstAndIgnoreOtherFiles() throws {
        let dir = try makeTempDir()
        let store = CheckpointStore(folder: dir, keep: 100)
        for step in [9, 1000, 10, 100] { try store.write(step: step, bytes: Self.sampleBytes(step: step)) }
        // Not checkpoints: a stray temp file of an interrupted write, other files.
        try writeFile(dir + "/.ckpt-step-000005000.safetensors.tmp.4242", Self.sampleBytes(step: 5000))
        try writeFile(dir + "/notes.txt", Array("hello".utf8))
        try writeFile(dir + "/ckpt-step-000009000.safetensors.partial", Self.sampleBytes(step: 9000))
        XCTAssertEqual(store.candidates().map { URL(fileURLWithPath: $0).lastPathComponent },
                       [1000, 100, 10, 9].map { CheckpointStore.fileName(step: $0) })
        let found = try XCTUnwrap(store.newestValid(log: { XCTFail("unexpected message: \($0)") }))
        XCTAssertEqual(found.path, dir + "/" + CheckpointStore.fileName(step: 1000))
        XCTAssertEqual(found.bytes, Self.sampleBytes(step: 1000))
    }

    func testNewestValidFallsBackPastACorruptNewestFileAndReportsIt() throws {
        let dir = try makeTempDir()
        let store = CheckpointStore(folder: dir, keep: 10)
        var paths: [Int: String] = [:]
        for step in [10, 20, 30] { paths[step] = try store.write(step: step, bytes: Self.sampleBytes(step: step)) }
        try flipByte(paths[30]!, at: -5)

        var log: [String] = []
        let found = try XCTUnwrap(store.newestValid(log: { log.append($0) }), "no valid checkpoint found")
        XCTAssertEqual(found.path, paths[20])
        XCTAssertEqual(found.bytes, Self.sampleBytes(step: 20))
        XCTAssertEqual(log.count, 1, "messages: \(log)")
        let msg = log.first ?? ""
        XCTAssertTrue(msg.contains(paths[30]!), msg)
        XCTAssertTrue(msg.contains("is invalid ("), msg)
        XCTAssertTrue(msg.contains("checksum"), msg)
        XCTAssertTrue(msg.hasSuffix("falling back to the previous one"), msg)
        print("[CheckpointStoreTests] fallback message: \(msg)")

        // The next one truncated as well (a crash mid-copy): falls back twice, in order.
        let b20 = try CheckpointStore.readFile(paths[20]!)
        try writeFile(paths[20]!, Array(b20[0..<(b20.count / 2)]))
        log = []
        XCTAssertEqual(store.newestValid(log: { log.append($0) })?.path, paths[10])
        XCTAssertEqual(log.count, 2, "messages: \(log)")
        XCTAssertTrue(log.first?.contains(paths[30]!) ?? false, "\(log)")
        XCTAssertTrue(log.last?.contains(paths[20]!) ?? false, "\(log)")

        // A foreign file under a checkpoint name is skipped the same way.
        try SafeTensors.write(CheckpointSamples.tensors(), metadata: ["format": "pt"], to: dir + "/" + CheckpointStore.fileName(step: 40))
        log = []
        XCTAssertEqual(store.newestValid(log: { log.append($0) })?.path, paths[10])
        XCTAssertEqual(log.count, 3, "messages: \(log)")
        XCTAssertTrue(log.first?.contains("not a checkpoint") ?? false, "\(log)")

        // Nothing valid left: nil, every file reported.
        try writeFile(paths[10]!, [])
        log = []
        XCTAssertNil(store.newestValid(log: { log.append($0) }))
        XCTAssertEqual(log.count, 4, "messages: \(log)")
    }

    func testNewestValidOfAnEmptyOrMissingFolderIsNil() throws {
        let dir = try makeTempDir()
        var log: [String] = []
        XCTAssertNil(CheckpointStore(folder: dir, keep: 3).newestValid(log: { log.append($0) }))
        XCTAssertNil(CheckpointStore(folder: dir + "/does-not-exist", keep: 3).newestValid(log: { log.append($0) }))
        XCTAssertEqual(log, [])
    }

    func testPruneKeepsTheNewestK() throws {
        let dir = try makeTempDir()
        let store = CheckpointStore(folder: dir, keep: 2)
        try writeFile(dir + "/notes.txt", Array("keep me".utf8))
        for step in 1...5 {
            try store.write(step: step * 10, bytes: Self.sampleBytes(step: step * 10))
            let expected = Array(((max(1, step - 1))...step).reversed()).map { dir + "/" + CheckpointStore.fileName(step: $0 * 10) }
            XCTAssertEqual(store.candidates(), expected, "after writing step \(step * 10)")
        }
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/notes.txt"), "prune deleted a file that is not a checkpoint")
        // keep: 1 keeps exactly the newest; keep values below 1 behave as 1.
        let one = CheckpointStore(folder: dir, keep: 0)
        XCTAssertEqual(one.keep, 1)
        try one.write(step: 60, bytes: Self.sampleBytes(step: 60))
        XCTAssertEqual(one.candidates(), [dir + "/" + CheckpointStore.fileName(step: 60)])
    }

    /// Retention counts only checkpoints that verify: a corrupt file with a newer step number
    /// neither displaces the only valid checkpoint nor gets deleted (it stays for inspection).
    func testPruneNeverDeletesTheNewestValidCheckpointForACorruptOne() throws {
        let dir = try makeTempDir()
        let store = CheckpointStore(folder: dir, keep: 1)
        let corrupt = dir + "/" + CheckpointStore.fileName(step: 50)
        var bad = Self.sampleBytes(step: 50)
        bad[bad.count - 3] ^= 0x40
        try writeFile(corrupt, bad)
        let path30 = try store.write(step: 30, bytes: Self.sampleBytes(step: 30))
        XCTAssertEqual(store.candidates(), [corrupt, path30], "keep: 1 with a corrupt newer file deleted the valid one")
        var log: [String] = []
        XCTAssertEqual(store.newestValid(log: { log.append($0) })?.path, path30)
        // Two more valid ones: the older valid files go, the corrupt one is neither counted nor deleted.
        let path40 = try store.write(step: 40, bytes: Self.sampleBytes(step: 40))
        XCTAssertEqual(store.candidates(), [corrupt, path40])
        let path60 = try store.write(step: 60, bytes: Self.sampleBytes(step: 60))
        XCTAssertEqual(store.candidates(), [path60, corrupt])
        XCTAssertEqual(try Array(Data(contentsOf: URL(fileURLWithPath: corrupt))), bad, "the corrupt file was changed")
    }

    /// Rewriting the checkpoint of the same step (e.g. a signal right after an every_steps one)
    /// replaces it atomically.
    func testRewritingTheSameStepReplacesTheFile() throws {
        let dir = try makeTempDir()
        let store = CheckpointStore(folder: dir, keep: 3)
        var other = CheckpointSamples.metadata
        other["note"] = "second"
        try store.write(step: 12, bytes: Self.sampleBytes())
        let path = try store.write(step: 12, bytes: Checkpoint.encode(CheckpointSamples.tensors(), metadata: other))
        XCTAssertEqual(try Checkpoint.verify(try CheckpointStore.readFile(path), file: path).metadata["note"], "second")
        XCTAssertEqual(listDir(dir), [CheckpointStore.fileName(step: 12)])
    }

    // MARK: - Failed writes

    /// The folder cannot exist (its parent is a regular file): the write throws naming the
    /// folder, and nothing is left behind. (Works as root, where permissions do not apply.)
    func testWriteIntoAFolderUnderARegularFileThrows() throws {
        let dir = try makeTempDir()
        try writeFile(dir + "/plain-file", Array("x".utf8))
        let store = CheckpointStore(folder: dir + "/plain-file/checkpoints", keep: 3)
        XCTAssertThrowsError(try store.write(step: 12, bytes: Self.sampleBytes())) { error in
            XCTAssertTrue(error is CheckpointError, "\(type(of: error))")
            XCTAssertTrue("\(error)".contains(dir + "/plain-file"), "\(error)")
        }
        XCTAssertEqual(listDir(dir), ["plain-file"])
    }

    /// Creating the temporary file fails (a directory sits at its path): the write throws, the
    /// previous checkpoint is untouched, still loadable and still the newest valid one — even with
    /// keep: 1, a failed write prunes nothing.
    func testFailedWriteLeavesThePreviousCheckpointIntact() throws {
        let dir = try makeTempDir()
        let store = CheckpointStore(folder: dir, keep: 1)
        let previous = try store.write(step: 10, bytes: Self.sampleBytes(step: 10))
        let before = try CheckpointStore.readFile(previous)

        let tmp = dir + "/." + CheckpointStore.fileName(step: 20) + ".tmp.\(getpid())"
        try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: false)
        XCTAssertThrowsError(try store.write(step: 20, bytes: Self.sampleBytes(step: 20))) { error in
            XCTAssertTrue(error is CheckpointError, "\(type(of: error))")
            XCTAssertTrue("\(error)".contains(dir), "the error does not name the folder: \(error)")
            print("[CheckpointStoreTests] failed write: \(error)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/" + CheckpointStore.fileName(step: 20)))
        XCTAssertEqual(try CheckpointStore.readFile(previous), before, "the previous checkpoint changed")
        XCTAssertNoThrow(try Checkpoint.verify(before, file: previous))
        var log: [String] = []
        XCTAssertEqual(store.newestValid(log: { log.append($0) })?.path, previous)
        XCTAssertEqual(log, [])

        // Once the obstacle is gone the next write works and prunes the old one (keep: 1).
        try FileManager.default.removeItem(atPath: tmp)
        let next = try store.write(step: 20, bytes: Self.sampleBytes(step: 20))
        XCTAssertEqual(store.candidates(), [next])
    }

    /// The rename fails (a non-empty directory sits at the checkpoint's own path): the write
    /// throws, removes its temporary file, and the previous checkpoint is untouched.
    /// (newestValid is not called here with that directory present: see ResumeTests
    /// testResumeAutoSkipsADirectoryNamedLikeACheckpoint.)
    func testFailedRenameRemovesTheTemporaryFileAndKeepsThePrevious() throws {
        let dir = try makeTempDir()
        let store = CheckpointStore(folder: dir, keep: 1)
        let previous = try store.write(step: 10, bytes: Self.sampleBytes(step: 10))
        let before = try CheckpointStore.readFile(previous)
        let target = dir + "/" + CheckpointStore.fileName(step: 20)
        try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: false)
        try writeFile(target + "/occupied", [1])
        XCTAssertThrowsError(try store.write(step: 20, bytes: Self.sampleBytes(step: 20))) { error in
            XCTAssertTrue(error is CheckpointError, "\(type(of: error))")
            XCTAssertTrue("\(error)".contains(dir), "\(error)")
        }
        XCTAssertEqual(listDir(dir).filter { $0.contains(".tmp") }, [], "temporary file left behind")
        XCTAssertEqual(try CheckpointStore.readFile(previous), before, "the previous checkpoint changed")
        XCTAssertNoThrow(try Checkpoint.verify(before, file: previous))
        try FileManager.default.removeItem(atPath: target)
        XCTAssertEqual(store.newestValid(log: { XCTFail("unexpected message: \($0)") })?.path, previous)
    }

    func testReadFileOfAMissingFileNamesIt() throws {
        let dir = try makeTempDir()
        XCTAssertThrowsError(try CheckpointStore.readFile(dir + "/nope.safetensors")) { error in
            XCTAssertTrue("\(error)".contains(dir + "/nope.safetensors"), "\(error)")
        }
    }

    // MARK: - Helpers

    func listDir(_ dir: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted()
    }

    func writeFile(_ path: String, _ bytes: [UInt8]) throws {
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }

    /// Flips the bits of one byte (negative offsets count from the end).
    func flipByte(_ path: String, at offset: Int) throws {
        var b = try CheckpointStore.readFile(path)
        let i = offset < 0 ? b.count + offset : offset
        b[i] ^= 0xFF
        try writeFile(path, b)
    }

    static func find(_ needle: [UInt8], in hay: [UInt8]) -> Int? {
        guard needle.count <= hay.count else { return nil }
        for i in 0...(hay.count - needle.count) where Array(hay[i..<(i + needle.count)]) == needle { return i }
        return nil
    }

    /// CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320) — zlib's crc32 — written out.
    static func referenceCRC32(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for b in bytes {
            crc ^= UInt32(b)
            for _ in 0..<8 { crc = (crc & 1) != 0 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
        }
        return ~crc
    }

    static func hex8(_ v: UInt32) -> String {
        let s = String(v, radix: 16)
        return String(repeating: "0", count: 8 - s.count) + s
    }
}
