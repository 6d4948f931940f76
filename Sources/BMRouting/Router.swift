import BMCore

/// What a router sees for one MoE forward: the router logits (absent for routers
/// without parameters), the token ids, and the mode.
public struct RouteInput {
    public let logits: UnsafePointer<Float>?   // [T, E]
    public let tokens: UnsafePointer<Int32>?   // [T]
    public let T: Int, E: Int
    public let mode: Mode
    /// Seed for routers that draw random numbers (fixed per step, so runs are reproducible).
    public let seed: UInt64
    /// The layer's load-balancing bias [E], for routers with `usesExpertBias`.
    public let expertBias: UnsafePointer<Float>?
    public init(logits: UnsafePointer<Float>?, tokens: UnsafePointer<Int32>?, T: Int, E: Int, mode: Mode, seed: UInt64,
                expertBias: UnsafePointer<Float>? = nil) {
        self.logits = logits; self.tokens = tokens; self.T = T; self.E = E; self.mode = mode; self.seed = seed
        self.expertBias = expertBias
    }
}

/// A routing decision: a flat list of assignments (token → expert with a gate).
/// Top-k routers make T·k of them; expert choice makes E·capacity. An assignment
/// whose expert is −1 was dropped by a capacity limit (only the residual passes).
public final class Assignment {
    public var count = 0
    public let token = IntBuffer(), expert = IntBuffer()
    /// Gate values, filled by `Router.gates`.
    public let gate = FloatBuffer()
    public init() {}

    public func reset(_ n: Int) {
        count = n
        token.ensure(n); expert.ensure(n); gate.ensure(n)
    }
}

/// Per-step statistics a router reports (docs/routing.md); losses are already scaled.
public struct RouterStats: Sendable {
    public var load: [Int] = []              // tokens (assignments) per expert, after dropping
    public var dropped = 0                   // assignments dropped by a capacity limit
    public var assignments = 0
    public var entropy = 0.0                 // mean over tokens of the softmax(logits) entropy (nats)
    public var auxLoss = 0.0, zLoss = 0.0
    public var sinkhornIterations = 0
    public var sinkhornConverged = true
    public var rowError = 0.0, colError = 0.0  // final Sinkhorn marginal errors (relative)

    public init() {}
    public var loadMaxOverMean: Double {
        let m = Double(load.reduce(0, +)) / Double(max(1, load.count))
        return m > 0 ? Double(load.max() ?? 0) / m : 0
    }
    public var loadCV: Double {
        let n = Double(max(1, load.count))
        let m = Double(load.reduce(0, +)) / n
        guard m > 0 else { return 0 }
        let v = load.reduce(0.0) { $0 + (Double($1) - m) * (Double($1) - m) } / n
        return v.squareRoot() / m
    }
    public var droppedFraction: Double { assignments > 0 ? Double(dropped) / Double(assignments) : 0 }
}

/// A router: chooses experts (`assign`, discrete, no gradient) and computes the
/// differentiable gate values and losses for a given assignment (`gates`), so a
/// gradient check can hold the assignment fixed and call only `gates`.
/// Gradients reach the router only through the gates and its own losses.
public protocol Router: AnyObject {
    /// Whether the MoE layer needs a router Linear (false for hash and random routing).
    var usesLogits: Bool { get }
    /// Whether the layer may apply a capacity limit after routing (Sinkhorn: never).
    var allowsCapacity: Bool { get }
    /// Whether it can route one token at a time (false for expert choice).
    var isCausal: Bool { get }
    /// Experts a token uses on average in training (k for top-k, the capacity factor
    /// for expert choice): the MoE layer's active parameters and FLOPs follow it.
    var expertsPerToken: Double { get }
    /// What a reader of its validation loss must know (nil for most routers): stored
    /// as `eval`'s `routing_note` attribute in metrics.h5 and printed under reports.
    var evaluationNote: String? { get }
    /// Chooses the assignments (tokens, experts) and fills `stats` (load before dropping, Sinkhorn figures).
    func assign(_ input: RouteInput, _ a: Assignment, stats: inout RouterStats)
    /// Training FLOPs per token of the routing itself for E experts (the router's
    /// Linear is a weight product, counted by the MoE layer): softmax, Sinkhorn, gates.
    func flopTerms(E: Int) -> [FlopTerm]
    /// Whether the layer keeps a per-expert bias [E] for this router (`router.expert_bias`:
    /// in checkpoints, no gradient, no weight decay), read in `RouteInput.expertBias`.
    var usesExpertBias: Bool { get }
    /// After a training forward (not a gradient check's): moves the bias from that
    /// forward's load (tokens per expert). Only past loads, so routing stays causal.
    func updateBias(_ bias: UnsafeMutablePointer<Float>, load: [Int])
    /// Fills `a.gate` for the current assignments and returns (aux, z) losses; caches what backward needs.
    func gates(_ input: RouteInput, _ a: Assignment, stats: inout RouterStats) -> (aux: Double, z: Double)
    /// dgate: [count] → dlogits: [T, E] (overwritten), including the aux / z loss gradients.
    func backward(_ input: RouteInput, _ a: Assignment, dgate: UnsafePointer<Float>, dlogits: UnsafeMutablePointer<Float>)
}

extension Router {
    public var expertsPerToken: Double { 1 }
    public var evaluationNote: String? { nil }
    public var usesExpertBias: Bool { false }
    public func flopTerms(E: Int) -> [FlopTerm] { [] }
    public func updateBias(_ bias: UnsafeMutablePointer<Float>, load: [Int]) {}
}

/// Shared helpers for routers.
public enum RouterMath {
    /// Row-wise softmax of logits [T, E] into p, and each row's logsumexp into lse (if given).
    public static func softmax(_ logits: UnsafePointer<Float>, _ p: UnsafeMutablePointer<Float>, T: Int, E: Int,
                               lse: UnsafeMutablePointer<Float>? = nil) {
        for t in 0..<T {
            let r = logits + t * E, o = p + t * E
            var m = r[0]
            for e in 1..<max(E, 1) where r[e] > m { m = r[e] }
            var s: Float = 0
            for e in 0..<E { o[e] = expf(r[e] - m); s += o[e] }
            for e in 0..<E { o[e] /= s }
            lse?[t] = m + logf(s)
        }
    }

    /// Forward FLOPs of a row softmax over E (max, subtract, exp, sum, divide).
    public static func softmaxFlops(_ E: Int) -> Double { 5 * Double(E) }
    /// Forward FLOPs of a sigmoid (negate, exp, add, divide).
    public static let sigmoidFlops = 4.0

    /// Top-1 assignment: token t to the first largest entry of row t of `scores` [T, E]
    /// (resets `a` to T assignments).
    public static func assignArgmax(_ a: Assignment, scores: UnsafePointer<Float>, T: Int, E: Int) {
        a.reset(T)
        for t in 0..<T {
            let row = scores + t * E
            var best = 0
            for e in 1..<max(E, 1) where row[e] > row[best] { best = e }
            a.token.pointer[t] = Int32(t)
            a.expert.pointer[t] = Int32(best)
        }
    }

    /// The gate of top-1 routers that gate by sigmoid (the Sinkhorn routers, `lossfree`):
    /// gate = sigmoid(logit of the chosen expert); no losses. Also the softmax entropy
    /// statistic (into `probs` [T, E]).
    public static func sigmoidGates(_ input: RouteInput, _ a: Assignment, probs: FloatBuffer, stats: inout RouterStats) -> (aux: Double, z: Double) {
        let T = input.T, E = input.E, lg = input.logits!
        for i in 0..<a.count { a.gate.pointer[i] = sigmoid(lg[Int(a.token.pointer[i]) * E + Int(a.expert.pointer[i])]) }
        let p = probs.ensure(T * E)
        softmax(lg, p, T: T, E: E)
        stats.entropy = meanEntropy(p, T: T, E: E)
        return (0, 0)
    }

    /// dgate [count] → dlogits [T, E]: g·(1 − g) at each chosen (token, expert), 0 elsewhere.
    public static func sigmoidGatesBackward(_ input: RouteInput, _ a: Assignment, dgate: UnsafePointer<Float>, dlogits: UnsafeMutablePointer<Float>) {
        let E = input.E
        dlogits.update(repeating: 0, count: input.T * E)
        for i in 0..<a.count {
            let g = a.gate.pointer[i]
            dlogits[Int(a.token.pointer[i]) * E + Int(a.expert.pointer[i])] += dgate[i] * g * (1 - g)
        }
    }

    /// Mean entropy (nats) of the rows of p [T, E].
    public static func meanEntropy(_ p: UnsafePointer<Float>, T: Int, E: Int) -> Double {
        var h = 0.0
        for i in 0..<(T * E) where p[i] > 0 { h -= Double(p[i]) * log(Double(p[i])) }
        return T > 0 ? h / Double(T) : 0
    }

}

#if canImport(Glibc)
import Glibc
#endif
