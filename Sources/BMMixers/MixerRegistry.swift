import BMCore
import BMLayers

/// All mixers by name. To add one: write `SequenceMixers/NAME.swift` (or
/// `ChannelMixers/`) with a `static let entry: MixerEntry`, and add it here.
public enum MixerRegistry {
    public static let entries: [MixerEntry] = [
        Mamba.entry,
        S4D.entry,
        Attention.entry,
        DenseMLP.entry,
        MoE.entry,
    ]

    public static var names: [String] { entries.map(\.name) }

    public static func entry(_ name: String, context: String) throws -> MixerEntry {
        try lookup(name, in: entries, named: \.name, kind: "mixer", context: context)
    }

    /// Resolves options and builds a mixer; errors name `context` (file and key).
    public static func build(_ name: String, options: [String: OptionValue], in ctx: MixerContext, context: String) throws -> Mixer {
        let e = try entry(name, context: context)
        let r = try e.options.resolve(options, context: "\(context): mixer '\(name)'")
        try e.validate(r, ctx.width, "\(context): mixer '\(name)'")
        var named = ctx
        named.pluginName = name
        return try e.build(named, r)
    }
}
