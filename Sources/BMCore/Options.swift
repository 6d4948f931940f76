/// Typed plugin options: every mixer and router declares its options (name,
/// type, default, one-line help, validation); specs give values; `resolve`
/// checks them and fills defaults, with errors that name the option and the
/// valid ones.

public enum OptionValue: Sendable, Equatable, CustomStringConvertible {
    case int(Int), double(Double), bool(Bool), string(String)
    /// A nested plugin choice, e.g. `router: {name: sinkhorn-fast, tol: 1e-4}`.
    case table([String: OptionValue])

    public var description: String {
        switch self {
        case .int(let i): return String(i)
        case .double(let d): return "\(d)"
        case .bool(let b): return b ? "true" : "false"
        case .string(let s): return s
        case .table(let t): return "{" + t.keys.sorted().map { "\($0): \(t[$0]!)" }.joined(separator: ", ") + "}"
        }
    }
}

public enum OptionType: String, Sendable {
    case int, double, bool, string, choice, table
}

public struct OptionSpec: Sendable {
    public let name: String
    public let type: OptionType
    public let defaultValue: OptionValue
    public let help: String
    /// Allowed values for `.choice` (strings); for ints/doubles an inclusive range.
    public var choices: [String] = []
    public var range: ClosedRange<Double>? = nil
    /// `auto` accepted for ints (e.g. dt_rank); stored as .string("auto").
    public var allowsAuto = false
    /// For a `.table` naming a nested plugin (moe's `router`): resolves its value to
    /// the full table (name and every option, defaults filled in), once, when the
    /// outer options are resolved. Must accept its own output unchanged.
    public var resolveNested: (@Sendable (OptionValue, _ context: String) throws -> OptionValue)? = nil

    public static func int(_ name: String, _ d: Int, _ help: String, min: Int? = nil, max: Int? = nil, auto: Bool = false) -> OptionSpec {
        var s = OptionSpec(name: name, type: .int, defaultValue: auto && d < 0 ? .string("auto") : .int(d), help: help)
        if min != nil || max != nil { s.range = Double(min ?? Int.min / 2)...Double(max ?? Int.max / 2) }
        s.allowsAuto = auto
        return s
    }
    public static func double(_ name: String, _ d: Double, _ help: String, min: Double? = nil, max: Double? = nil) -> OptionSpec {
        var s = OptionSpec(name: name, type: .double, defaultValue: .double(d), help: help)
        if min != nil || max != nil { s.range = (min ?? -Double.greatestFiniteMagnitude)...(max ?? Double.greatestFiniteMagnitude) }
        return s
    }
    public static func bool(_ name: String, _ d: Bool, _ help: String) -> OptionSpec {
        OptionSpec(name: name, type: .bool, defaultValue: .bool(d), help: help)
    }
    public static func choice(_ name: String, _ d: String, _ choices: [String], _ help: String) -> OptionSpec {
        var s = OptionSpec(name: name, type: .choice, defaultValue: .string(d), help: help)
        s.choices = choices
        return s
    }
    public static func table(_ name: String, _ d: [String: OptionValue], _ help: String,
                             resolve: (@Sendable (OptionValue, String) throws -> OptionValue)? = nil) -> OptionSpec {
        var s = OptionSpec(name: name, type: .table, defaultValue: .table(d), help: help)
        s.resolveNested = resolve
        return s
    }

    /// "d_state: int = 16 — size of the SSM state per channel"
    public var summary: String {
        var t = type.rawValue
        if type == .choice { t = choices.joined(separator: "|") }
        if allowsAuto { t += "|auto" }
        return "\(name): \(t) = \(defaultValue) — \(help)"
    }
}

/// Options after validation: every declared option present with a typed value.
public struct ResolvedOptions: Sendable, Equatable, CustomStringConvertible {
    public var values: [String: OptionValue]
    public init(_ values: [String: OptionValue]) { self.values = values }

    public func int(_ k: String) -> Int {
        switch values[k] { case .int(let i)?: return i; case .double(let d)?: return Int(d); default: preconditionFailure("option \(k) is not an int") }
    }
    /// nil when the value is `auto`.
    public func intOrAuto(_ k: String) -> Int? {
        if case .string("auto")? = values[k] { return nil }
        return int(k)
    }
    public func double(_ k: String) -> Double {
        switch values[k] { case .double(let d)?: return d; case .int(let i)?: return Double(i); default: preconditionFailure("option \(k) is not a number") }
    }
    public func bool(_ k: String) -> Bool {
        if case .bool(let b)? = values[k] { return b }
        preconditionFailure("option \(k) is not a bool")
    }
    public func string(_ k: String) -> String {
        if case .string(let s)? = values[k] { return s }
        preconditionFailure("option \(k) is not a string")
    }
    public func table(_ k: String) -> [String: OptionValue] {
        if case .table(let t)? = values[k] { return t }
        preconditionFailure("option \(k) is not a table")
    }
    public var description: String {
        values.keys.sorted().map { "\($0)=\(values[$0]!)" }.joined(separator: ", ")
    }
}

extension Array where Element == OptionSpec {
    /// Validates `given` against these specs. `context` names the plugin and
    /// where it was configured (e.g. "mixer 'mamba' (model.layers[0])").
    public func resolve(_ given: [String: OptionValue], context: String) throws -> ResolvedOptions {
        var out: [String: OptionValue] = [:]
        let names = map(\.name)
        for key in given.keys.sorted() where !names.contains(key) {
            throw BMError.invalid("\(context): unknown option '\(key)'\(didYouMean(key, in: names)); valid options: \(names.joined(separator: ", "))")
        }
        for spec in self {
            guard let v = given[spec.name] else {
                // a nested plugin's default is resolved too (its options filled in)
                out[spec.name] = spec.resolveNested == nil ? spec.defaultValue : try spec.check(spec.defaultValue, context: context)
                continue
            }
            out[spec.name] = try spec.check(v, context: context)
        }
        return ResolvedOptions(out)
    }
}

extension OptionSpec {
    func check(_ v: OptionValue, context: String) throws -> OptionValue {
        func bad(_ expected: String) -> BMError {
            .invalid("\(context): option '\(name)' must be \(expected), got '\(v)'")
        }
        switch (type, v) {
        case (.int, .string("auto")) where allowsAuto: return v
        case (.int, .int(let i)):
            if let r = range, !r.contains(Double(i)) { throw bad("an integer in \(fmt(r))") }
            return v
        case (.int, .double(let d)) where d == d.rounded():
            return try check(.int(Int(d)), context: context)
        case (.int, _): throw bad(allowsAuto ? "an integer or 'auto'" : "an integer")
        case (.double, .int(let i)): return try check(.double(Double(i)), context: context)
        case (.double, .double(let d)):
            if !d.isFinite { throw bad("a finite number") }
            if let r = range, !r.contains(d) { throw bad("a number in \(fmt(r))") }
            return v
        case (.double, _): throw bad("a number")
        case (.bool, .bool): return v
        case (.bool, .string(let s)) where ["on", "off", "true", "false"].contains(s):
            return .bool(s == "on" || s == "true")
        case (.bool, _): throw bad("true/false (or on/off)")
        case (.choice, .string(let s)):
            if !choices.contains(s) { throw BMError.invalid("\(context): option '\(name)' must be one of \(choices.joined(separator: ", ")), got '\(s)'\(didYouMean(s, in: choices))") }
            return v
        case (.choice, _): throw bad("one of \(choices.joined(separator: ", "))")
        case (.string, .string): return v
        case (.string, _): throw bad("a string")
        case (.table, .table), (.table, .string): return try resolveNested?(v, context) ?? v
        case (.table, _): throw bad("a name or a mapping")
        }
    }

    private func fmt(_ r: ClosedRange<Double>) -> String {
        func f(_ x: Double) -> String { abs(x) > 1e15 ? (x < 0 ? "-∞" : "∞") : (x == x.rounded() ? String(Int(x)) : "\(x)") }
        return "[\(f(r.lowerBound)), \(f(r.upperBound))]"
    }
}
