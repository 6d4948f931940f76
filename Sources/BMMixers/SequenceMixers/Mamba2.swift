import Foundation
import BMCore
import BMLayers

/// Mamba-2 (Dao & Gu 2024, "Transformers are SSMs", arXiv 2405.21060, §7; state-spaces/mamba
/// `mamba_ssm/modules/mamba2.py`): the state matrix is a scalar per head, so a head's
/// state is a P × N matrix moved by one decay per token,
///
///     Δ_t = softplus(dt_t + dt_bias_h)    a_t = exp(Δ_t · A_h)    A_h = −exp(A_log_h)
///     S_t = a_t · S_{t−1} + Δ_t · x_t B_tᵀ    y_t = S_t C_t + D_h · x_t
///
/// with H = d_inner / headdim heads of dimension P = headdim, B and C (N = d_state) shared
/// by the heads of a group (G = ngroups; head h reads group h ÷ (H/G)). The block: one
/// projection `in_proj` gives z, x, B, C and dt ("parallel projections"); a causal
/// depthwise conv and SiLU run over x, B and C; the scan; a gated RMSNorm
/// `rmsnorm(y ⊙ silu(z)) · w` per group of d_inner/G channels; `out_proj`.
///
/// Names and shapes as `Mamba2` (PyTorch `[out, in]`): `in_proj.weight [2E + 2GN + H, D]`
/// (rows z, x, B, C, dt), `conv1d.weight [E + 2GN, 1, K]`, `conv1d.bias`, `dt_bias [H]`,
/// `A_log [H]`, `D [H]`, `norm.weight [E]`, `out_proj.weight [D, E]`.
///
/// The scan (`scan` option): `chunked` (default) runs the SSD algorithm over chunks of
/// `chunk` positions as matrix products (`ChunkedSSD`), keeping one state a chunk;
/// `recurrent` steps the recurrence token by token and keeps every state (B·L·E·N floats;
/// its backward is the adjoint recurrence, docs/mixers.md) — the reference the chunked
/// algorithm is tested against. Sequences run in parallel either way. Generation steps
/// the recurrence with a conv history and the state; a prompt prefills chunked.
public final class Mamba2: GeneratingMixer {
    public static let entry = MixerEntry(
        name: "mamba2", kind: .sequence,
        summary: "Mamba-2: scalar decay per head, multi-head state, grouped B and C, gated RMSNorm; chunked SSD scan",
        options: [
            .int("d_state", 64, "state size N per head channel", min: 1, max: 256),
            .int("d_conv", 4, "causal depthwise conv width K", min: 1, max: 16),
            .int("expand", 2, "inner width E = expand · d_model", min: 1, max: 8),
            .int("headdim", 64, "head dimension P (must divide E); H = E / P heads", min: 1),
            .int("ngroups", 1, "groups G sharing B and C (must divide H)", min: 1),
            .double("dt_min", 0.001, "smallest initial Δ", min: 1e-6),
            .double("dt_max", 0.1, "largest initial Δ", min: 1e-6),
            .choice("scan", "chunked", ["chunked", "recurrent"], "chunked SSD (matrix products over chunks) or the token-by-token recurrence"),
            .int("chunk", 64, "chunk length Q of the chunked scan (the reference's chunk_size)", min: 1, max: 4096),
        ],
        variants: [[:], ["ngroups": .int(2)], ["d_conv": .int(2), "expand": .int(1)], ["scan": .string("recurrent"), "ngroups": .int(2)]],
        validate: { o, width, ctx in
            let E = o.int("expand") * width, P = o.int("headdim"), G = o.int("ngroups")
            if E % P != 0 { throw BMError.invalid("\(ctx): headdim (\(P)) must divide the inner width expand · d_model (\(E))") }
            if (E / P) % G != 0 { throw BMError.invalid("\(ctx): ngroups (\(G)) must divide the number of heads (\(E / P) = \(E) / headdim \(P))") }
            if o.double("dt_min") > o.double("dt_max") { throw BMError.invalid("\(ctx): dt_min (\(o.double("dt_min"))) must not exceed dt_max (\(o.double("dt_max")))") }
        },
        build: { ctx, o in Mamba2(ctx, o) })

    public let D: Int, E: Int, N: Int, K: Int, P: Int, H: Int, G: Int
    /// Conv channels (x, B, C) and in_proj rows (z, x, B, C, dt).
    public let Cc: Int, W: Int
    public let inProj: Param, convW: Param, convB: Param, dtBias: Param, aLog: Param, dSkip: Param, normW: Param, outProj: Param
    public let pluginName: String
    /// The chunked scan's dimensions and chunk length; nil: the recurrence.
    let ssd: ChunkedSSD?
    static let eps: Float = 1e-5

    // Forward caches (T = B·L), kept for backward.
    private var u: UnsafePointer<Float>?
    private let zx = FloatBuffer()          // [T, W]: in_proj's output (z, xBC, dt)
    private let xcPre = FloatBuffer()       // [T, Cc]: the conv's output, before SiLU
    private let xc = FloatBuffer()          // [T, Cc]: silu(xcPre): x, B, C
    private let delta = FloatBuffer()       // [T, H]: Δ
    private let decay = FloatBuffer()       // [T, H]: a = exp(Δ·A)
    private let states = FloatBuffer()      // recurrent: [T, H, P, N], S_t after token t; chunked: [B, ⌈L/Q⌉, H, P, N], the state entering each chunk
    private let ssdScratch = FloatBuffer()  // chunked: [B, ChunkedSSD.scratchFloats]
    private var ranChunked = false          // which scan the last forward ran
    private let y = FloatBuffer()           // [T, E]: the scan's output (D skip included)
    private let rstd = FloatBuffer()        // [T, G]: the gated norm's 1/rms
    private let normed = FloatBuffer()      // [T, E]: out_proj's input
    private let A = FloatBuffer()           // [H]: −exp(A_log)
    private let convWT = FloatBuffer()      // [K, Cc]: the conv weight, transposed (CausalConv)
    // Backward scratch.
    private let dNormed = FloatBuffer()     // [T, E]
    private let dZX = FloatBuffer()         // [T, W]: ∂ in_proj's output
    private let dY = FloatBuffer()          // [T, E]: ∂y
    private let dXC = FloatBuffer()         // [T, Cc]: ∂ silu output, then ∂ conv output
    private let gState = FloatBuffer()      // [B, P, N]: the running adjoint G of one head per sequence
    private let partials = FloatBuffer()    // [B, E + 3H + K·Cc + Cc]: per-sequence gradients of the small parameters (conv weight transposed)
    private var shape = (B: 0, L: 0)

    init(_ ctx: MixerContext, _ o: ResolvedOptions) {
        pluginName = ctx.pluginName
        D = ctx.width; E = o.int("expand") * D; N = o.int("d_state"); K = o.int("d_conv")
        P = o.int("headdim"); H = E / P; G = o.int("ngroups")
        Cc = E + 2 * G * N; W = 2 * E + 2 * G * N + H
        ssd = o.string("scan") == "chunked" ? ChunkedSSD(E: E, N: N, P: P, H: H, G: G, Cc: Cc, Q: o.int("chunk")) : nil
        let ps = ctx.params, p = ctx.prefix
        let (H, K) = (H, K)
        inProj = ps.declare("\(p).in_proj.weight", [W, D], init: ctx.hiddenInit(fanIn: D))
        let cb = 1 / Float(K).squareRoot()
        convW = ps.declare("\(p).conv1d.weight", [Cc, 1, K], init: .uniform(-cb, cb))
        convB = ps.declare("\(p).conv1d.bias", [Cc], init: .uniform(-cb, cb), decay: false)
        let (dtMin, dtMax) = (o.double("dt_min"), o.double("dt_max"))
        dtBias = ps.declare("\(p).dt_bias", [H], init: .custom({ rng, buf in
            SSMBlock.initDtBias(&rng, buf, dtMin: dtMin, dtMax: dtMax)
        }), decay: false, group: .ssm)
        // A = −U(1, 16) per head (A_init_range (1, 16))
        aLog = ps.declare("\(p).A_log", [H], init: .custom({ rng, buf in
            for h in 0..<H { buf[h] = Float(log(1 + 15 * rng.uniform())) }
        }), decay: false, group: .ssm)
        dSkip = ps.declare("\(p).D", [H], init: .ones, decay: false)
        normW = ps.declare("\(p).norm.weight", [E], init: .ones, decay: false)
        outProj = ps.declare("\(p).out_proj.weight", [D, E], init: ctx.outputInit(fanIn: E))
    }

    public var inWidth: Int { D }
    public var outWidth: Int { D }
    public var parameters: [Param] { [inProj, convW, convB, dtBias, aLog, dSkip, normW, outProj] }

    /// Per token. The recurrence: forward 5·E·N (a·S, Δx·Bᵀ added: 3 per state entry; S·C:
    /// 2), backward 11·E·N (the adjoint G: 3; ∂x, ∂B, ∂C, ⟨G, S⟩: 2 each) — it keeps the
    /// states, so nothing is recomputed. The chunked scan, with q̄ = Σ q_c² / L (q_c the
    /// chunk lengths; Q when L is a multiple of Q), as it computes (the full q × q CBᵀ, every
    /// chunk with an entering and a leaving state): forward CBᵀ 2q̄GN, M·Xd 2q̄E, Y_off and
    /// S_out 4EN; backward CBᵀ again 2q̄GN, ∂C and ∂B from ∂(CBᵀ) 4q̄GN, ∂M and ∂Xd 4q̄E,
    /// the state terms 8EN; element-wise (decays, masks, the ∂α sums, scalings) 3.5·H·q̄ +
    /// 17E + 6·H·N. Both: the conv 2·K·Cc; element-wise SiLU of the conv 4·Cc, softplus and
    /// exp of Δ 6·H, D·x 2E, y·silu(z) 6E, the RMSNorm 5E (× 3).
    public func flopTerms(seqLen: Int) -> [FlopTerm] {
        let e = Double(E), n = Double(N), c = Double(Cc), h = Double(H)
        let common = [FlopTerm("causal conv", 3 * 2 * Double(K) * c),
                      FlopTerm("ssm element-wise", 3 * (4 * c + 6 * h + 2 * e + 6 * e + 5 * e))]
        guard let ssd else { return [FlopTerm("ssd recurrence", (5 + 11) * e * n)] + common }
        let L = max(1, seqLen), full = L / ssd.Q, rest = L % ssd.Q
        let qBar = Double(full * ssd.Q * ssd.Q + rest * rest) / Double(L), gn = Double(G) * n
        return [FlopTerm("ssd chunk products", 8 * qBar * gn + 6 * qBar * e + 12 * e * n),
                FlopTerm("ssd chunk element-wise", 3.5 * h * qBar + 17 * e + 6 * h * n)] + common
    }

    public func activationFloats(B: Int, L: Int) -> Int {
        let T = B * L
        // forward: zx, xcPre, xc, Δ, a, states, y, rstd, normed; backward: dNormed, dZX, dY, dXC, G or scratch, partials
        let scan = ssd.map { B * ($0.stateFloats(L: L) + $0.scratchFloats) } ?? T * E * N + B * P * N
        return T * (W + 2 * Cc + 2 * H + 2 * E + G) + scan + T * (2 * E + W + Cc) + B * (E + 3 * H + Cc * (K + 1)) + H + K * Cc
    }

    private func prepare() {
        let a = A.ensure(H)
        for h in 0..<H { a[h] = -Foundation.exp(aLog.w[h]) }
        CausalConv.transpose(convW.w, into: convWT.ensure(K * Cc), C: Cc, K: K)
    }

    // MARK: forward

    // u: [B, L, D] → out: [B, L, D]
    public func forward(_ uIn: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, B: Int, L: Int, pass: Pass) {
        u = uIn; shape = (B, L)
        run(uIn, out, B: B, L: L, state: nil, pass: pass)
    }

    /// The forward, from zero state or (generation's prefill) from `state`, which it leaves
    /// after position L−1.
    private func run(_ uIn: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, B: Int, L: Int, state: State?, pass: Pass) {
        let T = B * L
        if state == nil { prepare() }          // generation: made once, with the state
        let zxp = zx.ensure(T * W)
        matmulXWt(uIn, inProj.w, zxp, T: T, inDim: D, outDim: W, bf16: pass.bf16)      // zx: [T, W]
        let pre = xcPre.ensure(T * Cc), xcp = xc.ensure(T * Cc), dl = delta.ensure(T * H), ap = decay.ensure(T * H)
        // the chunked scan for more than one position (a generated token steps the recurrence)
        let chunked = ssd != nil && L > 1
        if state == nil { ranChunked = chunked }
        let perSeq = chunked ? ssd!.stateFloats(L: L) : L * E * N
        let st = states.ensure(B * perSeq), np = normed.ensure(T * E)
        let scratch = chunked ? ssdScratch.ensure(B * ssd!.scratchFloats) : nil
        let yp = y.ensure(T * E); _ = rstd.ensure(T * G)
        Parallel.forEach(B) { b in
            let o = b * L
            CausalConv.forward(x: zxp + o * W + E, ld: W, out: pre + o * Cc, L: L, C: Cc, K: K, wt: convWT.pointer, bias: convB.w,
                               history: state.map { UnsafePointer($0.conv.pointer + b * K * Cc) })
            vsilu(pre + o * Cc, xcp + o * Cc, count: L * Cc)
            for t in o..<o + L {
                for h in 0..<H {
                    let raw = zxp[t * W + 2 * E + 2 * G * N + h] + dtBias.w[h]
                    let dv = raw > 20 ? raw : log1pf(expf(raw))
                    dl[t * H + h] = dv
                    ap[t * H + h] = expf(dv * A.pointer[h])
                }
            }
            let ssm = state.map { $0.ssm.pointer + b * E * N }           // [H, P, N] of sequence b, in and out
            if let ssd, chunked {
                ssd.forward(L: L, xc: xcp + o * Cc, delta: dl + o * H, decay: ap + o * H, D: dSkip.w,
                            initial: ssm.map { UnsafePointer($0) }, states: st + b * perSeq, final: ssm,
                            y: yp + o * E, scratch: scratch! + b * ssd.scratchFloats)
            } else {
                scan(b: b, L: L, initial: ssm.map { UnsafePointer($0) })
                ssm?.update(from: st + (o + L - 1) * E * N, count: E * N)
            }
            for t in o..<o + L { gatedNorm(t) }
            if let state { CausalConv.pushHistory(state.conv.pointer + b * K * Cc, x: zxp + o * W + E, ld: W, L: L, C: Cc, K: K) }
        }
        matmulXWt(np, outProj.w, out, T: T, inDim: E, outDim: D, bf16: pass.bf16)       // out: [T, D]
    }

    /// S_t = a_t S_{t−1} + Δ_t x_t B_tᵀ; y_t = S_t C_t + D x_t, for every head of sequence b.
    private func scan(b: Int, L: Int, initial: UnsafePointer<Float>?) {
        let o = b * L, xcp = xc.pointer, dl = delta.pointer, ap = decay.pointer, st = states.pointer, yp = y.pointer
        let gsz = H / G
        for t in o..<o + L {
            let x = xcp + t * Cc, Bm = x + E, Cm = x + E + G * N
            for h in 0..<H {
                let g = h / gsz, bv = Bm + g * N, cv = Cm + g * N
                let a = ap[t * H + h], dv = dl[t * H + h]
                let s = st + (t * H + h) * P * N
                let prev: UnsafePointer<Float>? = t > o ? UnsafePointer(st + ((t - 1) * H + h) * P * N) : initial.map { $0 + h * P * N }
                for p in 0..<P {
                    let dx = dv * x[h * P + p], sr = s + p * N
                    if let prev {
                        let pr = prev + p * N
                        for n in 0..<N { sr[n] = a * pr[n] + dx * bv[n] }
                    } else {
                        for n in 0..<N { sr[n] = dx * bv[n] }
                    }
                    var acc: Float = 0
                    for n in 0..<N { acc += sr[n] * cv[n] }
                    yp[t * E + h * P + p] = acc + dSkip.w[h] * x[h * P + p]
                }
            }
        }
    }

    /// normed = rmsnorm_group(y ⊙ silu(z)) · w for token t.
    private func gatedNorm(_ t: Int) {
        let z = zx.pointer + t * W, yr = y.pointer + t * E, nr = normed.pointer + t * E
        let m = E / G
        for g in 0..<G {
            var ss: Float = 0
            for c in g * m..<(g + 1) * m { let v = yr[c] * z[c] * sigmoid(z[c]); nr[c] = v; ss += v * v }
            let r = 1 / (ss / Float(m) + Mamba2.eps).squareRoot()
            rstd.pointer[t * G + g] = r
            for c in g * m..<(g + 1) * m { nr[c] *= r * normW.w[c] }
        }
    }

    // MARK: backward

    // dout: [B, L, D] → du: [B, L, D]
    public func backward(_ dout: UnsafePointer<Float>, _ du: UnsafeMutablePointer<Float>, B: Int, L: Int, pass: Pass) {
        guard let u else { preconditionFailure("Mamba2.backward before forward") }
        let T = B * L
        // out_proj: dW += doutᵀ · normed; dNormed = dout · W
        matmulDyTX(dout, normed.pointer, outProj.g, T: T, inDim: E, outDim: D)
        let dn = dNormed.ensure(T * E)
        matmulDyW(dout, outProj.w, dn, T: T, inDim: E, outDim: D)
        let dzx = dZX.ensure(T * W), dy = dY.ensure(T * E), dxc = dXC.ensure(T * Cc)
        let PW = E + 3 * H + Cc * K + Cc
        let part = partials.ensure(B * PW)
        part.update(repeating: 0, count: B * PW)
        let gs = ranChunked ? nil : gState.ensure(B * P * N)
        let dtCol = 2 * E + 2 * G * N
        Parallel.forEach(B) { b in
            let o = b * L, mine = part + b * PW
            for t in o..<o + L { gatedNormBackward(t, dn: dn + t * E, dy: dy + t * E, dz: dzx + t * W, dW: mine) }
            // the scan: ∂x, ∂B, ∂C into dxc, ∂Δ into dZX's dt columns
            if let ssd, ranChunked {
                ssd.backward(L: L, xc: xc.pointer + o * Cc, delta: delta.pointer + o * H, decay: decay.pointer + o * H,
                             A: A.pointer, D: dSkip.w, states: states.pointer + b * ssd.stateFloats(L: L), dy: dy + o * E,
                             dxc: dxc + o * Cc, dDelta: dzx + o * W + dtCol, ldDelta: W, dA: mine + E, dD: mine + E + H,
                             scratch: ssdScratch.pointer + b * ssd.scratchFloats)
            } else {
                scanBackward(b: b, L: L, dy: dy, dxc: dxc, dzx: dzx, G: gs! + b * P * N, dA: mine + E, dD: mine + E + H)
            }
            // Δ = softplus(dt + dt_bias): ∂dt = ∂Δ · σ(dt + dt_bias)
            for t in o..<o + L {
                for h in 0..<H {
                    let dRaw = dzx[t * W + dtCol + h] * sigmoid(zx.pointer[t * W + dtCol + h] + dtBias.w[h])
                    dzx[t * W + dtCol + h] = dRaw
                    mine[E + 2 * H + h] += dRaw
                }
            }
            convBackward(b: b, L: L, dxc: dxc, dzx: dzx, dW: mine + E + 3 * H, dBias: mine + E + 3 * H + Cc * K)
        }
        // the small parameters' gradients, summed over sequences in order
        for b in 0..<B {
            let mine = part + b * PW
            for c in 0..<E { normW.g[c] += mine[c] }
            for h in 0..<H {
                aLog.g[h] += mine[E + h] * A.pointer[h]          // ∂A_log = ∂A · A
                dSkip.g[h] += mine[E + H + h]
                dtBias.g[h] += mine[E + 2 * H + h]
            }
            for c in 0..<Cc { for k in 0..<K { convW.g[c * K + k] += mine[E + 3 * H + k * Cc + c] } }
            for c in 0..<Cc { convB.g[c] += mine[E + 3 * H + Cc * K + c] }
        }
        // in_proj: dW += dzxᵀ · u; du = dzx · W
        matmulDyTX(dzx, u, inProj.g, T: T, inDim: D, outDim: W)
        matmulDyW(dzx, inProj.w, du, T: T, inDim: D, outDim: W)
    }

    /// The gated norm's backward for token t: v = y ⊙ silu(z), r = (mean_group v² + eps)^−½,
    /// go = w ⊙ ∂normed; ∂v = r·go − v·r³·(Σ go⊙v)/m; ∂y = ∂v ⊙ silu(z); ∂z = ∂v ⊙ y ⊙ silu'(z);
    /// ∂w += ∂normed ⊙ v·r.    dn: [E] → dy: [E], dz: [E] (the z columns of dZX)
    private func gatedNormBackward(_ t: Int, dn: UnsafePointer<Float>, dy: UnsafeMutablePointer<Float>,
                                   dz: UnsafeMutablePointer<Float>, dW: UnsafeMutablePointer<Float>) {
        let z = zx.pointer + t * W, yr = y.pointer + t * E
        let m = E / G
        for g in 0..<G {
            let r = rstd.pointer[t * G + g]
            var dot: Float = 0
            for c in g * m..<(g + 1) * m {
                let v = yr[c] * z[c] * sigmoid(z[c])
                dot += normW.w[c] * dn[c] * v
                dW[c] += dn[c] * v * r
            }
            let k = r * r * r * dot / Float(m)
            for c in g * m..<(g + 1) * m {
                let s = sigmoid(z[c]), silu = z[c] * s
                let v = yr[c] * silu
                let dv = r * normW.w[c] * dn[c] - v * k
                dy[c] = dv * silu
                dz[c] = dv * yr[c] * siluDerivative(z[c], sigmoid: s)
            }
        }
    }

    /// The adjoint recurrence of sequence b, per head, from its last token back:
    /// G_t = gy_t C_tᵀ + a_{t+1} G_{t+1}; ∂x_t = Δ_t G_t B_t + D gy_t; ∂B_t += Δ_t G_tᵀ x_t;
    /// ∂C_t += S_tᵀ gy_t; ∂Δ_t = x_tᵀ G_t B_t + A a_t ⟨G_t, S_{t−1}⟩; ∂A += Δ_t a_t ⟨G_t, S_{t−1}⟩;
    /// ∂D += gy_t · x_t. dy: [T, E] → dxc: [T, Cc] (∂x, ∂B, ∂C, before SiLU), ∂Δ into dZX's dt columns.
    private func scanBackward(b: Int, L: Int, dy: UnsafePointer<Float>, dxc: UnsafeMutablePointer<Float>,
                              dzx: UnsafeMutablePointer<Float>, G gAdj: UnsafeMutablePointer<Float>,
                              dA: UnsafeMutablePointer<Float>, dD: UnsafeMutablePointer<Float>) {
        let o = b * L, xcp = xc.pointer, dl = delta.pointer, ap = decay.pointer, st = states.pointer
        let gsz = H / G
        for t in o..<o + L { (dxc + t * Cc).update(repeating: 0, count: Cc) }
        for h in 0..<H {
            let g = h / gsz
            gAdj.update(repeating: 0, count: P * N)
            for t in stride(from: o + L - 1, through: o, by: -1) {
                let x = xcp + t * Cc, bv = x + E + g * N, cv = x + E + G * N + g * N
                let dx = dxc + t * Cc, dbv = dx + E + g * N, dcv = dx + E + G * N + g * N
                let gy = dy + t * E + h * P
                let dv = dl[t * H + h], a = ap[t * H + h]
                let aNext: Float = t + 1 < o + L ? ap[(t + 1) * H + h] : 0
                let s = st + (t * H + h) * P * N
                let prev: UnsafePointer<Float>? = t > o ? UnsafePointer(st + ((t - 1) * H + h) * P * N) : nil
                var dDelta: Float = 0, gs: Float = 0, dSkipAcc: Float = 0
                for p in 0..<P {
                    let gr = gAdj + p * N, sr = s + p * N, gyp = gy[p], xp = x[h * P + p]
                    var gb: Float = 0
                    for n in 0..<N {
                        gr[n] = gyp * cv[n] + aNext * gr[n]               // G_t
                        gb += gr[n] * bv[n]
                        dbv[n] += dv * gr[n] * xp                          // ∂B_t
                        dcv[n] += sr[n] * gyp                              // ∂C_t
                    }
                    if let prev { let pr = prev + p * N; for n in 0..<N { gs += gr[n] * pr[n] } }
                    dx[h * P + p] = dv * gb + dSkip.w[h] * gyp             // ∂x_t
                    dDelta += xp * gb
                    dSkipAcc += gyp * xp
                }
                dDelta += A.pointer[h] * a * gs
                dA[h] += dv * a * gs
                dD[h] += dSkipAcc
                dzx[t * W + 2 * E + 2 * G * N + h] = dDelta
            }
        }
    }

    /// SiLU and the conv, backward, for sequence b: ∂xcPre = ∂xc ⊙ silu'(xcPre) (in place),
    /// then the conv's backward (`CausalConv`) into dZX's xBC columns, ∂w [K, Cc] and ∂bias.
    private func convBackward(b: Int, L: Int, dxc: UnsafeMutablePointer<Float>, dzx: UnsafeMutablePointer<Float>,
                              dW: UnsafeMutablePointer<Float>, dBias: UnsafeMutablePointer<Float>) {
        let o = b * L, pre = xcPre.pointer
        for i in o * Cc..<(o + L) * Cc { dxc[i] = siluBackward(dxc[i], pre[i], sigmoid: sigmoid(pre[i])) }
        CausalConv.backward(x: zx.pointer + o * W + E, ld: W, dout: dxc + o * Cc, dx: dzx + o * W + E, ldx: W,
                            L: L, C: Cc, K: K, wt: convWT.pointer, dwt: dW, dbias: dBias)
    }

    // MARK: generation

    public final class State: MixerState {
        public let conv: FloatBuffer      // [B, K, Cc]: the last K raw conv inputs, oldest first
        public let ssm: FloatBuffer       // [B, H, P, N]
        init(B: Int, K: Int, Cc: Int, EN: Int) {
            conv = FloatBuffer(count: B * K * Cc); ssm = FloatBuffer(count: B * EN)
        }
        public var bytes: Int { (conv.capacity + ssm.capacity) * 4 }
    }

    /// Generation assumes the weights do not change between makeState and the steps
    /// (as SSMBlock): A and the transposed conv weight are derived here once.
    public func makeState(batch: Int, maxLength: Int) throws -> State {
        prepare()
        return State(B: batch, K: K, Cc: Cc, EN: E * N)
    }

    /// The conv history and the SSM state carry over between calls.
    public var prefillsInChunks: Bool { true }

    public func prefill(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, B: Int, L: Int, state s: State, pass: Pass) {
        run(x, out, B: B, L: L, state: s, pass: pass)
    }

    // x: [B, D] → out: [B, D], one token per sequence
    public func step(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, B: Int, state s: State, pass: Pass) {
        run(x, out, B: B, L: 1, state: s, pass: pass)
    }
}
