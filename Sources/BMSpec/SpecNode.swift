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
        try checkShape(text, file: file)
        let node: Node?
        do { node = try Yams.compose(yaml: text) } catch {
            throw BMError.invalid("\(file): not valid YAML: \(error)")
        }
        guard let node else { return .map([], line: 1) }
        return try convert(node, file: file)
    }

    /// A spec is small and shallow: at most 1 MiB, flow collections nested at most 64
    /// deep and lines indented at most 256 columns. Checked before the YAML parser,
    /// which recurses per level (a file of 20,000 nested brackets would exhaust its stack).
    public static let maxBytes = 1 << 20, maxDepth = 64, maxIndent = 256

    static func checkShape(_ text: String, file: String) throws {
        let bytes = text.utf8
        if bytes.count > maxBytes {
            throw BMError.invalid("\(file): \(bytes.count) bytes; a spec or sweep file is at most \(maxBytes / 1024) KiB")
        }
        var depth = 0, line = 1, column = 0, indenting = true
        for b in bytes {
            switch b {
            case UInt8(ascii: "\n"): line += 1; column = 0; indenting = true; continue
            case UInt8(ascii: " ") where indenting:
                column += 1
                if column > maxIndent { throw BMError.invalid("\(file):\(line): indented more than \(maxIndent) columns; a spec nests far less deep") }
                continue
            case UInt8(ascii: "["), UInt8(ascii: "{"):
                depth += 1
                if depth > maxDepth { throw BMError.invalid("\(file):\(line): lists or mappings nested more than \(maxDepth) deep; a spec nests far less deep") }
            case UInt8(ascii: "]"), UInt8(ascii: "}"): depth = max(0, depth - 1)
            default: break
            }
            indenting = false
        }
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
    public func optionValue(at path: String, source: SpecSource) throws -> OptionValue {
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
            for (k, v) in entries { t[k] = try v.optionValue(at: "\(path).\(k)", source: source) }
            return .table(t)
        case .list:
            throw BMError.invalid("\(source.at(line)): \(path): a list is not a valid option value")
        }
    }
}

// MARK: - Overrides `key.path=value` and `~key.path`

extension SpecNode {
    /// Applies override number `index` of a command line: `a.b.c=value` (value parsed
    /// as YAML; list items addressed by index) or `~a.b.c` (deletes the key, as Hydra).
    /// The nodes it adds carry line −(index+1), so errors can name the override
    /// (`SpecSource.at`).
    public func applying(override: String, index: Int) throws -> SpecNode {
        let line = -(index + 1)
        if override.hasPrefix("~") {
            let path = override.dropFirst().split(separator: ".", omittingEmptySubsequences: false).map(String.init)
            guard !path.isEmpty, !path.contains(where: \.isEmpty), !override.contains("=") else {
                throw BMError.invalid("override '\(override)': expected ~key.path (deletes the key)")
            }
            return try removing(path[...], full: override)
        }
        guard let eq = override.firstIndex(of: "=") else {
            throw BMError.invalid("override '\(override)': expected key.path=value (or ~key.path to delete a key)")
        }
        let path = override[..<eq].split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard !path.isEmpty, !path.contains(where: \.isEmpty) else { throw BMError.invalid("override '\(override)': empty key") }
        let valueText = String(override[override.index(after: eq)...])
        let value = try SpecNode.parse(valueText.isEmpty ? "''" : valueText, file: "override '\(override)'").relabeled(line)
        return try overriding(path, with: value, full: override, line: line)
    }

    /// Sets `path` to `value` (what an override or a sweep axis does). A model's layers
    /// are given either as `layers` or as `pattern` × `repeat`: setting one of them
    /// replaces the other, and `model.layers.i` on a pattern edits its expansion.
    public func overriding(_ path: [String], with value: SpecNode, full: String, line: Int = 0) throws -> SpecNode {
        var node = self
        if path.count >= 2, path[0] == "model", case .map(let top, _) = node,
           let mi = top.firstIndex(where: { $0.key == "model" }), case .map(var m, let ml) = top[mi].value {
            let has = { (k: String) in m.contains { $0.key == k } }
            if path[1] == "layers", has("pattern") {
                // expand pattern × repeat into layers, then edit those
                guard case .list(let items, let pl)? = m.first(where: { $0.key == "pattern" })?.value else {
                    throw BMError.invalid("override '\(full)': model.pattern must be a list to be replaced by model.layers")
                }
                var count = 1
                if let r = m.first(where: { $0.key == "repeat" })?.value {
                    guard case .scalar(let t, _, _) = r, let n = Int(t), n >= 1 else {
                        throw BMError.invalid("override '\(full)': model.repeat must be a positive integer")
                    }
                    count = n
                }
                m.removeAll { $0.key == "pattern" || $0.key == "repeat" }
                m.append(("layers", .list(Array(repeating: items, count: count).flatMap { $0 }, line: pl)))
            } else if path[1] == "pattern" || path[1] == "repeat", has("layers") {
                m.removeAll { $0.key == "layers" }
            }
            var t = top
            t[mi].value = .map(m, line: ml)
            node = .map(t, line: node.line)
        }
        return try node.setting(path[...], to: value, full: full, line: line)
    }

    func setting(_ path: ArraySlice<String>, to value: SpecNode, full: String, line newLine: Int = 0) throws -> SpecNode {
        guard let head = path.first else { return value }
        let rest = path.dropFirst()
        switch self {
        case .map(var entries, let line):
            if let i = entries.firstIndex(where: { $0.key == head }) {
                entries[i].value = try entries[i].value.setting(rest, to: value, full: full, line: newLine)
            } else {
                entries.append((head, try SpecNode.map([], line: newLine).setting(rest, to: value, full: full, line: newLine)))
            }
            return .map(entries, line: line)
        case .list(var items, let line):
            guard let i = Int(head), i >= 0, i < items.count else {
                throw BMError.invalid("override '\(full)': '\(head)' is not an index of the list (0..<\(items.count))")
            }
            items[i] = try items[i].setting(rest, to: value, full: full, line: newLine)
            return .list(items, line: line)
        case .scalar:
            if rest.isEmpty && path.count == 1 {
                return .map([(head, value)], line: newLine)
            }
            throw BMError.invalid("override '\(full)': '\(head)' goes below a plain value")
        }
    }

    func removing(_ path: ArraySlice<String>, full: String) throws -> SpecNode {
        guard let head = path.first else { return self }
        let rest = path.dropFirst()
        switch self {
        case .map(var entries, let line):
            guard let i = entries.firstIndex(where: { $0.key == head }) else {
                throw BMError.invalid("override '\(full)': there is no key '\(head)' to delete\(didYouMean(head, in: entries.map(\.key)))")
            }
            if rest.isEmpty { entries.remove(at: i) } else { entries[i].value = try entries[i].value.removing(rest, full: full) }
            return .map(entries, line: line)
        case .list(var items, let line):
            guard let i = Int(head), i >= 0, i < items.count else {
                throw BMError.invalid("override '\(full)': '\(head)' is not an index of the list (0..<\(items.count))")
            }
            if rest.isEmpty { items.remove(at: i) } else { items[i] = try items[i].removing(rest, full: full) }
            return .list(items, line: line)
        case .scalar:
            throw BMError.invalid("override '\(full)': '\(head)' goes below a plain value")
        }
    }

    /// Keys that hold file paths. A relative path in a spec file is relative to that
    /// file's folder (as `base:` in a sweep), so a spec means the same thing from any
    /// working directory; one given in an override is relative to the working directory.
    public static let pathKeys: [[String]] = [["data", "path"]]

    /// The same tree with the relative paths of `pathKeys` made absolute against `dir`.
    public func resolvingPaths(against dir: String) -> SpecNode {
        var node = self
        for key in SpecNode.pathKeys {
            guard case .scalar(let p, let plain, let line)? = node.value(at: key[...]), !p.isEmpty, !p.hasPrefix("/") else { continue }
            let abs = URL(fileURLWithPath: p, relativeTo: URL(fileURLWithPath: dir, isDirectory: true)).standardizedFileURL.path
            node = (try? node.setting(key[...], to: .scalar(abs, plain: plain, line: line), full: key.joined(separator: "."))) ?? node
        }
        return node
    }

    func value(at path: ArraySlice<String>) -> SpecNode? {
        guard let head = path.first else { return self }
        guard case .map(let e, _) = self, let v = e.first(where: { $0.key == head })?.value else { return nil }
        return v.value(at: path.dropFirst())
    }

    /// The same tree with every line number set to `line`.
    func relabeled(_ line: Int) -> SpecNode {
        switch self {
        case .map(let e, _): return .map(e.map { ($0.key, $0.value.relabeled(line)) }, line: line)
        case .list(let items, _): return .list(items.map { $0.relabeled(line) }, line: line)
        case .scalar(let s, let p, _): return .scalar(s, plain: p, line: line)
        }
    }
}

// MARK: base: another spec file underneath

extension SpecNode {
    /// A spec (or sweep) file may start from another: `base: OTHER.yaml` (relative to
    /// the file's folder) takes that file and merges this one's keys over it — mappings
    /// key by key, anything else (a scalar, a list such as `pattern`) replaced whole. A
    /// base may have a base of its own; a chain that comes back to a file is refused.
    /// `file` is the file this node was read from (its paths already resolved).
    public func applyingBase(file: String, chain: [String] = []) throws -> SpecNode {
        guard case .map(var entries, let line) = self, let bi = entries.firstIndex(where: { $0.key == "base" }) else { return self }
        guard case .scalar(let b, _, _) = entries[bi].value else {
            throw BMError.invalid("\(file):\(entries[bi].value.line): base must be a file name (a spec to start from)")
        }
        entries.remove(at: bi)
        let basePath = URL(fileURLWithPath: b.hasPrefix("/") ? b : ((file as NSString).deletingLastPathComponent as NSString).appendingPathComponent(b))
            .standardizedFileURL.resolvingSymlinksInPath().path
        let seen = chain + [URL(fileURLWithPath: file).standardizedFileURL.resolvingSymlinksInPath().path]
        if seen.contains(basePath) {
            throw BMError.invalid("\(file): base: \(basePath) is already a base of this spec (\((seen + [basePath]).joined(separator: " → ")))")
        }
        guard let text = try? String(contentsOfFile: basePath, encoding: .utf8) else {
            throw BMError.invalid("\(file): base: cannot read \(basePath) (expected a spec file to start from)")
        }
        let baseDir = (basePath as NSString).deletingLastPathComponent
        let base = try SpecNode.parse(text, file: basePath).resolvingPaths(against: baseDir).applyingBase(file: basePath, chain: seen)
        return SpecNode.merge(base, .map(entries, line: line))
    }

    /// `b` over `a`: mappings merged key by key, anything else replaced by `b` — and a
    /// router mapping replaced whole when it names another router (its options do not
    /// carry over), and `layers` and `pattern` (with `repeat`) replacing each other (a
    /// model is given one way).
    public static func merge(_ a: SpecNode, _ b: SpecNode, key: String? = nil) -> SpecNode {
        guard case .map(var ea, let la) = a, case .map(let eb, _) = b else { return b }
        func value(_ e: [(key: String, value: SpecNode)], _ k: String) -> SpecNode? { e.first { $0.key == k }?.value }
        if key == "router", let na = value(ea, "name"), let nb = value(eb, "name"),
           case .scalar(let x, _, _) = na, case .scalar(let y, _, _) = nb, x != y {
            return b
        }
        if value(eb, "layers") != nil { ea.removeAll { $0.key == "pattern" || $0.key == "repeat" } }
        if value(eb, "pattern") != nil { ea.removeAll { $0.key == "layers" } }
        for (k, v) in eb {
            if let i = ea.firstIndex(where: { $0.key == k }) { ea[i].value = merge(ea[i].value, v, key: k) } else { ea.append((k, v)) }
        }
        return .map(ea, line: la)
    }
}
