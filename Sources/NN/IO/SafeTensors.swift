// The safetensors file format (as written by Hugging Face's `safetensors` and read by PyTorch):
//   [8 bytes: header length N, little-endian UInt64]
//   [N bytes: JSON header {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]},
//                          ..., "__metadata__": {"k": "v"}}, padded with spaces to a multiple of 8]
//   [data: raw little-endian tensor bytes; offsets are relative to the start of this block]
// Tensors are stored back to back in declaration order. Decoding checks every field and every
// offset, so any byte sequence gives either tensors or an error naming the file and the reason.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

public struct SafeTensorsError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// One tensor of a safetensors file. Values are held as Float whatever the stored dtype;
/// `type` says how it is written (.int64 for PyTorch's `num_batches_tracked`).
public struct NamedTensor: Equatable {
    public var name: String
    public var shape: [Int]
    public var type: StoredType
    public var values: [Float]
    public init(name: String, shape: [Int], type: StoredType = .float32, values: [Float]) {
        self.name = name; self.shape = shape; self.type = type; self.values = values
    }
}

public enum SafeTensors {
    /// The reference implementation refuses headers above 100 MB; so do we.
    public static let maxHeaderBytes = 100_000_000

    // MARK: Encoding

    /// The complete file contents. Tensors are laid out in the order given.
    public static func encode(_ tensors: [NamedTensor], metadata: [String: String]) -> [UInt8] {
        var header = "{"
        var first = true
        if !metadata.isEmpty {
            header += "\"__metadata__\":{"
            header += metadata.keys.sorted().map { "\(quotedString($0)):\(quotedString(metadata[$0]!))" }
                .joined(separator: ",")
            header += "}"
            first = false
        }
        precondition(Set(tensors.map(\.name)).count == tensors.count, "duplicate tensor names")
        var offset = 0
        for t in tensors {
            let count = t.shape.reduce(1, *)
            precondition(t.shape.allSatisfy { $0 >= 0 } && count == t.values.count,
                         "tensor \(t.name): \(t.values.count) values for shape \(t.shape)")
            precondition(t.name != "__metadata__", "a tensor cannot be named __metadata__")
            let bytes = count * (t.type == .int64 ? 8 : 4)
            if !first { header += "," }
            first = false
            header += "\(quotedString(t.name)):{\"dtype\":\"\(t.type.rawValue)\",\"shape\":[\(t.shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(offset),\(offset + bytes)]}"
            offset += bytes
        }
        header += "}"
        var headerBytes = Array(header.utf8)
        while headerBytes.count % 8 != 0 { headerBytes.append(0x20) }

        var out: [UInt8] = []
        out.reserveCapacity(8 + headerBytes.count + offset)
        appendLE(UInt64(headerBytes.count), to: &out)
        out += headerBytes
        for t in tensors {
            switch t.type {
            case .float32:
                for v in t.values { appendLE(v.bitPattern, to: &out) }
            case .int64:
                for v in t.values { appendLE(UInt64(bitPattern: int64(v)), to: &out) }
            }
        }
        return out
    }

    /// Writes atomically: a temporary file in the same folder, fsync, then rename over `path`.
    /// A crash leaves either the old file or the new one, never a half-written one.
    public static func write(_ tensors: [NamedTensor], metadata: [String: String], to path: String) throws {
        try writeAtomically(encode(tensors, metadata: metadata), to: path)
    }

    /// Atomic file replacement (temp file + fsync + rename + directory fsync).
    /// `beforeRename` runs once the temporary file is complete and fsynced (a test hook).
    public static func writeAtomically(_ bytes: [UInt8], to path: String, beforeRename: (() -> Void)? = nil) throws {
        let url = URL(fileURLWithPath: path)
        let dir = url.deletingLastPathComponent().path
        let tmp = dir + "/." + url.lastPathComponent + ".tmp.\(getpid())"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw SafeTensorsError("\(path): cannot create \(tmp): \(errnoString())") }
        var ok = false
        defer { if !ok { unlink(tmp) } }
        var written = 0
        let failure: String? = bytes.withUnsafeBytes { raw -> String? in
            while written < raw.count {
                let n = Glibc.write(fd, raw.baseAddress! + written, raw.count - written)
                if n < 0 {
                    if errno == EINTR { continue }
                    return errnoString()
                }
                written += n
            }
            return nil
        }
        if let failure { close(fd); throw SafeTensorsError("\(path): write failed: \(failure)") }
        if fsync(fd) != 0 { let e = errnoString(); close(fd); throw SafeTensorsError("\(path): fsync failed: \(e)") }
        if close(fd) != 0 { throw SafeTensorsError("\(path): close failed: \(errnoString())") }
        beforeRename?()
        if rename(tmp, path) != 0 { throw SafeTensorsError("\(path): rename from \(tmp) failed: \(errnoString())") }
        ok = true
        let dfd = open(dir.isEmpty ? "." : dir, O_RDONLY)
        if dfd >= 0 { _ = fsync(dfd); close(dfd) }
    }

    // MARK: Decoding

    /// Parses a whole file. `order` lists the tensor names by position in the data block.
    public static func decode(_ bytes: [UInt8], file: String) throws
        -> (tensors: [String: NamedTensor], order: [String], metadata: [String: String]) {
        func fail(_ reason: String) -> SafeTensorsError { SafeTensorsError("\(file): not a valid safetensors file: \(reason)") }

        guard bytes.count >= 8 else { throw fail("\(bytes.count) bytes, too short for the 8-byte header length") }
        let n64 = readLE(bytes, 0, 8)
        guard n64 <= UInt64(maxHeaderBytes) else { throw fail("header length \(n64) exceeds the limit of \(maxHeaderBytes) bytes") }
        let n = Int(n64)
        guard n >= 2 else { throw fail("header length \(n) is too small for a JSON object") }
        guard 8 + n <= bytes.count else {
            throw fail("header length \(n) runs past the end of the file (\(bytes.count) bytes; file truncated?)")
        }
        guard bytes[8] == UInt8(ascii: "{") else { throw fail("header does not start with '{'") }

        let json: Any
        do {
            json = try JSONSerialization.jsonObject(with: Data(bytes[8..<(8 + n)]), options: [])
        } catch {
            throw fail("header is not valid JSON (\(clippedForMessage(error.localizedDescription)))")
        }
        guard let header = json as? [String: Any] else { throw fail("header is not a JSON object") }

        var metadata: [String: String] = [:]
        if let meta = header["__metadata__"] {
            guard let m = meta as? [String: Any] else { throw fail("__metadata__ is not an object") }
            for (k, v) in m {
                guard let s = v as? String else { throw fail("__metadata__ value of '\(clippedForMessage(k))' is not a string") }
                metadata[k] = s
            }
        }

        let dataStart = 8 + n
        let dataLength = bytes.count - dataStart
        struct Entry { let name: String; let dtype: DType; let shape: [Int]; let count: Int; let begin: Int; let end: Int }
        var entries: [Entry] = []
        // Sorted, so that of several problems the same one is reported on every run.
        for (fullName, value) in header.sorted(by: { $0.key < $1.key }) where fullName != "__metadata__" {
            let name = clippedForMessage(fullName)   // for messages
            guard let info = value as? [String: Any] else { throw fail("tensor \(name): entry is not an object") }
            for key in info.keys.sorted() where !["dtype", "shape", "data_offsets"].contains(key) {
                throw fail("tensor \(name): unexpected field '\(clippedForMessage(key))'")
            }
            guard let dtypeName = info["dtype"] as? String else { throw fail("tensor \(name): missing or non-string dtype") }
            guard let dtype = DType(rawValue: dtypeName) else {
                throw fail("tensor \(name): unsupported dtype \(clippedForMessage(dtypeName)) (supported: \(DType.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            guard let shapeArray = info["shape"] as? [Any] else { throw fail("tensor \(name): missing or non-array shape") }
            guard shapeArray.count <= 64 else { throw fail("tensor \(name): shape has \(shapeArray.count) dimensions") }
            // The product of the non-zero dimensions must fit the data block, so that no
            // product of any of them overflows later (even for a tensor with a 0 dimension).
            var shape: [Int] = []
            var nonZeroProduct = 1
            for d in shapeArray {
                guard let v = jsonInt(d), v >= 0 else { throw fail("tensor \(name): shape \(clippedForMessage("\(shapeArray)")) is not a list of non-negative integers") }
                shape.append(v)
                let (p, overflow) = nonZeroProduct.multipliedReportingOverflow(by: max(v, 1))
                guard !overflow, p <= dataLength else {
                    throw fail("tensor \(name): shape \(shape)... has more elements than the file has bytes")
                }
                nonZeroProduct = p
            }
            let count = shape.contains(0) ? 0 : nonZeroProduct
            guard let offs = info["data_offsets"] as? [Any], offs.count == 2,
                  let begin = jsonInt(offs[0]), let end = jsonInt(offs[1]) else {
                throw fail("tensor \(name): data_offsets is not a pair of integers")
            }
            guard begin >= 0, begin <= end, end <= dataLength else {
                throw fail("tensor \(name): data_offsets [\(begin), \(end)] outside the data block of \(dataLength) bytes")
            }
            guard end - begin == count * dtype.size else {
                throw fail("tensor \(name): shape \(shape) of \(dtype.rawValue) needs \(count * dtype.size) bytes, data_offsets [\(begin), \(end)] hold \(end - begin)")
            }
            entries.append(Entry(name: fullName, dtype: dtype, shape: shape, count: count, begin: begin, end: end))
        }
        // Tensors must tile the data block exactly: no overlap, no gap, nothing left over.
        entries.sort { ($0.begin, $0.end, $0.name) < ($1.begin, $1.end, $1.name) }
        var expected = 0
        for e in entries {
            guard e.begin == expected else {
                throw fail(e.begin < expected
                    ? "tensor \(clippedForMessage(e.name)): data_offsets [\(e.begin), \(e.end)] overlap the previous tensor (which ends at \(expected))"
                    : "tensor \(clippedForMessage(e.name)): gap in the data block before offset \(e.begin) (previous tensor ends at \(expected))")
            }
            expected = e.end
        }
        guard expected == dataLength else {
            throw fail("tensors cover \(expected) bytes of data but the file holds \(dataLength) (truncated or trailing bytes)")
        }

        var tensors: [String: NamedTensor] = [:]
        var order: [String] = []
        for e in entries {
            let base = dataStart + e.begin
            var values = [Float](repeating: 0, count: e.count)
            bytes.withUnsafeBufferPointer { src in
                for i in 0..<e.count { values[i] = e.dtype.read(src, base + i * e.dtype.size) }
            }
            let type: StoredType = e.dtype.isInteger ? .int64 : .float32
            tensors[e.name] = NamedTensor(name: e.name, shape: e.shape, type: type, values: values)
            order.append(e.name)
        }
        return (tensors, order, metadata)
    }

    /// Reads and decodes a file. Only regular files are read (a FIFO or device could be
    /// endless), exactly as many bytes as the file's size.
    public static func read(path: String) throws
        -> (tensors: [String: NamedTensor], order: [String], metadata: [String: String]) {
        var st = stat()
        guard stat(path, &st) == 0 else {
            if errno == ENOENT { throw SafeTensorsError("\(path): no such file") }
            throw SafeTensorsError("\(path): cannot read the file: \(errnoString())")
        }
        let kind = st.st_mode & S_IFMT
        guard kind != S_IFDIR else { throw SafeTensorsError("\(path): is a directory, not a safetensors file") }
        guard kind == S_IFREG else { throw SafeTensorsError("\(path): not a regular file") }
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw SafeTensorsError("\(path): cannot read the file: \(errnoString())") }
        defer { close(fd) }
        let size = Int(st.st_size)
        var bytes = [UInt8](repeating: 0, count: size)
        var used = 0
        while used < size {
            let n = bytes.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + used, size - used) }
            if n < 0 {
                if errno == EINTR { continue }
                throw SafeTensorsError("\(path): cannot read the file: \(errnoString())")
            }
            if n == 0 { break }
            used += n
        }
        guard used == size else { throw SafeTensorsError("\(path): short read (\(used) of \(size) bytes; the file shrank?)") }
        return try decode(bytes, file: path)
    }

    // MARK: Stores

    /// Copies the tensors into the stores strictly: every store entry must be present with the
    /// same shape and no other names may be present. Names in `ignoring` are skipped on both
    /// sides (neither required nor loaded nor reported as extra). Nothing is copied unless
    /// every check passes. Any stored dtype is accepted (values are converted to Float).
    public static func load(_ tensors: [String: NamedTensor], into stores: [ParameterStore], file: String,
                            ignoring: Set<String> = []) throws {
        var problems: [String] = []
        var known = Set<String>()
        var copies: [(ParamHandle, NamedTensor)] = []
        for store in stores {
            precondition(store.isFinalized, "load into a store that is not finalized")
            for h in store.entries {
                known.insert(h.name)
                if ignoring.contains(h.name) { continue }
                guard let t = tensors[h.name] else { problems.append("missing tensor \(h.name)"); continue }
                guard t.shape == h.shape else {
                    problems.append("tensor \(h.name): file has shape \(t.shape), model expects \(h.shape)"); continue
                }
                copies.append((h, t))
            }
        }
        for name in tensors.keys.sorted() where !known.contains(name) && !ignoring.contains(name) {
            problems.append("unexpected tensor \(clippedForMessage(name))")
        }
        if !problems.isEmpty {
            let shown = problems.prefix(20).joined(separator: "; ")
            let more = problems.count > 20 ? "; ... and \(problems.count - 20) more" : ""
            throw SafeTensorsError("\(file): does not match the model: \(shown)\(more)")
        }
        for (h, t) in copies {
            t.values.withUnsafeBufferPointer { h.value.update(from: $0.baseAddress!, count: h.count) }
        }
    }

    /// Every entry of the stores, store by store, in declaration order.
    public static func collect(_ stores: [ParameterStore]) -> [NamedTensor] {
        stores.flatMap { store in
            store.entries.map { NamedTensor(name: $0.name, shape: $0.shape, type: $0.type, values: $0.values) }
        }
    }

    // MARK: Helpers

    enum DType: String, CaseIterable {
        case F32, F64, F16, BF16, I64, I32, I16, I8, U8, BOOL
        var size: Int {
            switch self {
            case .F64, .I64: return 8
            case .F32, .I32: return 4
            case .F16, .BF16, .I16: return 2
            case .I8, .U8, .BOOL: return 1
            }
        }
        var isInteger: Bool { ![.F32, .F64, .F16, .BF16].contains(self) }
        @inline(__always) func read(_ b: UnsafeBufferPointer<UInt8>, _ at: Int) -> Float {
            switch self {
            case .F32: return Float(bitPattern: UInt32(truncatingIfNeeded: readLE(b, at, 4)))
            case .F64: return Float(Double(bitPattern: readLE(b, at, 8)))
            case .F16: return halfToFloat(UInt16(truncatingIfNeeded: readLE(b, at, 2)))
            case .BF16: return Float(bitPattern: UInt32(truncatingIfNeeded: readLE(b, at, 2)) << 16)
            case .I64: return Float(Int64(bitPattern: readLE(b, at, 8)))
            case .I32: return Float(Int32(bitPattern: UInt32(truncatingIfNeeded: readLE(b, at, 4))))
            case .I16: return Float(Int16(bitPattern: UInt16(truncatingIfNeeded: readLE(b, at, 2))))
            case .I8: return Float(Int8(bitPattern: b[at]))
            case .U8: return Float(b[at])
            case .BOOL: return b[at] != 0 ? 1 : 0
            }
        }
    }

    static func halfToFloat(_ h: UInt16) -> Float {
        let sign = UInt32(h >> 15) << 31
        let exp = Int((h >> 10) & 0x1f)
        let mant = UInt32(h & 0x3ff)
        if exp == 0 {
            let v = Float(mant) * 0x1p-24          // zero or subnormal
            return sign != 0 ? -v : v
        }
        if exp == 31 { return Float(bitPattern: sign | 0x7f80_0000 | (mant << 13)) }   // inf / nan
        return Float(bitPattern: sign | UInt32(exp - 15 + 127) << 23 | (mant << 13))
    }

    /// An integer JSON number (not a bool, not a float).
    static func jsonInt(_ any: Any) -> Int? {
        guard let n = any as? NSNumber else { return nil }
        let t = String(cString: n.objCType)
        guard ["i", "s", "l", "q", "I", "S", "L"].contains(t) else { return nil }
        return n as? Int
    }

    static func int64(_ v: Float) -> Int64 {
        if v.isNaN { return 0 }
        if v >= 9.2233715e18 { return .max }
        if v <= -9.2233715e18 { return .min }
        return Int64(v.rounded())
    }


    @inline(__always) static func appendLE<T: FixedWidthInteger>(_ v: T, to out: inout [UInt8]) {
        var x = v.littleEndian
        withUnsafeBytes(of: &x) { out.append(contentsOf: $0) }
    }

    @inline(__always) static func readLE(_ b: [UInt8], _ at: Int, _ n: Int) -> UInt64 {
        b.withUnsafeBufferPointer { readLE($0, at, n) }
    }

    @inline(__always) static func readLE(_ b: UnsafeBufferPointer<UInt8>, _ at: Int, _ n: Int) -> UInt64 {
        var v: UInt64 = 0
        for i in 0..<n { v |= UInt64(b[at + i]) << (8 * UInt64(i)) }
        return v
    }

    static func errnoString() -> String { String(cString: strerror(errno)) }

}
