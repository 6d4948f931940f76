import Foundation
import BMCore
import BMLayers

/// The block Mamba and S4D share (docs/mixers.md): in_proj → causal depthwise conv →
/// SiLU → SSM scan → SiLU gate → out_proj. What differs between the two is where the
/// scan's Δ, B and C come from, an `SSMDynamics`: computed from the input at every
/// position (`mamba`, Mamba.swift) or learned per channel (`s4d`, S4D.swift).
///
/// Names as in the Zyphra/BlackMamba state dict: `in_proj.weight [2E, D]`,
/// `conv1d.weight [E, 1, K]`, `conv1d.bias [E]`, (the dynamics' early parameters),
/// `dt_proj.bias [E]`, `A_log [E, N]`, (its late parameters), `D [E]`, `out_proj.weight [D, E]`.
///
/// Glossary (code ↔ paper): `xz` = in_proj output (x branch, z gate);
/// `xc` = causal conv output; `u` = silu(xc), the SSM input; `A` = −exp(A_log);
/// `y` = scan output; `g` = y ⊙ silu(z), the gated output.
/// With `gate: false` in_proj has only the x rows ([E, D]) and g = y; with
/// `skip_d: false` there is no D parameter.
public final class SSMBlock: GeneratingMixer {
    /// Options of the block that Mamba and S4D share.
    static let blockOptions: [OptionSpec] = [
        .int("d_state", 16, "SSM state size N per channel", min: 1, max: 256),
        .int("d_conv", 4, "causal depthwise conv width K", min: 1, max: 16),
        .int("expand", 2, "inner width E = expand · d_model", min: 1, max: 8),
        .double("dt_min", 0.001, "smallest initial Δ", min: 1e-6),
        .double("dt_max", 0.1, "largest initial Δ", min: 1e-6),
        .bool("gate", true, "multiply by silu(z) (off: no z branch)"),
        .bool("skip_d", true, "D·u skip connection"),
        .int("chunk", 16, "scan chunk length: states kept at chunk starts, recomputed inside in backward", min: 1),
    ]

    static let validateDt: @Sendable (ResolvedOptions, Int, String) throws -> Void = { o, _, ctx in
        if o.double("dt_min") > o.double("dt_max") { throw BMError.invalid("\(ctx): dt_min (\(o.double("dt_min"))) must not exceed dt_max (\(o.double("dt_max")))") }
    }

    public let D: Int, E: Int, N: Int, Ep: Int, K: Int
    public let gate: Bool, skipD: Bool, chunk: Int
    public let inProj: Param, convW: Param, convB: Param, dtB: Param, aLog: Param
    public let dSkip: Param?
    public let outProj: Param
    /// Where Δ, B and C come from.
    public let dynamics: SSMDynamics

    // Caches for backward (sized on first use; reused).
    private var h: UnsafePointer<Float>?
    let xz = FloatBuffer(), xc = FloatBuffer(), u = FloatBuffer()
    private let y = FloatBuffer(), g = FloatBuffer()
    let A = FloatBuffer()
    private let convWT = FloatBuffer(), boundaries = FloatBuffer(), state = FloatBuffer()
    // Backward scratch (T = B·L; P = channelParts(B), the parts a sequence's scan is split into).
    private let dGated = FloatBuffer()         // [T, E]: ∂loss/∂g, then ∂loss/∂y once the gate is undone
    private let dXZ = FloatBuffer()            // [T, xzWidth]: ∂loss/∂(x, z), in_proj's output
    private let dU = FloatBuffer()             // [T, E]: ∂loss/∂u (the scan's input), then ∂loss/∂xc
    private let dAPerSequence = FloatBuffer()  // [B, N, Ep]: ∂loss/∂A of each sequence, summed in order after
    private let dSkipPerSequence = FloatBuffer() // [B, E]: ∂loss/∂D of each sequence
    private let scanWork = FloatBuffer()       // [B·P, workSize]: the scan backward's per-part work area
    private let dConvPerSequence = FloatBuffer() // [B, K + 1, E]: each sequence's conv weight (K rows) and bias gradient
    private let sharedBCParts = FloatBuffer()  // [B·P, 2, L, N]: each part's share of a shared B and C gradient

    /// Parts per sequence of the scan: 1 when the batch gives every worker a sequence;
    /// else the channel blocks are split too (a single long sequence — batch-1 training
    /// at long contexts, prefill — uses every core). `channelSplit` fixes it (tests).
    nonisolated(unsafe) static var channelSplit: Int? = nil
    func channelParts(B: Int) -> Int {
        let blocks = Ep / 16
        if let forced = Self.channelSplit { return max(1, min(forced, blocks)) }
        return B >= Parallel.workers ? 1 : max(1, min(blocks, Parallel.workers / max(B, 1)))
    }
    /// Channels of part p of P: whole blocks of 16, as even as they come.
    func channelRange(part p: Int, of P: Int) -> Range<Int>? {
        guard P > 1 else { return nil }
        let blocks = Ep / 16
        return min(E, 16 * (p * blocks / P))..<min(E, 16 * ((p + 1) * blocks / P))
    }
    public let timer = PhaseTimer()
    public var phaseTimer: PhaseTimer? { timer }
    public let pluginName: String

    /// Per token, forward (E channels, N states, K conv taps): the causal depthwise
    /// conv 2·K·E (a product and a sum per tap); the scan 7·E·N (exp(Δ·A): 2, (Δ·u)·B:
    /// 1, h = Ā·h + B̄u: 2, y += C·h: 2); element-wise 4E for SiLU(xc), 4E for Mamba's
    /// softplus(Δ) (S4D's Δ is per channel, not per token), 2E for D·u, 6E for y·SiLU(z).
    /// Training: × 3, but the scan × 4 — its backward recomputes the forward inside each
    /// chunk from the states kept at chunk starts (docs/flops.md).
    public func flopTerms(seqLen: Int) -> [FlopTerm] {
        let e = Double(E), n = Double(N), k = Double(K)
        let elementwise = 4 * e + (dynamics is SelectiveDynamics ? 4 * e : 0) + (skipD ? 2 * e : 0) + (gate ? 6 * e : 0)
        return [FlopTerm("selective scan", 4 * 7 * e * n), FlopTerm("causal conv", 3 * 2 * k * e),
                FlopTerm("ssm element-wise", 3 * elementwise)]
    }

    public func activationFloats(B: Int, L: Int) -> Int {
        let T = B * L, xzW = (gate ? 2 : 1) * E
        let SN = N * Ep, chunks = (L + chunk - 1) / chunk
        let work = SN + 4 * chunk * N * 16
        // forward: xz, xc, u, y, g; boundaries, state   backward: dXZ, dGated, dU; dAPerSequence;
        // scanWork, dSkipPerSequence, dConvPerSequence
        // (plus what the dynamics hold)
        // a sequence split over channels (channelParts) has a work area per part and,
        // for a shared B, C, [L, N] gradient shares per part
        let P = channelParts(B: B)
        return T * (2 * xzW + 6 * E) + B * (chunks + 2) * SN + B * (P * work + (K + 2) * E)
            + (P > 1 ? B * P * 2 * L * N : 0)
            + dynamics.activationFloats(B: B, L: L)
    }

    /// Declares the block's parameters in state-dict order, the dynamics' own among them.
    init(_ ctx: MixerContext, _ o: ResolvedOptions, dynamics make: (SSMDims) -> SSMDynamics) {
        pluginName = ctx.pluginName
        D = ctx.width
        E = o.int("expand") * D
        N = o.int("d_state")
        Ep = (E + 15) / 16 * 16
        K = o.int("d_conv")
        gate = o.bool("gate"); skipD = o.bool("skip_d"); chunk = o.int("chunk")
        let ps = ctx.params, p = ctx.prefix
        let (E, N, K) = (E, N, K)
        inProj = ps.declare("\(p).in_proj.weight", [(gate ? 2 : 1) * E, D], init: ctx.hiddenInit(fanIn: D))
        let cb = 1 / Float(K).squareRoot()
        convW = ps.declare("\(p).conv1d.weight", [E, 1, K], init: .uniform(-cb, cb))
        convB = ps.declare("\(p).conv1d.bias", [E], init: .uniform(-cb, cb), decay: false)
        let dims = SSMDims(ctx: ctx, options: o, D: D, E: E, N: N, Ep: Ep)
        dynamics = make(dims)
        dynamics.declareEarly(dims)
        let (dtMin, dtMax) = (o.double("dt_min"), o.double("dt_max"))
        dtB = ps.declare("\(p).dt_proj.bias", [E], init: .custom({ rng, buf in
            SSMBlock.initDtBias(&rng, buf, dtMin: dtMin, dtMax: dtMax)
        }), decay: false, group: .ssm)
        aLog = ps.declare("\(p).A_log", [E, N], init: .custom({ _, buf in
            for c in 0..<E { for n in 0..<N { buf[c * N + n] = Float(log(Double(n + 1))) } }
        }), decay: false, group: .ssm)
        dynamics.declareLate(dims)
        dSkip = skipD ? ps.declare("\(p).D", [E], init: .ones, decay: false) : nil
        outProj = ps.declare("\(p).out_proj.weight", [D, E], init: ctx.outputInit(fanIn: E))
    }

    /// dt = exp(U(0,1)·(ln dt_max − ln dt_min) + ln dt_min), clamped ≥ 1e-4; bias = softplus⁻¹(dt).
    static func initDtBias(_ rng: inout RNG, _ buf: UnsafeMutableBufferPointer<Float>, dtMin: Double, dtMax: Double) {
        for i in 0..<buf.count {
            var dt = exp(rng.uniform() * (log(dtMax) - log(dtMin)) + log(dtMin))
            dt = max(dt, 1e-4)
            buf[i] = Float(dt + log(-expm1(-dt)))
        }
    }

    public var inWidth: Int { D }
    public var outWidth: Int { D }
    public var parameters: [Param] {
        [inProj, convW, convB] + dynamics.early + [dtB, aLog] + dynamics.late + [dSkip].compactMap { $0 } + [outProj]
    }
    var xzWidth: Int { gate ? 2 * E : E }

    /// A = −exp(A_log) as [N, Ep] (channels padded with zeros); conv weight transposed
    /// to [K, E]; what the dynamics derive from their parameters.
    private func prepare() {
        let a = A.ensure(N * Ep), al = aLog.w
        a.update(repeating: 0, count: N * Ep)
        for c in 0..<E { for n in 0..<N { a[n * Ep + c] = -Foundation.exp(al[c * N + n]) } }
        CausalConv.transpose(convW.w, into: convWT.ensure(K * E), C: E, K: K)
        dynamics.prepare(self)
    }

    // MARK: forward

    // h: [B, L, D] → out: [B, L, D]
    public func forward(_ hIn: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, B: Int, L: Int, pass: Pass) {
        run(hIn, out, B: B, L: L, from: nil, pass: pass)
    }

    /// The forward pass, starting from a generation state (its last K−1 conv inputs and
    /// its SSM state) when given, from zeros otherwise — a fresh state is zeros, so a
    /// prompt can be prefilled in chunks.
    private func run(_ hIn: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, B: Int, L: Int, from initial: State?, pass: Pass) {
        let T = B * L
        h = hIn
        timer.start()
        prepare()
        // 1. xz = h · in_projᵀ                                  xz: [T, 2E]
        let xzp = xz.ensure(T * xzWidth)
        matmulXWt(hIn, inProj.w, xzp, T: T, inDim: D, outDim: xzWidth, bf16: pass.bf16)
        timer.mark("fwd in_proj")
        // 2. causal depthwise conv, u = silu(xc)               xc, u: [T, E]
        let xcp = xc.ensure(T * E), up = u.ensure(T * E)
        let history = initial.map { UnsafePointer($0.conv.pointer) }
        Parallel.forEach(B) { b in
            conv(x: xzp + b * L * xzWidth, ldx: xzWidth, xc: xcp + b * L * E, L: L, history: history.map { $0 + b * K * E })
            vsilu(xcp + b * L * E, up + b * L * E, count: L * E)
        }
        timer.mark("fwd conv, silu")
        // 3–4. Δ, B, C (Mamba: x_proj, dt_proj, softplus; S4D: its parameters)
        let inp = dynamics.forward(self, u: up, B: B, L: L, pass: pass)
        timer.mark("fwd x_proj, dt_proj, softplus")
        // 5–6. selective scan, per sequence in parallel          y: [T, E]
        let yp = y.ensure(T * E)
        let sh = dynamics.scanShape(self, L: L)
        let SN = N * Ep
        let bnd = boundaries.ensure(B * sh.chunks * SN), stp = state.ensure(B * SN)
        let ap = A.pointer, dsk = dSkip?.w
        let s0Initial = initial.map { UnsafePointer($0.ssm.pointer) }
        for b in 0..<B {
            let s0 = stp + b * SN
            if let s0Initial { s0.update(from: s0Initial + b * SN, count: SN) } else { s0.update(repeating: 0, count: SN) }
        }
        let P = channelParts(B: B)
        Parallel.forEach(B * P) { i in
            let b = i / P
            SelectiveScan.forward(sh, u: up + b * L * E, delta: inp.delta + b * inp.deltaStride, A: ap,
                                  Bm: inp.b + b * inp.bcStride, Cm: inp.c + b * inp.bcStride, D: dsk.map { UnsafePointer($0) },
                                  y: yp + b * L * E, state: stp + b * SN, boundaries: bnd + b * sh.chunks * SN,
                                  channels: channelRange(part: i % P, of: P))
        }
        timer.mark("fwd scan")
        // 7. gate and out_proj                                  g: [T, E], out: [T, D]
        let gp = gated(B: B, L: L)
        matmulXWt(gp, outProj.w, out, T: T, inDim: E, outDim: D, bf16: pass.bf16)
        timer.mark("fwd gate, out_proj")
    }

    /// g = y ⊙ silu(z) (or y when the gate is off).
    private func gated(B: Int, L: Int) -> UnsafeMutablePointer<Float> {
        let yp = y.pointer
        guard gate else { return yp }
        let gp = g.ensure(B * L * E), xzp = xz.pointer
        Parallel.forEach(B) { b in
            for t in b * L..<(b + 1) * L {
                let z = xzp + t * 2 * E + E, yr = yp + t * E, gr = gp + t * E
                mapSIMD(z, gr, E) { vsilu($0) }
                for c in 0..<E { gr[c] *= yr[c] }
            }
        }
        return gp
    }

    /// xc[t, c] = bias[c] + Σ_k w[c, k] · x[t − (K−1) + k, c]  for one sequence
    /// (`CausalConv`); positions before it are zeros, or rows of `history` ([K, E]).
    private func conv(x: UnsafePointer<Float>, ldx: Int, xc: UnsafeMutablePointer<Float>, L: Int,
                      history: UnsafePointer<Float>? = nil) {
        CausalConv.forward(x: x, ld: ldx, out: xc, L: L, C: E, K: K, wt: convWT.pointer, bias: convB.w, history: history)
    }

    // MARK: backward

    // dout: [B, L, D] → dh: [B, L, D]. The forward's steps undone in reverse order, each
    // its own function: out_proj, the gate, the scan (and its parameters), SiLU and the
    // conv, in_proj.
    public func backward(_ dout: UnsafePointer<Float>, _ dh: UnsafeMutablePointer<Float>, B: Int, L: Int, pass: Pass) {
        guard let h else { preconditionFailure("SSMBlock.backward before forward") }
        timer.start()
        let dg = outProjBackward(dout, B: B, L: L)
        timer.mark("bwd out_proj")
        let dxz = dXZ.ensure(B * L * xzWidth)
        if gate { gateBackward(dg, dz: dxz + E, B: B, L: L) }
        timer.mark("bwd gate")
        let du = scanBackward(dy: dg, B: B, L: L)
        timer.mark("bwd scan")
        dynamics.backward(self, du: du, B: B, L: L)
        timer.mark("bwd dA, softplus, dt_proj, x_proj")
        siluConvBackward(du, dx: dxz, B: B, L: L)
        timer.mark("bwd silu, conv")
        // in_proj: dW += dxzᵀ·h; dh = dxz·W
        matmulDyTX(dxz, h, inProj.g, T: B * L, inDim: D, outDim: xzWidth)
        matmulDyW(dxz, inProj.w, dh, T: B * L, inDim: D, outDim: xzWidth)
        timer.mark("bwd in_proj")
    }

    /// out_proj: dW += doutᵀ·g; returns dg = dout·W.    dout: [T, D] → dg: [T, E]
    private func outProjBackward(_ dout: UnsafePointer<Float>, B: Int, L: Int) -> UnsafeMutablePointer<Float> {
        let T = B * L
        let gp = gate ? g.pointer : y.pointer
        matmulDyTX(dout, gp, outProj.g, T: T, inDim: E, outDim: D)
        let dg = dGated.ensure(T * E)
        matmulDyW(dout, outProj.w, dg, T: T, inDim: E, outDim: D)
        return dg
    }

    /// The gate g = y · silu(z): dz = dg · y · silu'(z), written into `dz` (rows of
    /// stride 2E: the z half of dXZ), and dy = dg · silu(z), in place of dg.
    /// dg: [T, E] → dy: [T, E] (same memory), dz: [T, E] at stride 2E
    private func gateBackward(_ dg: UnsafeMutablePointer<Float>, dz dzOut: UnsafeMutablePointer<Float>, B: Int, L: Int) {
        let xzp = xz.pointer, yp = y.pointer
        Parallel.forEach(B) { b in for t in b * L..<(b + 1) * L {
            let z = xzp + t * 2 * E + E, dz = dzOut + t * 2 * E, dr = dg + t * E, yr = yp + t * E
            var c = 0
            while c + 16 <= E {
                let zv = ld(z, c), s = vsigmoid(zv), gv = ld(dr, c)
                st(dz, c, siluBackward(gv * ld(yr, c), zv, sigmoid: s))
                st(dr, c, gv * zv * s)
                c += 16
            }
            while c < E {
                let sg = sigmoid(z[c])
                dz[c] = siluBackward(dr[c] * yr[c], z[c], sigmoid: sg)
                dr[c] *= z[c] * sg
                c += 1
            }
        } }
    }

    /// The selective scan's backward, per sequence in parallel (and over channel parts
    /// when the batch is small): returns du, the gradient at the scan's input u, and
    /// writes the gradients of Δ, B and C into the dynamics' targets; ∂A_log and ∂D are
    /// accumulated from per-sequence sums added in a fixed order.    dy: [T, E] → du: [T, E]
    private func scanBackward(dy: UnsafePointer<Float>, B: Int, L: Int) -> UnsafeMutablePointer<Float> {
        let sh = dynamics.scanShape(self, L: L), SN = N * Ep
        let du = dU.ensure(B * L * E)
        let grads = dynamics.gradientTargets(self, B: B, L: L)
        let dA = dAPerSequence.ensure(B * SN), dSkipB = dSkipPerSequence.ensure(B * E)
        dA.update(repeating: 0, count: B * SN); dSkipB.update(repeating: 0, count: B * E)
        let P = channelParts(B: B)
        let work = scanWork.ensure(B * P * sh.workSize)
        let up = u.pointer, ap = A.pointer
        let inp = dynamics.scanInputs(self, B: B, L: L)
        let bnd = boundaries.pointer, dsk = dSkip?.w
        // A sequence split over channels: each part's share of a shared B or C gradient
        // ([L, N] each) is added up afterwards, in part order.
        let shared = P > 1 && (sh.bC == 0 || sh.cC == 0)
        let parts = shared ? sharedBCParts.ensure(B * P * 2 * L * N) : nil
        if let parts { parts.update(repeating: 0, count: B * P * 2 * L * N) }
        Parallel.forEach(B * P) { i in
            let b = i / P
            let mine = parts.map { $0 + i * 2 * L * N }
            SelectiveScan.backward(sh, u: up + b * L * E, delta: inp.delta + b * inp.deltaStride, A: ap,
                                   Bm: inp.b + b * inp.bcStride, Cm: inp.c + b * inp.bcStride, D: dsk.map { UnsafePointer($0) },
                                   boundaries: bnd + b * sh.chunks * SN, gy: dy + b * L * E,
                                   du: du + b * L * E, dDelta: grads.delta + b * grads.deltaStride,
                                   dB: grads.b + b * grads.bcStride, dC: grads.c + b * grads.bcStride,
                                   dA: dA + b * SN, dD: dSkipB + b * E, work: work + i * sh.workSize,
                                   channels: channelRange(part: i % P, of: P),
                                   sharedDB: sh.bC == 0 ? mine : nil, sharedDC: sh.cC == 0 ? mine.map { $0 + L * N } : nil)
        }
        if let parts {
            for b in 0..<B {
                let db = grads.b + b * grads.bcStride, dc = grads.c + b * grads.bcStride
                for p in 0..<P {
                    let part = parts + (b * P + p) * 2 * L * N
                    for t in 0..<L {
                        for n in 0..<N {
                            if sh.bC == 0 { db[t * sh.bT + n * sh.bN] += part[t * N + n] }
                            if sh.cC == 0 { dc[t * sh.cT + n * sh.cN] += part[L * N + t * N + n] }
                        }
                    }
                }
            }
        }
        // Reduce per-sequence dA, dD in a fixed order; ∂A_log = ∂A · A.
        let al = aLog.g
        for b in 0..<B { for c in 0..<E { for n in 0..<N {
            al[c * N + n] += dA[b * SN + n * Ep + c] * ap[n * Ep + c]
        } } }
        if let dS = dSkip { for b in 0..<B { for c in 0..<E { dS.g[c] += dSkipB[b * E + c] } } }
        return du
    }

    /// u = silu(xc), xc = conv(x): ∂xc = ∂u · silu'(xc) (in place of du), then the conv's
    /// backward writes ∂x into the x half of dXZ (rows of stride xzWidth) and adds the
    /// conv weight and bias gradients, per sequence and then in sequence order.
    /// du: [T, E] → dx: [T, E] at stride xzWidth
    private func siluConvBackward(_ du: UnsafeMutablePointer<Float>, dx: UnsafeMutablePointer<Float>, B: Int, L: Int) {
        let xcp = xc.pointer, xzp = xz.pointer
        let dConv = dConvPerSequence.ensure(B * (K + 1) * E)
        dConv.update(repeating: 0, count: B * (K + 1) * E)
        Parallel.forEach(B) { b in
            let lo = b * L * E, hi = lo + L * E
            var k = lo
            while k + 16 <= hi {
                let v = ld(xcp, k), s = vsigmoid(v)
                st(du, k, siluBackward(ld(du, k), v, sigmoid: s))
                k += 16
            }
            while k < hi {
                let v = xcp[k], s = sigmoid(v)
                du[k] *= siluDerivative(v, sigmoid: s)
                k += 1
            }
            let part = dConv + b * (K + 1) * E       // [K, E] weight, then [E] bias
            convBackward(x: xzp + b * L * xzWidth, ldx: xzWidth, dxc: du + b * L * E,
                         dx: dx + b * L * xzWidth, L: L, dwt: part, dbias: part + K * E)
        }
        for b in 0..<B {
            let part = dConv + b * (K + 1) * E
            for c in 0..<E {
                for k in 0..<K { convW.g[c * K + k] += part[k * E + c] }
                convB.g[c] += part[K * E + c]
            }
        }
    }

    /// For one sequence (`CausalConv.backward`): dx written (stride ldx), dwt [K, E] and dbias added.
    private func convBackward(x: UnsafePointer<Float>, ldx: Int, dxc: UnsafePointer<Float>,
                              dx: UnsafeMutablePointer<Float>, L: Int, dwt: UnsafeMutablePointer<Float>,
                              dbias gb: UnsafeMutablePointer<Float>) {
        CausalConv.backward(x: x, ld: ldx, dout: dxc, dx: dx, ldx: ldx, L: L, C: E, K: K, wt: convWT.pointer, dwt: dwt, dbias: gb)
    }

    // MARK: generation

    public final class State: MixerState {
        public let conv: FloatBuffer      // [B, K, E]: last K raw x values, oldest first
        public let ssm: FloatBuffer       // [B, N, Ep]
        let B: Int
        init(B: Int, K: Int, E: Int, N: Int, Ep: Int) {
            self.B = B
            conv = FloatBuffer(count: B * K * E); ssm = FloatBuffer(count: B * N * Ep)
        }
        public var bytes: Int { (conv.capacity + ssm.capacity) * 4 }
    }

    /// Generation assumes the weights do not change between makeState/prefill and
    /// the steps: the derived tensors (A = −exp(A_log), the transposed conv weight,
    /// S4D's Δ, B, C) are computed here once instead of at every token.
    public func makeState(batch: Int, maxLength: Int) throws -> State {
        prepare()
        return State(B: batch, K: K, E: E, N: N, Ep: Ep)
    }

    /// The conv history and SSM state carry over between calls.
    public var prefillsInChunks: Bool { true }

    public func prefill(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, B: Int, L: Int, state s: State, pass: Pass) {
        run(x, out, B: B, L: L, from: s, pass: pass)           // continues from the state: prompts can come in chunks
        let cv = s.conv.pointer, xzp = xz.pointer
        for b in 0..<B { pushHistory(cv + b * K * E, x: xzp + b * L * xzWidth, ldx: xzWidth, L: L) }
        s.ssm.pointer.update(from: state.pointer, count: B * N * Ep)
    }

    /// Appends a sequence's L raw conv inputs (rows of `x`, stride ldx) to its history [K, E].
    private func pushHistory(_ cv: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, ldx: Int, L: Int) {
        CausalConv.pushHistory(cv, x: x, ld: ldx, L: L, C: E, K: K)
    }

    private let stepXZ = FloatBuffer(), stepU = FloatBuffer(), stepY = FloatBuffer()

    // x: [B, D] → out: [B, D], one token per sequence
    public func step(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, B: Int, state s: State, pass: Pass) {
        let xzp = stepXZ.ensure(B * xzWidth)
        matmulXWt(x, inProj.w, xzp, T: B, inDim: D, outDim: xzWidth, bf16: pass.bf16)
        let cv = s.conv.pointer
        let up = stepU.ensure(B * E)
        for b in 0..<B {
            let cs = cv + b * K * E, xr = xzp + b * xzWidth
            conv(x: xr, ldx: xzWidth, xc: up + b * E, L: 1, history: cs)
            pushHistory(cs, x: xr, ldx: xzWidth, L: 1)
        }
        vsilu(up, up, count: B * E)
        let yp = stepY.ensure(B * E)
        let sh = dynamics.scanShape(self, L: 1)
        let inp = dynamics.step(self, u: up, B: B, pass: pass)
        for b in 0..<B {
            SelectiveScan.forward(sh, u: up + b * E, delta: inp.delta + b * inp.deltaStride, A: A.pointer,
                                  Bm: inp.b + b * inp.bcStride, Cm: inp.c + b * inp.bcStride,
                                  D: dSkip.map { UnsafePointer($0.w) }, y: yp + b * E,
                                  state: s.ssm.pointer + b * N * Ep, boundaries: nil)
            if gate {
                let z = xzp + b * xzWidth + E, yr = yp + b * E
                for c in 0..<E { yr[c] *= z[c] / (1 + Foundation.exp(-z[c])) }
            }
        }
        matmulXWt(yp, outProj.w, out, T: B, inDim: E, outDim: D, bf16: pass.bf16)
    }
}

/// The block's sizes, the builder's context and the options, as the dynamics see them
/// when they declare their parameters.
public struct SSMDims {
    public let ctx: MixerContext, options: ResolvedOptions
    public let D: Int, E: Int, N: Int, Ep: Int
}

/// Where the scan reads Δ and B, C for a batch: base pointers and the stride from one
/// sequence to the next (0 when shared by every sequence, as S4D's are).
public struct ScanInputs {
    public var delta: UnsafePointer<Float>, deltaStride: Int
    public var b: UnsafePointer<Float>, c: UnsafePointer<Float>, bcStride: Int
}

/// Where the scan's backward writes ∂Δ, ∂B, ∂C (zeroed), with per-sequence strides.
public struct ScanGradients {
    public var delta: UnsafeMutablePointer<Float>, deltaStride: Int
    public var b: UnsafeMutablePointer<Float>, c: UnsafeMutablePointer<Float>, bcStride: Int
}

/// What distinguishes Mamba from S4D inside `SSMBlock`: where the scan's Δ, B and C
/// come from, their parameters (declared in state-dict order: `early` between conv1d
/// and dt_proj.bias, `late` between A_log and D), and their gradients.
public protocol SSMDynamics: AnyObject {
    var early: [Param] { get }
    var late: [Param] { get }
    func declareEarly(_ dims: SSMDims)
    func declareLate(_ dims: SSMDims)
    /// Floats of the activation caches and scratch they hold for a training step of [B, L].
    func activationFloats(B: Int, L: Int) -> Int
    /// The scan's strides for sequences of L (Mamba: per position; S4D: shared).
    func scanShape(_ blk: SSMBlock, L: Int) -> ScanShape
    /// Tensors derived from the parameters once per forward or generation state.
    func prepare(_ blk: SSMBlock)
    /// Δ, B, C of a batch from u [B·L, E] (the conv output after SiLU).
    func forward(_ blk: SSMBlock, u: UnsafePointer<Float>, B: Int, L: Int, pass: Pass) -> ScanInputs
    /// The inputs `forward` produced last (for the backward pass).
    func scanInputs(_ blk: SSMBlock, B: Int, L: Int) -> ScanInputs
    /// Δ, B, C of one token per sequence, u: [B, E] (generation).
    func step(_ blk: SSMBlock, u: UnsafePointer<Float>, B: Int, pass: Pass) -> ScanInputs
    /// Zeroed destinations for the scan's ∂Δ, ∂B, ∂C.
    func gradientTargets(_ blk: SSMBlock, B: Int, L: Int) -> ScanGradients
    /// After the scan's backward: the gradients of dt_proj.bias and of their own
    /// parameters; adds what flows back to u through their projections into `du`.
    func backward(_ blk: SSMBlock, du: UnsafeMutablePointer<Float>, B: Int, L: Int)
}
