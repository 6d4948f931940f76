import BMCore
import BMLayers

/// `mlp`: the dense gated MLP (SwiGLU or GeGLU) of BMLayers (`GatedMLP`, itself a
/// mixer), the no-router baseline for MoE.
public enum DenseMLP {
    public static let entry = MixerEntry(
        name: "mlp", kind: .channel,
        summary: "dense gated MLP (SwiGLU or GeGLU), the no-router baseline",
        options: [
            .int("ffn", 0, "hidden width F (0 = 4 · d_model)", min: 0),
            .choice("activation", "swiglu", GateActivation.allCases.map(\.rawValue), "gate nonlinearity"),
        ],
        variants: [[:], ["activation": .string("geglu")]],
        build: { ctx, o in
            let F = o.int("ffn") > 0 ? o.int("ffn") : 4 * ctx.width
            return GatedMLP(ctx.params, ctx.prefix, d: ctx.width, F: F,
                            activation: GateActivation(rawValue: o.string("activation"))!,
                            init: ctx.hiddenInit(fanIn: ctx.width), outputInit: ctx.outputInit(fanIn: F))
        })
}
