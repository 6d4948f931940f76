import Foundation
import BMCore

/// `topk`: Switch / Megatron top-k softmax routing with the Switch load-balancing
/// loss and the ST-MoE router z-loss (docs/routing.md).
///   pre_softmax:  P = softmax(logits) over all E; top-k of P; gate = those P (not renormalised)
///   post_softmax: top-k logits; gate = softmax over those k only
///   aux = α · E · Σ_i f_i · mean_x P_i(x)   (f_i: fraction of the T·k assignments to i; constant)
///   z   = β · mean_x logsumexp(logits_x)²
/// With `bias_rate` > 0 (auxiliary-loss-free balancing, `ExpertBias`) the choice is the
/// top-k of P + b (the bias on the softmax scores, for the choice only); the gates,
/// the aux loss (set `aux_loss: 0` for balance from the bias alone) and z are as above.
public final class TopKRouter: Router {
    public static let entry = RouterEntry(
        name: "topk", summary: "top-k of softmax(logits) (Switch/Megatron), load-balancing aux loss and z-loss",
        options: [
            .int("k", 1, "experts per token", min: 1),
            .bool("pre_softmax", true, "softmax over all experts before top-k (gates carry gradient for k = 1)"),
            .double("aux_loss", 0.01, "α of the Switch load-balancing loss", min: 0),
            .double("z_loss", 0.001, "β of the router z-loss", min: 0),
            ExpertBias.option,
        ],
        variants: [[:], ["pre_softmax": .bool(false), "k": .int(2)], ["k": .int(2), "aux_loss": .double(0.5), "z_loss": .double(0.1)],
                   ["k": .int(2), "aux_loss": .double(0), "bias_rate": .double(0.05)]],
        validate: { o, E in
            if o.int("k") > E { throw BMError.invalid("router 'topk': k (\(o.int("k"))) exceeds the number of experts (\(E))") }
        },
        build: { o, _ in
            TopKRouter(k: o.int("k"), preSoftmax: o.bool("pre_softmax"), alpha: o.double("aux_loss"), beta: o.double("z_loss"),
                       biasRate: o.double("bias_rate"))
        })

    public let k: Int, preSoftmax: Bool, alpha: Double, beta: Double, biasRate: Double
    public var expertsPerToken: Double { Double(k) }
    private let P = FloatBuffer(), lse = FloatBuffer(), f = FloatBuffer(), dP = FloatBuffer()
    public init(k: Int, preSoftmax: Bool, alpha: Double, beta: Double, biasRate: Double = 0) {
        self.k = k; self.preSoftmax = preSoftmax; self.alpha = alpha; self.beta = beta; self.biasRate = biasRate
    }
    public var usesExpertBias: Bool { biasRate > 0 }
    public func updateBias(_ bias: UnsafeMutablePointer<Float>, load: [Int]) {
        ExpertBias.update(bias, load: load, rate: biasRate)
    }
    public var usesLogits: Bool { true }
    public var allowsCapacity: Bool { true }
    /// softmax over E with its backward (× 3); the aux loss's mean probabilities (E per token, × 3)
    public func flopTerms(E: Int) -> [FlopTerm] {
        [FlopTerm("router softmax", 3 * RouterMath.softmaxFlops(E))] + (alpha > 0 ? [FlopTerm("router aux loss", 3 * Double(E))] : [])
            + (beta > 0 ? [FlopTerm("router z-loss", 3 * 2)] : [])
            + (biasRate > 0 ? [FlopTerm("router choice bias", Double(E))] : [])
    }
    public var isCausal: Bool { true }

    public func assign(_ input: RouteInput, _ a: Assignment, stats: inout RouterStats) {
        let T = input.T, E = input.E
        let lg = input.logits!
        a.reset(T * k)
        var chosen = [Int](repeating: 0, count: k)
        let fp = f.ensure(E)
        fp.update(repeating: 0, count: E)
        // the scores chosen from: the logits (softmax is monotone), or P + b when balanced by the bias
        var scores = lg
        if usesExpertBias, let bias = input.expertBias {
            let p = P.ensure(T * E)
            RouterMath.softmax(lg, p, T: T, E: E)
            for t in 0..<T { for e in 0..<E { p[t * E + e] += bias[e] } }
            scores = UnsafePointer(p)
        }
        for t in 0..<T {
            let row = scores + t * E
            // top-k by score, ties to the lower index
            for j in 0..<k {
                var best = -1
                for e in 0..<E where !chosen[0..<j].contains(e) && (best < 0 || row[e] > row[best]) { best = e }
                chosen[j] = best
                a.token.pointer[t * k + j] = Int32(t)
                a.expert.pointer[t * k + j] = Int32(best)
                fp[best] += 1
            }
        }
        for e in 0..<E { fp[e] /= Float(T * k) }
    }

    public func gates(_ input: RouteInput, _ a: Assignment, stats: inout RouterStats) -> (aux: Double, z: Double) {
        let T = input.T, E = input.E
        let lg = input.logits!
        let p = P.ensure(T * E), l = lse.ensure(T)
        RouterMath.softmax(lg, p, T: T, E: E, lse: l)
        stats.entropy = RouterMath.meanEntropy(p, T: T, E: E)
        let g = a.gate.pointer
        for t in 0..<T {
            if preSoftmax {
                for j in 0..<k { let i = t * k + j; g[i] = p[t * E + Int(a.expert.pointer[i])] }
            } else {
                var m = -Float.infinity
                for j in 0..<k { m = max(m, lg[t * E + Int(a.expert.pointer[t * k + j])]) }
                var s: Float = 0
                for j in 0..<k { let v = expf(lg[t * E + Int(a.expert.pointer[t * k + j])] - m); g[t * k + j] = v; s += v }
                for j in 0..<k { g[t * k + j] /= s }
            }
        }
        var aux = 0.0, z = 0.0
        if alpha > 0 {
            let fp = f.pointer
            for e in 0..<E {
                var pm = 0.0
                for t in 0..<T { pm += Double(p[t * E + e]) }
                aux += Double(fp[e]) * pm / Double(T)
            }
            aux *= alpha * Double(E)
        }
        if beta > 0 {
            for t in 0..<T { z += Double(l[t]) * Double(l[t]) }
            z *= beta / Double(T)
        }
        stats.auxLoss = aux; stats.zLoss = z
        return (aux, z)
    }

    public func backward(_ input: RouteInput, _ a: Assignment, dgate: UnsafePointer<Float>, dlogits: UnsafeMutablePointer<Float>) {
        let T = input.T, E = input.E
        let p = P.pointer, l = lse.pointer, g = a.gate.pointer, fp = f.pointer
        let dp = dP.ensure(T * E)
        dp.update(repeating: 0, count: T * E)
        dlogits.update(repeating: 0, count: T * E)
        if preSoftmax {
            for i in 0..<(T * k) { dp[Int(a.token.pointer[i]) * E + Int(a.expert.pointer[i])] += dgate[i] }
        } else {
            // softmax over the k chosen logits: dl_j = g_j (dg_j − Σ dg·g)
            for t in 0..<T {
                var s: Float = 0
                for j in 0..<k { s += dgate[t * k + j] * g[t * k + j] }
                for j in 0..<k { let i = t * k + j; dlogits[t * E + Int(a.expert.pointer[i])] += g[i] * (dgate[i] - s) }
            }
        }
        if alpha > 0 {
            let c = Float(alpha * Double(E) / Double(T))
            for t in 0..<T { for e in 0..<E { dp[t * E + e] += c * fp[e] } }
        }
        // through the full softmax: dl = P ⊙ (dP − Σ dP·P)
        for t in 0..<T {
            var s: Float = 0
            for e in 0..<E { s += dp[t * E + e] * p[t * E + e] }
            for e in 0..<E { dlogits[t * E + e] += p[t * E + e] * (dp[t * E + e] - s) }
            if beta > 0 {
                let c = Float(beta * 2 / Double(T)) * l[t]
                for e in 0..<E { dlogits[t * E + e] += c * p[t * E + e] }
            }
        }
    }
}
