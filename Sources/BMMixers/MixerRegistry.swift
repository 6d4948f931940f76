import BMCore
import BMLayers
import BMRouting

/// All mixers by name. To add one: write `SequenceMixers/NAME.swift` (or
/// `ChannelMixers/`) with a `static let entry: MixerEntry`, and add it here (or
/// `register` it at run time, as a test or an extension module does).
public enum MixerRegistry {
    nonisolated(unsafe) public private(set) static var entries: [MixerEntry] = [
        Mamba.entry,
        Mamba2.entry,
        S4D.entry,
        Attention.entry,
        DenseMLP.entry,
        MoE.entry,
    ]

    public static var names: [String] { entries.map(\.name) }

    /// Adds a mixer (replacing one of the same name). Call it before building models.
    public static func register(_ e: MixerEntry) {
        entries.removeAll { $0.name == e.name }
        entries.append(e)
    }

    /// Removes a mixer added with `register` (a test's toy plugin, after the test).
    public static func remove(_ name: String) { entries.removeAll { $0.name == name } }

    /// What `bmlab list` prints: every mixer and router with its summary (and options).
    public static func listing(short: Bool) -> String {
        var out = "Mixers (model.layers entries):\n"
        for e in entries {
            out += "  \(e.name.padding(toLength: 12, withPad: " ", startingAt: 0)) [\(e.kind.rawValue)] \(e.summary)\n"
            if !short { for o in e.options { out += "      \(o.summary)\n" } }
        }
        out += "\nRouters (moe's router option):\n"
        for e in RouterRegistry.entries {
            out += "  \(e.name.padding(toLength: 14, withPad: " ", startingAt: 0)) \(e.summary)\n"
            if !short { for o in e.options { out += "      \(o.summary)\n" } }
        }
        return out
    }

    public static func entry(_ name: String, context: String) throws -> MixerEntry {
        try lookup(name, in: entries, named: \.name, kind: "mixer", context: context)
    }

    /// Resolves a mixer's options (defaults filled in, nested router resolved) and checks
    /// them against the model width; errors name `context` (file and key).
    public static func resolve(_ name: String, options: [String: OptionValue], width: Int, context: String) throws -> ResolvedOptions {
        let e = try entry(name, context: context)
        let r = try e.options.resolve(options, context: "\(context): mixer '\(name)'")
        try e.validate(r, width, "\(context): mixer '\(name)'")
        return r
    }

    /// Builds a mixer from options `resolve` returned (a spec keeps them per layer).
    public static func build(_ name: String, resolved r: ResolvedOptions, in ctx: MixerContext, context: String) throws -> Mixer {
        let e = try entry(name, context: context)
        var named = ctx
        named.pluginName = name
        return try e.build(named, r)
    }

    /// Resolves options and builds a mixer (tests and benchmarks, which have no spec).
    public static func build(_ name: String, options: [String: OptionValue], in ctx: MixerContext, context: String) throws -> Mixer {
        try build(name, resolved: try resolve(name, options: options, width: ctx.width, context: context), in: ctx, context: context)
    }
}
