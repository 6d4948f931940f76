import BMCore

/// `s4d`: the Mamba block with a linear time-invariant SSM (the Mamba paper's
/// key ablation): Δ, B and C are learned per-channel parameters, not functions
/// of the input. Everything else (in_proj, conv, gate, out_proj) is Mamba's.
/// Implementation: `Mamba(…, selective: false)`.
public enum S4D {
    public static let entry = MixerEntry(
        name: "s4d", kind: .sequence,
        summary: "time-invariant SSM (S4D-real): Mamba's block with learned per-channel Δ, B, C",
        options: Mamba.blockOptions,
        variants: [[:], ["gate": .bool(false), "skip_d": .bool(false)]],
        validate: Mamba.validateDt,
        build: { ctx, o in
            var v = o.values
            v["dt_rank"] = .string("auto")
            return Mamba(ctx, ResolvedOptions(v), selective: false)
        })
}
