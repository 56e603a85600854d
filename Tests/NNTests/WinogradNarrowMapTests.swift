// F(4x4)'s input and output-gradient transforms on maps of fewer than 8 tiles a row pack tiles of
// several tile rows and images into one 8-lane group (`forEachTileRun` in
// Sources/Kernels/Winograd43Transforms.swift). Each lane does the arithmetic the one-tile-row groups
// do for that tile, so the two walks must give the same bits: checked here on every narrow map
// shape (1 to 7 tiles a row), for whole batches, blocks that start and end inside an image, and
// channel ranges with padded rows (the by-channels passes).
import XCTest
import Kernels

final class WinogradNarrowMapTests: XCTestCase {
    struct Case { let h, w, first, nt: Int; let channels: Range<Int>?; let padded: Bool }

    func cases(n: Int, c: Int) -> [Case] {
        var all: [Case] = []
        for (h, w) in [(7, 7), (14, 14), (5, 8), (8, 5), (9, 9), (12, 12), (6, 13), (16, 3), (4, 4), (13, 28), (3, 25)] {
            let tpi = ((h + 3) / 4) * ((w + 3) / 4)
            all.append(Case(h: h, w: w, first: 0, nt: n * tpi, channels: nil, padded: false))
            all.append(Case(h: h, w: w, first: tpi / 2, nt: (n - 1) * tpi - 1, channels: nil, padded: false))
            all.append(Case(h: h, w: w, first: 0, nt: n * tpi, channels: 1..<c, padded: true))
            all.append(Case(h: h, w: w, first: tpi + 1, nt: 3, channels: 0..<1, padded: true))
        }
        return all
    }

    /// The transform's columns 0 ..< nt of the rows in `channels`, run with each walk.
    func bothWalks(_ k: Case, channels c: Int, _ run: (UnsafeMutablePointer<Float>, Int, Int?) -> Void) -> ([Float], [Float]) {
        let ld = k.padded ? (k.nt + 15) / 8 * 8 : k.nt, plane = c * ld + 16
        var results: [[Float]] = []
        for narrow in [false, true] {
            Kernels.narrowMapRuns = narrow
            var v = [Float](repeating: .nan, count: 36 * plane)
            v.withUnsafeMutableBufferPointer { run($0.baseAddress!, plane, k.padded ? ld : nil) }
            var kept: [Float] = []
            for xi in 0..<36 { for ch in k.channels ?? 0..<c { for t in 0..<k.nt { kept.append(v[xi * plane + ch * ld + t]) } } }
            results.append(kept)
        }
        Kernels.narrowMapRuns = true
        return (results[0], results[1])
    }

    func assertSameBits(_ a: [Float], _ b: [Float], _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.count, b.count, what, file: file, line: line)
        let differing = zip(a, b).filter { $0.bitPattern != $1.bitPattern }.count
        XCTAssertEqual(differing, 0, "\(what): \(differing) of \(a.count) values differ", file: file, line: line)
        XCTAssertFalse(b.contains { $0.isNaN }, "\(what): a column was left unwritten", file: file, line: line)
    }

    func testInputTransformGivesTheBitsOfTheTileRowWalk() {
        let n = 5, cin = 3
        for k in cases(n: n, c: cin) {
            let th = (k.h + 3) / 4, tw = (k.w + 3) / 4, lw = tw + 8
            let x = (0..<(n * cin * k.h * k.w)).map { Float(($0 * 7919) % 1001) / 1001 - 0.5 }
            var pbuf = [Float](repeating: 0, count: (4 * th + 2) * 4 * lw)
            let (rows, runs) = bothWalks(k, channels: cin) { v, plane, ld in
                for i in pbuf.indices { pbuf[i] = 0 }
                pbuf.withUnsafeMutableBufferPointer { p in
                    Kernels.winograd43InputTransform(x, v, p.baseAddress!, h: k.h, w: k.w, tw: tw, tpi: th * tw, lw: lw,
                                                     plane: plane, cin: cin, first: k.first, nt: k.nt, channels: k.channels, ld: ld)
                }
            }
            assertSameBits(rows, runs, "input transform \(k)")
        }
    }

    func testOutputGradientTransformGivesTheBitsOfTheTileRowWalk() {
        let n = 5, cout = 3
        for k in cases(n: n, c: cout) {
            let th = (k.h + 3) / 4, tw = (k.w + 3) / 4, lw = tw + 8
            let dy = (0..<(n * cout * k.h * k.w)).map { Float(($0 * 104729) % 997) / 997 - 0.5 }
            var qbuf = [Float](repeating: 0, count: 4 * th * 4 * lw)
            let (rows, runs) = bothWalks(k, channels: cout) { d, plane, ld in
                for i in qbuf.indices { qbuf[i] = 0 }
                qbuf.withUnsafeMutableBufferPointer { q in
                    Kernels.winograd43OutputGradientTransform(dy, d, q.baseAddress!, h: k.h, w: k.w, tw: tw, tpi: th * tw, lw: lw,
                                                              plane: plane, cout: cout, first: k.first, nt: k.nt,
                                                              channels: k.channels, ld: ld)
                }
            }
            assertSameBits(rows, runs, "output-gradient transform \(k)")
        }
    }
}
