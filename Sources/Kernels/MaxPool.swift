// Max pooling's window scan at stride 2 (NN/Layers/MaxPool2D.swift), 8 windows at a time in SIMD
// lanes: the even lanes of 16 contiguous floats of a copy of the plane with -inf columns either side.
// Same order and rule as the layer's scalar `window` (the first maximum wins, a NaN wins), so the
// same index wins.

/// Maximum (into vals) and its index in the plane (into idx, one output row at a time) of
/// every window of plane xp (h x w) for a kernel x kernel window at stride 2 with `padding`; `buf`
/// is scratch of h * bw floats (bw ≥ max(w + 2 padding, 2 wo + kernel) + 16). `row(oy)` is called
/// after each output row, with idx holding that row's indices.
public func maxPoolScanStride2(_ xp: UnsafePointer<Float>, h: Int, w: Int, ho: Int, wo: Int, bw: Int, kernel: Int, padding: Int,
                               _ buf: UnsafeMutablePointer<Float>, _ vals: UnsafeMutablePointer<Float>,
                               _ idx: UnsafeMutablePointer<Int32>, row: (Int) -> Void) {
    for iy in 0..<h {   // buf[iy * bw + padding + ix] = x[iy, ix], -inf elsewhere
        let b = buf + iy * bw
        b.update(repeating: -.infinity, count: padding)
        (b + padding).update(from: xp + iy * w, count: w)
        (b + padding + w).update(repeating: -.infinity, count: bw - padding - w)
    }
    let lanes = SIMD8<Int32>(0, 2, 4, 6, 8, 10, 12, 14)
    for oy in 0..<ho {
        let y0 = max(oy * 2 - padding, 0), y1 = min(oy * 2 - padding + kernel, h)
        var ox = 0
        while ox < wo {
            let x0 = 2 * ox - padding
            var best = SIMD8<Float>(repeating: -.infinity)
            // `window`'s first candidate: the window's first column inside the image
            var bi = SIMD8<Int32>(repeating: Int32(y0 * w)) &+ pointwiseMax(SIMD8<Int32>(repeating: Int32(x0)) &+ lanes, .zero)
            for iy in y0..<y1 { for kj in 0..<kernel {
                let v = UnsafeRawPointer(buf + iy * bw + 2 * ox + kj).loadUnaligned(as: SIMD16<Float>.self).evenHalf
                let better = (v .> best) .| (v .!= v)
                best.replace(with: v, where: better)
                bi.replace(with: SIMD8<Int32>(repeating: Int32(iy * w + x0 + kj)) &+ lanes, where: better)
            }}
            let n = min(8, wo - ox)
            if n == 8 {
                UnsafeMutableRawPointer(vals + oy * wo + ox).storeBytes(of: best, as: SIMD8<Float>.self)
                UnsafeMutableRawPointer(idx + ox).storeBytes(of: bi, as: SIMD8<Int32>.self)
            } else {
                for l in 0..<n { vals[oy * wo + ox + l] = best[l]; idx[ox + l] = bi[l] }
            }
            ox += 8
        }
        row(oy)
    }
}
