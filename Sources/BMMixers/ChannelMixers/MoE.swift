import Foundation
import BMCore
import BMLayers
import BMRouting

/// `moe`: a mixture of E gated-MLP experts with a pluggable router
/// (docs/routing.md). Names as Zyphra/BlackMamba: `router.weight [E, d]`,
/// `router.bias [E]`, `local_experts.{e}.linear_fc1.weight [2F, d]` (gate rows,
/// then up rows), `local_experts.{e}.linear_fc2.weight [d, F]`.
///
/// Forward: logits = x·Wrᵀ + b → router assigns (token, expert) pairs and gates →
/// optional capacity limit → tokens are grouped by expert (a stable sort) so each
/// expert runs ONE matrix multiply over all its tokens → y[token] += gate · Expert(x).
/// Backward mirrors it per expert; the router gets gradient only through the gates
/// and its own aux / z losses.
public final class MoE: GeneratingMixer {
    public static let entry = MixerEntry(
        name: "moe", kind: .channel,
        summary: "mixture of gated-MLP experts with a pluggable router (default: BlackMamba's sinkhorn-fast)",
        options: [
            .int("experts", 8, "number of experts E", min: 1),
            .int("ffn", 0, "expert hidden width F (0 = 4 · d_model)", min: 0),
            .choice("activation", "swiglu", GateActivation.allCases.map(\.rawValue), "expert nonlinearity (SwiGLU per the paper; Zyphra's code defaults to GeGLU)"),
            .table("router", ["name": .string("sinkhorn-fast")], "router name or {name: …, options}; see `bmlab list`",
                   resolve: RouterRegistry.resolve),
            .bool("router_bias", true, "router Linear has a bias (as BlackMamba)"),
            .double("capacity_factor", 0, "cap = ⌈T·k/E · factor⌉ tokens per expert in training (0 = dropless; evaluation is dropless)", min: 0),
            .choice("drop_policy", "probs", ["probs", "position"], "which tokens an expert over capacity keeps: highest gate, or earliest"),
            .int("shared_experts", 0, "experts every token passes through beside its routed ones (DeepSeekMoE): one gated MLP of width shared_experts · ffn, added ungated", min: 0),
        ],
        variants: MoE.registryVariants(),
        validate: { o, _, ctx in
            try RouterRegistry.validate(o.values["router"]!, experts: o.int("experts"), context: ctx)
        },
        build: { ctx, o in try MoE(ctx, o) })

    /// Every router in every one of its variants, plus activation and capacity variants.
    static func registryVariants() -> [[String: OptionValue]] {
        var v: [[String: OptionValue]] = []
        for r in RouterRegistry.entries {
            for rv in r.variants {
                var t = rv
                t["name"] = .string(r.name)
                v.append(["router": .table(t)])
            }
        }
        v.append(["activation": .string("geglu"), "router": .table(["name": .string("topk"), "k": .int(2)])])
        v.append(["capacity_factor": .double(1.0), "router": .table(["name": .string("topk"), "k": .int(2)])])
        v.append(["capacity_factor": .double(1.0), "drop_policy": .string("position"), "router": .string("hash")])
        v.append(["router_bias": .bool(false), "router": .string("sinkhorn")])
        v.append(["shared_experts": .int(2), "router": .table(["name": .string("topk"), "k": .int(2)])])
        v.append(["shared_experts": .int(1), "router": .string("sinkhorn-fast")])
        return v
    }

    public let d: Int, E: Int, F: Int
    public let kernel: GatedMLPKernel
    public let router: Router
    public let routerName: String
    public let routerWeight: Param?, routerBias: Param?
    /// The router's load-balancing bias (`lossfree`): selects experts, never trained by gradient.
    public let expertBias: Param?
    public let fc1: [Param], fc2: [Param]
    /// The shared experts (`shared_experts` K > 0): one gated MLP of width K·F that every
    /// token passes through, its output added to the routed experts' (DeepSeekMoE; K
    /// experts of width F summed are one of width K·F). `shared_experts.linear_fc1/fc2`.
    public let shared: GatedMLP?
    public let capacityFactor: Double, dropByPosition: Bool
    let layerIndex: Int
    /// What the router was given in the last forward (its logits, tokens, mode, seed):
    /// backward differentiates the gates of that routing.
    private var routed: RouteInput?
    /// Keep the last assignment (and capacity decisions); only the gates are
    /// recomputed. Used by gradient checks ("assignments held fixed").
    public var freezeRouting = false
    public private(set) var stats = RouterStats()
    /// Per-phase wall time (router, dispatch, experts, combine; forward and backward) when enabled.
    public let timer = PhaseTimer()
    public var phaseTimer: PhaseTimer? { timer }
    public let pluginName: String
    public private(set) var auxiliaryLoss: Double = 0

    private var x: UnsafePointer<Float>?
    private var shape = (B: 0, L: 0)
    private let assignment = Assignment()
    private let other = Assignment()          // the other routing's assignment (agreement)
    private let chosen = IntBuffer()          // [T, E] 1 where the pass's assignment put a token
    /// (token, expert) choices the pass and the other routing share, and the pass's
    /// choices, summed over evaluation forwards since `resetAgreement`.
    public private(set) var agreement = (shared: 0, total: 0)
    public func resetAgreement() { agreement = (0, 0) }
    private let kept = IntBuffer()            // [A] 1 = kept, 0 = dropped by capacity
    private let order = IntBuffer()           // kept assignment indices grouped by expert
    private var offsets = [Int]()             // [E + 1] into order
    private var largestFirst = [Int]()        // experts by decreasing token count
    private let logits = FloatBuffer(), dlogits = FloatBuffer(), dgate = FloatBuffer()
    private let xe = FloatBuffer(), ye = FloatBuffer(), h = FloatBuffer(), act = FloatBuffer()
    private let dye = FloatBuffer(), dxe = FloatBuffer(), scratch = FloatBuffer()
    private let sharedY = FloatBuffer(), sharedDx = FloatBuffer()   // [T, d]: the shared experts' output, input gradient

    public init(_ ctx: MixerContext, _ o: ResolvedOptions) throws {
        pluginName = ctx.pluginName
        d = ctx.width; E = o.int("experts")
        F = o.int("ffn") > 0 ? o.int("ffn") : 4 * d
        kernel = GatedMLPKernel(d: d, F: F, activation: GateActivation(rawValue: o.string("activation"))!)
        (router, routerName) = try RouterRegistry.build(o.values["router"]!, experts: E, context: "\(ctx.prefix)")
        capacityFactor = o.double("capacity_factor")
        dropByPosition = o.string("drop_policy") == "position"
        layerIndex = ctx.layerIndex
        let ps = ctx.params, p = ctx.prefix
        if router.usesLogits {
            routerWeight = ps.declare("\(p).router.weight", [E, d], init: ctx.hiddenInit(fanIn: d))
            routerBias = o.bool("router_bias") ? ps.declare("\(p).router.bias", [E], init: .zeros, decay: false) : nil
        } else {
            routerWeight = nil; routerBias = nil
        }
        expertBias = router.usesExpertBias ? ps.declare("\(p).router.expert_bias", [E], init: .zeros, decay: false) : nil
        var f1: [Param] = [], f2: [Param] = []
        for e in 0..<E {
            f1.append(ps.declare("\(p).local_experts.\(e).linear_fc1.weight", [2 * F, d], init: ctx.hiddenInit(fanIn: d)))
            f2.append(ps.declare("\(p).local_experts.\(e).linear_fc2.weight", [d, F], init: ctx.outputInit(fanIn: F)))
        }
        fc1 = f1; fc2 = f2
        let K = o.int("shared_experts")
        shared = K > 0 ? GatedMLP(ps, "\(p).shared_experts", d: d, F: K * F, activation: kernel.activation,
                                  init: ctx.hiddenInit(fanIn: d), outputInit: ctx.outputInit(fanIn: K * F)) : nil
    }

    /// Experts a token uses on average: the router says (k for top-k, the capacity
    /// factor for expert choice, 1 for the others).
    public var activeExpertsPerToken: Double { router.expertsPerToken }
    public var evaluationNote: String? { router.evaluationNote }
    /// The router, the routed experts a token uses and the shared experts.
    public var activeMatmulWeights: Double {
        Double(fc1[0].count + fc2[0].count) * activeExpertsPerToken + Double(routerWeight?.count ?? 0)
            + Double(shared.map { $0.fc1.count + $0.fc2.count } ?? 0)
    }
    public var activeParameters: Double {
        let all = Double(parameters.reduce(0) { $0 + $1.count })
        return all - Double(fc1[0].count + fc2[0].count) * (Double(E) - activeExpertsPerToken)
    }
    /// Per token: the routing (the router's terms); per active expert, the gated
    /// activation act(gate) · up (`GateActivation.flopsPerUnit` per hidden unit) and
    /// the gate-weighted combine (2 per output), each × 3; the shared experts' activation
    /// (K·F hidden units) and their ungated add (1 per output), × 3.
    public func flopTerms(seqLen: Int) -> [FlopTerm] {
        let k = activeExpertsPerToken
        return router.flopTerms(E: E) + [FlopTerm("expert activation", 3 * kernel.activation.flopsPerUnit * Double(F) * k),
                                         FlopTerm("expert combine", 3 * 2 * Double(d) * k)]
            + (shared.map { [FlopTerm("shared expert activation", 3 * kernel.activation.flopsPerUnit * Double($0.kernel.F)),
                             FlopTerm("shared expert add", 3 * Double(d))] } ?? [])
    }

    /// The router statistics of the last forward (`router/layer_i/…` in metrics.h5).
    public var statistics: [(String, LayerStatistic)] {
        let s = stats
        return [("load", .counts(s.load)), ("load_max_over_mean", .value(s.loadMaxOverMean)),
                ("cv", .value(s.loadCV)), ("entropy", .value(s.entropy)), ("dropped", .value(s.droppedFraction)),
                ("aux_loss", .value(s.auxLoss)), ("z_loss", .value(s.zLoss)),
                ("sinkhorn_iters", .count(s.sinkhornIterations)), ("sinkhorn_converged", .count(s.sinkhornConverged ? 1 : 0)),
                ("row_error", .value(s.rowError)), ("col_error", .value(s.colError))]
    }

    public func activationFloats(B: Int, L: Int) -> Int {
        let T = B * L
        // routed rows: every token's active experts (more under a capacity factor > 1)
        let n = Int((Double(T) * activeExpertsPerToken * max(1, capacityFactor)).rounded(.up))
        // logits, dlogits and the router's own [T, E] buffers (probabilities, Sinkhorn plan, …);
        // gathered x, y, dy, dx [n, d]; h [n, 2F], act [n, F], scratch [n, 3F]; assignment
        // (token, expert, gate, order, kept, dgate) [n]
        // shared experts: their h, a and backward scratch [T, 6·K·F], output and dx [T, d] each
        return (router.usesLogits ? 6 * T * E : 0) + n * (4 * d + 6 * F) + 8 * n
            + (shared.map { $0.activationFloats(B: B, L: L) + 2 * T * d } ?? 0)
    }

    public var inWidth: Int { d }
    public var outWidth: Int { d }
    public var parameters: [Param] {
        [routerWeight, routerBias, expertBias].compactMap { $0 } + zip(fc1, fc2).flatMap { [$0, $1] } + (shared?.parameters ?? [])
    }

    // logits of the last forward: [B·L, E] (nil for routers without parameters)
    public var routerLogits: UnsafeBufferPointer<Float>? {
        routerWeight == nil || shape.B * shape.L == 0 ? nil : UnsafeBufferPointer(start: logits.pointer, count: shape.B * shape.L * E)
    }

    /// The last forward's load, when the router's bias moves with it (see `Mixer`).
    public var routerStateLoad: [Int]? { expertBias == nil || freezeRouting ? nil : stats.load }

    /// Moves the balancing bias from a load summed over a data-parallel step's shards.
    public func updateRouterState(load: [Int]) {
        if let b = expertBias, !freezeRouting { router.updateBias(b.w, load: load) }
    }

    /// `asTraining`: the router makes training's assignment (training, or `eval.routing: train`).
    func routeInput(T: Int, pass: Pass, asTraining: Bool) -> RouteInput {
        RouteInput(logits: router.usesLogits ? UnsafePointer(logits.pointer) : nil, tokens: pass.tokens, T: T, E: E,
                   mode: asTraining ? .train : .eval,
                   seed: UInt64(pass.step) &* 1_000_003 &+ UInt64(layerIndex),
                   expertBias: expertBias.map { UnsafePointer($0.w) })
    }

    /// Evaluation: how many of this pass's (token, expert) choices the other routing
    /// (argmax ↔ training's) makes too, on the same router logits; before any capacity limit.
    private func countAgreement(T: Int, pass: Pass) {
        let A = assignment.count
        let mark = chosen.ensure(max(1, T * E))
        mark.update(repeating: 0, count: T * E)
        let tp = assignment.token.pointer, ep = assignment.expert.pointer
        var total = 0
        for i in 0..<A where ep[i] >= 0 { mark[Int(tp[i]) * E + Int(ep[i])] = 1; total += 1 }
        var scratch = RouterStats()
        router.assign(routeInput(T: T, pass: pass, asTraining: !pass.routesAsTraining), other, stats: &scratch)
        var shared = 0
        let ot = other.token.pointer, oe = other.expert.pointer
        for i in 0..<other.count where oe[i] >= 0 && mark[Int(ot[i]) * E + Int(oe[i])] == 1 {
            shared += 1; mark[Int(ot[i]) * E + Int(oe[i])] = 0   // each choice counts once
        }
        agreement.shared += shared
        agreement.total += max(total, other.count)
    }

    // MARK: forward

    // x: [B, L, d] → y: [B, L, d]
    public func forward(_ xIn: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, B: Int, L: Int, pass: Pass) {
        let T = B * L
        x = xIn; shape = (B, L)
        timer.start()
        // router logits                                         logits: [T, E]
        if let w = routerWeight {
            let lg = logits.ensure(T * E)
            if let b = routerBias {
                for t in 0..<T { (lg + t * E).update(from: b.w, count: E) }
                matmulXWt(xIn, w.w, lg, T: T, inDim: d, outDim: E, beta: 1, bf16: pass.bf16)
            } else {
                matmulXWt(xIn, w.w, lg, T: T, inDim: d, outDim: E, bf16: pass.bf16)
            }
        }
        let input = routeInput(T: T, pass: pass, asTraining: pass.routesAsTraining)
        routed = input
        let frozen = freezeRouting && assignment.count > 0 && stats.load.count == E
        if !frozen {
            stats = RouterStats()
            router.assign(input, assignment, stats: &stats)
        }
        let (aux, z) = router.gates(input, assignment, stats: &stats)
        auxiliaryLoss = aux + z
        let A = assignment.count
        if pass.mode == .eval && pass.measureAgreement { countAgreement(T: T, pass: pass) }
        if !frozen { applyCapacity(T: T, routesAsTraining: pass.routesAsTraining) }
        let kp = kept.pointer, gp = assignment.gate.pointer, ep = assignment.expert.pointer, tp = assignment.token.pointer
        for i in 0..<A where kp[i] == 0 { gp[i] = 0 }
        // group kept assignments by expert (stable)                order: [kept]
        offsets = [Int](repeating: 0, count: E + 1)
        for i in 0..<A where kp[i] != 0 { offsets[Int(ep[i]) + 1] += 1 }
        for e in 0..<E { offsets[e + 1] += offsets[e] }
        let op = order.ensure(max(A, 1))
        var fill = offsets
        for i in 0..<A where kp[i] != 0 { op[fill[Int(ep[i])]] = Int32(i); fill[Int(ep[i])] += 1 }
        let n = offsets[E]
        stats.load = (0..<E).map { offsets[$0 + 1] - offsets[$0] }
        // experts by decreasing load: the threads take the big ones first (balance)
        largestFirst = (0..<E).sorted { stats.load[$0] > stats.load[$1] || (stats.load[$0] == stats.load[$1] && $0 < $1) }
        stats.assignments = A
        stats.dropped = A - n
        // the load-balancing bias moves after a training forward, from its load
        if let b = expertBias, pass.mode == .train, pass.updatesRouterState, !freezeRouting { router.updateBias(b.w, load: stats.load) }
        timer.mark("fwd router")
        // gather                                                   xe: [n, d]
        let xp = xe.ensure(max(n, 1) * d)
        ExpertDispatch.gather(xIn, into: xp, order: op, token: tp, n: n, d: d)
        timer.mark("fwd dispatch")
        // one matrix multiply per expert over its tokens           ye: [n, d]
        let yp = ye.ensure(max(n, 1) * d), hp = h.ensure(max(n, 1) * 2 * F), ap = act.ensure(max(n, 1) * F)
        // Experts in parallel, each product on one thread: a whole expert per thread runs
        // its ~T/E-row products faster than splitting each one (docs/performance.md).
        let off = offsets, big = largestFirst
        Parallel.forEach(E) { i in
            let e = big[i], o = off[e], c = off[e + 1] - o
            kernel.forward(xp + o * d, yp + o * d, T: c, fc1: fc1[e].w, fc2: fc2[e].w, h: hp + o * 2 * F, a: ap + o * F, bf16: pass.bf16)
        }
        timer.mark("fwd experts")
        // combine: y[token] += gate · ye
        y.update(repeating: 0, count: T * d)
        ExpertDispatch.scatterAdd(yp, into: y, order: op, token: tp, weight: gp, n: n, d: d)
        timer.mark("fwd combine")
        // shared experts: y += shared(x)                            sharedY: [T, d]
        if let shared {
            let sy = sharedY.ensure(T * d)
            shared.forward(xIn, sy, B: B, L: L, pass: pass)
            axpy(1, sy, y, T * d)
            timer.mark("fwd shared experts")
        }
    }

    /// cap = ⌈(A/T)·T/E · factor⌉ per expert; keeps the highest gates ('probs') or earliest tokens ('position').
    /// Training's assignment only: a capacity limit looks at the whole batch, so it is not
    /// causal; argmax evaluation and generation are dropless.
    private func applyCapacity(T: Int, routesAsTraining: Bool) {
        let A = assignment.count
        let kp = kept.ensure(max(A, 1))
        kp.update(repeating: 1, count: A)
        guard capacityFactor > 0, router.allowsCapacity, A > 0, routesAsTraining else { return }
        let cap = Int((Double(A) / Double(E) * capacityFactor).rounded(.up))
        let ep = assignment.expert.pointer, gp = assignment.gate.pointer, tp = assignment.token.pointer
        var byExpert = [[Int]](repeating: [], count: E)
        for i in 0..<A { byExpert[Int(ep[i])].append(i) }
        for e in 0..<E where byExpert[e].count > cap {
            let sorted = dropByPosition
                ? byExpert[e].sorted { tp[$0] < tp[$1] || (tp[$0] == tp[$1] && $0 < $1) }
                : byExpert[e].sorted { gp[$0] > gp[$1] || (gp[$0] == gp[$1] && $0 < $1) }
            for i in sorted[cap...] { kp[i] = 0 }
        }
    }

    // MARK: backward

    // dy: [B, L, d] → dx: [B, L, d]
    public func backward(_ dy: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>, B: Int, L: Int, pass: Pass) {
        guard let x, let routed else { preconditionFailure("MoE.backward before forward") }
        let T = B * L, A = assignment.count, n = offsets[E]
        timer.start()
        let op = order.pointer, gp = assignment.gate.pointer, tp = assignment.token.pointer
        let yp = ye.pointer, xp = xe.pointer
        // dgate = dy[token]·ye; dye = gate · dy[token]
        let dg = dgate.ensure(max(A, 1)), dyp = dye.ensure(max(n, 1) * d), dxp = dxe.ensure(max(n, 1) * d)
        dg.update(repeating: 0, count: A)
        Parallel.forEachBlock(n, size: 64) { rows in     // rows on every core; each its own dot, so the same bits
            for s in rows {
                let i = Int(op[s]), row = dy + Int(tp[i]) * d
                var dot: Float = 0
                for c in 0..<d { dot += row[c] * yp[s * d + c]; dyp[s * d + c] = gp[i] * row[c] }
                dg[i] = dot
            }
        }
        timer.mark("bwd combine")
        // experts, one matrix multiply each
        let hp = h.pointer, ap = act.pointer
        let sc = scratch.ensure(max(n, 1) * 3 * F)
        let off = offsets, big = largestFirst
        Parallel.forEach(E) { i in     // each expert writes its own rows and its own gradients
            let e = big[i], o = off[e], c = off[e + 1] - o
            kernel.backward(dyp + o * d, dxp + o * d, T: c, x: xp + o * d, fc1: fc1[e].w, fc2: fc2[e].w,
                            dfc1: fc1[e].g, dfc2: fc2[e].g, h: hp + o * 2 * F, a: ap + o * F, scratch: sc + o * 3 * F)
        }
        timer.mark("bwd experts")
        // scatter back to tokens
        dx.update(repeating: 0, count: T * d)
        ExpertDispatch.scatterAdd(dxp, into: dx, order: op, token: tp, weight: nil, n: n, d: d)
        timer.mark("bwd dispatch")
        // router: gradient through the gates and the aux / z losses
        if let w = routerWeight {
            let dl = dlogits.ensure(T * E)
            router.backward(routed, assignment, dgate: dg, dlogits: dl)
            matmulDyTX(dl, x, w.g, T: T, inDim: d, outDim: E)
            if let b = routerBias { for t in 0..<T { for e in 0..<E { b.g[e] += dl[t * E + e] } } }
            matmulDyW(dl, w.w, dx, T: T, inDim: d, outDim: E, beta: 1)
        }
        timer.mark("bwd router")
        // shared experts: dx += shared'(dy)                         sharedDx: [T, d]
        if let shared {
            let sdx = sharedDx.ensure(T * d)
            shared.backward(dy, sdx, B: B, L: L, pass: pass)
            axpy(1, sdx, dx, T * d)
            timer.mark("bwd shared experts")
        }
    }

    // MARK: generation (per token; evaluation-mode routing)

    public func makeState(batch: Int, maxLength: Int) throws -> StatelessState {
        guard router.isCausal else {
            throw BMError.invalid("router '\(routerName)' is not causal (each expert picks tokens from the whole batch), so a model using it cannot generate text; routers that can: \(RouterRegistry.causalNames(experts: E).joined(separator: ", "))")
        }
        return StatelessState()
    }

    /// Position by position (evaluation routing is per token): nothing carries over.
    public var prefillsInChunks: Bool { true }

    public func prefill(_ xIn: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, B: Int, L: Int, state: StatelessState, pass: Pass) {
        // generation is causal: each token routed by its own logits, whatever pass it is part of
        forward(xIn, y, B: B, L: L, pass: Pass.generate(bf16: pass.bf16).with(tokens: pass.tokens))
    }

    public func step(_ xIn: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, B: Int, state: StatelessState, pass: Pass) {
        prefill(xIn, y, B: B, L: 1, state: state, pass: pass)
    }
}
