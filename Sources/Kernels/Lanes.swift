// Loops shared by the Winograd variants' weight transforms and weight gradients. Public and
// @inlinable: NN's F(2x2) and F(3x3) code inlines them (built for the baseline instruction set);
// the F(4x4) transforms beside them use this module's own copy.

/// dst[xi * plane + j] = src[xi * 64 + j] for xi < planes, j < count (at most 64): a [planes][64]
/// block of transformed kernels out into U's planes, copied inline 16 floats at a time (a memmove
/// call per 64-float run cost about as much as the transform itself).
@inlinable @inline(__always)
public func spreadRuns(_ src: UnsafePointer<Float>, planes: Int, count: Int, into dst: UnsafeMutablePointer<Float>, plane: Int) {
    for xi in 0..<planes {
        let s = src + xi * 64, d = dst + xi * plane
        var j = 0
        while j + 16 <= count {
            UnsafeMutableRawPointer(d + j).storeBytes(of: UnsafeRawPointer(s + j).loadUnaligned(as: SIMD16<Float>.self), as: SIMD16<Float>.self)
            j += 16
        }
        while j < count { d[j] = s[j]; j += 1 }
    }
}

/// Kernels per chunk of `sumKernelPartials` (a multiple of 8).
public let kernelChunk = 64

/// sums[xi * kernelChunk + j] = 0 + p_0[xi][first + j] + p_1[xi][first + j] + ... (the partials in
/// order) for the `planes` planes (`plane` floats apart) and j < count ≤ kernelChunk: the Winograd-
/// domain weight gradients of a chunk of kernels gathered into one block, each plane read as one run
/// (8 floats at a time from every plane at once would be `planes` × partials streams a page or more
/// apart, which the prefetchers cannot follow).
@inlinable @inline(__always)
public func sumKernelPartials(_ partials: [UnsafePointer<Float>], planes: Int, plane: Int, first: Int, count: Int,
                       into sums: UnsafeMutablePointer<Float>) {
    partials.withUnsafeBufferPointer { ps in
        for xi in 0..<planes {
            let dst = sums + xi * kernelChunk
            dst.update(repeating: 0, count: count)
            for m in ps {
                let src = m + xi * plane + first
                var j = 0
                while j + 8 <= count {
                    let a = UnsafeRawPointer(dst + j).loadUnaligned(as: SIMD8<Float>.self)
                    UnsafeMutableRawPointer(dst + j).storeBytes(of: a + UnsafeRawPointer(src + j).loadUnaligned(as: SIMD8<Float>.self), as: SIMD8<Float>.self)
                    j += 8
                }
                while j < count { dst[j] += src[j]; j += 1 }
            }
        }
    }
}

/// The nine gradient values of 8 kernels, one SIMD8 lane per kernel.
public typealias KernelLanes = (SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>,
                         SIMD8<Float>, SIMD8<Float>, SIMD8<Float>)

/// dw[q*9 ..< q*9+9] += transform(M_q) for kernels q in `kernels`, M_q the sum of the partials'
/// planes at q (in their order): `transform` on 8 kernels at a time, given the sums at its first
/// kernel and the byte distance between their planes. Several partials are gathered a chunk at a
/// time (`sumKernelPartials`); one partial (the by-channels passes, one worker) is read in place,
/// its last group's lanes reading up to 7 floats past `kernels` (every caller pads its planes by 16).
@inlinable @inline(__always)
public func addKernelGradients(_ partials: [UnsafePointer<Float>], planes: Int, plane: Int, dw: UnsafeMutablePointer<Float>,
                        kernels: Range<Int>, _ transform: (UnsafeRawPointer, Int) -> KernelLanes) {
    if partials.count == 1 {
        let m = partials[0]
        var q = kernels.lowerBound
        while q < kernels.upperBound {
            addKernelLanes(transform(UnsafeRawPointer(m + q), plane * 4), to: dw + q * 9, count: min(8, kernels.upperBound - q))
            q += 8
        }
        return
    }
    let sums = UnsafeMutablePointer<Float>.allocate(capacity: planes * kernelChunk)
    defer { sums.deallocate() }
    sums.initialize(repeating: 0, count: planes * kernelChunk)   // lanes past a chunk's end are read, never stored
    var q0 = kernels.lowerBound
    while q0 < kernels.upperBound {
        let cn = min(kernelChunk, kernels.upperBound - q0)
        sumKernelPartials(partials, planes: planes, plane: plane, first: q0, count: cn, into: sums)
        var j = 0
        while j < cn {
            addKernelLanes(transform(UnsafeRawPointer(sums + j), kernelChunk * 4), to: dw + (q0 + j) * 9, count: min(8, cn - j))
            j += 8
        }
        q0 += cn
    }
}

/// dw[l * 9 + e] += r[e][l] for lanes l < count: the nine gradient values of 8 kernels in SIMD8
/// lanes, added to the kernels' 72 contiguous floats.
@inlinable @inline(__always)
public func addKernelLanes(_ r: KernelLanes, to dw: UnsafeMutablePointer<Float>, count: Int) {
    guard count == 8 else {
        for l in 0..<count {
            let d = dw + l * 9
            d[0] += r.0[l]; d[1] += r.1[l]; d[2] += r.2[l]
            d[3] += r.3[l]; d[4] += r.4[l]; d[5] += r.5[l]
            d[6] += r.6[l]; d[7] += r.7[l]; d[8] += r.8[l]
        }
        return
    }
    addEightKernelLanes(r, to: dw)
}

/// `addKernelLanes` of 8 kernels: transposed by shuffles into four 16-float vectors and one of 8
/// (value i of the 72 is lane i / 9 of r[i % 9]), then five vector adds. Not inlined on purpose:
/// inlined, the compiler followed the lane-by-lane picks back into the transform that computes r
/// and split it into scalar arithmetic (F(4x4)'s dW back-transform took 18 ns a kernel against 8).
@inlinable @inline(never)
public func addEightKernelLanes(_ r: KernelLanes, to dw: UnsafeMutablePointer<Float>) {
    @inline(__always) func e(_ i: Int) -> Float {
        let l = i / 9
        switch i % 9 {
        case 0: return r.0[l]; case 1: return r.1[l]; case 2: return r.2[l]; case 3: return r.3[l]; case 4: return r.4[l]
        case 5: return r.5[l]; case 6: return r.6[l]; case 7: return r.7[l]; default: return r.8[l]
        }
    }
    @inline(__always) func v16(_ b: Int) -> SIMD16<Float> {
        SIMD16(e(b), e(b + 1), e(b + 2), e(b + 3), e(b + 4), e(b + 5), e(b + 6), e(b + 7),
               e(b + 8), e(b + 9), e(b + 10), e(b + 11), e(b + 12), e(b + 13), e(b + 14), e(b + 15))
    }
    let d = UnsafeMutableRawPointer(dw)
    @inline(__always) func add16(_ b: Int) {
        d.storeBytes(of: d.loadUnaligned(fromByteOffset: b * 4, as: SIMD16<Float>.self) + v16(b), toByteOffset: b * 4, as: SIMD16<Float>.self)
    }
    add16(0); add16(16); add16(32); add16(48)
    let tail = SIMD8(e(64), e(65), e(66), e(67), e(68), e(69), e(70), e(71))
    d.storeBytes(of: d.loadUnaligned(fromByteOffset: 256, as: SIMD8<Float>.self) + tail, toByteOffset: 256, as: SIMD8<Float>.self)
}

/// The nine taps of 8 kernels stored one after another (kernel l's at p[9l ..< 9l + 9], 72 floats):
/// lane l of value k is p[9l + k]. Four 16-float loads and one 8-float load, then shuffles (element
/// by element, kernel by kernel, it was the larger half of a weight transform's time).
@inlinable @inline(__always)
public func kernelTapLanes(contiguous p: UnsafePointer<Float>) -> KernelLanes {
    let r = UnsafeRawPointer(p)
    let v0 = r.loadUnaligned(fromByteOffset: 0, as: SIMD16<Float>.self), v1 = r.loadUnaligned(fromByteOffset: 64, as: SIMD16<Float>.self)
    let v2 = r.loadUnaligned(fromByteOffset: 128, as: SIMD16<Float>.self), v3 = r.loadUnaligned(fromByteOffset: 192, as: SIMD16<Float>.self)
    let v4 = r.loadUnaligned(fromByteOffset: 256, as: SIMD8<Float>.self)
    @inline(__always) func e(_ i: Int) -> Float {
        switch i >> 4 { case 0: return v0[i & 15]; case 1: return v1[i & 15]; case 2: return v2[i & 15]; case 3: return v3[i & 15]; default: return v4[i & 7] }
    }
    @inline(__always) func tap(_ k: Int) -> SIMD8<Float> { SIMD8(e(k), e(9 + k), e(18 + k), e(27 + k), e(36 + k), e(45 + k), e(54 + k), e(63 + k)) }
    return (tap(0), tap(1), tap(2), tap(3), tap(4), tap(5), tap(6), tap(7), tap(8))
}

/// The nine taps of 8 kernels `stride` floats apart (kernel l's at p[l * stride ..< l * stride + 9]):
/// lane l of value k is p[l * stride + k], or, `rotated`, p[l * stride + 8 - k] (the kernel turned by
/// 180°). An 8-float load per kernel, then an 8x8 transpose by shuffles; the ninth taps one by one.
@inlinable @inline(__always)
public func kernelTapLanes(_ p: UnsafePointer<Float>, stride: Int, rotated: Bool) -> KernelLanes {
    @inline(__always) func row(_ l: Int) -> SIMD8<Float> { UnsafeRawPointer(p + l * stride).loadUnaligned(as: SIMD8<Float>.self) }
    let r0 = row(0), r1 = row(1), r2 = row(2), r3 = row(3), r4 = row(4), r5 = row(5), r6 = row(6), r7 = row(7)
    @inline(__always) func tap(_ k: Int) -> SIMD8<Float> {
        k == 8 ? SIMD8(p[8], p[stride + 8], p[2 * stride + 8], p[3 * stride + 8], p[4 * stride + 8], p[5 * stride + 8], p[6 * stride + 8], p[7 * stride + 8])
            : SIMD8(r0[k], r1[k], r2[k], r3[k], r4[k], r5[k], r6[k], r7[k])
    }
    if rotated { return (tap(8), tap(7), tap(6), tap(5), tap(4), tap(3), tap(2), tap(1), tap(0)) }
    return (tap(0), tap(1), tap(2), tap(3), tap(4), tap(5), tap(6), tap(7), tap(8))
}

/// The taps of the 8 kernels of a weight transform's group: kernels W[o][first + l] of a weight
/// [Cout, Cin, 3, 3] for l < n, or, `transposed`, W[first + l][o] (dX's layout), turned by 180° if
/// `rotated`; a partial group (n < 8) repeats its last kernel in the remaining lanes.
@inlinable @inline(__always)
public func groupTapLanes(_ w: UnsafePointer<Float>, cin: Int, row o: Int, first: Int, count n: Int,
                          transposed: Bool, rotated: Bool) -> KernelLanes {
    if n == 8 {
        return transposed ? kernelTapLanes(w + (first * cin + o) * 9, stride: cin * 9, rotated: rotated)
            : rotated ? kernelTapLanes(w + (o * cin + first) * 9, stride: 9, rotated: true)
            : kernelTapLanes(contiguous: w + (o * cin + first) * 9)
    }
    @inline(__always) func lane(_ k: Int) -> SIMD8<Float> {
        var r = SIMD8<Float>()
        for l in 0..<8 {
            let i = first + min(l, n - 1), e = rotated ? 8 - k : k
            r[l] = transposed ? w[(i * cin + o) * 9 + e] : w[(o * cin + i) * 9 + e]
        }
        return r
    }
    return (lane(0), lane(1), lane(2), lane(3), lane(4), lane(5), lane(6), lane(7), lane(8))
}

/// The walk of a weight transform: for each row o of `rows` (an output channel, or an input channel
/// `transposed`), the inner kernels 64 at a time: `group(taps, dst)` writes the points of 8 of them
/// (their taps in lanes, `groupTapLanes`) at dst[xi * 64 + l] of a [planes][64] block, which then goes
/// in `planes` runs into U (row o - firstRow of each plane, planes `plane` floats apart): 64-float
/// runs rather than `planes` streams of 8 at once.
@inlinable @inline(__always)
public func transformKernelRows(_ w: UnsafePointer<Float>, cin: Int, rows: Range<Int>, inner: Int, transposed: Bool, rotated: Bool,
                                planes: Int, into u: UnsafeMutablePointer<Float>, plane: Int, firstRow: Int,
                                _ group: (KernelLanes, UnsafeMutablePointer<Float>) -> Void) {
    let tmp = UnsafeMutablePointer<Float>.allocate(capacity: planes * 64 + 8)
    defer { tmp.deallocate() }
    for o in rows {
        var c0 = 0
        while c0 < inner {
            let nc = min(64, inner - c0)
            var j = 0
            while j < nc {
                group(groupTapLanes(w, cin: cin, row: o, first: c0 + j, count: min(8, nc - j), transposed: transposed, rotated: rotated), tmp + j)
                j += 8
            }
            spreadRuns(tmp, planes: planes, count: nc, into: u + (o - firstRow) * inner + c0, plane: plane)
            c0 += nc
        }
    }
}
