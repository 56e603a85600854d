// Reads a RunConfig from YAML plus `--set section.key=value` overrides, checks it, and prints
// it back as canonical YAML. The YAML tree is walked by hand (not through Codable) so that
// every error names the file or the --set argument, the full dotted key and what was expected.
import Foundation
import Yams
import NN
import Data

/// A configuration mistake a user can make: the message names where it came from, the key
/// and what was expected.
public struct ConfigError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

// MARK: - Public API

extension RunConfig {
    /// Reads `path` (nil: start from the defaults), applies the `--set` overrides in order and
    /// validates the result. A key missing from the file keeps its default.
    public static func load(path: String?, overrides: [String]) throws -> RunConfig {
        var config = RunConfig()
        if let path {
            let text = try YAMLLimits.readText(path: path)   // bounded: never more than 1 MiB + 1 byte
            try ConfigSchema.apply(yaml: text, file: path, to: &config)
        }
        for o in overrides { try ConfigSchema.apply(override: o, to: &config) }
        try config.validate(source: path)
        return config
    }

    /// Same as `load`, from YAML text (`file` only names it in errors). Used for the config
    /// stored in run folders and checkpoints, and by tests.
    public static func parse(yaml: String, file: String = "<yaml>", overrides: [String] = []) throws -> RunConfig {
        var config = RunConfig()
        try ConfigSchema.apply(yaml: yaml, file: file, to: &config)
        for o in overrides { try ConfigSchema.apply(override: o, to: &config) }
        try config.validate(source: file)
        return config
    }

    /// Applies one `section.key=value` override to an already loaded config (then validate).
    public mutating func apply(override: String) throws {
        try ConfigSchema.apply(override: override, to: &self)
    }

    /// Range checks; throws on the first field that is out of range.
    public func validate(source: String? = nil) throws {
        let origin = source.map { " (config \($0))" } ?? ""
        func fail(_ key: String, _ expected: String, _ found: Any) throws -> Never {
            throw ConfigError("invalid \(key)\(origin): expected \(expected), found \(found)")
        }
        func finite(_ key: String, _ v: Double) throws { if !v.isFinite { try fail(key, "a finite number", v) } }

        func range<T: Comparable>(_ key: String, _ v: T, _ r: ClosedRange<T>, _ note: String = "") throws {
            if !r.contains(v) { try fail(key, "\(T.self == Int.self ? "an integer" : "a number") in \(r.lowerBound)...\(r.upperBound)\(note)", v) }
        }
        func number(_ key: String, _ v: Double, _ r: ClosedRange<Double>, _ note: String = "") throws {
            try finite(key, v); try range(key, v, r, note)
        }
        typealias L = ConfigLimits

        if !ResNetSpec.supportedDepths.contains(model.depth) {
            try fail("model.depth", ConfigSchema.oneOf(ResNetSpec.supportedDepths.map(String.init)), model.depth)
        }
        try range("model.in_channels", model.inChannels, L.inChannels)
        try range("model.num_classes", model.numClasses, L.numClasses)
        try range("model.width", model.width, L.width, " (64 is the paper's)")

        if data.kind == nil {
            try fail("data.dataset", ConfigSchema.oneOf(DatasetKind.allCases.map(\.rawValue)), "'\(clippedForMessage(data.dataset))'")
        }
        try range("data.image_size", data.imageSize, L.imageSize, " (0 = native size)")
        try range("data.crop_padding", data.cropPadding, L.cropPadding)
        if data.normalize {
            if data.mean.count != model.inChannels {
                try fail("data.mean", "\(model.inChannels) value(s), one per input channel (model.in_channels) since data.normalize is on",
                         "\(data.mean.count) value(s)")
            }
            if data.std.count != model.inChannels {
                try fail("data.std", "\(model.inChannels) value(s), one per input channel (model.in_channels) since data.normalize is on",
                         "\(data.std.count) value(s)")
            }
        }
        if let bad = data.mean.first(where: { !($0.isFinite && L.mean.contains($0)) }) {
            try fail("data.mean", "finite values in \(L.mean.lowerBound)...\(L.mean.upperBound)", bad)
        }
        if let bad = data.std.first(where: { !($0.isFinite && L.std.contains($0)) }) {
            try fail("data.std", "values in \(L.std.lowerBound)...\(L.std.upperBound)", bad)
        }
        try range("data.synthetic_count", data.syntheticCount, L.syntheticCount)

        try range("train.batch_size", train.batchSize, L.batchSize, " (the global batch)")
        try range("train.epochs", train.epochs, L.epochs)
        try range("train.max_steps", train.maxSteps, L.maxSteps, " (0 = no limit)")
        try range("train.seed", train.seed, L.seed)
        if let w = train.initWeights, w.isEmpty { try fail("train.init_weights", "a safetensors path or null", "''") }
        try number("train.bucket_mb", train.bucketMB, L.bucketMB)
        try range("train.threads", train.threads, L.threads, " (0 = auto)")
        try range("train.log_every", train.logEvery, L.logEvery)

        try range("train.accumulate_steps", train.accumulateSteps, L.accumulateSteps)
        if train.batchSize % train.accumulateSteps != 0 {
            try fail("train.accumulate_steps", "a divisor of train.batch_size (\(train.batchSize))", train.accumulateSteps)
        }
        try number("train.label_smoothing", train.labelSmoothing, L.labelSmoothing, " (torch's label_smoothing: [0, 1))")
        try number("train.collective_timeout_s", train.collectiveTimeoutS, L.collectiveTimeoutS, " (0 = no watchdog)")
        if train.traceWindow == nil {
            try fail("train.trace_steps", "\"A-B\" or \"A\", global steps from 1 with A <= B", "'\(clippedForMessage(train.traceSteps))'")
        }

        try number("optimizer.lr", optimizer.lr, L.lr)
        if let per256 = optimizer.lrPer256 {
            try number("optimizer.lr_per_256", per256, L.lr)
            try number("optimizer.lr_per_256", baseLR, L.lr, " after scaling by batch_size / 256 (\(train.batchSize) / 256)")
        }
        try finite("optimizer.momentum", optimizer.momentum)
        if !(optimizer.momentum >= 0 && optimizer.momentum < 1) {
            try fail("optimizer.momentum", "a number in [0, 1)", optimizer.momentum)
        }
        try number("optimizer.weight_decay", optimizer.weightDecay, L.weightDecay)
        if optimizer.nesterov && optimizer.momentum == 0 {
            try fail("optimizer.nesterov", "false when optimizer.momentum is 0 (Nesterov needs momentum)", true)
        }

        try number("schedule.warmup_epochs", schedule.warmupEpochs, L.warmupEpochs)
        try range("schedule.step_epochs", schedule.stepEpochs, L.stepEpochs)
        try number("schedule.gamma", schedule.gamma, L.gamma)
        try finite("schedule.min_lr", schedule.minLR)
        if schedule.minLR < 0 { try fail("schedule.min_lr", "a number >= 0", schedule.minLR) }
        if schedule.kind == .cosine && schedule.minLR > baseLR {
            let source = optimizer.lrPer256 == nil ? "optimizer.lr" : "the lr optimizer.lr_per_256 gives"
            try fail("schedule.min_lr", "a number <= \(source) (\(baseLR)) for the cosine schedule", schedule.minLR)
        }

        try range("checkpoint.every_steps", checkpoint.everySteps, L.everySteps, " (0 = off)")
        try range("checkpoint.keep", checkpoint.keep, L.keep)

        if output.dir.isEmpty { try fail("output.dir", "a non-empty path", "''") }
        if let problem = pathProblem(output.dir) { try fail("output.dir", problem, "'\(clippedForMessage(output.dir))'") }
        if let w = train.initWeights, let problem = pathProblem(w) {
            try fail("train.init_weights", problem, "'\(clippedForMessage(w))'")
        }
        if let problem = pathProblem(data.root) { try fail("data.root", problem, "'\(clippedForMessage(data.root))'") }
    }
}

// MARK: - Reading YAML and --set through the schema

extension ConfigSchema {
    // MARK: Applying YAML

    static func apply(yaml: String, file: String, to config: inout RunConfig) throws {
        let root = try YAMLLimits.compose(yaml: yaml, file: file)   // size, depth and alias expansion bounded
        guard let root, !isNull(root) else { return }   // empty file: all defaults
        guard case .mapping(let top) = root else {
            throw ConfigError("\(file): expected a mapping of sections (\(sectionNames.joined(separator: ", "))) at the top level, found \(describe(root))")
        }
        for (keyNode, value) in top {
            guard let name = keyNode.scalar?.string else {
                throw ConfigError("\(file): expected a section name at the top level, found \(describe(keyNode))")
            }
            guard let section = section(name) else {
                throw ConfigError("\(file): unknown key '\(clippedForMessage(name, limit: 80))'\(suggestion(name, sectionNames)); valid top-level keys: \(sectionNames.joined(separator: ", "))")
            }
            if isNull(value) { continue }   // "model:" with nothing under it
            guard case .mapping(let fields) = value else {
                throw ConfigError("\(file): \(name): expected a mapping of keys (\(section.fields.map(\.key).joined(separator: ", "))), found \(describe(value))")
            }
            for (fieldKey, fieldValue) in fields {
                guard let key = fieldKey.scalar?.string else {
                    throw ConfigError("\(file): \(name): expected a key, found \(describe(fieldKey))")
                }
                try set(section: section, key: key, value: fieldValue, origin: file, config: &config)
            }
        }
    }

    static func apply(override: String, to config: inout RunConfig) throws {
        let origin = "--set \(clippedForMessage(override, limit: 120))"
        guard let eq = override.firstIndex(of: "=") else {
            throw ConfigError("\(origin): expected section.key=value (e.g. train.epochs=5)")
        }
        let path = override[..<eq].trimmingCharacters(in: .whitespaces)
        let text = String(override[override.index(after: eq)...])
        let parts = path.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
            throw ConfigError("\(origin): expected section.key=value with a key of the form section.key (e.g. train.epochs=5), found key '\(clippedForMessage(String(path), limit: 80))'")
        }
        guard let section = section(parts[0]) else {
            throw ConfigError("\(origin): unknown key '\(clippedForMessage(String(path), limit: 80))': no section '\(clippedForMessage(parts[0], limit: 80))'\(suggestion(parts[0], sectionNames)); valid sections: \(sectionNames.joined(separator: ", "))")
        }
        let node: Node
        do {
            try YAMLLimits.check(yaml: text, file: origin)
            node = try Yams.compose(yaml: text) ?? Node("", .implicit, .plain)
        } catch let e as ConfigError {
            throw e
        } catch {
            throw ConfigError("\(origin): cannot parse value '\(clippedForMessage(text, limit: 80))' as YAML: \(clippedForMessage(String(describing: error), limit: 400))")
        }
        try set(section: section, key: parts[1], value: node, origin: origin, config: &config)
    }

    private static func set(section: ConfigSection, key: String, value: Node, origin: String,
                            config: inout RunConfig) throws {
        let dotted = "\(section.name).\(key)"
        let keys = section.fields.map(\.key)
        guard let field = section.field(key) else {
            throw ConfigError("\(origin): unknown key '\(clippedForMessage(dotted, limit: 80))'\(suggestion(key, keys)); valid keys of section '\(section.name)': \(keys.joined(separator: ", "))")
        }
        if let expected = field.read(&config, value) {
            throw ConfigError("\(origin): \(dotted): expected \(expected), found \(describe(value))")
        }
    }

    // MARK: Helpers

    /// An unquoted scalar (numbers must not be written as quoted strings).
    static func plainScalar(_ node: Node) -> Node.Scalar? {
        guard let s = node.scalar, s.style == .plain || s.style == .any, !isNull(node) else { return nil }
        return s
    }

    static func isNull(_ node: Node) -> Bool {
        guard let s = node.scalar else { return false }
        if s.style != .plain && s.style != .any { return false }
        return ["", "~", "null", "Null", "NULL"].contains(s.string)
    }

    /// The node as a short phrase for messages ("'abc'", "a list ['a', 'b']", "a mapping {x, y}"),
    /// nested lists summarized below depth 2 and the whole clipped (a list of lists of lists
    /// would otherwise print 8^depth items).
    static func describe(_ node: Node) -> String { clippedForMessage(describe(node, depth: 0), limit: 300) }

    private static func describe(_ node: Node, depth: Int) -> String {
        switch node {
        case .scalar(let s):
            if isNull(node) { return "null" }
            return "'\(clippedForMessage(s.string, limit: 80))'"
        case .sequence(let seq):
            if depth >= 2 { return "a list of \(seq.count)" }
            let items = seq.prefix(8).map { describe($0, depth: depth + 1) }.joined(separator: ", ")
            return "a list [\(items)\(seq.count > 8 ? ", ..." : "")]"
        case .mapping(let m):
            let keys = m.prefix(8).compactMap { $0.key.scalar.map { clippedForMessage($0.string, limit: 40) } }.joined(separator: ", ")
            return "a mapping {\(keys)}"
        case .alias:
            return "an alias"
        }
    }

    /// A number YAML reads back as a float with the same value (always with a '.' or inf/nan).
    static func yamlNumber<F: BinaryFloatingPoint & CustomStringConvertible>(_ v: F) -> String {
        if v.isNaN { return ".nan" }
        if v.isInfinite { return v < 0 ? "-.inf" : ".inf" }
        var s = v.description
        if !s.contains(".") {
            if let e = s.firstIndex(where: { $0 == "e" || $0 == "E" }) { s.insert(contentsOf: ".0", at: e) } else { s += ".0" }
        }
        return s
    }

    
    /// " (did you mean 'x'?)" when a valid key is within edit distance 2.
    static func suggestion(_ key: String, _ valid: [String]) -> String {
        let scored = valid.map { ($0, editDistance(key, $0)) }.min { $0.1 < $1.1 }
        guard let (best, d) = scored, d <= max(2, key.count / 3) else { return "" }
        return " (did you mean '\(best)'?)"
    }

    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var prev = Array(0...b.count), cur = [Int](repeating: 0, count: b.count + 1)
        for i in 1...a.count {
            cur[0] = i
            for j in 1...b.count {
                cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            swap(&prev, &cur)
        }
        return prev[b.count]
    }
}
