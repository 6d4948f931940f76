import Foundation
import BMCore

/// `expert-choice` (Zhou et al. 2022): S = softmax(logits); each expert takes its
/// top ⌈T·c/E⌉ tokens by S; gate = S. A token may go to several experts or none.
/// It looks at the whole batch, so training with it is not causal, and generation
/// refuses it. Evaluation routes causally instead: each token to the expert with
/// its largest S (token choice, top-1, gate = S), so that its validation loss is
/// comparable with the causal routers' (docs/routing.md; reports mark it).
public final class ExpertChoiceRouter: Router {
    public static let entry = RouterEntry(
        name: "expert-choice", summary: "each expert picks its top tokens (Zhou et al. 2022); non-causal training, causal top-1 evaluation, no generation",
        options: [.double("capacity_factor", 1.0, "c: each expert takes ⌈T·c/E⌉ tokens", min: 0.01)],
        variants: [[:], ["capacity_factor": .double(2.0)]],
        build: { o, _ in ExpertChoiceRouter(capacityFactor: o.double("capacity_factor")) })

    public let capacityFactor: Double
    public var expertsPerToken: Double { capacityFactor }
    private let S = FloatBuffer(), dS = FloatBuffer()
    public init(capacityFactor: Double) { self.capacityFactor = capacityFactor }
    public var usesLogits: Bool { true }
    public var allowsCapacity: Bool { false }
    public var isCausal: Bool { false }
    /// softmax over E (the choice and the gates) with its backward (× 3); the
    /// selection's comparisons are not counted as FLOPs.
    public func flopTerms(E: Int) -> [FlopTerm] { [FlopTerm("router softmax", 3 * RouterMath.softmaxFlops(E))] }
    /// How the validation loss of a model with this router is computed (reports say it).
    public static let evaluationNote = "expert-choice: trained non-causally (experts pick from the whole batch); validation routes causally, each token to its top expert"
    public var evaluationNote: String? { Self.evaluationNote }

    public func capacity(T: Int, E: Int) -> Int { min(T, Int((Double(T) * capacityFactor / Double(E)).rounded(.up))) }

    public func assign(_ input: RouteInput, _ a: Assignment, stats: inout RouterStats) {
        let T = input.T, E = input.E
        let s = S.ensure(T * E)
        RouterMath.softmax(input.logits!, s, T: T, E: E)
        if input.mode != .train {
            // causal evaluation: every token to its own best expert
            RouterMath.assignArgmax(a, scores: UnsafePointer(s), T: T, E: E)
            return
        }
        let cap = capacity(T: T, E: E)
        a.reset(E * cap)
        var order = Array(0..<T)
        for e in 0..<E {
            // top-cap tokens by S[:, e]; ties to the earlier token
            order.sort { s[$0 * E + e] > s[$1 * E + e] || (s[$0 * E + e] == s[$1 * E + e] && $0 < $1) }
            let picked = order[0..<cap].sorted()
            for (j, t) in picked.enumerated() {
                a.token.pointer[e * cap + j] = Int32(t)
                a.expert.pointer[e * cap + j] = Int32(e)
            }
        }
    }

    public func gates(_ input: RouteInput, _ a: Assignment, stats: inout RouterStats) -> (aux: Double, z: Double) {
        let T = input.T, E = input.E
        let s = S.ensure(T * E)
        RouterMath.softmax(input.logits!, s, T: T, E: E)
        stats.entropy = RouterMath.meanEntropy(s, T: T, E: E)
        for i in 0..<a.count { a.gate.pointer[i] = s[Int(a.token.pointer[i]) * E + Int(a.expert.pointer[i])] }
        return (0, 0)
    }

    public func backward(_ input: RouteInput, _ a: Assignment, dgate: UnsafePointer<Float>, dlogits: UnsafeMutablePointer<Float>) {
        let T = input.T, E = input.E
        let s = S.pointer, d = dS.ensure(T * E)
        d.update(repeating: 0, count: T * E)
        for i in 0..<a.count { d[Int(a.token.pointer[i]) * E + Int(a.expert.pointer[i])] += dgate[i] }
        for t in 0..<T {
            var dot: Float = 0
            for e in 0..<E { dot += d[t * E + e] * s[t * E + e] }
            for e in 0..<E { dlogits[t * E + e] = s[t * E + e] * (d[t * E + e] - dot) }
        }
    }
}
