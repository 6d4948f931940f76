import BMCore

/// Per-sequence generation state of a mixer (conv and SSM state, KV cache, …): each
/// mixer declares its own class (`GeneratingMixer.State`) and only ever receives it.
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
///
/// A mixer is written as a `GeneratingMixer`, which declares its state type and
/// implements `makeState`, `prefill` and `step` on that type; the type-erased
/// `makeAnyState` / `prefill(anyState:)` / `step(anyState:)` the model calls come from
/// its extension, so no mixer casts a state or can be handed another mixer's.
public protocol Mixer: SequenceLayer {
    /// A fresh, empty generation state for `batch` sequences (throws when the
    /// mixer cannot generate, e.g. non-causal expert-choice routing).
    func makeAnyState(batch: Int, maxLength: Int) throws -> MixerState
    /// Floats `makeState(batch:maxLength:)` allocates that grow with `maxLength` (a KV
    /// cache); checked against the machine's memory before a generator is built.
    /// Default 0: recurrent and channel mixers keep a state of constant size.
    func stateFloats(batch: Int, maxLength: Int) -> Int
    /// x: [B, L, D] → y: [B, L, D], evaluation mode; leaves `state` after position L−1.
    func prefill(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, B: Int, L: Int, anyState: MixerState, pass: Pass)
    /// True when `prefill` continues from the state it is given (a fresh state is
    /// empty), so a long prompt can be prefilled in chunks with bounded memory.
    var prefillsInChunks: Bool { get }
    /// x: [B, D] → y: [B, D] for the next position; updates `state`.
    func step(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, B: Int, anyState: MixerState, pass: Pass)
    /// Floats the layer's activation caches and scratch hold after a training
    /// forward + backward of [B, L] (what its `FloatBuffer`s grow to). The memory
    /// check before a run (`MemoryEstimate`) adds these up; a test compares them
    /// with the buffers each mixer really allocates.
    func activationFloats(B: Int, L: Int) -> Int

    /// The registry name it was built from (`mamba`, `moe`, …): how reports, the bench
    /// phases and the logs name the layer kind.
    var pluginName: String { get }
    /// Parameters a token uses on average (an MoE layer: the router and its experts per token).
    var activeParameters: Double { get }
    /// Matrix-multiply weights a token uses on average (FLOP counting).
    var activeMatmulWeights: Double { get }
    /// Training FLOPs per token that are not products with weights, term by term
    /// (attention's scores, the scan, the convolution, the router, …; docs/flops.md):
    /// the layer's training FLOPs per token are 6 × activeMatmulWeights + their sum,
    /// summed over layers by `ModelBuilder.counts`.
    func flopTerms(seqLen: Int) -> [FlopTerm]
    /// Where its time goes, phase by phase (`bmlab bench`), when it keeps a timer.
    var phaseTimer: PhaseTimer? { get }
    /// Statistics of the last forward, logged every log step (`router/layer_i/NAME` for MoE).
    var statistics: [(String, LayerStatistic)] { get }
    /// What a reader of the validation loss must know about this layer (e.g. a
    /// non-causal router evaluated causally); nil for most.
    var evaluationNote: String? { get }
    /// A router's logits from the last forward, [B·L, E]; nil for layers without a
    /// learned router (`bmlab eval --router-logits`, the Sinkhorn study).
    var routerLogits: UnsafeBufferPointer<Float>? { get }
    /// Tokens per expert of the last training forward, for a router whose balancing
    /// bias moves with its load (`lossfree`); nil for every other layer. A data-parallel
    /// step routes each shard with `updatesRouterState` off, sums these loads over the
    /// shards and ranks, and moves the bias once with `updateRouterState(load:)` — as one
    /// process moves it from the whole batch's load.
    var routerStateLoad: [Int]? { get }
    func updateRouterState(load: [Int])
}

extension Mixer {
    public var prefillsInChunks: Bool { false }
    public func stateFloats(batch: Int, maxLength: Int) -> Int { 0 }
    public var phaseTimer: PhaseTimer? { nil }
    public var statistics: [(String, LayerStatistic)] { [] }
    public var evaluationNote: String? { nil }
    public var routerLogits: UnsafeBufferPointer<Float>? { nil }
    public var routerStateLoad: [Int]? { nil }
    public func updateRouterState(load: [Int]) {}
    /// Every matrix-multiply weight (2-D `.weight` parameters) is used by every token.
    public var activeMatmulWeights: Double {
        Double(parameters.filter { $0.shape.count == 2 && $0.name.hasSuffix(".weight") }.reduce(0) { $0 + $1.count })
    }
    /// Every parameter is used by every token.
    public var activeParameters: Double { Double(parameters.reduce(0) { $0 + $1.count }) }
    public func flopTerms(seqLen: Int) -> [FlopTerm] { [] }
    /// The sum of `flopTerms`.
    public func extraFlops(seqLen: Int) -> Double { flopTerms(seqLen: seqLen).reduce(0) { $0 + $1.flops } }
}

/// What a mixer author implements for generation, on a state class of the mixer's own.
public protocol GeneratingMixer: Mixer {
    /// The mixer's generation state (`StatelessState` for mixers that keep nothing).
    associatedtype State: MixerState
    /// A fresh, empty state for `batch` sequences of up to `maxLength` tokens (throws
    /// when the mixer cannot generate).
    func makeState(batch: Int, maxLength: Int) throws -> State
    /// x: [B, L, D] → y: [B, L, D], evaluation mode; leaves `state` after position L−1.
    func prefill(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, B: Int, L: Int, state: State, pass: Pass)
    /// x: [B, D] → y: [B, D] for the next position; updates `state`.
    func step(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, B: Int, state: State, pass: Pass)
}

extension GeneratingMixer {
    public func makeAnyState(batch: Int, maxLength: Int) throws -> MixerState {
        try makeState(batch: batch, maxLength: maxLength)
    }
    public func prefill(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, B: Int, L: Int, anyState: MixerState, pass: Pass) {
        prefill(x, y, B: B, L: L, state: own(anyState), pass: pass)
    }
    public func step(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, B: Int, anyState: MixerState, pass: Pass) {
        step(x, y, B: B, state: own(anyState), pass: pass)
    }
    /// The state as this mixer's own type; another mixer's state is a programming error
    /// of the caller (a `GenerationState` keeps one per block, made by that block's mixer).
    private func own(_ state: MixerState) -> State {
        guard let s = state as? State else {
            preconditionFailure("the \(pluginName) mixer was handed a \(type(of: state)) to generate from; it generates only from the \(State.self) its makeState made")
        }
        return s
    }
}

/// A per-step statistic a mixer reports (an MoE layer: its expert load, entropy,
/// Sinkhorn iterations, …), written to metrics.h5 under the mixer's layer.
public enum LayerStatistic: Sendable { case value(Double), count(Int), row([Double]), counts([Int]) }

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
    /// How projections are initialised (`model.init`).
    public let initScheme: InitScheme
    /// The registry name being built (set by the registry; the mixer reports it as `pluginName`).
    public var pluginName = ""
    public init(params: ParameterSet, prefix: String, width: Int, layerIndex: Int, layerCount: Int,
                initScheme: InitScheme) {
        self.params = params; self.prefix = prefix; self.width = width
        self.layerIndex = layerIndex; self.layerCount = layerCount
        self.initScheme = initScheme
    }

    /// Init of a projection reading a hidden vector of width `fanIn`.
    public func hiddenInit(fanIn: Int) -> Initializer { initScheme.hidden(fanIn: fanIn) }
    /// Init of a residual output projection (scaled by the number of layers).
    public func outputInit(fanIn: Int) -> Initializer { initScheme.output(fanIn: fanIn, layers: layerCount) }
}
