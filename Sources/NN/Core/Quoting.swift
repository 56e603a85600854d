// One string quoter for JSON (safetensors headers, metrics lines) and YAML double-quoted
// scalars (the resolved config): both read \" \\ \n \r \t and \uXXXX escapes.
import Foundation

public func quotedString(_ s: String) -> String {
    var out = "\""
    for u in s.unicodeScalars {
        switch u {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        default:
            // C0/C1 controls, DEL, the line/paragraph separators and the noncharacters U+FFFE/FFFF
            // are escaped: YAML reads U+0085 inside quotes as a line break and refuses C1 controls
            // raw, so a config printed with them would not load back the same (found by fuzzing).
            let v = u.value
            if v < 0x20 || (0x7f...0x9f).contains(v) || v == 0x2028 || v == 0x2029 || v == 0xfffe || v == 0xffff {
                out += String(format: "\\u%04x", v)
            } else {
                out.unicodeScalars.append(u)
            }
        }
    }
    return out + "\""
}

/// User input quoted in a message, cut to `limit` characters: a message never carries megabytes
/// of a hostile file, key or value.
public func clippedForMessage(_ s: String, limit: Int = 200) -> String {
    if s.utf8.count <= limit { return s }
    let head = s.prefix(limit)
    return head.endIndex == s.endIndex ? s : String(head) + "… (\(s.count) characters in all)"
}
