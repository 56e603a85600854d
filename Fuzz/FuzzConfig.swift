// Fuzz target: the YAML config loader. The input is YAML text (invalid UTF-8 is repaired), or,
// when it starts with "--set ", one override applied to the defaults. Inputs YAMLLimits
// refuses are skipped: the loader runs them through YAMLLimits first (ConfigLoader ->
// YAMLLimits.compose), and the limits themselves are covered by their own tests.
import Training

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzConfig(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    do {
        let config: RunConfig
        if text.hasPrefix("--set ") {
            let override = String(text.dropFirst(6))
            if let eq = override.firstIndex(of: "=") {
                do { try YAMLLimits.check(yaml: String(override[override.index(after: eq)...]), file: "--set") } catch { return 0 }
            }
            config = try RunConfig.parse(yaml: "", file: "fuzz.yaml", overrides: [override])
        } else {
            do { try YAMLLimits.check(yaml: text, file: "fuzz.yaml") } catch { return 0 }
            config = try RunConfig.parse(yaml: text, file: "fuzz.yaml")
        }
        // A config that loads prints as YAML that loads back to the same config.
        let again = try RunConfig.parse(yaml: config.yamlString(), file: "round-trip")
        precondition(again == config, "round trip changed the config:\n\(config.yamlString())\nvs\n\(again.yamlString())")
    } catch {
        FuzzSupport.check(error, allowed: [ConfigError.self])
    }
    return 0
}
