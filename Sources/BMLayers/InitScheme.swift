/// How the matrices of a model are initialised (`model.init` in a spec; docs/init.md).
///
/// - `megatron`: every projection N(0, 0.02); residual output projections
///   (`out_proj`, `o_proj`, `linear_fc2`) N(0, 0.02 / √(2·layers)). This is the
///   Megatron-LM init that BlackMamba's training code uses (GPT-2's residual scaling).
/// - `mamba`: PyTorch's default `nn.Linear` init, U(−1/√fan_in, 1/√fan_in)
///   (kaiming_uniform with a = √5), for every projection, and residual output
///   projections divided by √layers, as mamba_ssm's `_init_weights`
///   (`rescale_prenorm_residual`, one residual branch per block).
///
/// `layers` is the number of residual blocks of the model (a Mamba block and an MoE
/// block count as two). Embeddings are N(0, `model.init_std`) under both schemes, and
/// the SSM's own parameters (A_log, dt_proj, conv1d, D) have their own inits.
public enum InitScheme: String, Sendable, CaseIterable {
    case megatron, mamba

    /// A projection that reads a hidden vector of width `fanIn` (in_proj, x_proj, q/k/v, fc1, router).
    public func hidden(fanIn: Int) -> Initializer {
        switch self {
        case .megatron: return .normal(std: 0.02)
        case .mamba:
            let b = 1 / Float(max(1, fanIn)).squareRoot()
            return .uniform(-b, b)
        }
    }

    /// A projection that writes into the residual stream (out_proj, o_proj, fc2).
    public func output(fanIn: Int, layers: Int) -> Initializer {
        let n = Float(max(1, layers))
        switch self {
        case .megatron: return .normal(std: 0.02 / (2 * n).squareRoot())
        case .mamba:
            let b = 1 / Float(max(1, fanIn)).squareRoot() / n.squareRoot()
            return .uniform(-b, b)
        }
    }
}
