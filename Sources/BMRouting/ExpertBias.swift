import BMCore

/// Auxiliary-loss-free load balancing (Wang, Gao, Zhao, Sun, Dai 2024, arXiv 2408.15664;
/// DeepSeek-V3): a per-expert bias b [E] added to the routing scores for the choice
/// only — never to the gates, and it gets no gradient — moved after every training
/// step from that step's load:
///     b_i ← b_i + rate · sign(mean_j c_j − c_i)      (c_i: tokens routed to expert i)
/// then re-centred to mean 0 (adding one constant to every b changes no choice). The
/// bias is the MoE layer's `router.expert_bias` [E] (in checkpoints, no weight decay);
/// only past batches' loads move it, so routing stays causal. Routers take it as an
/// option (`bias_rate`, 0 = off): `sigmoid-top1`, `topk`; `lossfree` is sigmoid-top1
/// with it on. docs/routing.md.
public enum ExpertBias {
    /// The option routers declare (`bias_rate`, default 0: off).
    public static let option = OptionSpec.double(
        "bias_rate", 0, "auxiliary-loss-free balancing: a per-expert bias on the routing scores, moved by this much per step against the load (0 = off; 1e-3 in Wang et al. and DeepSeek-V3)", min: 0)

    /// One step's update of `bias` [E] from `load` (tokens per expert).
    public static func update(_ bias: UnsafeMutablePointer<Float>, load: [Int], rate: Double) {
        let E = load.count
        guard E > 0, rate > 0 else { return }
        let mean = Double(load.reduce(0, +)) / Double(E)
        var s = 0.0
        for e in 0..<E {
            let err = mean - Double(load[e])
            bias[e] += Float(rate * (err > 0 ? 1 : err < 0 ? -1 : 0))
            s += Double(bias[e])
        }
        let c = Float(s / Double(E))
        for e in 0..<E { bias[e] -= c }
    }
}
