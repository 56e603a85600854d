import XCTest
import Foundation
import Yams
import NN
@testable import Training

/// YAML input bounds (Sources/Training/YAMLLimits.swift): alias bombs, deep nesting and huge
/// texts are refused by a limit before Yams builds (and anything walks) an expanded tree.
final class YAMLLimitsTests: XCTestCase {
    private func assertRefused(_ yaml: String, file: String = "bomb.yaml", _ fragments: [String],
                               sourceFile: StaticString = #filePath, line: UInt = #line) {
        do {
            _ = try YAMLLimits.compose(yaml: yaml, file: file)
            XCTFail("expected a ConfigError containing \(fragments)", file: sourceFile, line: line)
        } catch let e as ConfigError {
            for f in fragments {
                XCTAssertTrue(e.description.contains(f), "'\(clippedForMessage(e.description, limit: 1000))' does not contain '\(f)'",
                              file: sourceFile, line: line)
            }
            XCTAssertLessThan(e.description.utf8.count, 2000, "error message too long", file: sourceFile, line: line)
        } catch {
            XCTFail("unexpected error type \(error)", file: sourceFile, line: line)
        }
    }

    /// The billion laughs under a valid key: `levels` anchors, each a list of 10 aliases of the
    /// previous one; the last expands to 10^levels scalars. About 1 KB of text for 9 levels.
    private func aliasBomb(levels: Int = 9) -> String {
        var y = "model:\n  depth: 18\ndata:\n  mean:\n"
        y += "    - &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
        for i in 1...levels {
            y += "    - &l\(i) [" + Array(repeating: "*l\(i - 1)", count: 10).joined(separator: ", ") + "]\n"
        }
        return y
    }

    private var configsFolder: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("configs").path
    }

    // MARK: Refused

    func testAliasBombRefusedByTheNodeLimit() {
        let bomb = aliasBomb()
        XCTAssertLessThan(bomb.utf8.count, 1200)
        assertRefused(bomb, ["bomb.yaml", "YAML refused", "more than \(YAMLLimits.maxNodes) nodes once aliases are expanded"])
    }

    func testAliasBombAsMappingKeysRefused() {
        // Aliased collections as mapping keys: Yams would hash the expanded keys.
        var y = "a: &a {x: 1, y: 2, z: 3, w: 4, v: 5, u: 6, t: 7, s: 8, r: 9, q: 10}\n"
        for i in 1...8 {
            y += "b\(i): &b\(i) {" + (0..<10).map { "? *\(i == 1 ? "a" : "b\(i - 1)") : k\($0)" }.joined(separator: ", ") + "}\n"
        }
        assertRefused(y, ["more than \(YAMLLimits.maxNodes) nodes"])
    }

    func testDeepNestingRefused() {
        let deep = String(repeating: "[", count: 200) + String(repeating: "]", count: 200)
        assertRefused(deep, ["bomb.yaml", "nested more than \(YAMLLimits.maxDepth) levels deep"])
        let deepBlock = (0..<40).map { String(repeating: "  ", count: $0) + "k\($0):" }.joined(separator: "\n") + " 1\n"
        assertRefused(deepBlock, ["nested more than \(YAMLLimits.maxDepth) levels deep"])
    }

    func testHugeTextRefused() {
        let big = "output:\n  dir: " + String(repeating: "x", count: YAMLLimits.maxBytes) + "\n"
        assertRefused(big, ["bomb.yaml", "bytes exceed the limit of \(YAMLLimits.maxBytes) bytes"])
    }

    func testManyPlainNodesRefused() {
        let list = "data:\n  mean: [" + Array(repeating: "0.5", count: YAMLLimits.maxNodes).joined(separator: ",") + "]\n"
        assertRefused(list, ["more than \(YAMLLimits.maxNodes) nodes"])
    }

    func testSyntaxErrorIsAConfigErrorNamingTheFile() {
        assertRefused("model: [1, 2\n", file: "broken.yaml", ["broken.yaml", "invalid YAML"])
        assertRefused("model: *nowhere\n", file: "alias.yaml", ["alias.yaml", "invalid YAML"])
    }

    func testLongOriginAndErrorsAreClipped() {
        let longName = String(repeating: "n", count: 5000)
        assertRefused(String(repeating: "[", count: 100), file: longName, ["nested more than"])
        // A syntax error on a very long line: Yams quotes the line; the message stays short.
        assertRefused("a: [" + String(repeating: "x", count: 100_000) + ", : ]\n- b", ["invalid YAML"])
    }

    // MARK: Accepted

    func testEveryShippedConfigComposesAndParses() throws {
        let names = try FileManager.default.contentsOfDirectory(atPath: configsFolder).filter { $0.hasSuffix(".yaml") }
        XCTAssertFalse(names.isEmpty, "no configs found in \(configsFolder)")
        for name in names.sorted() {
            let path = configsFolder + "/" + name
            let text = try YAMLLimits.readText(path: path)
            let node = try YAMLLimits.compose(yaml: text, file: path)
            XCTAssertEqual(node, try Yams.compose(yaml: text), name)
            XCTAssertNoThrow(try RunConfig.parse(yaml: text, file: path), name)
        }
    }

    func testModestAliasesAccepted() throws {
        let y = "data:\n  mean: &m [0.5, 0.5, 0.5]\n  std: *m\nmodel:\n  in_channels: 3\n"
        let node = try YAMLLimits.compose(yaml: y, file: "ok.yaml")
        XCTAssertEqual(node?["data"]?["std"], node?["data"]?["mean"])
        // Two levels of the bomb: the last anchor expands to 1111 nodes (1 + 10 lists of 1 + 10),
        // 1200-odd in all, within the limit; three levels (11111 for the last anchor) are not.
        XCTAssertNotNil(try YAMLLimits.compose(yaml: aliasBomb(levels: 2), file: "small.yaml"))
        assertRefused(aliasBomb(levels: 3), ["more than \(YAMLLimits.maxNodes) nodes"])
    }

    func testExactlyAtTheNodeLimitAccepted() throws {
        // A sequence of maxNodes - 1 scalars is maxNodes nodes.
        let y = "[" + Array(repeating: "1", count: YAMLLimits.maxNodes - 1).joined(separator: ",") + "]"
        XCTAssertNotNil(try YAMLLimits.compose(yaml: y, file: "edge.yaml"))
        let nested = String(repeating: "[", count: YAMLLimits.maxDepth) + String(repeating: "]", count: YAMLLimits.maxDepth)
        XCTAssertNotNil(try YAMLLimits.compose(yaml: nested, file: "edge.yaml"))
    }

    func testEmptyTextIsNoDocument() throws {
        XCTAssertNil(try YAMLLimits.compose(yaml: "", file: "empty.yaml"))
        XCTAssertNil(try YAMLLimits.compose(yaml: "# only a comment\n", file: "empty.yaml"))
    }

    // MARK: Reading files

    func testReadTextRefusesLargeAndOddFiles() throws {
        let dir = NSTemporaryDirectory() + "yamllimits-\(getpid())-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let big = dir + "/big.yaml"
        _ = FileManager.default.createFile(atPath: big, contents: Data(repeating: 0x20, count: YAMLLimits.maxBytes + 1))
        XCTAssertThrowsError(try YAMLLimits.readText(path: big)) {
            XCTAssertTrue("\($0)".contains("exceed the limit"), "\($0)")
        }
        XCTAssertThrowsError(try YAMLLimits.readText(path: "/dev/zero")) {   // not regular: read up to the limit
            XCTAssertTrue("\($0)".contains("more than \(YAMLLimits.maxBytes) bytes"), "\($0)")
        }
        XCTAssertThrowsError(try YAMLLimits.readText(path: dir)) { XCTAssertTrue("\($0)".contains("is a directory"), "\($0)") }
        XCTAssertThrowsError(try YAMLLimits.readText(path: dir + "/none.yaml")) { XCTAssertTrue("\($0)".contains("not found"), "\($0)") }
        let latin1 = dir + "/latin1.yaml"
        _ = FileManager.default.createFile(atPath: latin1, contents: Data([0x61, 0x3a, 0x20, 0xe9, 0x0a]))
        XCTAssertThrowsError(try YAMLLimits.readText(path: latin1)) { XCTAssertTrue("\($0)".contains("not UTF-8"), "\($0)") }
        let ok = dir + "/ok.yaml"
        try "model:\n  depth: 34\n".write(toFile: ok, atomically: true, encoding: .utf8)
        XCTAssertEqual(try YAMLLimits.readText(path: ok), "model:\n  depth: 34\n")
    }

    // MARK: clipped

    func testClipped() {
        XCTAssertEqual(clippedForMessage("short"), "short")
        XCTAssertEqual(clippedForMessage(String(repeating: "a", count: 200)), String(repeating: "a", count: 200))
        let long = String(repeating: "b", count: 1000)
        XCTAssertEqual(clippedForMessage(long), String(repeating: "b", count: 200) + "… (1000 characters in all)")
        XCTAssertEqual(clippedForMessage("héllo wörld", limit: 4), "héll… (11 characters in all)")
    }
}
