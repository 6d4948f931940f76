import XCTest
@testable import BMCore
@testable import BMLayers
@testable import BMRouting
@testable import BMMixers

final class RoutingTests: XCTestCase {
    override func setUp() { XCTAssertNoThrow(try BLAS.setup()) }

    func gaussianLogits(T: Int, E: Int, sigma: Float, seed: UInt64) -> [Float] {
        var rng = RNG(seed: seed)
        return (0..<T * E).map { _ in rng.normal() * sigma }
    }

    /// P's rows sum to 1/T and its columns to 1/E within the tolerance asked for.
    func testSinkhornMarginals() {
        let T = 512, E = 8
        let lg = gaussianLogits(T: T, E: E, sigma: 1, seed: 1)
        var P = [Float](repeating: 0, count: T * E)
        let cfg = SinkhornConfig(tol: 1e-5, tolMode: .marginalRelative)
        let r = P.withUnsafeMutableBufferPointer { Sinkhorn().run(lg, T: T, E: E, config: cfg, P: $0.baseAddress!) }
        XCTAssertTrue(r.converged)
        for i in 0..<T {
            let s = (0..<E).reduce(0.0) { $0 + Double(P[i * E + $1]) }
            XCTAssertEqual(s * Double(T), 1, accuracy: 2e-5, "row \(i)")     // tol 1e-5 + float rounding
        }
        for j in 0..<E {
            let s = (0..<T).reduce(0.0) { $0 + Double(P[$1 * E + j]) }
            XCTAssertEqual(s * Double(E), 1, accuracy: 1e-5, "column \(j)")  // exact after the column step
        }
        XCTAssertLessThanOrEqual(r.rowError, 2e-5)
    }

    /// docs/routing.md: vanilla needs several iterations on Gaussian logits; the
    /// fast variant stops after exactly one at tol 1e-4, with exact columns.
    func testVanillaIteratesFastStopsAfterOne() {
        let T = 4096, E = 8
        let lg = gaussianLogits(T: T, E: E, sigma: 1, seed: 2)
        let v = Sinkhorn().run(lg, T: T, E: E, config: .vanilla)
        let f = Sinkhorn().run(lg, T: T, E: E, config: .fast)
        XCTAssertGreaterThanOrEqual(v.iterations, 3, "vanilla")
        XCTAssertTrue(v.converged)
        XCTAssertEqual(f.iterations, 1, "fast")
        XCTAssertLessThan(f.colError, 1e-4)
        XCTAssertGreaterThan(f.rowError, v.rowError, "one pass leaves the rows less balanced")
    }

    func testMaxIterIsHonouredAndReported() {
        let lg = gaussianLogits(T: 256, E: 8, sigma: 3, seed: 3)
        var cfg = SinkhornConfig.vanilla
        cfg.tol = 0          // never satisfied
        cfg.maxIter = 7
        let r = Sinkhorn().run(lg, T: 256, E: 8, config: cfg)
        XCTAssertEqual(r.iterations, 7)
        XCTAssertFalse(r.converged)
        XCTAssertTrue(r.rowError.isFinite)
        // The router reports it in its statistics.
        let router = SinkhornRouter(cfg)
        let a = Assignment()
        var stats = RouterStats()
        lg.withUnsafeBufferPointer { router.assign(RouteInput(logits: $0.baseAddress!, tokens: nil, T: 256, E: 8, mode: .train, seed: 0), a, stats: &stats) }
        XCTAssertEqual(stats.sinkhornIterations, 7)
        XCTAssertFalse(stats.sinkhornConverged)
    }

    func testSinkhornRouterTrainsOnPAndEvaluatesOnLogits() {
        // Two tokens that both prefer expert 0; balancing sends one of them to expert 1 in training.
        let lg: [Float] = [2.0, 0.0, 1.9, 0.0]
        let router = SinkhornRouter(.vanilla)
        let a = Assignment()
        var stats = RouterStats()
        lg.withUnsafeBufferPointer { p in
            router.assign(RouteInput(logits: p.baseAddress!, tokens: nil, T: 2, E: 2, mode: .train, seed: 0), a, stats: &stats)
            XCTAssertEqual(Set([a.expert.pointer[0], a.expert.pointer[1]]), [0, 1])
            router.assign(RouteInput(logits: p.baseAddress!, tokens: nil, T: 2, E: 2, mode: .eval, seed: 0), a, stats: &stats)
            XCTAssertEqual([a.expert.pointer[0], a.expert.pointer[1]], [0, 0])
            _ = router.gates(RouteInput(logits: p.baseAddress!, tokens: nil, T: 2, E: 2, mode: .eval, seed: 0), a, stats: &stats)
            XCTAssertEqual(Double(a.gate.pointer[0]), 1 / (1 + exp(-2.0)), accuracy: 1e-6)
        }
    }

    /// Switch aux loss equals α at perfect balance.
    func testAuxLossIsAlphaAtPerfectBalance() {
        let T = 64, E = 8
        var lg = [Float](repeating: 0, count: T * E)
        for t in 0..<T { lg[t * E + t % E] = 1.5 }
        let router = TopKRouter(k: 1, preSoftmax: true, alpha: 0.01, beta: 0)
        let a = Assignment()
        var stats = RouterStats()
        let (aux, z) = lg.withUnsafeBufferPointer { p -> (Double, Double) in
            let input = RouteInput(logits: p.baseAddress!, tokens: nil, T: T, E: E, mode: .train, seed: 0)
            router.assign(input, a, stats: &stats)
            return router.gates(input, a, stats: &stats)
        }
        XCTAssertEqual(aux, 0.01, accuracy: 1e-8)     // P in Float32: ~1e-7 relative
        XCTAssertEqual(z, 0)
        // Imbalance raises it: everyone to expert 0.
        for t in 0..<T { for e in 0..<E { lg[t * E + e] = e == 0 ? 1.5 : 0 } }
        let aux2 = lg.withUnsafeBufferPointer { p -> Double in
            let input = RouteInput(logits: p.baseAddress!, tokens: nil, T: T, E: E, mode: .train, seed: 0)
            router.assign(input, a, stats: &stats)
            return router.gates(input, a, stats: &stats).aux
        }
        XCTAssertGreaterThan(aux2, 0.02)
    }

    func buildMoE(_ options: [String: OptionValue], T: Int = 16, d: Int = 8) throws -> (MoE, ParameterSet, [Float]) {
        let ps = ParameterSet()
        let ctx = MixerContext(params: ps, prefix: "decoder.layers.1.mixer", width: d, layerIndex: 1, layerCount: 2, initScheme: .megatron)
        var o = options
        if o["ffn"] == nil { o["ffn"] = .int(6) }
        guard let m = try MixerRegistry.build("moe", options: o, in: ctx, context: "test") as? MoE else { throw BMError.invalid("not an MoE") }
        ps.finalize(seed: 5)
        var rng = RNG(seed: 6)
        return (m, ps, (0..<T * d).map { _ in rng.normal() })
    }

    /// Capacity dropping keeps exactly `cap` tokens per expert, chosen by the policy.
    func testCapacityKeepsExactlyCapTokens() throws {
        for policy in ["probs", "position"] {
            let (m, _, x) = try buildMoE(["experts": .int(4), "capacity_factor": .double(1.0), "drop_policy": .string(policy),
                                          "router": .table(["name": .string("topk"), "aux_loss": .double(0), "z_loss": .double(0)])])
            // Bias the router so every token prefers expert 0.
            m.routerBias!.w[0] = 10
            var y = [Float](repeating: 0, count: x.count)
            x.withUnsafeBufferPointer { xb in y.withUnsafeMutableBufferPointer { m.forward(xb.baseAddress!, $0.baseAddress!, B: 1, L: 16, pass: trainPass) } }
            XCTAssertEqual(m.stats.load, [4, 0, 0, 0], policy)               // cap = ⌈16·1/4 · 1⌉ = 4
            XCTAssertEqual(m.stats.dropped, 12, policy)
            XCTAssertEqual(m.stats.droppedFraction, 0.75, accuracy: 1e-12)
            let outputTokens = (0..<16).filter { t in (0..<8).contains { y[t * 8 + $0] != 0 } }
            if policy == "position" { XCTAssertEqual(outputTokens, [0, 1, 2, 3]) }
            else {
                // the 4 tokens with the highest router probability for expert 0
                var p0 = [(Float, Int)]()
                for t in 0..<16 {
                    var lg = [Float](repeating: 0, count: 4)
                    for e in 0..<4 { lg[e] = m.routerBias!.w[e]; for c in 0..<8 { lg[e] += m.routerWeight!.w[e * 8 + c] * x[t * 8 + c] } }
                    let mx = lg.max()!, s = lg.reduce(0) { $0 + exp($1 - mx) }
                    p0.append((exp(lg[0] - mx) / s, t))
                }
                XCTAssertEqual(outputTokens, p0.sorted { $0.0 > $1.0 }.prefix(4).map(\.1).sorted())
            }
        }
    }

    /// Top-1 with pre-softmax: gates < 1 that carry gradient to the router.
    /// Post-softmax top-1: every gate is exactly 1 and the router learns nothing (without aux loss).
    func testTop1PreSoftmaxGatesCarryGradient() throws {
        for pre in [true, false] {
            let (m, ps, x) = try buildMoE(["router": .table(["name": .string("topk"), "pre_softmax": .bool(pre),
                                                              "aux_loss": .double(0), "z_loss": .double(0)])])
            var y = [Float](repeating: 0, count: x.count), dx = y
            var rng = RNG(seed: 1)
            let dy = (0..<x.count).map { _ in rng.normal() }
            ps.zeroGrad()
            x.withUnsafeBufferPointer { xb in y.withUnsafeMutableBufferPointer { m.forward(xb.baseAddress!, $0.baseAddress!, B: 1, L: 16, pass: trainPass) } }
            dy.withUnsafeBufferPointer { db in dx.withUnsafeMutableBufferPointer { m.backward(db.baseAddress!, $0.baseAddress!, B: 1, L: 16, pass: trainPass) } }
            let gradNorm = m.routerWeight!.grads.reduce(0) { $0 + $1 * $1 }
            if pre {
                XCTAssertLessThan(m.stats.load.reduce(0, +), 17)
                XCTAssertGreaterThan(gradNorm, 1e-8)
            } else {
                XCTAssertEqual(gradNorm, 0)
            }
        }
    }

    func testExpertChoiceRefusesGeneration() throws {
        let (m, _, _) = try buildMoE(["router": .string("expert-choice")])
        XCTAssertThrowsError(try m.makeState(batch: 1, maxLength: 8)) { e in
            XCTAssertTrue("\(e)".contains("router 'expert-choice' is not causal"), "\(e)")
            XCTAssertTrue("\(e)".contains("cannot generate"), "\(e)")
            // the routers that can, as each says of itself (no list kept by name)
            XCTAssertTrue("\(e)".contains("routers that can: topk, sinkhorn, sinkhorn-fast, hash, random, lossfree"), "\(e)")
        }
        XCTAssertEqual(RouterRegistry.causalNames(experts: 4), RouterRegistry.names.filter { $0 != "expert-choice" })
    }

    /// expert-choice trains non-causally but evaluates causally (each token to its top
    /// expert), so its validation loss is comparable with the causal routers'.
    func testExpertChoiceEvaluatesCausally() throws {
        let (m, _, _) = try buildMoE(["router": .string("expert-choice")])
        unfreezeRouting(m)
        let B = 1, L = 12, D = m.inWidth
        var rng = RNG(seed: 8)
        let x = FloatBuffer(count: L * D), y1 = FloatBuffer(count: L * D), y2 = FloatBuffer(count: L * D)
        rng.fillNormal(x.pointer, L * D, std: 1)
        m.forward(x.pointer, y1.pointer, B: B, L: L, pass: evalPass)
        let first = y1.array(L * D)
        for i in (L / 2) * D..<L * D { x.pointer[i] = -3 * x.pointer[i] + 1 }     // change the second half
        m.forward(x.pointer, y2.pointer, B: B, L: L, pass: evalPass)
        // equal to rounding: an expert's product over more rows may block its sums differently
        let diff = zip(first[0..<(L / 2) * D], y2.array((L / 2) * D)).map { abs($0 - $1) }.max()!
        XCTAssertLessThan(diff, 1e-5, "evaluation of the first half depends on later tokens")
        // in training it is not causal: the same change moves earlier outputs
        m.forward(x.pointer, y2.pointer, B: B, L: L, pass: trainPass)
        rng.fillNormal(x.pointer, L * D, std: 1)
        let before = y2.array(L * D)
        m.forward(x.pointer, y1.pointer, B: B, L: L, pass: trainPass)
        XCTAssertNotEqual(before, y1.array(L * D))
    }

    func testHashRoutingIsDeterministicAndSpreads() {
        let h = HashRouter(salt: 0)
        var counts = [Int](repeating: 0, count: 8)
        for id in Int32(0)..<256 {
            let e = h.expert(for: id, experts: 8)
            XCTAssertEqual(e, h.expert(for: id, experts: 8))
            XCTAssertEqual(e, HashRouter(salt: 0).expert(for: id, experts: 8))
            counts[e] += 1
        }
        XCTAssertTrue(counts.allSatisfy { $0 > 16 }, "\(counts)")
        let other = HashRouter(salt: 1)
        XCTAssertTrue((Int32(0)..<64).contains { h.expert(for: $0, experts: 8) != other.expert(for: $0, experts: 8) })
    }

    func testRandomRoutingIsBalanced() throws {
        let (m, _, x) = try buildMoE(["experts": .int(4), "router": .string("random")], T: 18)
        var y = [Float](repeating: 0, count: x.count)
        x.withUnsafeBufferPointer { xb in y.withUnsafeMutableBufferPointer { m.forward(xb.baseAddress!, $0.baseAddress!, B: 1, L: 18, pass: trainPass) } }
        XCTAssertEqual(m.stats.load.sorted(), [4, 4, 5, 5])
        XCTAssertNil(m.routerWeight)
        XCTAssertEqual(m.stats.loadCV, 0.1111, accuracy: 1e-3)
    }

    /// `sigmoid-top1` is the released BlackMamba routing: route = sigmoid(logits),
    /// (max_prob, max_ind) = torch.max(route) — the first index of the largest sigmoid,
    /// which for logits whose float32 sigmoids round to 1 is the first of them, not the
    /// largest logit — and the gate is max_prob. No bias, nothing in the checkpoint.
    func testSigmoidTop1IsTheReleasedRouting() {
        let r = SigmoidTop1Router(biasRate: 0)
        XCTAssertFalse(r.usesExpertBias)
        XCTAssertTrue(r.isCausal)
        let rows: [[Float]] = [[0.5, -1, 2, 1], [20, 25, 0, 0], [-3, -2, -2, -5], [0, 0, 0, 0]]
        let logits = rows.flatMap { $0 }
        let a = Assignment()
        var st = RouterStats()
        logits.withUnsafeBufferPointer { l in
            let input = RouteInput(logits: l.baseAddress!, tokens: nil, T: rows.count, E: 4, mode: .train, seed: 0)
            r.assign(input, a, stats: &st)
            _ = r.gates(input, a, stats: &st)
        }
        for (t, row) in rows.enumerated() {
            // the released code's arithmetic, in float32: sigmoid, then the first maximum
            let route = row.map { Float(1 / (1 + exp(-Double($0)))) }
            let first = route.firstIndex(of: route.max()!)!
            XCTAssertEqual(Int(a.expert.pointer[t]), first, "row \(t)")
            XCTAssertEqual(a.gate.pointer[t], route[first], accuracy: 1e-6, "row \(t)")
        }
        XCTAssertEqual(Int(a.expert.pointer[1]), 0, "sigmoid(20) and sigmoid(25) are both 1 in float32: the first wins")
        XCTAssertEqual(Int(a.expert.pointer[2]), 1, "ties to the lower index")
    }

    /// `bias_rate` on topk: the bias picks among P + b (here it overrides the largest
    /// probability), the gate stays P of the chosen expert; at rate 0 there is no bias.
    func testTopKBiasSelectsButDoesNotGate() {
        XCTAssertFalse(TopKRouter(k: 1, preSoftmax: true, alpha: 0, beta: 0).usesExpertBias)
        let r = TopKRouter(k: 1, preSoftmax: true, alpha: 0, beta: 0, biasRate: 0.001)
        XCTAssertTrue(r.usesExpertBias)
        let logits: [Float] = [2, 0, 0, 0,   3, 0, 0, 0]
        let bias: [Float] = [0, 0, 0.9, 0]
        let a = Assignment()
        var st = RouterStats()
        logits.withUnsafeBufferPointer { l in bias.withUnsafeBufferPointer { b in
            let input = RouteInput(logits: l.baseAddress!, tokens: nil, T: 2, E: 4, mode: .train, seed: 0, expertBias: b.baseAddress!)
            r.assign(input, a, stats: &st)
            _ = r.gates(input, a, stats: &st)
        } }
        // token 0: P = (0.711, 0.096, 0.096, 0.096); P + b = (0.711, 0.096, 0.996, 0.096) → 2
        // token 1: P = (0.870, 0.043, …); P + b = (0.870, 0.043, 0.943, 0.043) → 2
        XCTAssertEqual([a.expert.pointer[0], a.expert.pointer[1]], [2, 2])
        let p0 = Float(1 / (exp(2.0) + 3)), p1 = Float(1 / (exp(3.0) + 3))
        XCTAssertEqual(a.gate.pointer[0], p0, accuracy: 1e-6)
        XCTAssertEqual(a.gate.pointer[1], p1, accuracy: 1e-6)
    }

    /// Shared experts (DeepSeekMoE): K of width F are one gated MLP of width K·F that every
    /// token passes, added ungated to the routed output; counted as active in full.
    func testSharedExpertsAreADenseMLPBesideTheRoutedOnes() throws {
        let (m, ps, x) = try buildMoE(["experts": .int(4), "shared_experts": .int(2), "router": .string("sinkhorn-fast")], T: 10)
        let (plain, pps, _) = try buildMoE(["experts": .int(4), "router": .string("sinkhorn-fast")], T: 10)
        XCTAssertEqual(ps.params.suffix(2).map { "\($0.name)\($0.shape)" },
                       ["decoder.layers.1.mixer.shared_experts.linear_fc1.weight[24, 8]", "decoder.layers.1.mixer.shared_experts.linear_fc2.weight[8, 12]"])
        let sharedWeights = Double(24 * 8 + 8 * 12)
        XCTAssertEqual(m.activeMatmulWeights, plain.activeMatmulWeights + sharedWeights)
        XCTAssertEqual(m.activeParameters, plain.activeParameters + sharedWeights)
        // the output: the same routed experts (copied weights) plus the shared MLP on every token
        for (a, b) in zip(pps.params, ps.params) { b.w.update(from: a.w, count: a.count) }
        let sh = try XCTUnwrap(m.shared)
        var y = [Float](repeating: 0, count: x.count), yp = y, ys = y
        x.withUnsafeBufferPointer { xb in
            y.withUnsafeMutableBufferPointer { m.forward(xb.baseAddress!, $0.baseAddress!, B: 1, L: 10, pass: evalPass) }
            yp.withUnsafeMutableBufferPointer { plain.forward(xb.baseAddress!, $0.baseAddress!, B: 1, L: 10, pass: evalPass) }
            ys.withUnsafeMutableBufferPointer { sh.forward(xb.baseAddress!, $0.baseAddress!, B: 1, L: 10, pass: evalPass) }
        }
        XCTAssertTrue(ys.contains { abs($0) > 1e-4 }, "the shared MLP computes something")
        for i in y.indices { XCTAssertEqual(y[i], yp[i] + ys[i], accuracy: 1e-5) }
        let names = m.flopTerms(seqLen: 16).map(\.name)
        XCTAssertTrue(names.contains("shared expert activation") && names.contains("shared expert add"))
    }

    /// Fine-grained experts (DeepSeekMoE) are a spec: E·m experts of width F/m, top-m. At
    /// equal expert parameters the active expert weights and their activation FLOPs are
    /// equal; the router grows m-fold and the gated combine costs m times as much.
    func testFineGrainedExpertsKeepParametersAndExpertFLOPs() throws {
        let (coarse, _, _) = try buildMoE(["experts": .int(4), "ffn": .int(32), "router": .table(["name": .string("topk"), "k": .int(1)])])
        let (fine, _, _) = try buildMoE(["experts": .int(16), "ffn": .int(8), "router": .table(["name": .string("topk"), "k": .int(4)])])
        let d = 8.0
        func experts(_ m: MoE) -> Double { Double(m.fc1.reduce(0) { $0 + $1.count } + m.fc2.reduce(0) { $0 + $1.count }) }
        XCTAssertEqual(experts(coarse), experts(fine))
        XCTAssertEqual(coarse.activeMatmulWeights - 4 * d, fine.activeMatmulWeights - 16 * d, "active expert weights equal; router E·d")
        func term(_ m: MoE, _ n: String) -> Double { m.flopTerms(seqLen: 16).first { $0.name == n }!.flops }
        XCTAssertEqual(term(coarse, "expert activation"), term(fine, "expert activation"))
        XCTAssertEqual(term(fine, "expert combine"), 4 * term(coarse, "expert combine"))
    }

    func testParameterNamesFollowZyphra() throws {
        let (_, ps, _) = try buildMoE(["experts": .int(2)])
        XCTAssertEqual(ps.params.map { "\($0.name)\($0.shape)" }, [
            "decoder.layers.1.mixer.router.weight[2, 8]", "decoder.layers.1.mixer.router.bias[2]",
            "decoder.layers.1.mixer.local_experts.0.linear_fc1.weight[12, 8]", "decoder.layers.1.mixer.local_experts.0.linear_fc2.weight[8, 6]",
            "decoder.layers.1.mixer.local_experts.1.linear_fc1.weight[12, 8]", "decoder.layers.1.mixer.local_experts.1.linear_fc2.weight[8, 6]",
        ])
    }

    func testUnknownRouterErrors() throws {
        XCTAssertThrowsError(try buildMoE(["router": .table(["name": .string("sinkhorn-fats")])])) {
            XCTAssertTrue("\($0)".contains("unknown router 'sinkhorn-fats' (did you mean 'sinkhorn-fast'?)"), "\($0)")
        }
        XCTAssertThrowsError(try buildMoE(["router": .table(["name": .string("sinkhorn"), "tol_mod": .string("x")])])) {
            XCTAssertTrue("\($0)".contains("unknown option 'tol_mod' (did you mean 'tol_mode'?)"), "\($0)")
        }
        XCTAssertThrowsError(try buildMoE(["router": .table(["name": .string("topk"), "k": .int(9)])])) {
            XCTAssertTrue("\($0)".contains("test: mixer 'moe': router 'topk': k (9) exceeds the number of experts (8)"), "\($0)")
        }
    }
}
