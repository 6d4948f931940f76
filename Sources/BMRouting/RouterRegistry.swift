import BMCore

/// A registry entry: name, one-line description, options, and how to build it.
public struct RouterEntry: Sendable {
    public let name: String
    public let summary: String
    public let options: [OptionSpec]
    /// Option sets that change the math (gradient-checked by the registry-wide test).
    public let variants: [[String: OptionValue]]
    /// Checks resolved options against the number of experts (e.g. top-k's k ≤ E)
    /// without building the router.
    public let validate: @Sendable (ResolvedOptions, _ experts: Int) throws -> Void
    public let build: @Sendable (ResolvedOptions, _ experts: Int) throws -> Router
    public init(name: String, summary: String, options: [OptionSpec], variants: [[String: OptionValue]] = [[:]],
                validate: @escaping @Sendable (ResolvedOptions, Int) throws -> Void = { _, _ in },
                build: @escaping @Sendable (ResolvedOptions, Int) throws -> Router) {
        self.name = name; self.summary = summary; self.options = options; self.variants = variants
        self.validate = validate; self.build = build
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
        SigmoidTop1Router.lossfreeEntry,
        SigmoidTop1Router.entry,
    ]

    public static var names: [String] { entries.map(\.name) }

    /// Adds a router (replacing one of the same name). Call it before building models.
    public static func register(_ e: RouterEntry) {
        entries.removeAll { $0.name == e.name }
        entries.append(e)
    }

    /// Removes a router added with `register` (a test's toy plugin, after the test).
    public static func remove(_ name: String) { entries.removeAll { $0.name == name } }

    /// The routers that can generate (each token routed without looking at later ones),
    /// as each says of itself when built with its defaults for `experts` experts.
    public static func causalNames(experts: Int) -> [String] {
        entries.compactMap { e in
            guard let o = try? e.options.resolve([:], context: e.name), let r = try? e.build(o, experts) else { return nil }
            return r.isCausal ? e.name : nil
        }
    }

    public static func entry(_ name: String, context: String) throws -> RouterEntry {
        try lookup(name, in: entries, named: \.name, kind: "router", context: context)
    }

    /// Resolves moe's `router` option, a name or `{name: …, options…}`, to the full
    /// table: the name and every option of that router with its default filled in.
    /// Resolving a resolved table gives it back unchanged. (moe's option table calls
    /// this once, when a spec is read; `build` takes its result.)
    @Sendable public static func resolve(_ spec: OptionValue, context: String) throws -> OptionValue {
        let (name, table) = try split(spec, context: context)
        let e = try entry(name, context: context)
        var r = try e.options.resolve(table, context: "\(context): router '\(name)'").values
        r["name"] = .string(name)
        return .table(r)
    }

    /// Checks a resolved router table against the number of experts, without building.
    public static func validate(_ resolved: OptionValue, experts: Int, context: String) throws {
        let (name, table) = try split(resolved, context: context)
        let e = try entry(name, context: context)
        try naming(context) { try e.validate(ResolvedOptions(table), experts) }
    }

    /// Builds a router from a table `resolve` returned (validating it first).
    public static func build(_ resolved: OptionValue, experts: Int, context: String) throws -> (Router, String) {
        try validate(resolved, experts: experts, context: context)
        let (name, table) = try split(resolved, context: context)
        let e = try entry(name, context: context)
        return (try naming(context) { try e.build(ResolvedOptions(table), experts) }, name)
    }

    /// Runs `body`; a plugin's error that does not say where gets `context` in front.
    private static func naming<T>(_ context: String, _ body: () throws -> T) throws -> T {
        do { return try body() } catch BMError.invalid(let m) where !m.hasPrefix(context) {
            throw BMError.invalid("\(context): \(m)")
        }
    }

    /// The router's name and its other options, from a bare name or a table.
    static func split(_ spec: OptionValue, context: String) throws -> (String, [String: OptionValue]) {
        var table: [String: OptionValue]
        switch spec {
        case .string(let n): table = ["name": .string(n)]
        case .table(let t): table = t
        default: throw BMError.invalid("\(context): router must be a name or a mapping with 'name', got '\(spec)'")
        }
        guard case .string(let name)? = table.removeValue(forKey: "name") else {
            throw BMError.invalid("\(context): router mapping needs 'name' (one of \(names.joined(separator: ", ")))")
        }
        return (name, table)
    }
}
