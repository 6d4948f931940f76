import Foundation

/// The one JSON convention of every file and `--json` output: `Codable` values with
/// snake_case keys (the style of the HDF5 dataset and attribute names), keys sorted,
/// numbers as numbers. Decoding also accepts camelCase keys (files written before).
public enum JSON {
    public static func encoder(pretty: Bool = false) -> JSONEncoder {
        let e = JSONEncoder()
        e.keyEncodingStrategy = .convertToSnakeCase
        e.outputFormatting = pretty ? [.sortedKeys, .prettyPrinted] : [.sortedKeys]
        return e
    }

    public static func decoder() -> JSONDecoder {
        let d = JSONDecoder()
        d.keyDecodingStrategy = .convertFromSnakeCase
        return d
    }

    /// One line (or pretty-printed) JSON text of `value`.
    public static func text<T: Encodable>(_ value: T, pretty: Bool = false) throws -> String {
        String(decoding: try encoder(pretty: pretty).encode(value), as: UTF8.self)
    }

    /// `camelCase` → `snake_case`, as the encoder writes keys (for key: value text output).
    public static func snakeCase(_ s: String) -> String {
        var out = ""
        for ch in s {
            if ch.isUppercase { if !out.isEmpty { out += "_" }; out += ch.lowercased() } else { out.append(ch) }
        }
        return out
    }
}
