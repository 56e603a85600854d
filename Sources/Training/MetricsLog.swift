// metrics.jsonl: one JSON object per line (keys sorted), flushed after every line so a crash
// loses at most the line being written. Non-finite numbers are written as null.
import Foundation
import NN
#if canImport(Glibc)
import Glibc
#endif

public struct MetricsLogError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

public enum MetricValue: Equatable, Sendable, ExpressibleByIntegerLiteral, ExpressibleByFloatLiteral,
                         ExpressibleByStringLiteral, ExpressibleByBooleanLiteral {
    case int(Int)
    case double(Double)
    case string(String)
    case bool(Bool)

    public init(integerLiteral v: Int) { self = .int(v) }
    public init(floatLiteral v: Double) { self = .double(v) }
    public init(stringLiteral v: String) { self = .string(v) }
    public init(booleanLiteral v: Bool) { self = .bool(v) }

    /// The JSON text of this value.
    public var json: String {
        switch self {
        case .int(let v): return String(v)
        case .double(let v): return v.isFinite ? MetricsLog.jsonNumber(v) : "null"
        case .string(let s): return quotedString(s)
        case .bool(let b): return b ? "true" : "false"
        }
    }
}

public final class MetricsLog {
    public let path: String
    private var file: UnsafeMutablePointer<FILE>?

    /// Opens (creating parent folders) for appending, or truncates when `append` is false.
    /// When appending to a file whose last line was cut short (a crash mid-write), that partial line is removed.
    public init(path: String, append: Bool) throws {
        self.path = path
        let dir = URL(fileURLWithPath: path).deletingLastPathComponent().path
        if !dir.isEmpty { try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
        // A last line cut short by a crash is dropped before appending.
        if append, let data = FileManager.default.contents(atPath: path), let last = data.last, last != UInt8(ascii: "\n") {
            let keep = (data.lastIndex(of: UInt8(ascii: "\n")).map { $0 + 1 }) ?? 0
            if truncate(path, off_t(keep)) != 0 {
                throw MetricsLogError("cannot repair metrics log \(path): \(String(cString: strerror(errno)))")
            }
        }
        guard let f = fopen(path, append ? "a" : "w") else {
            throw MetricsLogError("cannot open metrics log \(path): \(String(cString: strerror(errno)))")
        }
        file = f
    }

    deinit { if let f = file { fclose(f) } }

    /// Appends one record as a JSON line and flushes it.
    public func write(_ record: [String: MetricValue]) throws {
        guard let f = file else { throw MetricsLogError("metrics log \(path) is closed") }
        let line = MetricsLog.jsonLine(record) + "\n"
        if fputs(line, f) < 0 || fflush(f) != 0 {
            throw MetricsLogError("cannot write metrics log \(path): \(String(cString: strerror(errno)))")
        }
    }

    public func close() {
        if let f = file { fclose(f) }
        file = nil
    }

    /// The JSON object text of a record, keys sorted, without the newline.
    public static func jsonLine(_ record: [String: MetricValue]) -> String {
        "{" + record.keys.sorted().map { "\(quotedString($0)):\(record[$0]!.json)" }.joined(separator: ",") + "}"
    }

    /// Every record of a metrics file. A last line without its newline that does not parse
    /// (a write interrupted by a crash) is skipped; any other bad line is an error.
    public static func readRecords(path: String) throws -> [[String: Any]] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw MetricsLogError("cannot read metrics log \(path)")
        }
        let endsWithNewline = data.last == UInt8(ascii: "\n")
        let lines = data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
        var records: [[String: Any]] = []
        for (i, line) in lines.enumerated() {
            if line.allSatisfy({ $0 == 0x20 || $0 == 0x0d || $0 == 0x09 }) { continue }
            let isLastPartial = i == lines.count - 1 && !endsWithNewline
            do {
                guard let obj = try JSONSerialization.jsonObject(with: Data(line)) as? [String: Any] else {
                    if isLastPartial { continue }
                    throw MetricsLogError("\(path):\(i + 1): not a JSON object")
                }
                records.append(obj)
            } catch let e as MetricsLogError {
                throw e
            } catch {
                if isLastPartial { continue }
                throw MetricsLogError("\(path):\(i + 1): invalid JSON line")
            }
        }
        return records
    }

    /// Shortest text that reads back as the same Double, valid JSON (no "inf", no leading ".").
    static func jsonNumber(_ v: Double) -> String {
        if v == v.rounded(), abs(v) < 1e15 { return String(format: "%.1f", v) }
        return "\(v)"
    }

}
