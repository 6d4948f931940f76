import BMCore
import BMLayers

/// `mlp`: the dense gated MLP as a mixer (no router) — the baseline for MoE.
public final class DenseMLPMixer: Mixer {
    public static let entry = MixerEntry(
        name: "mlp", kind: .channel,
        summary: "dense gated MLP (SwiGLU or GeGLU), the no-router baseline",
        options: [
            .int("ffn", 0, "hidden width F (0 = 4 · d_model)", min: 0),
            .choice("activation", "swiglu", GateActivation.allCases.map(\.rawValue), "gate nonlinearity"),
        ],
        variants: [[:], ["activation": .string("geglu")]],
        build: { ctx, o in DenseMLPMixer(ctx, o) })

    public let mlp: GatedMLP
    public init(_ ctx: MixerContext, _ o: ResolvedOptions) {
        let F = o.int("ffn") > 0 ? o.int("ffn") : 4 * ctx.width
        mlp = GatedMLP(ctx.params, ctx.prefix, d: ctx.width, F: F,
                       activation: GateActivation(rawValue: o.string("activation"))!,
                       init: ctx.hiddenInit(fanIn: ctx.width), outputInit: ctx.outputInit(fanIn: F))
    }
    /// h [T, 2F], a [T, F], backward scratch [T, 3F].
    public func activationFloats(B: Int, L: Int) -> Int { 6 * B * L * mlp.kernel.F }
    public var inWidth: Int { mlp.inWidth }
    public var outWidth: Int { mlp.outWidth }
    public var parameters: [Param] { mlp.parameters }
    public func forward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, B: Int, L: Int) { mlp.forward(x, y, B: B, L: L) }
    public func backward(_ dy: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>, B: Int, L: Int) { mlp.backward(dy, dx, B: B, L: L) }
    public func makeState(batch: Int, maxLength: Int) throws -> MixerState { StatelessState() }
    /// Position by position: nothing carries over between calls.
    public var prefillsInChunks: Bool { true }

    public func prefill(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, B: Int, L: Int, state: MixerState) {
        mlp.forward(x, y, B: B, L: L)
    }
    public func step(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, B: Int, state: MixerState) {
        mlp.forward(x, y, B: B, L: 1)
    }
}
