import Foundation
import BMCore

/// `sinkhorn` (Megatron-LM) and `sinkhorn-fast` (BlackMamba): top-1 routing where
/// training picks e* = argmax_j P_xj of the Sinkhorn-balanced P (no gradient) and
/// evaluation/generation picks argmax of the logits; the gate is sigmoid(logit_x,e*)
/// in both, and it is the only path of the gradient to the router. No aux loss,
/// no capacity, no dropping. The two differ only in their defaults (Sinkhorn.swift).
public final class SinkhornRouter: Router {
    static func commonOptions(_ d: SinkhornConfig) -> [OptionSpec] { [
        .double("temperature", d.temperature, "K = exp(logits / temperature)", min: 1e-3),
        .choice("init", d.initialization.rawValue, SinkhornConfig.Init.allCases.map(\.rawValue), "initial column scaling d1: ones, or column-normalising (BlackMamba)"),
        .double("tol", d.tol, "stopping tolerance", min: 0),
        .choice("tol_mode", d.tolMode.rawValue, SinkhornConfig.TolMode.allCases.map(\.rawValue), "what the tolerance is compared with"),
        .int("max_iter", d.maxIter, "iteration cap (reaching it is reported as non-convergence)", min: 1),
    ] }

    /// The Sinkhorn settings of a resolved option table (the Sinkhorn study reads its variants through this).
    public static func config(_ o: ResolvedOptions) -> SinkhornConfig {
        SinkhornConfig(temperature: o.double("temperature"), initialization: .init(rawValue: o.string("init"))!,
                       tol: o.double("tol"), tolMode: .init(rawValue: o.string("tol_mode"))!, maxIter: o.int("max_iter"))
    }

    public static let vanillaEntry = RouterEntry(
        name: "sinkhorn", summary: "top-1 Sinkhorn routing as Megatron-LM (exp(logits), ones init), sigmoid gate",
        options: commonOptions(.vanilla), build: { o, _ in SinkhornRouter(config(o)) })
    public static let fastEntry = RouterEntry(
        name: "sinkhorn-fast", summary: "BlackMamba's fast Sinkhorn: temperature 0.5, column-normalising init (1 iteration)",
        options: commonOptions(.fast), build: { o, _ in SinkhornRouter(config(o)) })

    public let config: SinkhornConfig
    private let sinkhorn = Sinkhorn(), P = FloatBuffer(), probs = FloatBuffer()
    public init(_ config: SinkhornConfig) { self.config = config }
    public var usesLogits: Bool { true }
    public var allowsCapacity: Bool { false }
    /// Sinkhorn, once (its choice has no gradient): K = exp(logits / temperature), 2E
    /// per token, then per iteration 4E (the column and the row scaling, a product and
    /// a sum each), counted at ONE iteration — the fast variant's usual count; a run
    /// logs the real one (router/layer_i/sinkhorn_iters), each further iteration adds
    /// 4E. The sigmoid gate (× 3) and the softmax the statistics read (forward only).
    public func flopTerms(E: Int) -> [FlopTerm] {
        [FlopTerm("sinkhorn (1 iteration)", 2 * Double(E) + 4 * Double(E)),
         FlopTerm("router gate", 3 * RouterMath.sigmoidFlops), FlopTerm("router softmax (statistics)", RouterMath.softmaxFlops(E))]
    }
    public var isCausal: Bool { true }

    public func assign(_ input: RouteInput, _ a: Assignment, stats: inout RouterStats) {
        let T = input.T, E = input.E
        let lg = input.logits!
        var src = lg
        if input.mode == .train {
            let p = P.ensure(T * E)
            let r = sinkhorn.run(lg, T: T, E: E, config: config, P: p)
            stats.sinkhornIterations = r.iterations
            stats.sinkhornConverged = r.converged
            stats.rowError = r.rowError; stats.colError = r.colError
            src = UnsafePointer(p)
        }
        RouterMath.assignArgmax(a, scores: src, T: T, E: E)
    }

    public func gates(_ input: RouteInput, _ a: Assignment, stats: inout RouterStats) -> (aux: Double, z: Double) {
        RouterMath.sigmoidGates(input, a, probs: probs, stats: &stats)
    }

    public func backward(_ input: RouteInput, _ a: Assignment, dgate: UnsafePointer<Float>, dlogits: UnsafeMutablePointer<Float>) {
        RouterMath.sigmoidGatesBackward(input, a, dgate: dgate, dlogits: dlogits)
    }
}
