import BMCore
import BMLayers

/// Per-sequence generation state of a mixer (conv and SSM state, KV cache, …).
public protocol MixerState: AnyObject {
    /// Bytes held by this state (for the generation-memory benchmark).
    var bytes: Int { get }
}

/// A mixer: a `SequenceLayer` [B, L, D] → [B, L, D] (causal along L) that can
/// also generate: `prefill` runs a prompt in parallel and leaves the state at its
/// end; `step` advances one token, in constant time for recurrent mixers.
///
/// Sequence mixers (mamba, s4d, attention) and channel mixers (mlp, moe) are both
/// mixers: a model is a list of them, each in a pre-norm residual block.
public protocol Mixer: SequenceLayer {
    /// A fresh, empty generation state for `batch` sequences (throws when the
    /// mixer cannot generate, e.g. non-causal expert-choice routing).
    func makeState(batch: Int, maxLength: Int) throws -> MixerState
    /// x: [B, L, D] → y: [B, L, D], evaluation mode; leaves `state` after position L−1.
    func prefill(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, B: Int, L: Int, state: MixerState)
    /// True when `prefill` continues from the state it is given (a fresh state is
    /// empty), so a long prompt can be prefilled in chunks with bounded memory.
    var prefillsInChunks: Bool { get }
    /// x: [B, D] → y: [B, D] for the next position; updates `state`.
    func step(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, B: Int, state: MixerState)
    /// Floats the layer's activation caches and scratch hold after a training
    /// forward + backward of [B, L] (what its `FloatBuffer`s grow to). The memory
    /// check before a run (`MemoryEstimate`) adds these up; a test compares them
    /// with the buffers each mixer really allocates.
    func activationFloats(B: Int, L: Int) -> Int
}

/// A mixer that can say where its time goes (`bmlab bench mixers`, `bench moe`):
/// its timer, off by default, accumulates wall time per phase of forward and backward.
public protocol PhaseProfiled: AnyObject {
    var timer: PhaseTimer { get }
}

extension Mixer {
    public var prefillsInChunks: Bool { false }
}

/// State of mixers that look at one token at a time (mlp, moe): nothing to keep.
public final class StatelessState: MixerState {
    public init() {}
    public var bytes: Int { 0 }
}

/// What a mixer's builder receives.
public struct MixerContext {
    public let params: ParameterSet
    /// Parameter name prefix, e.g. "decoder.layers.3.mixer".
    public let prefix: String
    public let width: Int
    /// Layer index and total number of layers (for residual-output init scaling).
    public let layerIndex: Int, layerCount: Int
    public let step: StepContext
    /// How projections are initialised (`model.init`).
    public let initScheme: InitScheme
    public init(params: ParameterSet, prefix: String, width: Int, layerIndex: Int, layerCount: Int, step: StepContext,
                initScheme: InitScheme = .megatron) {
        self.params = params; self.prefix = prefix; self.width = width
        self.layerIndex = layerIndex; self.layerCount = layerCount; self.step = step
        self.initScheme = initScheme
    }

    /// Init of a projection reading a hidden vector of width `fanIn`.
    public func hiddenInit(fanIn: Int) -> Initializer { initScheme.hidden(fanIn: fanIn) }
    /// Init of a residual output projection (scaled by the number of layers).
    public func outputInit(fanIn: Int) -> Initializer { initScheme.output(fanIn: fanIn, layers: layerCount) }
}

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
