import Foundation
import BMCore

/// `sigmoid-top1`: the routing BlackMamba's released inference code runs (Zyphra's
/// `switch_mlp.py`: `route = sigmoid(router(h))`, `max_prob, max_ind = max(route)`,
/// output = expert_{max_ind}(h) · max_prob) — each token to the expert of its largest
/// sigmoid(logit) (the largest logit, but for float32 ties where sigmoids round to 1),
/// the output scaled by that sigmoid; no Sinkhorn, no capacity, no
/// loss. In training and evaluation alike, so a model is evaluated and generates with
/// the routing it was trained with.
///
/// With `bias_rate` > 0 it is balanced without a loss (`ExpertBias`): the choice is
/// e* = argmax_e sigmoid(logit_e) + b_e (the bias added to the sigmoid scores, as in
/// DeepSeek-V3), the gate still sigmoid(logit_e*) — with top-1, normalising the
/// selected gates would make every gate 1 and leave the router without gradient.
/// `lossfree` is this router with the bias on (rate 1e-3).
public final class SigmoidTop1Router: Router {
    public static let entry = RouterEntry(
        name: "sigmoid-top1", summary: "BlackMamba's released routing: the expert of the largest logit, its output × sigmoid(that logit); no Sinkhorn (bias_rate: aux-loss-free balancing)",
        options: [ExpertBias.option],
        variants: [[:], ["bias_rate": .double(0.05)]],
        build: { o, _ in SigmoidTop1Router(biasRate: o.double("bias_rate")) })

    /// sigmoid-top1 balanced by the bias: the auxiliary-loss-free router of Wang et al.
    public static let lossfreeEntry = RouterEntry(
        name: "lossfree", summary: "top-1 argmax of sigmoid(logits) + a load-balancing bias updated from past loads (aux-loss-free), sigmoid gate; trains as it evaluates",
        options: [
            .double("rate", 1e-3, "bias update per step (u; 1e-3 in the paper's ablation and DeepSeek-V3)", min: 0),
        ],
        variants: [[:], ["rate": .double(0.05)]],
        build: { o, _ in SigmoidTop1Router(biasRate: o.double("rate"), alwaysBiased: true) })

    public let biasRate: Double
    /// `lossfree` keeps its bias (and its checkpoint entry) even at rate 0.
    private let alwaysBiased: Bool
    private let probs = FloatBuffer()
    public init(biasRate: Double, alwaysBiased: Bool = false) { self.biasRate = biasRate; self.alwaysBiased = alwaysBiased }
    public var usesLogits: Bool { true }
    public var allowsCapacity: Bool { false }
    public var isCausal: Bool { true }
    public var usesExpertBias: Bool { alwaysBiased || biasRate > 0 }
    /// The choice: E sigmoids (and E bias additions when balanced; no gradient, once);
    /// the gate (× 3); the softmax the statistics read (forward only). The bias update
    /// is per step, not per token.
    public func flopTerms(E: Int) -> [FlopTerm] {
        [FlopTerm("router choice", (RouterMath.sigmoidFlops + (usesExpertBias ? 1 : 0)) * Double(E)),
         FlopTerm("router gate", 3 * RouterMath.sigmoidFlops), FlopTerm("router softmax (statistics)", RouterMath.softmaxFlops(E))]
    }

    /// e* = the first largest sigmoid(logit_e) (+ b_e), as the released code's torch.max
    /// takes it: in float32 the sigmoids of large logits round to 1, and the first wins.
    public func assign(_ input: RouteInput, _ a: Assignment, stats: inout RouterStats) {
        let T = input.T, E = input.E, lg = input.logits!
        let bias = usesExpertBias ? input.expertBias : nil
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
        ExpertBias.update(bias, load: load, rate: biasRate)
    }
}
