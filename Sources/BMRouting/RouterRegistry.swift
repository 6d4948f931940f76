import BMCore

/// A registry entry: name, one-line description, options, and how to build it.
public struct RouterEntry: Sendable {
    public let name: String
    public let summary: String
    public let options: [OptionSpec]
    /// Option sets that change the math (gradient-checked by the registry-wide test).
    public let variants: [[String: OptionValue]]
    public let build: @Sendable (ResolvedOptions, _ experts: Int) throws -> Router
    public init(name: String, summary: String, options: [OptionSpec], variants: [[String: OptionValue]] = [[:]],
                build: @escaping @Sendable (ResolvedOptions, Int) throws -> Router) {
        self.name = name; self.summary = summary; self.options = options; self.variants = variants; self.build = build
    }
}

/// All routers by name. To add one: write `Routers/NAME.swift` with a
/// `static let entry: RouterEntry`, and add it here (or `register` it at run time,
/// as a test or an extension module does).
public enum RouterRegistry {
    nonisolated(unsafe) public private(set) static var entries: [RouterEntry] = [
        TopKRouter.entry,
        SinkhornRouter.vanillaEntry,
        SinkhornRouter.fastEntry,
        ExpertChoiceRouter.entry,
        HashRouter.entry,
        RandomRouter.entry,
    ]

    public static var names: [String] { entries.map(\.name) }

    /// Adds a router (replacing one of the same name). Call it before building models.
    public static func register(_ e: RouterEntry) {
        entries.removeAll { $0.name == e.name }
        entries.append(e)
    }

    /// Removes a router added with `register` (a test's toy plugin, after the test).
    public static func remove(_ name: String) { entries.removeAll { $0.name == name } }

    public static func entry(_ name: String, context: String) throws -> RouterEntry {
        try lookup(name, in: entries, named: \.name, kind: "router", context: context)
    }

    /// Builds a router from `{name: …, options…}` (or a bare name).
    public static func build(_ spec: OptionValue, experts: Int, context: String) throws -> (Router, String, ResolvedOptions) {
        var table: [String: OptionValue]
        switch spec {
        case .string(let n): table = ["name": .string(n)]
        case .table(let t): table = t
        default: throw BMError.invalid("\(context): router must be a name or a mapping with 'name', got '\(spec)'")
        }
        guard case .string(let name)? = table.removeValue(forKey: "name") else {
            throw BMError.invalid("\(context): router mapping needs 'name' (one of \(names.joined(separator: ", ")))")
        }
        let e = try entry(name, context: context)
        let r = try e.options.resolve(table, context: "\(context): router '\(name)'")
        do {
            return (try e.build(r, experts), name, r)
        } catch BMError.invalid(let m) where !m.hasPrefix(context) {
            throw BMError.invalid("\(context): \(m)")
        }
    }
}
