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
        // A config that loads prints as YAML that loads back to the same config (run folders
        // and checkpoints store it so). Not an expected error: a failure of the target.
        let printed = config.yamlString()
        let again: RunConfig
        do { again = try RunConfig.parse(yaml: printed, file: "round-trip") } catch {
            fatalError("the printed config does not load back (\(error)):\n\(printed)")
        }
        if again != config { fatalError("round trip changed the config:\n\(printed)\nvs\n\(again.yamlString())") }
    } catch {
        FuzzSupport.check(error, allowed: [ConfigError.self])
    }
    return 0
}
