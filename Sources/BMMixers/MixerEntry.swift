import BMCore
import BMLayers

public enum MixerKind: String, Sendable { case sequence, channel }

/// A registry entry: name, one-line description, options, and how to build it.
public struct MixerEntry: Sendable {
    public let name: String
    public let kind: MixerKind
    public let summary: String
    public let options: [OptionSpec]
    /// Option sets that change the math; the registry-wide gradient check and the
    /// parity tests run each of them (at small sizes given in the test).
    public let variants: [[String: OptionValue]]
    /// Validates the options against the model width (e.g. heads must divide d_model).
    public let validate: @Sendable (ResolvedOptions, _ width: Int, _ context: String) throws -> Void
    public let build: @Sendable (MixerContext, ResolvedOptions) throws -> Mixer

    public init(name: String, kind: MixerKind, summary: String, options: [OptionSpec], variants: [[String: OptionValue]] = [[:]],
                validate: @escaping @Sendable (ResolvedOptions, Int, String) throws -> Void = { _, _, _ in },
                build: @escaping @Sendable (MixerContext, ResolvedOptions) throws -> Mixer) {
        self.name = name; self.kind = kind; self.summary = summary; self.options = options
        self.variants = variants; self.validate = validate; self.build = build
    }
}
