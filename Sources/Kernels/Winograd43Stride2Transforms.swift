// Winograd F(4x4, 3x3) with stride 2: the transforms around the 81 gemms of
// NN/Layers/Winograd43Stride2.swift (the 3x3 stride-2 padding-1 convolutions that open ResNet
// stages 2-4). In one dimension an output y_i = w0 x_{2i-1} + w1 x_{2i} + w2 x_{2i+1} splits by the
// parity of its inputs: the odd ones meet the taps (w0, w2), a 2-tap correlation that F(4, 2)
// (points 0, 1, -1, 2, ∞) computes for 4 outputs in 5 multiplications; the even ones meet w1 alone
// (4 multiplications). 9 points per 4 outputs against 12, nested in two dimensions 81 per 4x4 tile
// against 144: 1.78x fewer multiplications than im2col.
// A tile's local input l = 0...8 is input row (or column) 8t - 1 + l; e_j = d_{2j} (j < 5), o_j = d_{2j+1} (j < 4):
//   B^T (input, 9 -> 9):  v0 = 2e0 - e1 - 2e2 + e3   v1 = 2e1 + e2 - e3   v2 = 3e2 - 2e1 - e3
//                         v3 = e3 - e1   v4 = 2e1 - e2 - 2e3 + e4   v5+j = o_j
//   G (weights, 3 -> 9):  u0 = w0/2   u1 = (w0 + w2)/2   u2 = (w0 - w2)/6   u3 = w0/6 + w2/3   u4 = w2   u5+j = w1
//   A^T (output, 9 -> 4): y0 = m0 + m1 + m2 + m3 + m5   y1 = m1 - m2 + 2m3 + m6
//                         y2 = m1 + m2 + 4m3 + m7   y3 = m1 - m2 + 8m3 + m4 + m8
//   forward  Y = A^T [Σ_ci (G g G^T) ⊙ (B^T d B)] A                 (9x9 per tile, 4x4 out)
//   dX       the exact adjoint: B [Σ_co (G g G^T) ⊙ (A dY A^T)] B^T added into the tile's 9x9
//            input patch (neighbouring patches share a row or column)
//   dW       G^T [Σ_t (A dY_t A^T) ⊙ (B^T d_t B)] G
// Transforms run on 8 tiles (or 8 kernels) at once in SIMD8 lanes. The input and its gradient are
// staged in a zero-bordered plane in phase layout modulo 8 (padded column 8l + j of padded row r
// at (r * 8 + j) * lw + l), so column j of 8 neighbouring tiles is one contiguous 8-float load.

private typealias V8 = SIMD8<Float>
private typealias Nine = (V8, V8, V8, V8, V8, V8, V8, V8, V8)
private typealias Four = (V8, V8, V8, V8)

@inline(__always) private func nine(_ f: (Int) -> V8) -> Nine { (f(0), f(1), f(2), f(3), f(4), f(5), f(6), f(7), f(8)) }
@inline(__always) private func each(_ r: Nine, _ f: (Int, V8) -> Void) {
    f(0, r.0); f(1, r.1); f(2, r.2); f(3, r.3); f(4, r.4); f(5, r.5); f(6, r.6); f(7, r.7); f(8, r.8)
}

private typealias Five = (V8, V8, V8, V8, V8)
@inline(__always) private func five(_ f: (Int) -> V8) -> Five { (f(0), f(1), f(2), f(3), f(4)) }
@inline(__always) private func each(_ r: Five, _ f: (Int, V8) -> Void) { f(0, r.0); f(1, r.1); f(2, r.2); f(3, r.3); f(4, r.4) }
@inline(__always) private func each(_ r: Four, _ f: (Int, V8) -> Void) { f(0, r.0); f(1, r.1); f(2, r.2); f(3, r.3) }

// The 2-D transforms split a 9x9 tile into its four blocks by parity (points 0-4 of the F(4, 2)
// part, points 5-8 of the single tap): the odd x odd block is a copy, the mixed blocks take the
// F(4, 2) transform along one axis, the even x even block along both; no intermediate tile.

/// B^T of F(4, 2): the five even patch values e0...e4 to points 0-4 (points 5-8 are the odd values).
@inline(__always) private func evenPoints(_ e: Five) -> Five {
    let two = V8(repeating: 2), three = V8(repeating: 3)
    return (two * (e.0 - e.2) - e.1 + e.3, two * e.1 + e.2 - e.3, three * e.2 - two * e.1 - e.3, e.3 - e.1, two * (e.1 - e.3) - e.2 + e.4)
}

/// B of F(4, 2), the adjoint of `evenPoints`: points 0-4 back to the five even patch positions.
@inline(__always) private func evenPositions(_ v: Five) -> Five {
    let two = V8(repeating: 2), three = V8(repeating: 3)
    return (two * v.0, two * (v.1 - v.2 + v.4) - v.0 - v.3, v.1 + three * v.2 - two * v.0 - v.4, v.0 - v.1 - v.2 + v.3 - two * v.4, v.4)
}

/// A of F(4, 2): four output gradients to points 0-4 (points 5-8 are the gradients themselves).
@inline(__always) private func gradientPoints(_ y: Four) -> Five {
    let s02 = y.0 + y.2, s13 = y.1 + y.3
    return (y.0, s02 + s13, s02 - s13, y.0 + 2 * y.1 + 4 * y.2 + 8 * y.3, y.3)
}

/// A^T along one axis: 9 points to the 4 outputs.
@inline(__always) private func outputValues(_ m: Nine) -> Four {
    let s = m.1 + m.2, d = m.1 - m.2
    return (m.0 + s + m.3 + m.5, d + 2 * m.3 + m.6, s + 4 * m.3 + m.7, d + 8 * m.3 + m.4 + m.8)
}

/// G along one axis: 3 taps to 9 points.
@inline(__always) private func kernelPoints(_ w0: V8, _ w1: V8, _ w2: V8) -> Nine {
    let half = V8(repeating: 0.5), sixth = V8(repeating: 1 / 6), third = V8(repeating: 1 / 3)
    return (half * w0, half * (w0 + w2), sixth * (w0 - w2), sixth * w0 + third * w2, w2, w1, w1, w1, w1)
}

/// G^T along one axis, the adjoint of `kernelPoints`: 9 points to the 3 taps' gradients.
@inline(__always) private func kernelTaps(_ m: Nine) -> (V8, V8, V8) {
    let half = V8(repeating: 0.5), sixth = V8(repeating: 1 / 6), third = V8(repeating: 1 / 3)
    return (half * (m.0 + m.1) + sixth * (m.2 + m.3), m.5 + m.6 + m.7 + m.8, half * m.1 - sixth * m.2 + third * m.3 + m.4)
}

/// U[81][Cout][Cin] = G g G^T for output channels `rows`; or, `transposed`, U^T[81][Cin][Cout] (the
/// same points, each plane transposed: dX multiplies by it) for input channels `rows`.
public func winograd43s2TransformWeights(_ w: UnsafePointer<Float>, cout: Int, cin: Int, into u: UnsafeMutablePointer<Float>,
                                         transposed: Bool, rows: Range<Int>) {
    let plane = cout * cin, inner = transposed ? cout : cin
    withUnsafeTemporaryAllocation(of: V8.self, capacity: 27) { buffer in
        let c = buffer.baseAddress!   // G g: 9 rows x 3 columns
        transformKernelRows(w, cin: cin, rows: rows, inner: inner, transposed: transposed, rotated: false,
                            planes: 81, into: u, plane: plane, firstRow: 0) { g, tmp in
            each(kernelPoints(g.0, g.3, g.6)) { r, v in c[r * 3] = v }
            each(kernelPoints(g.1, g.4, g.7)) { r, v in c[r * 3 + 1] = v }
            each(kernelPoints(g.2, g.5, g.8)) { r, v in c[r * 3 + 2] = v }
            let dst = UnsafeMutableRawPointer(tmp)
            for r in 0..<9 {   // (G g) G^T, row by row
                each(kernelPoints(c[r * 3], c[r * 3 + 1], c[r * 3 + 2])) { s, v in dst.storeBytes(of: v, toByteOffset: (r * 9 + s) * 256, as: V8.self) }
            }
        }
    }
}

/// Floats of the staging row `splitPhases8` and `mergePhases8` need for rows of `count` values.
@inline(__always) func phaseStagingCount(_ count: Int) -> Int { (count + 1 + 7) / 8 * 8 }

/// row[(c & 7) * lw + c >> 3] = src[c - 1] for c in 1 ... count, and 0 for c = 0 and the columns up
/// to the next multiple of 8: a row split into its eight column phases behind a zero column
/// (`stage`: `phaseStagingCount(count)` floats, zeroed by the caller once, holds the row between
/// zeros; 8 values are loaded at once and stored lane by lane).
@inline(__always)
func splitPhases8(_ src: UnsafePointer<Float>, count: Int, into row: UnsafeMutablePointer<Float>, lw: Int, stage: UnsafeMutablePointer<Float>) {
    (stage + 1).update(from: src, count: count)
    for l in 0..<(count + 8) / 8 {
        let v = UnsafeRawPointer(stage + 8 * l).loadUnaligned(as: V8.self)
        row[l] = v[0]; row[lw + l] = v[1]; row[2 * lw + l] = v[2]; row[3 * lw + l] = v[3]
        row[4 * lw + l] = v[4]; row[5 * lw + l] = v[5]; row[6 * lw + l] = v[6]; row[7 * lw + l] = v[7]
    }
}

/// dst[c - 1] = row[(c & 7) * lw + c >> 3] for c in 1 ... count: the inverse of `splitPhases8`,
/// through `stage` (`phaseStagingCount(count)` floats).
@inline(__always)
func mergePhases8(_ row: UnsafePointer<Float>, lw: Int, into dst: UnsafeMutablePointer<Float>, count: Int, stage: UnsafeMutablePointer<Float>) {
    for l in 0..<(count + 8) / 8 {
        let v = V8(row[l], row[lw + l], row[2 * lw + l], row[3 * lw + l], row[4 * lw + l], row[5 * lw + l], row[6 * lw + l], row[7 * lw + l])
        UnsafeMutableRawPointer(stage + 8 * l).storeBytes(of: v, as: V8.self)
    }
    dst.update(from: stage + 1, count: count)
}

/// V[xi][c][t] = (B^T d_t B)[xi] for tiles of the whole images `images` (block column t = (img -
/// images.lowerBound) * tpi + tile); `pbuf` is the zero-bordered phase-layout plane ((8 th + 1) * 8 * lw
/// floats, zeroed by the caller once). h x w is the input map, tw the tiles per tile row.
public func winograd43s2InputTransform(_ x: UnsafePointer<Float>, _ v: UnsafeMutablePointer<Float>, _ pbuf: UnsafeMutablePointer<Float>,
                                       h: Int, w: Int, th: Int, tw: Int, lw: Int, plane vPlane: Int, cin: Int, images: Range<Int>,
                                       ld: Int) {
    let tpi = th * tw, rows = min(h, 8 * th)
    let stage = UnsafeMutablePointer<Float>.allocate(capacity: phaseStagingCount(w))
    defer { stage.deallocate() }
    stage.initialize(repeating: 0, count: phaseStagingCount(w))
    for c in 0..<cin {
        for img in images {
            let xc = x + (img * cin + c) * h * w
            for iy in 0..<rows { splitPhases8(xc + iy * w, count: w, into: pbuf + (iy + 1) * 8 * lw, lw: lw, stage: stage) }
            for ty in 0..<th {
                var tx = 0
                while tx < tw {
                    let base = pbuf + 8 * ty * 8 * lw + tx
                    @inline(__always) func load(_ r: Int, _ s: Int) -> V8 {
                        UnsafeRawPointer(base + (r * 8 + (s & 7)) * lw + (s >> 3)).loadUnaligned(as: V8.self)
                    }
                    // B^T d B by blocks; a partial group's extra lanes land on tiles written later
                    // (next tile row) or in the plane's padding
                    let dst = UnsafeMutableRawPointer(v + c * ld + (img - images.lowerBound) * tpi + ty * tw + tx), ps = vPlane * 4
                    @inline(__always) func store(_ i: Int, _ j: Int, _ q: V8) { dst.storeBytes(of: q, toByteOffset: (i * 9 + j) * ps, as: V8.self) }
                    for k in 0..<4 {
                        for m in 0..<4 { store(5 + k, 5 + m, load(2 * k + 1, 2 * m + 1)) }   // odd x odd
                        each(evenPoints(five { b in load(2 * k + 1, 2 * b) })) { j, q in store(5 + k, j, q) }   // odd rows
                        each(evenPoints(five { a in load(2 * a, 2 * k + 1) })) { i, q in store(i, 5 + k, q) }   // odd columns
                    }
                    let r0 = evenPoints(five { b in load(0, 2 * b) }), r1 = evenPoints(five { b in load(2, 2 * b) })
                    let r2 = evenPoints(five { b in load(4, 2 * b) }), r3 = evenPoints(five { b in load(6, 2 * b) })
                    let r4 = evenPoints(five { b in load(8, 2 * b) })
                    each(evenPoints((r0.0, r1.0, r2.0, r3.0, r4.0))) { i, q in store(i, 0, q) }
                    each(evenPoints((r0.1, r1.1, r2.1, r3.1, r4.1))) { i, q in store(i, 1, q) }
                    each(evenPoints((r0.2, r1.2, r2.2, r3.2, r4.2))) { i, q in store(i, 2, q) }
                    each(evenPoints((r0.3, r1.3, r2.3, r3.3, r4.3))) { i, q in store(i, 3, q) }
                    each(evenPoints((r0.4, r1.4, r2.4, r3.4, r4.4))) { i, q in store(i, 4, q) }
                    tx += 8
                }
            }
        }
    }
}

/// y[img][co] 4x4 blocks = A^T M A (+ bias) for the tiles of the whole images `images`, 8 block columns
/// at a time; outputs beyond ho x wo dropped.
public func winograd43s2OutputTransform(_ m: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ bias: UnsafePointer<Float>?,
                                        plane: Int, cout: Int, ho: Int, wo: Int, th: Int, tw: Int, images: Range<Int>, ld: Int) {
    let hw = ho * wo, tpi = th * tw, nt = images.count * tpi
    withUnsafeTemporaryAllocation(of: V8.self, capacity: 36 + 16) { buffer in
        let c = buffer.baseAddress!, tmp = UnsafeMutableRawPointer(c + 36).assumingMemoryBound(to: Float.self)
        for co in 0..<cout {
            let bv = V8(repeating: bias?[co] ?? 0)
            var t = 0
            while t < nt {
                let n = min(8, nt - t)
                let p = UnsafeRawPointer(m + co * ld + t), ps = plane * 4
                @inline(__always) func at(_ xi: Int) -> V8 { p.loadUnaligned(fromByteOffset: xi * ps, as: V8.self) }
                for j in 0..<9 {   // A^T M, column by column: c[i * 9 + j]
                    let q = outputValues(nine { r in at(r * 9 + j) })
                    c[j] = q.0; c[9 + j] = q.1; c[18 + j] = q.2; c[27 + j] = q.3
                }
                let o = UnsafeMutableRawPointer(tmp)
                for i in 0..<4 {   // (A^T M) A, row by row, into tmp[16][8]
                    let q = outputValues(nine { j in c[i * 9 + j] })
                    o.storeBytes(of: q.0 + bv, toByteOffset: (i * 4) * 32, as: V8.self)
                    o.storeBytes(of: q.1 + bv, toByteOffset: (i * 4 + 1) * 32, as: V8.self)
                    o.storeBytes(of: q.2 + bv, toByteOffset: (i * 4 + 2) * 32, as: V8.self)
                    o.storeBytes(of: q.3 + bv, toByteOffset: (i * 4 + 3) * 32, as: V8.self)
                }
                for l in 0..<n {
                    let img = images.lowerBound + (t + l) / tpi, k = (t + l) % tpi
                    storeTile4x4(tmp + l, into: y + (img * cout + co) * hw, oy: 4 * (k / tw), ox: 4 * (k % tw), h: ho, w: wo)
                }
                t += n
            }
        }
    }
}

/// DY[xi][co][t] = (A dY_t A^T)[xi] for the tiles of the whole images `images`, 8 tiles of a tile row
/// at a time. dY's rows go into `qbuf` in phase layout modulo 4 (column 4l + j of row r at (r * 4 + j)
/// * lw4 + l; 4 th * 4 * lw4 floats, zeroed by the caller once): what lies beyond ho x wo stays zero.
public func winograd43s2OutputGradientTransform(_ dy: UnsafePointer<Float>, _ d: UnsafeMutablePointer<Float>,
                                                _ qbuf: UnsafeMutablePointer<Float>, ho: Int, wo: Int, th: Int, tw: Int, lw4: Int,
                                                plane: Int, cout: Int, images: Range<Int>, ld: Int) {
    let tpi = th * tw
    for co in 0..<cout {
        for img in images {
            let yc = dy + (img * cout + co) * ho * wo
            for iy in 0..<ho { splitPhases(yc + iy * wo, count: wo, into: qbuf + iy * 4 * lw4, lw: lw4, offset: 0) }
            for ty in 0..<th {
                var tx = 0
                while tx < tw {
                    let base = qbuf + 4 * ty * 4 * lw4 + tx
                    @inline(__always) func load(_ r: Int, _ j: Int) -> V8 {
                        UnsafeRawPointer(base + (r * 4 + j) * lw4).loadUnaligned(as: V8.self)
                    }
                    // A dY A^T by blocks; extra lanes land on tiles written later or in the padding
                    let dst = UnsafeMutableRawPointer(d + co * ld + (img - images.lowerBound) * tpi + ty * tw + tx), ps = plane * 4
                    @inline(__always) func store(_ i: Int, _ j: Int, _ q: V8) { dst.storeBytes(of: q, toByteOffset: (i * 9 + j) * ps, as: V8.self) }
                    for k in 0..<4 {
                        let row = (load(k, 0), load(k, 1), load(k, 2), load(k, 3))
                        each(row) { m, q in store(5 + k, 5 + m, q) }   // odd x odd
                        each(gradientPoints(row)) { j, q in store(5 + k, j, q) }
                    }
                    let c0 = gradientPoints((load(0, 0), load(1, 0), load(2, 0), load(3, 0)))
                    let c1 = gradientPoints((load(0, 1), load(1, 1), load(2, 1), load(3, 1)))
                    let c2 = gradientPoints((load(0, 2), load(1, 2), load(2, 2), load(3, 2)))
                    let c3 = gradientPoints((load(0, 3), load(1, 3), load(2, 3), load(3, 3)))
                    each(c0) { i, q in store(i, 5, q) }; each(c1) { i, q in store(i, 6, q) }
                    each(c2) { i, q in store(i, 7, q) }; each(c3) { i, q in store(i, 8, q) }
                    each(gradientPoints((c0.0, c1.0, c2.0, c3.0))) { j, q in store(0, j, q) }
                    each(gradientPoints((c0.1, c1.1, c2.1, c3.1))) { j, q in store(1, j, q) }
                    each(gradientPoints((c0.2, c1.2, c2.2, c3.2))) { j, q in store(2, j, q) }
                    each(gradientPoints((c0.3, c1.3, c2.3, c3.3))) { j, q in store(3, j, q) }
                    each(gradientPoints((c0.4, c1.4, c2.4, c3.4))) { j, q in store(4, j, q) }
                    tx += 8
                }
            }
        }
    }
}

/// dx[img][c] = Σ over the tiles of the whole images `images` of B M_t B^T placed on the tile's 9x9
/// input patch (OVERWRITES dx's planes of those images), M[xi][c][t] the dX gemms' output. The patches
/// are summed in `rbuf`, a zeroed phase-layout plane ((8 th + 1) * 8 * lw floats, zeroed by the caller
/// once; left zeroed), in tile order, then written out.
public func winograd43s2InputGradientTransform(_ m: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>,
                                               _ rbuf: UnsafeMutablePointer<Float>, h: Int, w: Int, th: Int, tw: Int, lw: Int,
                                               plane: Int, cin: Int, images: Range<Int>, ld: Int) {
    let tpi = th * tw, lanes = V8(0, 1, 2, 3, 4, 5, 6, 7)
    let stage = UnsafeMutablePointer<Float>.allocate(capacity: phaseStagingCount(w))
    defer { stage.deallocate() }
    for c in 0..<cin {
        for img in images {
            for ty in 0..<th {
                var tx = 0
                while tx < tw {
                    let n = min(8, tw - tx), keep = lanes .< V8(repeating: Float(n))
                    let p = UnsafeRawPointer(m + c * ld + (img - images.lowerBound) * tpi + ty * tw + tx), ps = plane * 4
                    @inline(__always) func at(_ xi: Int) -> V8 { p.loadUnaligned(fromByteOffset: xi * ps, as: V8.self) }
                    // B M B^T by blocks, added into the patch (lanes of this tile row only)
                    let base = rbuf + 8 * ty * 8 * lw + tx
                    @inline(__always) func add(_ r: Int, _ s: Int, _ q: V8) {
                        let a = UnsafeMutableRawPointer(base + (r * 8 + (s & 7)) * lw + (s >> 3))
                        a.storeBytes(of: a.loadUnaligned(as: V8.self) + q.replacing(with: 0, where: .!keep), as: V8.self)
                    }
                    @inline(__always) func pt(_ i: Int, _ j: Int) -> V8 { at(i * 9 + j) }
                    for k in 0..<4 {
                        for m in 0..<4 { add(2 * k + 1, 2 * m + 1, pt(5 + k, 5 + m)) }   // odd x odd
                        each(evenPositions(five { j in pt(5 + k, j) })) { b, q in add(2 * k + 1, 2 * b, q) }   // odd rows
                        each(evenPositions(five { i in pt(i, 5 + k) })) { a, q in add(2 * a, 2 * k + 1, q) }   // odd columns
                    }
                    let r0 = evenPositions(five { j in pt(0, j) }), r1 = evenPositions(five { j in pt(1, j) })
                    let r2 = evenPositions(five { j in pt(2, j) }), r3 = evenPositions(five { j in pt(3, j) })
                    let r4 = evenPositions(five { j in pt(4, j) })
                    each(evenPositions((r0.0, r1.0, r2.0, r3.0, r4.0))) { a, q in add(2 * a, 0, q) }
                    each(evenPositions((r0.1, r1.1, r2.1, r3.1, r4.1))) { a, q in add(2 * a, 2, q) }
                    each(evenPositions((r0.2, r1.2, r2.2, r3.2, r4.2))) { a, q in add(2 * a, 4, q) }
                    each(evenPositions((r0.3, r1.3, r2.3, r3.3, r4.3))) { a, q in add(2 * a, 6, q) }
                    each(evenPositions((r0.4, r1.4, r2.4, r3.4, r4.4))) { a, q in add(2 * a, 8, q) }
                    tx += 8
                }
            }
            // out, and the plane zeroed again row by row while it is in cache
            let dc = dx + (img * cin + c) * h * w
            for r in 0...(8 * th) {
                let row = rbuf + r * 8 * lw
                if r >= 1 && r <= h { mergePhases8(row, lw: lw, into: dc + (r - 1) * w, count: w, stage: stage) }
                row.update(repeating: 0, count: 8 * lw)
            }
        }
    }
}

/// dw[q*9 ..< q*9+9] += G^T M_q G for kernels q (= co * Cin + ci) in `kernels`, M_q the sum of the
/// partials' Mw[.][q] (in their order, planes `plane` floats apart); 8 kernels at a time in SIMD8 lanes.
public func addKernelGradients43s2(_ partials: [UnsafePointer<Float>], plane: Int, dw: UnsafeMutablePointer<Float>, kernels: Range<Int>) {
    withUnsafeTemporaryAllocation(of: V8.self, capacity: 27) { buffer in
        let c = buffer.baseAddress!   // G^T M: 3 rows x 9 columns
        addKernelGradients(partials, planes: 81, plane: plane, dw: dw, kernels: kernels) { s, stride in
            @inline(__always) func at(_ xi: Int) -> V8 { s.loadUnaligned(fromByteOffset: xi * stride, as: V8.self) }
            for j in 0..<9 {
                let q = kernelTaps(nine { r in at(r * 9 + j) })
                c[j] = q.0; c[9 + j] = q.1; c[18 + j] = q.2
            }
            let r0 = kernelTaps(nine { j in c[j] }), r1 = kernelTaps(nine { j in c[9 + j] }), r2 = kernelTaps(nine { j in c[18 + j] })
            return (r0.0, r0.1, r0.2, r1.0, r1.1, r1.2, r2.0, r2.1, r2.2)
        }
    }
}
