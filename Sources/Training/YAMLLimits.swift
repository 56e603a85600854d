// Bounds on YAML input, checked before Yams builds a node tree. Yams composes aliases by
// sharing the anchored node, but everything that walks the tree afterwards (duplicate-key
// hashing, equality, `describe`, error messages) walks it expanded: a 1 KB "billion laughs"
// document (anchors that alias the previous anchor ten times, nine levels deep) expands to
// 10^9 nodes. So the text is first run through libyaml's event parser (the one Yams uses, no
// tree built), counting every node as it would be after alias expansion, and refused as soon
// as a bound is passed: the size of the text, the nesting depth, the expanded node count.
// Error messages quote user input only through `clipped`.
import Foundation
import Yams
import NN
import CYaml   // Yams' copy of libyaml (a dependency of the Yams product); only its event parser is used

public enum YAMLLimits {
    /// Largest YAML text accepted (a config is well under 2 KB).
    public static let maxBytes = 1 << 20
    /// Deepest nesting of collections (a config nests 3 deep: sections, keys, lists).
    public static let maxDepth = 32
    /// Most nodes of the document once every alias is replaced by the node it names
    /// (the full schema is under 100).
    public static let maxNodes = 10_000

    /// `Yams.compose(yaml:)` behind the limits. Every error is a `ConfigError` that names
    /// `file` (a path, or the `--set` argument) and says which limit was passed, or what
    /// Yams found wrong (its message clipped).
    public static func compose(yaml: String, file: String) throws -> Node? {
        try check(yaml: yaml, file: file)
        let origin = clippedForMessage(file)
        do {
            return try Yams.compose(yaml: yaml)
        } catch {
            throw ConfigError("\(origin): invalid YAML: \(clippedForMessage(String(describing: error), limit: 600))")
        }
    }

    /// The text of a config file, read without ever holding more than `maxBytes` + 1 bytes
    /// (a config path naming a huge file, or /dev/zero, is refused instead of read whole).
    /// Errors are `ConfigError`s naming the path: not found, a directory, unreadable, too
    /// large, not UTF-8.
    public static func readText(path: String) throws -> String {
        var st = stat()
        guard stat(path, &st) == 0 else {
            if errno == ENOENT { throw ConfigError("config file not found: \(clippedForMessage(path))") }
            throw ConfigError("cannot read config file \(clippedForMessage(path)): \(String(cString: strerror(errno)))")
        }
        guard (st.st_mode & S_IFMT) != S_IFDIR else {
            throw ConfigError("config path is a directory, not a YAML file: \(clippedForMessage(path))")
        }
        if (st.st_mode & S_IFMT) == S_IFREG && st.st_size > Int64(maxBytes) {
            throw ConfigError("\(clippedForMessage(path)): YAML refused: \(st.st_size) bytes exceed the limit of \(maxBytes) bytes")
        }
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else {
            throw ConfigError("cannot read config file \(clippedForMessage(path)): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: maxBytes + 1)
        var used = 0
        while used < bytes.count {
            let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + used, $0.count - used) }
            if n < 0 {
                if errno == EINTR { continue }
                throw ConfigError("cannot read config file \(clippedForMessage(path)): \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            used += n
        }
        guard used <= maxBytes else {
            throw ConfigError("\(clippedForMessage(path)): YAML refused: more than \(maxBytes) bytes (the limit)")
        }
        guard let text = String(validating: bytes[..<used], as: UTF8.self) else {
            throw ConfigError("\(clippedForMessage(path)): not UTF-8 text")
        }
        return text
    }

    /// Throws a `ConfigError` when `yaml` passes one of the limits; syntax errors are left for
    /// Yams to report (with line and column), since the part before them stayed within bounds.
    public static func check(yaml: String, file: String) throws {
        let origin = clippedForMessage(file)
        let size = yaml.utf8.count
        guard size <= maxBytes else {
            throw ConfigError("\(origin): YAML refused: \(size) bytes exceed the limit of \(maxBytes) bytes")
        }
        var bytes = Array(yaml.utf8)
        if bytes.isEmpty { return }
        var parser = yaml_parser_t()
        guard yaml_parser_initialize(&parser) == 1 else { throw ConfigError("\(origin): cannot initialize the YAML parser") }
        defer { yaml_parser_delete(&parser) }
        yaml_parser_set_encoding(&parser, YAML_UTF8_ENCODING)
        try bytes.withUnsafeMutableBufferPointer { buf in
            yaml_parser_set_input_string(&parser, buf.baseAddress, buf.count)
            var expanded: [String: Int] = [:]          // anchor -> node count of its node, expanded
            var open: [(anchor: String?, start: Int)] = []  // collections not yet closed
            var total = 0                              // nodes so far, aliases expanded
            var event = yaml_event_t()
            while true {
                guard yaml_parser_parse(&parser, &event) == 1 else { return }   // syntax error: Yams reports it
                defer { yaml_event_delete(&event) }
                switch event.type {
                case YAML_STREAM_END_EVENT:
                    return
                case YAML_SCALAR_EVENT:
                    total += 1
                    if let a = string(event.data.scalar.anchor) { expanded[a] = 1 }
                case YAML_SEQUENCE_START_EVENT, YAML_MAPPING_START_EVENT:
                    total += 1
                    let a = event.type == YAML_SEQUENCE_START_EVENT ? event.data.sequence_start.anchor
                                                                     : event.data.mapping_start.anchor
                    open.append((string(a), total - 1))
                    guard open.count <= maxDepth else {
                        throw ConfigError("\(origin): YAML refused: nested more than \(maxDepth) levels deep "
                            + "(line \(event.start_mark.line + 1))")
                    }
                case YAML_SEQUENCE_END_EVENT, YAML_MAPPING_END_EVENT:
                    if let f = open.popLast(), let a = f.anchor { expanded[a] = total - f.start }
                case YAML_ALIAS_EVENT:
                    // An alias to an undefined (or still open) anchor is an error Yams reports.
                    total += string(event.data.alias.anchor).flatMap { expanded[$0] } ?? 1
                default:
                    break
                }
                guard total <= maxNodes else {
                    throw ConfigError("\(origin): YAML refused: more than \(maxNodes) nodes once aliases are expanded "
                        + "(line \(event.start_mark.line + 1); an alias bomb?)")
                }
            }
        }
    }

    private static func string(_ p: UnsafeMutablePointer<yaml_char_t>?) -> String? {
        p.map { String(cString: $0) }
    }
}

