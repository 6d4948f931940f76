import Foundation
import BMCore

/// `lossfree`: top-1 routing by the largest sigmoid(logit) plus a per-expert
/// load-balancing bias, in training and evaluation alike — so the model is evaluated
/// (and generates) with the routing it was trained with. Balance comes from the bias,
/// not from a loss (auxiliary-loss-free balancing, Wang et al. 2024, arXiv 2408.15664;
/// DeepSeek-V3): e* = argmax_e sigmoid(logit_e) + b_e — the bias is added to the
/// sigmoid scores, as there — and only selects; the gate is sigmoid(logit_e*) (as
/// BlackMamba's gate), and after every training step
///     b_i ← b_i + rate · sign(mean_j c_j − c_i)      (c_i: tokens routed to expert i)
/// then re-centred to mean 0 (adding one constant to every b changes no choice).
/// The bias is the layer's `router.expert_bias` [E]: saved in checkpoints, never
/// given a gradient, no weight decay. Only past batches' loads move it, so routing
/// stays causal. docs/routing.md.
public final class LossFreeBiasRouter: Router {
    public static let entry = RouterEntry(
        name: "lossfree", summary: "top-1 argmax of sigmoid(logits) + a load-balancing bias updated from past loads (aux-loss-free), sigmoid gate; trains as it evaluates",
        options: [
            .double("rate", 1e-3, "bias update per step (u; 1e-3 in the paper's ablation and DeepSeek-V3)", min: 0),
        ],
        variants: [[:], ["rate": .double(0.05)]],
        build: { o, _ in LossFreeBiasRouter(rate: o.double("rate")) })

    public let rate: Double
    private let probs = FloatBuffer()
    public init(rate: Double) { self.rate = rate }
    public var usesLogits: Bool { true }
    public var allowsCapacity: Bool { false }
    public var isCausal: Bool { true }
    public var usesExpertBias: Bool { true }
    /// The choice: E sigmoids and E bias additions (no gradient, once); the gate (× 3);
    /// the softmax the statistics read (forward only). The bias update is per step, not per token.
    public func flopTerms(E: Int) -> [FlopTerm] {
        [FlopTerm("router choice", (RouterMath.sigmoidFlops + 1) * Double(E)), FlopTerm("router gate", 3 * RouterMath.sigmoidFlops),
         FlopTerm("router softmax (statistics)", RouterMath.softmaxFlops(E))]
    }

    public func assign(_ input: RouteInput, _ a: Assignment, stats: inout RouterStats) {
        let T = input.T, E = input.E, lg = input.logits!, bias = input.expertBias
        a.reset(T)
        for t in 0..<T {
            let row = lg + t * E
            var best = 0, top = sigmoid(row[0]) + (bias?[0] ?? 0)
            for e in 1..<E {
                let v = sigmoid(row[e]) + (bias?[e] ?? 0)
                if v > top { top = v; best = e }
            }
            a.token.pointer[t] = Int32(t)
            a.expert.pointer[t] = Int32(best)
        }
    }

    public func gates(_ input: RouteInput, _ a: Assignment, stats: inout RouterStats) -> (aux: Double, z: Double) {
        RouterMath.sigmoidGates(input, a, probs: probs, stats: &stats)
    }

    public func backward(_ input: RouteInput, _ a: Assignment, dgate: UnsafePointer<Float>, dlogits: UnsafeMutablePointer<Float>) {
        RouterMath.sigmoidGatesBackward(input, a, dgate: dgate, dlogits: dlogits)
    }

    public func updateBias(_ bias: UnsafeMutablePointer<Float>, load: [Int]) {
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
