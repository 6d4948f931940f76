import BMCore

/// `random`: a balanced random assignment (a seeded permutation of the tokens
/// dealt round-robin to the experts, so every expert gets ⌊T/E⌋ or ⌈T/E⌉
/// tokens); gate 1; no router parameters. A baseline that balances perfectly
/// and learns nothing about the input. The seed follows the training step, so
/// runs are reproducible. In evaluation and generation, where tokens arrive one
/// at a time, each token id gets a fixed random expert (a seeded hash), so the
/// routing is per token and causal.
public final class RandomRouter: Router {
    public static let entry = RouterEntry(
        name: "random", summary: "balanced random assignment baseline (seeded per step); no router parameters",
        options: [.int("seed", 0, "added to the per-step seed", min: 0)],
        build: { o, _ in RandomRouter(seed: UInt64(o.int("seed"))) })

    public let seed: UInt64
    public init(seed: UInt64) { self.seed = seed }
    public var usesLogits: Bool { false }
    public var allowsCapacity: Bool { true }
    public var isCausal: Bool { true }

    public func assign(_ input: RouteInput, _ a: Assignment, stats: inout RouterStats) {
        if input.mode == .eval, let tokens = input.tokens {
            let h = HashRouter(salt: seed &+ 0x5EED)
            a.reset(input.T)
            for t in 0..<input.T {
                a.token.pointer[t] = Int32(t)
                a.expert.pointer[t] = Int32(h.expert(for: tokens[t], experts: input.E))
            }
            return
        }
        a.reset(input.T)
        var perm = Array(0..<input.T)
        var rng = RNG(seed: input.seed &+ seed &* 0x9E37_79B9)
        rng.shuffle(&perm)
        for (rank, t) in perm.enumerated() {
            a.token.pointer[t] = Int32(t)
            a.expert.pointer[t] = Int32(rank % input.E)
        }
    }

    public func gates(_ input: RouteInput, _ a: Assignment, stats: inout RouterStats) -> (aux: Double, z: Double) {
        a.gate.pointer.update(repeating: 1, count: a.count)
        return (0, 0)
    }

    public func backward(_ input: RouteInput, _ a: Assignment, dgate: UnsafePointer<Float>, dlogits: UnsafeMutablePointer<Float>) {}
}
