// The config schema: every YAML key once, with the property it sets, how it is read and
// printed, what it means and whether it may change on resume. Parsing and `--set`
// (ConfigLoader.swift), the printed config.yaml, Codable, the resume check and the README's
// table of keys (`resnet config-reference`) all come from `ConfigSchema.sections`; the defaults
// are `RunConfig()`'s initial values.
import Yams
import NN
import Data

/// One YAML key: how to read it from a node, print it, encode and decode it, and document it.
struct ConfigField {
    let key: String
    /// What the key means (the README table), beyond its default.
    let doc: String
    /// Whether a run may resume from a checkpoint written with another value of this key.
    let resumable: Bool
    /// Reads the node into the config; returns a description of the expected type on failure.
    let read: (inout RunConfig, Node) -> String?
    let write: (RunConfig) -> String
    let encode: (RunConfig, inout KeyedEncodingContainer<ConfigCodingKey>) throws -> Void
    let decode: (inout RunConfig, KeyedDecodingContainer<ConfigCodingKey>) throws -> Void
}

struct ConfigSection {
    let name: String
    /// A note on the whole section (the README table).
    var doc = ""
    let fields: [ConfigField]
    func field(_ key: String) -> ConfigField? { fields.first { $0.key == key } }
}

/// A section or key name as a coding key (the YAML names, snake_case).
struct ConfigCodingKey: CodingKey {
    let stringValue: String
    init(_ s: String) { stringValue = s }
    init?(stringValue: String) { self.stringValue = stringValue }
    var intValue: Int? { nil }
    init?(intValue: Int) { nil }
}

enum ConfigSchema {
    static let sections: [ConfigSection] = [
        ConfigSection(name: "model", fields: [
            int("depth", \.model.depth, doc: oneOf(ResNetSpec.supportedDepths.map(String.init))),
            int("in_channels", \.model.inChannels),
            int("num_classes", \.model.numClasses),
            int("width", \.model.width, doc: "channels of the stem and first stage; 64 is the paper's"),
        ]),
        ConfigSection(name: "data", fields: [
            string("dataset", \.data.dataset, doc: oneOf(DatasetKind.allCases.map(\.rawValue))),
            string("root", \.data.root, doc: "empty: the dataset's own folder, \(DatasetKind.mnist.defaultRoot) for mnist", resumable: true),
            int("image_size", \.data.imageSize, doc: "0 keeps the native size"),
            bool("shuffle", \.data.shuffle),
            bool("augment", \.data.augment, doc: "random crop with padding data.crop_padding + horizontal flip"),
            int("crop_padding", \.data.cropPadding, doc: "pixels of zeros on each side before augment's random crop"),
            bool("normalize", \.data.normalize),
            floats("mean", \.data.mean, doc: "one per input channel, when normalize is on"),
            floats("std", \.data.std, doc: "one per input channel, when normalize is on"),
            int("synthetic_count", \.data.syntheticCount,
                doc: "training images of the synthetic set; its test split has 1/\(RunConfig.DataConfig.syntheticTestDivisor) as many"),
        ]),
        ConfigSection(name: "train", fields: [
            int("batch_size", \.train.batchSize, doc: "the **global** batch"),
            int("epochs", \.train.epochs, resumable: true),
            int("max_steps", \.train.maxSteps, doc: "0 = no limit", resumable: true),
            int("seed", \.train.seed),
            optionalString("init_weights", \.train.initWeights, doc: "a safetensors file with PyTorch names"),
            bool("sync_bn", \.train.syncBN),
            double("bucket_mb", \.train.bucketMB, doc: "MiB per gradient allreduce bucket", resumable: true),
            int("threads", \.train.threads, doc: "0 = cores / local ranks", resumable: true),
            bool("debug", \.train.debug, resumable: true),
            bool("eval_every_epoch", \.train.evalEveryEpoch, resumable: true),
            int("log_every", \.train.logEvery, doc: "steps between metrics lines", resumable: true),
            int("accumulate_steps", \.train.accumulateSteps,
                doc: "micro-batches per optimizer step (gradient accumulation; BN sees micro-batches); must divide each rank's batch"),
            double("label_smoothing", \.train.labelSmoothing, doc: "ε in [0, 1), torch's CrossEntropyLoss(label_smoothing=)"),
            double("collective_timeout_s", \.train.collectiveTimeoutS,
                   doc: "seconds a wait on other ranks may take before the job ends with a message (×\(Int(RunConfig.Train.startupTimeoutFactor)) for startup and the first step); 0 = no watchdog",
                   resumable: true),
            string("trace_steps", \.train.traceSteps, doc: "global steps `--trace FILE` records, \"A-B\" or \"A\"", resumable: true),
        ]),
        ConfigSection(name: "optimizer", doc: "torch.optim.SGD semantics", fields: [
            double("lr", \.optimizer.lr, doc: "ignored when lr_per_256 is set"),
            optionalDouble("lr_per_256", \.optimizer.lrPer256, doc: "linear scaling rule: lr = lr_per_256 × batch_size / 256 (Goyal et al.); null = use lr"),
            double("momentum", \.optimizer.momentum),
            double("weight_decay", \.optimizer.weightDecay),
            bool("nesterov", \.optimizer.nesterov),
        ]),
        ConfigSection(name: "schedule", fields: [
            scheduleKind("kind", \.schedule.kind, doc: oneOf(LRSchedule.Kind.allCases.map(\.rawValue))),
            double("warmup_epochs", \.schedule.warmupEpochs, doc: "linear"),
            int("step_epochs", \.schedule.stepEpochs, doc: "step: lr × gamma every this many epochs"),
            double("gamma", \.schedule.gamma),
            double("min_lr", \.schedule.minLR, doc: "cosine: the lr at the last step"),
        ]),
        ConfigSection(name: "checkpoint", fields: [
            int("every_steps", \.checkpoint.everySteps, doc: "0 = off", resumable: true),
            bool("every_epoch", \.checkpoint.everyEpoch, resumable: true),
            int("keep", \.checkpoint.keep, doc: "how many are kept", resumable: true),
        ]),
        ConfigSection(name: "output", fields: [
            string("dir", \.output.dir, resumable: true),
            bool("tensorboard", \.output.tensorboard, doc: "also write TensorBoard event files in dir", resumable: true),
        ]),
    ]

    static func section(_ name: String) -> ConfigSection? { sections.first { $0.name == name } }
    static var sectionNames: [String] { sections.map(\.name) }

    static func oneOf(_ values: [String]) -> String { "one of " + values.joined(separator: ", ") }

    // MARK: Field kinds

    /// A field of type `T`: `parse` turns a node into a value (nil: not a `T`, described by `expected`).
    static func field<T: Codable>(_ key: String, _ kp: WritableKeyPath<RunConfig, T>, doc: String, resumable: Bool,
                                  expected: String, parse: @escaping (Node) -> T?, print: @escaping (T) -> String) -> ConfigField {
        ConfigField(key: key, doc: doc, resumable: resumable, read: { c, node in
            guard let v = parse(node) else { return expected }
            c[keyPath: kp] = v; return nil
        }, write: { print($0[keyPath: kp]) }, encode: { c, container in
            try container.encode(c[keyPath: kp], forKey: ConfigCodingKey(key))
        }, decode: { c, container in
            if let v = try container.decodeIfPresent(T.self, forKey: ConfigCodingKey(key)) { c[keyPath: kp] = v }
        })
    }

    static func int(_ key: String, _ kp: WritableKeyPath<RunConfig, Int>, doc: String = "", resumable: Bool = false) -> ConfigField {
        field(key, kp, doc: doc, resumable: resumable, expected: "an integer",
              parse: { plainScalar($0).flatMap(Int.construct) }, print: { String($0) })
    }

    static func double(_ key: String, _ kp: WritableKeyPath<RunConfig, Double>, doc: String = "", resumable: Bool = false) -> ConfigField {
        field(key, kp, doc: doc, resumable: resumable, expected: "a number",
              parse: { plainScalar($0).flatMap(Double.construct) }, print: { yamlNumber($0) })
    }

    static func bool(_ key: String, _ kp: WritableKeyPath<RunConfig, Bool>, doc: String = "", resumable: Bool = false) -> ConfigField {
        field(key, kp, doc: doc, resumable: resumable, expected: "a boolean (true or false)",
              parse: { $0.scalar.flatMap(Bool.construct) }, print: { $0 ? "true" : "false" })
    }

    static func string(_ key: String, _ kp: WritableKeyPath<RunConfig, String>, doc: String = "", resumable: Bool = false) -> ConfigField {
        field(key, kp, doc: doc, resumable: resumable, expected: "a string",
              parse: { node in isNull(node) ? nil : node.scalar?.string }, print: quotedString)
    }

    static func optionalString(_ key: String, _ kp: WritableKeyPath<RunConfig, String?>, doc: String = "", resumable: Bool = false) -> ConfigField {
        field(key, kp, doc: doc, resumable: resumable, expected: "a string or null", parse: { node -> String?? in
            if isNull(node) { return .some(nil) }
            return node.scalar.map { .some($0.string) }
        }, print: { $0.map(quotedString) ?? "null" })
    }

    static func optionalDouble(_ key: String, _ kp: WritableKeyPath<RunConfig, Double?>, doc: String = "", resumable: Bool = false) -> ConfigField {
        field(key, kp, doc: doc, resumable: resumable, expected: "a number or null", parse: { node -> Double?? in
            if isNull(node) { return .some(nil) }
            return plainScalar(node).flatMap(Double.construct).map { .some($0) }
        }, print: { $0.map { yamlNumber($0) } ?? "null" })
    }

    static func floats(_ key: String, _ kp: WritableKeyPath<RunConfig, [Float]>, doc: String = "", resumable: Bool = false) -> ConfigField {
        func float(_ n: Node) -> Float? {
            guard let s = plainScalar(n) else { return nil }
            if let f = Float(s.string.replacingOccurrences(of: "_", with: "")) { return f }  // no double rounding
            return Double.construct(from: s).map(Float.init)
        }
        return field(key, kp, doc: doc, resumable: resumable, expected: "a list of numbers (e.g. [0.5, 0.5, 0.5])", parse: { node in
            switch node {
            case .sequence(let seq):
                var out: [Float] = []
                for n in seq { guard let f = float(n) else { return nil }; out.append(f) }
                return out
            case .scalar: return float(node).map { [$0] }   // a lone number is a list of one
            default: return nil
            }
        }, print: { "[" + $0.map { yamlNumber($0) }.joined(separator: ", ") + "]" })
    }

    static func scheduleKind(_ key: String, _ kp: WritableKeyPath<RunConfig, LRSchedule.Kind>, doc: String = "", resumable: Bool = false) -> ConfigField {
        field(key, kp, doc: doc, resumable: resumable, expected: oneOf(LRSchedule.Kind.allCases.map(\.rawValue)),
              parse: { $0.scalar.flatMap { LRSchedule.Kind(rawValue: $0.string) } }, print: { quotedString($0.rawValue) })
    }
}

// MARK: - What the schema gives the rest of the program

extension RunConfig {
    /// The full resolved config as YAML, every key in schema order. Reading it back gives an
    /// equal config.
    public func yamlString() -> String {
        var out = ""
        for section in ConfigSchema.sections {
            out += "\(section.name):\n"
            for f in section.fields { out += "  \(f.key): \(f.write(self))\n" }
        }
        return out
    }

    /// Every key as "section.key" with its value as config.yaml prints it, in schema order.
    public func flatValues() -> [(key: String, value: String)] {
        ConfigSchema.sections.flatMap { s in s.fields.map { ("\(s.name).\($0.key)", $0.write(self)) } }
    }

    /// Stable FNV-1a hash of the canonical YAML.
    public func canonicalHash() -> UInt64 { fnv1a(Array(yamlString().utf8)) }

    /// Valid keys of every section, in schema order ("model" -> ["depth", ...]).
    public static var schemaKeys: [(section: String, keys: [String])] {
        ConfigSchema.sections.map { ($0.name, $0.fields.map(\.key)) }
    }

    /// Config keys ("section.key") that may differ between a checkpoint and the run resuming
    /// from it; every other key changes the model or the run's arithmetic.
    public static let resumableKeys: Set<String> = Set(ConfigSchema.sections.flatMap { s in
        s.fields.filter(\.resumable).map { "\(s.name).\($0.key)" }
    })

    /// The README's table of config keys (`resnet config-reference` prints it): one row per
    /// section, every key with its default and what it means; keys that may change on resume marked.
    public static var referenceTable: String {
        let defaults = RunConfig()
        var out = "| section | keys (default; meaning) |\n|---|---|\n"
        for s in ConfigSchema.sections {
            let keys = s.fields.map { f -> String in
                let note = f.doc.isEmpty ? "" : "; " + f.doc
                return "`\(f.key)`\(f.resumable ? "†" : "") (\(f.write(defaults))\(note))"
            }
            out += "| `\(s.name)` | " + keys.joined(separator: ", ") + (s.doc.isEmpty ? "" : " — " + s.doc) + " |\n"
        }
        return out + "\n† may change when a run resumes from a checkpoint; every other key is fixed for the run.\n"
    }
}

extension RunConfig: Codable {
    public init(from decoder: Decoder) throws {
        self.init()
        let top = try decoder.container(keyedBy: ConfigCodingKey.self)
        for s in ConfigSchema.sections where top.contains(ConfigCodingKey(s.name)) {
            let section = try top.nestedContainer(keyedBy: ConfigCodingKey.self, forKey: ConfigCodingKey(s.name))
            for f in s.fields { try f.decode(&self, section) }
        }
    }

    public func encode(to encoder: Encoder) throws {
        var top = encoder.container(keyedBy: ConfigCodingKey.self)
        for s in ConfigSchema.sections {
            var section = top.nestedContainer(keyedBy: ConfigCodingKey.self, forKey: ConfigCodingKey(s.name))
            for f in s.fields { try f.encode(self, &section) }
        }
    }
}
