import Foundation
import Yams
import BMCore

/// A parsed YAML document kept as a tree with line numbers, so every error can
/// name the file, the line and the key path. Overrides (`key.path=value`) edit
/// this tree before it is read into an `ExperimentSpec`.
public indirect enum SpecNode: Sendable, Equatable {
    case map([(key: String, value: SpecNode)], line: Int)
    case list([SpecNode], line: Int)
    /// `plain` scalars are typed (int, number, bool); quoted ones stay strings.
    case scalar(String, plain: Bool, line: Int)

    public static func == (a: SpecNode, b: SpecNode) -> Bool {
        switch (a, b) {
        case let (.map(x, _), .map(y, _)): return x.count == y.count && zip(x, y).allSatisfy { $0.key == $1.key && $0.value == $1.value }
        case let (.list(x, _), .list(y, _)): return x == y
        case let (.scalar(x, p1, _), .scalar(y, p2, _)): return x == y && p1 == p2
        default: return false
        }
    }

    public var line: Int {
        switch self { case .map(_, let l), .list(_, let l), .scalar(_, _, let l): return l }
    }

    /// Parses YAML text; `file` names it in errors.
    public static func parse(_ text: String, file: String) throws -> SpecNode {
        let node: Node?
        do { node = try Yams.compose(yaml: text) } catch {
            throw BMError.invalid("\(file): not valid YAML: \(error)")
        }
        guard let node else { return .map([], line: 1) }
        return try convert(node, file: file)
    }

    static func convert(_ n: Node, file: String) throws -> SpecNode {
        let line = n.mark?.line ?? 0
        switch n {
        case .scalar(let s):
            return .scalar(s.string, plain: s.style == .plain, line: line)
        case .sequence(let seq):
            return .list(try seq.map { try convert($0, file: file) }, line: line)
        case .mapping(let m):
            var out: [(key: String, value: SpecNode)] = []
            for (k, v) in m {
                guard case .scalar(let ks) = k else { throw BMError.invalid("\(file):\(k.mark?.line ?? line): keys must be plain names") }
                if out.contains(where: { $0.key == ks.string }) {
                    throw BMError.invalid("\(file):\(k.mark?.line ?? line): key '\(ks.string)' appears twice")
                }
                out.append((ks.string, try convert(v, file: file)))
            }
            return .map(out, line: line)
        }
    }

    /// The value as a plugin option (scalars typed, mappings as tables).
    public func optionValue(at path: String, file: String) throws -> OptionValue {
        switch self {
        case .scalar(let s, let plain, _):
            guard plain else { return .string(s) }
            if let i = Int(s) { return .int(i) }
            if let d = Double(s), s.rangeOfCharacter(from: .decimalDigits) != nil { return .double(d) }
            switch s.lowercased() {
            case "true", "yes", "on": return .bool(true)
            case "false", "no", "off": return .bool(false)
            default: return .string(s)
            }
        case .map(let entries, _):
            var t: [String: OptionValue] = [:]
            for (k, v) in entries { t[k] = try v.optionValue(at: "\(path).\(k)", file: file) }
            return .table(t)
        case .list:
            throw BMError.invalid("\(file):\(line): \(path): a list is not a valid option value")
        }
    }
}

// MARK: - Overrides `key.path=value`

extension SpecNode {
    /// Applies `a.b.c=value` (value parsed as YAML; list items addressed by index).
    public func applying(override: String, file: String) throws -> SpecNode {
        guard let eq = override.firstIndex(of: "=") else {
            throw BMError.invalid("override '\(override)': expected key.path=value")
        }
        let path = override[..<eq].split(separator: ".").map(String.init)
        guard !path.isEmpty, !path.contains(where: \.isEmpty) else { throw BMError.invalid("override '\(override)': empty key") }
        let valueText = String(override[override.index(after: eq)...])
        let value = try SpecNode.parse(valueText.isEmpty ? "''" : valueText, file: "override '\(override)'")
        return try setting(path[...], to: value, full: path.joined(separator: "."))
    }

    func setting(_ path: ArraySlice<String>, to value: SpecNode, full: String) throws -> SpecNode {
        guard let head = path.first else { return value }
        let rest = path.dropFirst()
        switch self {
        case .map(var entries, let line):
            if let i = entries.firstIndex(where: { $0.key == head }) {
                entries[i].value = try entries[i].value.setting(rest, to: value, full: full)
            } else {
                entries.append((head, try SpecNode.map([], line: 0).setting(rest, to: value, full: full)))
            }
            return .map(entries, line: line)
        case .list(var items, let line):
            guard let i = Int(head), i >= 0, i < items.count else {
                throw BMError.invalid("override '\(full)': '\(head)' is not an index of the list (0..<\(items.count))")
            }
            items[i] = try items[i].setting(rest, to: value, full: full)
            return .list(items, line: line)
        case .scalar:
            if rest.isEmpty && path.count == 1 {
                return .map([(head, value)], line: 0)
            }
            throw BMError.invalid("override '\(full)': '\(head)' goes below a plain value")
        }
    }
}
