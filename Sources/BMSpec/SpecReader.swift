import Foundation
import BMCore

/// Where a spec's values came from: its file, and the command-line overrides, whose
/// nodes carry line −(k+1) for override k (`SpecNode.applying(override:index:)`),
/// so that an error names the override rather than a line of the file.
public struct SpecSource: Sendable, Equatable {
    public var file: String
    public var overrides: [String]
    public init(file: String, overrides: [String] = []) { self.file = file; self.overrides = overrides }

    /// "FILE:LINE", "override 'k=v'", or "FILE" (a node with no line).
    public func at(_ line: Int) -> String {
        if line < 0 { return -line - 1 < overrides.count ? "override '\(overrides[-line - 1])'" : "an override" }
        return line > 0 ? "\(file):\(line)" : file
    }
    public func at(_ node: SpecNode) -> String { at(node.line) }
}

/// Reads one mapping of a spec with typed getters. Every error names the file,
/// the line and the dotted key, and says what was expected; `finish()` rejects
/// keys nobody asked for, suggesting the nearest valid name.
struct SpecReader {
    let source: SpecSource
    var file: String { source.file }
    let path: String               // e.g. "train.optimizer"
    let entries: [(key: String, value: SpecNode)]
    let line: Int
    private var used: [String] = []
    private var known: [String] = []

    init(_ node: SpecNode?, source: SpecSource, path: String) throws {
        self.source = source; self.path = path
        switch node {
        case nil: entries = []; line = 0
        case .map(let e, let l)?: entries = e; line = l
        case let other?:
            throw BMError.invalid("\(source.at(other)): \(path.isEmpty ? "the spec" : path) must be a mapping of keys to values")
        }
    }

    func key(_ k: String) -> String { path.isEmpty ? k : "\(path).\(k)" }
    func at(_ node: SpecNode) -> String { source.at(node) }

    mutating func raw(_ k: String) -> SpecNode? {
        if !known.contains(k) { known.append(k) }
        guard let e = entries.first(where: { $0.key == k }) else { return nil }
        if !used.contains(k) { used.append(k) }
        return e.value
    }

    func fail(_ node: SpecNode, _ k: String, _ expected: String) -> BMError {
        var shown = ""
        if case .scalar(let s, _, _) = node { shown = ", got '\(s)'" }
        else if case .list = node { shown = ", got a list" } else { shown = ", got a mapping" }
        return BMError.invalid("\(at(node)): \(key(k)) must be \(expected)\(shown)")
    }

    mutating func int(_ k: String, _ d: Int?, min: Int? = nil, max: Int? = nil) throws -> Int? {
        guard let n = raw(k) else { return d }
        guard case .scalar(let s, true, _) = n, let v = Int(s) else { throw fail(n, k, "an integer") }
        if let min, v < min { throw BMError.invalid("\(at(n)): \(key(k)) must be at least \(min), got \(v)") }
        if let max, v > max { throw BMError.invalid("\(at(n)): \(key(k)) must be at most \(max), got \(v)") }
        return v
    }

    mutating func int(_ k: String, _ d: Int, min: Int? = nil, max: Int? = nil) throws -> Int {
        try int(k, Optional(d), min: min, max: max)!
    }

    mutating func double(_ k: String, _ d: Double, min: Double? = nil, max: Double? = nil) throws -> Double {
        guard let n = raw(k) else { return d }
        guard case .scalar(let s, true, _) = n, let v = Double(s), v.isFinite else { throw fail(n, k, "a number") }
        if let min, v < min { throw BMError.invalid("\(at(n)): \(key(k)) must be at least \(min), got \(v)") }
        if let max, v > max { throw BMError.invalid("\(at(n)): \(key(k)) must be at most \(max), got \(v)") }
        return v
    }

    mutating func double(_ k: String, _ d: Double?, min: Double? = nil, max: Double? = nil) throws -> Double? {
        guard raw(k) != nil else { return d }
        return try double(k, 0, min: min, max: max)
    }

    mutating func bool(_ k: String, _ d: Bool) throws -> Bool {
        guard let n = raw(k) else { return d }
        guard case .scalar(let s, true, _) = n else { throw fail(n, k, "true or false") }
        switch s.lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default: throw fail(n, k, "true or false")
        }
    }

    mutating func string(_ k: String, _ d: String?) throws -> String? {
        guard let n = raw(k) else { return d }
        guard case .scalar(let s, _, _) = n else { throw fail(n, k, "a string") }
        return s
    }

    mutating func choice(_ k: String, _ d: String, _ choices: [String]) throws -> String {
        guard let n = raw(k) else { return d }
        guard case .scalar(let s, _, _) = n else { throw fail(n, k, "one of \(choices.joined(separator: ", "))") }
        guard choices.contains(s) else {
            throw BMError.invalid("\(at(n)): \(key(k)) must be one of \(choices.joined(separator: ", ")), got '\(s)'\(didYouMean(s, in: choices))")
        }
        return s
    }

    mutating func sub(_ k: String) throws -> SpecReader {
        try SpecReader(raw(k), source: source, path: key(k))
    }

    /// Errors on keys that no getter asked for.
    func finish() throws {
        for e in entries where !used.contains(e.key) {
            throw BMError.invalid("\(at(e.value)): unknown key '\(key(e.key))'\(didYouMean(e.key, in: known)); valid keys here: \(known.joined(separator: ", "))")
        }
    }
}
