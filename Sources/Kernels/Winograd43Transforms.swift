// Winograd F(4x4, 3x3)'s transforms (Lavin & Gray 2016): the loops around the 36 gemms that
// NN/Layers/Winograd43.swift and Winograd43WeightGradient.swift run. Interpolation points 0, ±1, ±2, ∞:
//   B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1]
//   G   = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1]
//   A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1]
//   weights  U = G g G^T (6x6 per kernel)         input   V = B^T d B (6x6 per tile and channel)
//   output   Y = A^T M A (4x4 per tile)            dW      G^T [Σ_t (A dY_t A^T) ⊙ V_t] G
// Transforms run on 8 tiles (or 8 kernels) at once in SIMD8 lanes. The F(4x4) geometry (h, w, tw
// tiles per tile row, tpi per image, lw the length of a phase row) comes as plain integers.

/// g -> G g G^T applied along one axis: three values to six.
@inline(__always)
private func kernelTransform(_ a: SIMD8<Float>, _ b: SIMD8<Float>, _ c: SIMD8<Float>)
    -> Six {
    let sixth = SIMD8<Float>(repeating: 1 / 6), quarter = SIMD8<Float>(repeating: 0.25)
    let ac = a * (1 / 24) + c * (1 / 6), b12 = b * (1 / 12)
    return (a * quarter, -(a + b + c) * sixth, -(a - b + c) * sixth, ac + b12, ac - b12, c)
}

/// U for 8 kernels at once: value k of `g` holds element k (row-major 3x3) of the 8 kernels in its
/// lanes; kernel l's 36 results go to u[xi * stride + l].
@inline(__always)
private func transformKernels8(_ u: UnsafeMutablePointer<Float>, _ stride: Int, _ g: KernelLanes) {
    // t = G g: six rows of three, one column of g at a time
    let c0 = kernelTransform(g.0, g.3, g.6)
    let c1 = kernelTransform(g.1, g.4, g.7)
    let c2 = kernelTransform(g.2, g.5, g.8)
    let r = UnsafeMutableRawPointer(u), bs = stride * 4
    // (t G^T) row i
    @inline(__always) func row(_ i: Int, _ a: SIMD8<Float>, _ b: SIMD8<Float>, _ c: SIMD8<Float>) { storeRow(r, bs, i, kernelTransform(a, b, c)) }
    row(0, c0.0, c1.0, c2.0); row(1, c0.1, c1.1, c2.1); row(2, c0.2, c1.2, c2.2)
    row(3, c0.3, c1.3, c2.3); row(4, c0.4, c1.4, c2.4); row(5, c0.5, c1.5, c2.5)
}

/// U[36][Cout][Cin] from W [Cout, Cin, 3, 3] for output channels `rows`; or, `forInputGradient`,
/// U'[36][Cin][Cout] of W'[ci][co] = W[co][ci] rotated 180° for input channels `rows` (dX = conv(dY, W')).
/// With `band`, only the rows' part: U[36][rows.count][inner] with planes `band` floats apart.
public func winograd43TransformWeights(_ w: UnsafePointer<Float>, cout: Int, cin: Int, into u: UnsafeMutablePointer<Float>,
                                       forInputGradient: Bool, rows: Range<Int>, band: Int? = nil) {
    let plane = band ?? cout * cin, firstRow = band == nil ? 0 : rows.lowerBound
    let inner = forInputGradient ? cout : cin
    // kernel l of a group: W[o][first + l] forward, W[first + l][o] rotated for dX
    transformKernelRows(w, cin: cin, rows: rows, inner: inner, transposed: forInputGradient, rotated: forInputGradient,
                        planes: 36, into: u, plane: plane, firstRow: firstRow) { taps, dst in transformKernels8(dst, 64, taps) }
}

/// row[(c & 3) * lw + c >> 2] = src[c - offset] for c in offset ..< offset + count: a row split into
/// its four column phases (the layout of the F(4x4) planes); 16 columns at a time in SIMD lanes.
@inline(__always)
func splitPhases(_ src: UnsafePointer<Float>, count: Int, into row: UnsafeMutablePointer<Float>, lw: Int, offset: Int) {
    var i = 0
    while i < count && (i + offset) & 3 != 0 {   // up to a column that starts phase 0
        let c = i + offset; row[(c & 3) * lw + c >> 2] = src[i]; i += 1
    }
    while i + 16 <= count {
        let v = UnsafeRawPointer(src + i).loadUnaligned(as: SIMD16<Float>.self)
        let l = (i + offset) >> 2
        let even = v.evenHalf, odd = v.oddHalf
        UnsafeMutableRawPointer(row + l).storeBytes(of: even.evenHalf, as: SIMD4<Float>.self)
        UnsafeMutableRawPointer(row + lw + l).storeBytes(of: odd.evenHalf, as: SIMD4<Float>.self)
        UnsafeMutableRawPointer(row + 2 * lw + l).storeBytes(of: even.oddHalf, as: SIMD4<Float>.self)
        UnsafeMutableRawPointer(row + 3 * lw + l).storeBytes(of: odd.oddHalf, as: SIMD4<Float>.self)
        i += 16
    }
    while i < count { let c = i + offset; row[(c & 3) * lw + c >> 2] = src[i]; i += 1 }
}

/// `splitPhases` of a row of at most 16 - offset floats with one 16-float load and four stores (the
/// scalar loop took about half of the input transform's time on 7x7 maps): columns 0 ..< offset and
/// past the row's end get zeros, as the zero-bordered planes have there. The load reads the 16
/// floats from src - offset, so it runs only where they lie in `valid`; elsewhere `splitPhases`.
@inline(__always)
func splitShortRow(_ src: UnsafePointer<Float>, count: Int, into row: UnsafeMutablePointer<Float>, lw: Int, offset: Int,
                   valid: Range<UnsafePointer<Float>>) {
    let from = src - offset
    guard count + offset <= 16, from >= valid.lowerBound, from + 16 <= valid.upperBound else {
        splitPhases(src, count: count, into: row, lw: lw, offset: offset); return
    }
    let lane = SIMD16<Float>(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)
    let inRow = unsafeBitCast(lane .>= SIMD16<Float>(repeating: Float(offset)), to: SIMD16<UInt32>.self)
        & unsafeBitCast(lane .< SIMD16<Float>(repeating: Float(offset + count)), to: SIMD16<UInt32>.self)
    let v = unsafeBitCast(UnsafeRawPointer(from).loadUnaligned(as: SIMD16<UInt32>.self) & inRow, to: SIMD16<Float>.self)
    let even = v.evenHalf, odd = v.oddHalf
    UnsafeMutableRawPointer(row).storeBytes(of: even.evenHalf, as: SIMD4<Float>.self)
    UnsafeMutableRawPointer(row + lw).storeBytes(of: odd.evenHalf, as: SIMD4<Float>.self)
    UnsafeMutableRawPointer(row + 2 * lw).storeBytes(of: even.oddHalf, as: SIMD4<Float>.self)
    UnsafeMutableRawPointer(row + 3 * lw).storeBytes(of: odd.oddHalf, as: SIMD4<Float>.self)
}

/// Six SIMD8 values: a row (or column) of a 6x6 transform, for 8 tiles or kernels.
typealias Six = (SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>)

/// Row i of a transformed 6x6 tile into planes i*6 ..< i*6 + 6, `planeBytes` apart (8 lanes each).
@inline(__always)
func storeRow(_ dst: UnsafeMutableRawPointer, _ planeBytes: Int, _ i: Int, _ r: Six) {
    dst.storeBytes(of: r.0, toByteOffset: (i * 6) * planeBytes, as: SIMD8<Float>.self)
    dst.storeBytes(of: r.1, toByteOffset: (i * 6 + 1) * planeBytes, as: SIMD8<Float>.self)
    dst.storeBytes(of: r.2, toByteOffset: (i * 6 + 2) * planeBytes, as: SIMD8<Float>.self)
    dst.storeBytes(of: r.3, toByteOffset: (i * 6 + 3) * planeBytes, as: SIMD8<Float>.self)
    dst.storeBytes(of: r.4, toByteOffset: (i * 6 + 4) * planeBytes, as: SIMD8<Float>.self)
    dst.storeBytes(of: r.5, toByteOffset: (i * 6 + 5) * planeBytes, as: SIMD8<Float>.self)
}

/// Rows (or columns) of a 6x6 patch to B^T d.
@inline(__always)
private func inputTransform(_ d0: SIMD8<Float>, _ d1: SIMD8<Float>, _ d2: SIMD8<Float>,
                            _ d3: SIMD8<Float>, _ d4: SIMD8<Float>, _ d5: SIMD8<Float>)
    -> Six {
    let four = SIMD8<Float>(repeating: 4), five = SIMD8<Float>(repeating: 5), two = SIMD8<Float>(repeating: 2)
    let a = d4 - four * d2, b = d3 - four * d1      // rows 1, 2: a ± b
    let c = d4 - d2, e = two * (d3 - d1)            // rows 3, 4: c ± e
    return (four * d0 - five * d2 + d4, a + b, a - b, c + e, c - e, four * d1 - five * d3 + d5)
}

/// The tile-row walk of `forEachTileLoad`: for each channel of `channels`, each image
/// segment of the block's nt tiles (from global tile `first`) is first staged (`segment(c, img, ka,
/// kb)`: tiles ka ..< kb of image img), then handed out 8 tiles of one tile row at a time
/// (`group(c, ty, tx, t)`: tile (ty, tx) is the group's first, t its column in the block).
@inline(__always)
private func forEachTileGroup(channels: Range<Int>, first: Int, nt: Int, tw: Int, tpi: Int,
                              segment: (_ c: Int, _ img: Int, _ ka: Int, _ kb: Int) -> Void,
                              group: (_ c: Int, _ ty: Int, _ tx: Int, _ t: Int) -> Void) {
    for c in channels {
        var t = 0
        while t < nt {
            let g = first + t, img = g / tpi, ka = g % tpi, kb = min(tpi, ka + (nt - t))
            segment(c, img, ka, kb)
            var k = ka
            while k < kb {
                let ty = k / tw, tx = k - ty * tw
                group(c, ty, tx, t + (k - ka))
                k += min(8, kb - k, tw - tx)   // 8 tiles of one tile row
            }
            t += kb - ka
        }
    }
}

/// Up to four runs of consecutive tiles, each in one tile row of one image, packed into the 8 lanes
/// of a group: on maps of fewer than 8 tiles a row (7x7 and 14x14 in ResNet-18 at 224x224), a tile
/// row alone fills 2 to 4 lanes. Each run fills the lanes from the one it was added at; `load` reads
/// 8 floats at every run's base (its first tile's patch origin moved back by its first lane) and
/// keeps each run's lanes with bitwise blends, so every lane holds what the tile-row groups would
/// load for its tile. Bases past `count` are placeholders, never read.
private struct TileRuns {
    var count = 0
    var b0 = UnsafePointer<Float>(bitPattern: 64)!, b1 = UnsafePointer<Float>(bitPattern: 64)!
    var b2 = UnsafePointer<Float>(bitPattern: 64)!, b3 = UnsafePointer<Float>(bitPattern: 64)!
    var m1 = SIMD8<UInt32>(), m2 = SIMD8<UInt32>(), m3 = SIMD8<UInt32>()   // lanes of runs 1, 2, 3 on

    /// Adds a run whose first tile's patch origin is `origin`, from lane `lane` on.
    @inline(__always) mutating func add(_ origin: UnsafePointer<Float>, lane: Int) {
        let base = origin - lane
        let on = SIMD8<UInt32>(0, 1, 2, 3, 4, 5, 6, 7) .>= SIMD8<UInt32>(repeating: UInt32(lane))
        let mask = SIMD8<UInt32>().replacing(with: .max, where: on)
        switch count {
        case 0: b0 = base
        case 1: b1 = base; m1 = mask
        case 2: b2 = base; m2 = mask
        default: b3 = base; m3 = mask
        }
        count += 1
    }

    @inline(__always) func load(_ offset: Int) -> SIMD8<Float> {
        @inline(__always) func at(_ b: UnsafePointer<Float>) -> SIMD8<UInt32> {
            UnsafeRawPointer(b + offset).loadUnaligned(as: SIMD8<UInt32>.self)
        }
        var v = at(b0)
        if count > 1 { v = (v & ~m1) | (at(b1) & m1) }
        if count > 2 { v = (v & ~m2) | (at(b2) & m2) }
        if count > 3 { v = (v & ~m3) | (at(b3) & m3) }
        return unsafeBitCast(v, to: SIMD8<Float>.self)
    }
}

/// The walk of `forEachTileGroup` for maps of fewer than 8 tiles a row: groups of up to 8
/// consecutive tiles of the block (up to four runs, `TileRuns`), each image's plane staged once per
/// channel (`stage(c, img, plane)`) into a ring of `slotFloats`-float planes of its own, zeroed
/// here once, with 16 floats before each for the runs' backward-shifted loads. `origin(plane, ty, tx)`
/// is tile (ty, tx)'s patch origin in a staged plane; `group(c, runs, t)` transforms the group
/// whose first tile is block column t.
@inline(__always)
private func forEachTileRun(channels: Range<Int>, first: Int, nt: Int, tw: Int, tpi: Int, slotFloats: Int,
                            stage: (_ c: Int, _ img: Int, _ plane: UnsafeMutablePointer<Float>) -> Void,
                            origin: (_ plane: UnsafeMutablePointer<Float>, _ ty: Int, _ tx: Int) -> UnsafePointer<Float>,
                            group: (_ c: Int, _ runs: TileRuns, _ t: Int) -> Void) {
    let slots = 5, stride = slotFloats + 16   // a group spans at most four images
    let ring = UnsafeMutablePointer<Float>.allocate(capacity: slots * stride + 16)
    let staged = UnsafeMutablePointer<Int>.allocate(capacity: slots)   // the image each slot holds
    defer { ring.deallocate(); staged.deallocate() }
    ring.initialize(repeating: 0, count: slots * stride + 16)
    for c in channels {
        staged.initialize(repeating: -1, count: slots)
        var t = 0
        while t < nt {
            var runs = TileRuns(), lanes = 0
            while lanes < 8 && runs.count < 4 && t + lanes < nt {
                let g = first + t + lanes, img = g / tpi, k = g % tpi, ty = k / tw, tx = k - ty * tw
                let slot = img % slots, plane = ring + 16 + slot * stride
                if staged[slot] != img { stage(c, img, plane); staged[slot] = img }
                runs.add(origin(plane, ty, tx), lane: lanes)
                lanes += min(tw - tx, 8 - lanes, nt - t - lanes)
            }
            group(c, runs, t)
            t += lanes
        }
    }
}

/// The groups of a block's tiles with their loads, for the two tile transforms: each (channel,
/// image) plane of `src` ([image][channelsPerImage][h][w]) is staged in phase layout, shifted down and
/// right by `border` (1: the input transform's zero border; 0: dY's), and `group(c, t, load)` runs
/// for the group whose first tile is block column t, `load(offset)` giving its 8 tiles' values
/// `offset` floats past each tile's origin in the staged plane. Groups of one tile row staged in
/// `pbuf` (one plane, zeroed by the caller once), or, on maps of fewer than 8 tiles a row,
/// `forEachTileRun`'s groups of consecutive tiles.
@inline(__always)
private func forEachTileLoad(_ src: UnsafePointer<Float>, channelsPerImage: Int, h: Int, w: Int, tw: Int, tpi: Int, lw: Int,
                             border: Int, pbuf: UnsafeMutablePointer<Float>, channels: Range<Int>, first: Int, nt: Int,
                             group: (_ c: Int, _ t: Int, _ load: (Int) -> SIMD8<Float>) -> Void) {
    @inline(__always) func origin(_ plane: UnsafeMutablePointer<Float>, _ ty: Int, _ tx: Int) -> UnsafePointer<Float> {
        UnsafePointer(plane + 4 * ty * 4 * lw + tx)
    }
    @inline(__always) func planeOf(_ c: Int, _ img: Int) -> UnsafePointer<Float> { src + (img * channelsPerImage + c) * h * w }
    if tw < 8 && narrowMapRuns {
        let valid = src ..< src + ((first + nt - 1) / tpi + 1) * channelsPerImage * h * w   // the images the block reads
        forEachTileRun(channels: channels, first: first, nt: nt, tw: tw, tpi: tpi, slotFloats: (4 * (tpi / tw) + 2 * border) * 4 * lw,
                       stage: { c, img, plane in
            let sc = planeOf(c, img)
            for iy in 0..<h { splitShortRow(sc + iy * w, count: w, into: plane + (iy + border) * 4 * lw, lw: lw, offset: border, valid: valid) }
        }, origin: origin, group: { c, runs, t in group(c, t) { runs.load($0) } })
        return
    }
    forEachTileGroup(channels: channels, first: first, nt: nt, tw: tw, tpi: tpi, segment: { c, img, ka, kb in
        // the rows of tile rows ka / tw ... (kb - 1) / tw: 4 ty - border ..< 4 ty + 4 + border
        let sc = planeOf(c, img)
        for iy in max(0, 4 * (ka / tw) - border)..<min(h, 4 * ((kb - 1) / tw) + 4 + border) {
            splitPhases(sc + iy * w, count: w, into: pbuf + (iy + border) * 4 * lw, lw: lw, offset: border)
        }
    }, group: { c, ty, tx, t in
        let base = origin(pbuf, ty, tx)
        group(c, t) { UnsafeRawPointer(base + $0).loadUnaligned(as: SIMD8<Float>.self) }
    })
}

/// V[xi][c][t] = (B^T d_t B)[xi] for the block's nt tiles starting at global tile `first`; `pbuf`
/// is the zero-bordered phase-layout plane ((4 th + 2) * 4 * lw floats, zeroed by the caller once;
/// maps of fewer than 8 tiles a row stage into `forEachTileRun`'s own ring instead).
public func winograd43InputTransform(_ x: UnsafePointer<Float>, _ v: UnsafeMutablePointer<Float>, _ pbuf: UnsafeMutablePointer<Float>,
                                     h: Int, w: Int, tw: Int, tpi: Int, lw: Int, plane vPlane: Int, cin: Int, first: Int, nt: Int,
                                     channels: Range<Int>? = nil, ld: Int? = nil) {
    let ld = ld ?? nt   // V[xi][c] rows this far apart
    // B^T d B of the group's 8 tiles (patch element (r, col) at phase-layout offset
    // (r * 4 + col & 3) * lw + col >> 2) into V's columns t ..< t + 8 of row c
    forEachTileLoad(x, channelsPerImage: cin, h: h, w: w, tw: tw, tpi: tpi, lw: lw, border: 1, pbuf: pbuf,
                    channels: channels ?? 0..<cin, first: first, nt: nt) { c, t, load in
        @inline(__always) func tap(_ r: Int, _ col: Int) -> SIMD8<Float> { load((r * 4 + (col & 3)) * lw + (col >> 2)) }
        // columns of B^T d (row pass), one patch column at a time
        let q0 = inputTransform(tap(0, 0), tap(1, 0), tap(2, 0), tap(3, 0), tap(4, 0), tap(5, 0))
        let q1 = inputTransform(tap(0, 1), tap(1, 1), tap(2, 1), tap(3, 1), tap(4, 1), tap(5, 1))
        let q2 = inputTransform(tap(0, 2), tap(1, 2), tap(2, 2), tap(3, 2), tap(4, 2), tap(5, 2))
        let q3 = inputTransform(tap(0, 3), tap(1, 3), tap(2, 3), tap(3, 3), tap(4, 3), tap(5, 3))
        let q4 = inputTransform(tap(0, 4), tap(1, 4), tap(2, 4), tap(3, 4), tap(4, 4), tap(5, 4))
        let q5 = inputTransform(tap(0, 5), tap(1, 5), tap(2, 5), tap(3, 5), tap(4, 5), tap(5, 5))
        let dst = UnsafeMutableRawPointer(v + c * ld + t), ps = vPlane * 4
        @inline(__always) func store(_ i: Int, _ r: Six) { storeRow(dst, ps, i, r) }
        // row i of (B^T d) B = the column pass over q*.i; a partial group's extra lanes land
        // on tiles written later (next group, next channel) or in the plane's padding
        store(0, inputTransform(q0.0, q1.0, q2.0, q3.0, q4.0, q5.0))
        store(1, inputTransform(q0.1, q1.1, q2.1, q3.1, q4.1, q5.1))
        store(2, inputTransform(q0.2, q1.2, q2.2, q3.2, q4.2, q5.2))
        store(3, inputTransform(q0.3, q1.3, q2.3, q3.3, q4.3, q5.3))
        store(4, inputTransform(q0.4, q1.4, q2.4, q3.4, q4.4, q5.4))
        store(5, inputTransform(q0.5, q1.5, q2.5, q3.5, q4.5, q5.5))
    }
}

/// Whether the F(4x4) input and output-gradient transforms pack tiles of several tile rows into
/// one group on maps of fewer than 8 tiles a row (`forEachTileRun`); off, each group holds one
/// tile row's tiles. The same values either way.
nonisolated(unsafe) public var narrowMapRuns = true

/// `f` on each of the six columns of a 6x6 block stored row-major as planes (element (i, j) =
/// `ld(i * 6 + j)`): the first pass of the transforms back from the Winograd domain (A^T M, G^T M).
@inline(__always)
private func columnPass<R>(_ ld: (Int) -> SIMD8<Float>,
                           _ f: (SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>) -> R) -> (R, R, R, R, R, R) {
    (f(ld(0), ld(6), ld(12), ld(18), ld(24), ld(30)), f(ld(1), ld(7), ld(13), ld(19), ld(25), ld(31)),
     f(ld(2), ld(8), ld(14), ld(20), ld(26), ld(32)), f(ld(3), ld(9), ld(15), ld(21), ld(27), ld(33)),
     f(ld(4), ld(10), ld(16), ld(22), ld(28), ld(34)), f(ld(5), ld(11), ld(17), ld(23), ld(29), ld(35)))
}

/// Six values to A^T m (four).
@inline(__always)
private func outputRows(_ m0: SIMD8<Float>, _ m1: SIMD8<Float>, _ m2: SIMD8<Float>,
                        _ m3: SIMD8<Float>, _ m4: SIMD8<Float>, _ m5: SIMD8<Float>)
    -> (SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>) {
    let s12 = m1 + m2, d12 = m1 - m2, s34 = m3 + m4, d34 = m3 - m4
    return (m0 + s12 + s34, d12 + 2 * d34, s12 + 4 * s34, d12 + 8 * d34 + m5)
}

/// The 4x4 outputs of the tile at (oy, ox) from lane 0 of src[16][8] (output i * 4 + j at src[(i * 4 + j) * 8])
/// into the h x w plane, those beyond it dropped (the F(4x4) and F(4x4) stride-2 output transforms).
@inline(__always)
func storeTile4x4(_ src: UnsafePointer<Float>, into plane: UnsafeMutablePointer<Float>, oy: Int, ox: Int, h: Int, w: Int) {
    let yc = plane + oy * w + ox
    if oy + 4 <= h && ox + 4 <= w {
        for i in 0..<4 {
            let d = yc + i * w, s = src + i * 32
            d[0] = s[0]; d[1] = s[8]; d[2] = s[16]; d[3] = s[24]
        }
    } else {
        for i in 0..<min(4, h - oy) { for j in 0..<min(4, w - ox) { yc[i * w + j] = src[(i * 4 + j) * 8] } }
    }
}

/// y[img][co] 4x4 blocks = A^T M A (+ bias), 8 consecutive tiles at a time; outputs beyond H x W dropped.
public func winograd43OutputTransform(_ m: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ bias: UnsafePointer<Float>?,
                                      plane: Int, cout: Int, h: Int, w: Int, tw: Int, tpi: Int, first: Int, nt: Int,
                                      channels: Range<Int>? = nil, ld: Int? = nil) {
    let hw = h * w, rowStride = ld ?? nt
    let tmp = UnsafeMutablePointer<Float>.allocate(capacity: 16 * 8)
    defer { tmp.deallocate() }
    for co in channels ?? 0..<cout {
        let b = bias?[co] ?? 0
        var t = 0
        while t < nt {
            let n = min(8, nt - t)
            let p = UnsafeRawPointer(m + co * rowStride + t), ps = plane * 4
            @inline(__always) func ld(_ k: Int) -> SIMD8<Float> { p.loadUnaligned(fromByteOffset: k * ps, as: SIMD8<Float>.self) }
            // A^T M: four rows of six (one column of M at a time), then each row times A
            let (c0, c1, c2, c3, c4, c5) = columnPass(ld, outputRows)
            let bv = SIMD8<Float>(repeating: b)
            // the 16 outputs of 8 tiles into tmp[16][8], then out tile by tile (row-major 4x4 each)
            let o = UnsafeMutableRawPointer(tmp)
            @inline(__always) func keep(_ i: Int, _ r: (SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>)) {
                o.storeBytes(of: r.0 + bv, toByteOffset: (i * 4) * 32, as: SIMD8<Float>.self)
                o.storeBytes(of: r.1 + bv, toByteOffset: (i * 4 + 1) * 32, as: SIMD8<Float>.self)
                o.storeBytes(of: r.2 + bv, toByteOffset: (i * 4 + 2) * 32, as: SIMD8<Float>.self)
                o.storeBytes(of: r.3 + bv, toByteOffset: (i * 4 + 3) * 32, as: SIMD8<Float>.self)
            }
            keep(0, outputRows(c0.0, c1.0, c2.0, c3.0, c4.0, c5.0))
            keep(1, outputRows(c0.1, c1.1, c2.1, c3.1, c4.1, c5.1))
            keep(2, outputRows(c0.2, c1.2, c2.2, c3.2, c4.2, c5.2))
            keep(3, outputRows(c0.3, c1.3, c2.3, c3.3, c4.3, c5.3))
            var g = first + t, img = g / tpi, k = g % tpi
            for l in 0..<n {
                storeTile4x4(tmp + l, into: y + (img * cout + co) * hw, oy: 4 * (k / tw), ox: 4 * (k % tw), h: h, w: w)
                g += 1; k += 1
                if k == tpi { k = 0; img += 1 }
            }
            t += n
        }
    }
}

/// Four values to A y (six).
@inline(__always)
private func gradientRows(_ y0: SIMD8<Float>, _ y1: SIMD8<Float>, _ y2: SIMD8<Float>, _ y3: SIMD8<Float>)
    -> Six {
    let s02 = y0 + y2, s13 = y1 + y3
    let a = y0 + 4 * y2, b = 2 * y1 + 8 * y3
    return (y0, s02 + s13, s02 - s13, a + b, a - b, y3)
}

/// DY[xi][co][t] = (A dY_t A^T)[xi] for the block's tiles, 8 tiles of a tile row at a time (on maps
/// of fewer than 8 tiles a row, 8 consecutive tiles: `forEachTileRun`). dY's rows go into `qbuf` in
/// phase layout (column 4l + j of row r at (r * 4 + j) * lw + l); what lies beyond H x W stays zero.
public func winograd43OutputGradientTransform(_ dy: UnsafePointer<Float>, _ d: UnsafeMutablePointer<Float>,
                                              _ qbuf: UnsafeMutablePointer<Float>, h: Int, w: Int, tw: Int, tpi: Int, lw: Int,
                                              plane: Int, cout: Int, first: Int, nt: Int, channels: Range<Int>? = nil, ld: Int? = nil) {
    let rowStride = ld ?? nt   // DY[xi][c] rows this far apart
    // A dY A^T of the group's 8 tiles (element (r, col) at phase-layout offset (r * 4 + col) * lw)
    forEachTileLoad(dy, channelsPerImage: cout, h: h, w: w, tw: tw, tpi: tpi, lw: lw, border: 0, pbuf: qbuf,
                    channels: channels ?? 0..<cout, first: first, nt: nt) { c, t, load in
        @inline(__always) func tap(_ r: Int, _ col: Int) -> SIMD8<Float> { load((r * 4 + col) * lw) }
        // A dY: six rows of four (one column of dY at a time), then each row times A^T
        let c0 = gradientRows(tap(0, 0), tap(1, 0), tap(2, 0), tap(3, 0))
        let c1 = gradientRows(tap(0, 1), tap(1, 1), tap(2, 1), tap(3, 1))
        let c2 = gradientRows(tap(0, 2), tap(1, 2), tap(2, 2), tap(3, 2))
        let c3 = gradientRows(tap(0, 3), tap(1, 3), tap(2, 3), tap(3, 3))
        let dst = UnsafeMutableRawPointer(d + c * rowStride + t), ps = plane * 4
        @inline(__always) func store(_ i: Int, _ r: Six) { storeRow(dst, ps, i, r) }
        // extra lanes of a partial group land on tiles written later or in the plane's padding
        store(0, gradientRows(c0.0, c1.0, c2.0, c3.0))
        store(1, gradientRows(c0.1, c1.1, c2.1, c3.1))
        store(2, gradientRows(c0.2, c1.2, c2.2, c3.2))
        store(3, gradientRows(c0.3, c1.3, c2.3, c3.3))
        store(4, gradientRows(c0.4, c1.4, c2.4, c3.4))
        store(5, gradientRows(c0.5, c1.5, c2.5, c3.5))
    }
}

/// Six values to G^T m (three).
@inline(__always)
private func kernelRows(_ m0: SIMD8<Float>, _ m1: SIMD8<Float>, _ m2: SIMD8<Float>,
                        _ m3: SIMD8<Float>, _ m4: SIMD8<Float>, _ m5: SIMD8<Float>)
    -> (SIMD8<Float>, SIMD8<Float>, SIMD8<Float>) {
    let s12 = (m1 + m2) * (1 / 6), s34 = m3 + m4
    return (m0 * 0.25 - s12 + s34 * (1 / 24), (m2 - m1) * (1 / 6) + (m3 - m4) * (1 / 12), s34 * (1 / 6) - s12 + m5)
}

/// dw[q*9 ..< q*9+9] += G^T M_q G for kernels q (= co * Cin + ci) in `kernels`, M_q the sum of the
/// partials' Mw[.][q] (in their order, planes `plane` floats apart); 8 kernels at a time in SIMD8 lanes.
public func addKernelGradients43(_ partials: [UnsafePointer<Float>], plane: Int, dw: UnsafeMutablePointer<Float>, kernels: Range<Int>) {
    addKernelGradients(partials, planes: 36, plane: plane, dw: dw, kernels: kernels) { s, stride in
        @inline(__always) func ld(_ k: Int) -> SIMD8<Float> { s.loadUnaligned(fromByteOffset: k * stride, as: SIMD8<Float>.self) }
        // G^T M: three rows of six (one column of M at a time), then each row times G
        let (c0, c1, c2, c3, c4, c5) = columnPass(ld, kernelRows)
        let r0 = kernelRows(c0.0, c1.0, c2.0, c3.0, c4.0, c5.0)
        let r1 = kernelRows(c0.1, c1.1, c2.1, c3.1, c4.1, c5.1)
        let r2 = kernelRows(c0.2, c1.2, c2.2, c3.2, c4.2, c5.2)
        return (r0.0, r0.1, r0.2, r1.0, r1.1, r1.2, r2.0, r2.1, r2.2)
    }
}

/// Six points to B v (six patch positions), the adjoint of `inputTransform`.
@inline(__always)
private func inputPositions(_ v0: SIMD8<Float>, _ v1: SIMD8<Float>, _ v2: SIMD8<Float>,
                            _ v3: SIMD8<Float>, _ v4: SIMD8<Float>, _ v5: SIMD8<Float>) -> Six {
    let four = SIMD8<Float>(repeating: 4), five = SIMD8<Float>(repeating: 5), two = SIMD8<Float>(repeating: 2)
    let a = v2 - v1, b = v3 - v4, c = v1 + v2, e = v3 + v4   // positions 1, 3 use a, b; 2, 4 use c, e
    return (four * v0, four * (a + v5) - two * b, -five * v0 - four * c - e, two * b - a - five * v5, v0 + c + e, v5)
}

/// dx[img][c] = Σ over the tiles of the whole images `images` (block column t = (img - images.lowerBound)
/// * tpi + tile) of B M_t B^T placed on the tile's 6x6 input patch at (4ty - 1, 4tx - 1): dX as the exact
/// adjoint of the forward, M[xi][c][t] = Σ_co U[xi][co][c] DY[xi][co][t]. OVERWRITES dx's planes of those
/// images. The patches (neighbours share two rows or columns) are summed in `rbuf`, a zero-bordered
/// plane in the forward's phase layout ((4 th + 2) * 4 * lw floats, zeroed by the caller once, left
/// zeroed), 8 tiles of a tile row at a time, then written out.
public func winograd43InputGradientTransform(_ m: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>,
                                             _ rbuf: UnsafeMutablePointer<Float>, h: Int, w: Int, tw: Int, tpi: Int, lw: Int,
                                             plane: Int, cin: Int, images: Range<Int>, ld: Int) {
    let th = tpi / tw, lanes = SIMD8<Float>(0, 1, 2, 3, 4, 5, 6, 7)
    let stage = UnsafeMutablePointer<Float>.allocate(capacity: 4 * lw)
    defer { stage.deallocate() }
    withUnsafeTemporaryAllocation(of: SIMD8<Float>.self, capacity: 36) { buffer in
        let t = buffer.baseAddress!   // B M, 6 positions x 6 points
        for c in 0..<cin {
            for img in images {
                for ty in 0..<th {
                    var tx = 0
                    while tx < tw {
                        let keep = lanes .< SIMD8<Float>(repeating: Float(min(8, tw - tx)))
                        let p = UnsafeRawPointer(m + c * ld + (img - images.lowerBound) * tpi + ty * tw + tx), ps = plane * 4
                        @inline(__always) func at(_ xi: Int) -> SIMD8<Float> { p.loadUnaligned(fromByteOffset: xi * ps, as: SIMD8<Float>.self) }
                        for j in 0..<6 {   // B M, one point column at a time
                            let q = inputPositions(at(j), at(6 + j), at(12 + j), at(18 + j), at(24 + j), at(30 + j))
                            t[j] = q.0; t[6 + j] = q.1; t[12 + j] = q.2; t[18 + j] = q.3; t[24 + j] = q.4; t[30 + j] = q.5
                        }
                        let base = rbuf + 4 * ty * 4 * lw + tx
                        @inline(__always) func add(_ r: Int, _ s: Int, _ q: SIMD8<Float>) {
                            let a = UnsafeMutableRawPointer(base + (r * 4 + (s & 3)) * lw + (s >> 2))
                            a.storeBytes(of: a.loadUnaligned(as: SIMD8<Float>.self) + q.replacing(with: 0, where: .!keep), as: SIMD8<Float>.self)
                        }
                        for r in 0..<6 {   // (B M) B^T, row by row, added into the patch (lanes of this tile row only)
                            let q = inputPositions(t[r * 6], t[r * 6 + 1], t[r * 6 + 2], t[r * 6 + 3], t[r * 6 + 4], t[r * 6 + 5])
                            add(r, 0, q.0); add(r, 1, q.1); add(r, 2, q.2); add(r, 3, q.3); add(r, 4, q.4); add(r, 5, q.5)
                        }
                        tx += 8
                    }
                }
                // out (padded row r + 1, column c + 1 is dX's (r, c)), and the plane zeroed again row by row
                let dc = dx + (img * cin + c) * h * w
                for r in 0..<(4 * th + 2) {
                    let row = rbuf + r * 4 * lw
                    if r >= 1 && r <= h {
                        for l in 0..<(w + 4) / 4 {
                            UnsafeMutableRawPointer(stage + 4 * l).storeBytes(
                                of: SIMD4<Float>(row[l], row[lw + l], row[2 * lw + l], row[3 * lw + l]), as: SIMD4<Float>.self)
                        }
                        (dc + (r - 1) * w).update(from: stage + 1, count: w)
                    }
                    row.update(repeating: 0, count: 4 * lw)
                }
            }
        }
    }
}
