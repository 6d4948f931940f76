import BMCore

/// `s4d`: the Mamba block with a linear time-invariant SSM (the Mamba paper's
/// key ablation): Δ, B and C are learned per-channel parameters, not functions
/// of the input. Everything else (in_proj, conv, gate, out_proj) is Mamba's.
/// Implementation: `Mamba(…, selective: false)`.
public enum S4D {
    public static let entry = MixerEntry(
        name: "s4d", kind: .sequence,
        summary: "time-invariant SSM (S4D-real): Mamba's block with learned per-channel Δ, B, C",
        options: [
            .int("d_state", 16, "SSM state size N per channel", min: 1, max: 256),
            .int("d_conv", 4, "causal depthwise conv width K", min: 1, max: 16),
            .int("expand", 2, "inner width E = expand · d_model", min: 1, max: 8),
            .double("dt_min", 0.001, "smallest initial Δ", min: 1e-6),
            .double("dt_max", 0.1, "largest initial Δ", min: 1e-6),
            .bool("gate", true, "multiply by silu(z)"),
            .bool("skip_d", true, "D·u skip connection"),
            .int("chunk", 16, "scan chunk length", min: 1),
        ],
        variants: [[:], ["gate": .bool(false), "skip_d": .bool(false)]],
        validate: { o, _, ctx in
            if o.double("dt_min") > o.double("dt_max") { throw BMError.invalid("\(ctx): dt_min must not exceed dt_max") }
        },
        build: { ctx, o in
            var v = o.values
            v["dt_rank"] = .string("auto")
            return Mamba(ctx, ResolvedOptions(v), selective: false)
        })
}
