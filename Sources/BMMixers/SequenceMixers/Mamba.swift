import Foundation
import BMCore
import BMLayers

/// Mamba-1 mixer (Gu & Dao 2023), exactly as docs/mixers.md states it. Names as in the
/// Zyphra/BlackMamba state dict: `in_proj.weight [2E, D]`, `conv1d.weight [E, 1, K]`,
/// `conv1d.bias [E]`, `x_proj.weight [R+2N, E]`, `dt_proj.weight [E, R]`,
/// `dt_proj.bias [E]`, `A_log [E, N]`, `D [E]`, `out_proj.weight [D, E]`.
///
/// Glossary (code ↔ paper): `xz` = in_proj output (x branch, z gate);
/// `xc` = causal conv output; `u` = silu(xc), the SSM input; `dbc` = x_proj
/// output = [δ_raw (R) | B (N) | C (N)]; `delta` = Δ = softplus(δ_raw·dt_projᵀ + b);
/// `A` = −exp(A_log); `y` = scan output; `g` = y ⊙ silu(z), the gated output.
///
/// With `gate: false` in_proj has only the x rows ([E, D]) and g = y; with
/// `skip_d: false` there is no D parameter.
///
/// The same block with `selective = false` is the time-invariant `s4d` mixer
/// (S4D.swift): Δ, B and C are learned per-channel parameters (`dt_proj.bias [E]`,
/// `B [E, N]`, `C [E, N]`) instead of functions of the input, and there is no
/// x_proj / dt_proj weight. The scan kernel runs both through its strides.
public final class Mamba: Mixer, PhaseProfiled {
    public static let entry = MixerEntry(
        name: "mamba", kind: .sequence,
        summary: "Mamba-1 selective SSM (input-dependent Δ, B, C), causal conv, SiLU gate",
        options: Array(blockOptions[0..<3])
            + [.int("dt_rank", -1, "rank R of the Δ projection (auto = ceil(d_model/16))", min: 1, auto: true)]
            + Array(blockOptions[3...]),
        variants: [[:], ["gate": .bool(false)], ["skip_d": .bool(false)], ["d_state": .int(20), "d_conv": .int(3)]],
        validate: validateDt,
        build: { ctx, o in Mamba(ctx, o) })

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

    public let D: Int, E: Int, N: Int, Ep: Int, K: Int, R: Int
    public let gate: Bool, skipD: Bool, chunk: Int, selective: Bool
    public let inProj: Param, convW: Param, convB: Param, dtB: Param, aLog: Param
    /// Selective (mamba) only.
    public let xProj: Param?, dtW: Param?
    /// Time-invariant (s4d) only: per-channel B and C.
    public let bParam: Param?, cParam: Param?
    public let dSkip: Param?
    public let outProj: Param

    // Caches for backward (sized on first use; reused).
    private var h: UnsafePointer<Float>?
    private let xz = FloatBuffer(), xc = FloatBuffer(), u = FloatBuffer(), dbc = FloatBuffer()
    private let Bp = FloatBuffer(), Cp = FloatBuffer(), dtPre = FloatBuffer(), delta = FloatBuffer()
    private let y = FloatBuffer(), g = FloatBuffer(), A = FloatBuffer(), convWT = FloatBuffer()
    private let boundaries = FloatBuffer(), state = FloatBuffer()
    // Backward scratch.
    private let dg = FloatBuffer(), dxz = FloatBuffer(), du = FloatBuffer(), dDelta = FloatBuffer(), ddbc = FloatBuffer()
    private let dBp = FloatBuffer(), dCp = FloatBuffer(), dAb = FloatBuffer(), dDb = FloatBuffer(), work = FloatBuffer()
    private let dConvWT = FloatBuffer()
    public let timer = PhaseTimer()
    private var shape = (B: 0, L: 0)

    public func activationFloats(B: Int, L: Int) -> Int {
        let T = B * L, xzW = (gate ? 2 : 1) * E, dbcW = selective ? R + 2 * N : 0
        let SN = N * Ep, chunks = (L + chunk - 1) / chunk
        let work = SN + 4 * chunk * N * 16
        // forward: xz, xc, u, dbc, dtPre, delta, y, g; boundaries, state
        // backward: dg, dxz, du, dDelta, ddbc, dB, dC, dA, dD, work, dConvWT
        return T * (2 * xzW + 9 * E + 2 * dbcW) + B * (chunks + 4) * SN + B * (work + (K + 2) * E)
    }

    public init(_ ctx: MixerContext, _ o: ResolvedOptions, selective: Bool = true) {
        self.selective = selective
        D = ctx.width
        E = o.int("expand") * D
        N = o.int("d_state")
        Ep = (E + 15) / 16 * 16
        K = o.int("d_conv")
        R = selective ? (o.intOrAuto("dt_rank") ?? (D + 15) / 16) : 0
        gate = o.bool("gate"); skipD = o.bool("skip_d"); chunk = o.int("chunk")
        let ps = ctx.params, p = ctx.prefix
        let (E, N, K, R) = (E, N, K, R)
        inProj = ps.declare("\(p).in_proj.weight", [(gate ? 2 : 1) * E, D], init: ctx.hiddenInit(fanIn: D))
        let cb = 1 / Float(K).squareRoot()
        convW = ps.declare("\(p).conv1d.weight", [E, 1, K], init: .uniform(-cb, cb))
        convB = ps.declare("\(p).conv1d.bias", [E], init: .uniform(-cb, cb), decay: false)
        if selective {
            xProj = ps.declare("\(p).x_proj.weight", [R + 2 * N, E], init: ctx.hiddenInit(fanIn: E))
            let dtStd = 1 / Float(R).squareRoot()
            dtW = ps.declare("\(p).dt_proj.weight", [E, R], init: .uniform(-dtStd, dtStd), group: .ssm)
        } else {
            xProj = nil; dtW = nil
        }
        let (dtMin, dtMax) = (o.double("dt_min"), o.double("dt_max"))
        dtB = ps.declare("\(p).dt_proj.bias", [E], init: .custom({ rng, buf in
            Mamba.initDtBias(&rng, buf, dtMin: dtMin, dtMax: dtMax)
        }), decay: false, group: .ssm)
        aLog = ps.declare("\(p).A_log", [E, N], init: .custom({ _, buf in
            for c in 0..<E { for n in 0..<N { buf[c * N + n] = Float(log(Double(n + 1))) } }
        }), decay: false, group: .ssm)
        if selective {
            bParam = nil; cParam = nil
        } else {
            // S4D-real: B = 1, C ~ N(0, 1/N) (Gu et al. 2022, "On the parameterization…").
            bParam = ps.declare("\(p).B", [E, N], init: .ones, decay: false, group: .ssm)
            cParam = ps.declare("\(p).C", [E, N], init: .normal(std: 1 / Float(N).squareRoot()), decay: false)
        }
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
        [inProj, convW, convB] + [xProj, dtW].compactMap { $0 } + [dtB, aLog] + [bParam, cParam, dSkip].compactMap { $0 } + [outProj]
    }
    var xzWidth: Int { gate ? 2 * E : E }
    var dbcWidth: Int { R + 2 * N }

    func scanShape(L: Int) -> ScanShape {
        // Mamba: B_t, C_t read in place from x_proj's output rows [δr | B | C]; S4D: B, C [N, Ep].
        selective ? ScanShape(L: L, E: E, N: N, chunk: chunk, deltaT: E, bT: dbcWidth, bN: 1, bC: 0, cT: dbcWidth, cN: 1, cC: 0)
                  : ScanShape(L: L, E: E, N: N, chunk: chunk, deltaT: 0, bT: 0, bN: Ep, bC: 1, cT: 0, cN: Ep, cC: 1)
    }

    /// A = −exp(A_log) as [N, Ep] (channels padded with zeros); conv weight transposed to [K, E].
    private func prepare() {
        let a = A.ensure(N * Ep), al = aLog.w
        a.update(repeating: 0, count: N * Ep)
        for c in 0..<E { for n in 0..<N { a[n * Ep + c] = -Foundation.exp(al[c * N + n]) } }
        let wt = convWT.ensure(K * E), w = convW.w
        for c in 0..<E { for k in 0..<K { wt[k * E + c] = w[c * K + k] } }
        if !selective, let bP = bParam, let cP = cParam {
            // Time-invariant: Δ = softplus(dt bias) [E]; B, C as [N, Ep].
            vsoftplus(dtB.w, delta.ensure(E), count: E)
            let bp = Bp.ensure(N * Ep), cp = Cp.ensure(N * Ep)
            bp.update(repeating: 0, count: N * Ep); cp.update(repeating: 0, count: N * Ep)
            for c in 0..<E { for n in 0..<N {
                bp[n * Ep + c] = bP.w[c * N + n]
                cp[n * Ep + c] = cP.w[c * N + n]
            } }
        }
    }

    // MARK: forward

    // h: [B, L, D] → out: [B, L, D]
    public func forward(_ hIn: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, B: Int, L: Int) {
        run(hIn, out, B: B, L: L, from: nil)
    }

    /// The forward pass, starting from a generation state (its last K−1 conv inputs and
    /// its SSM state) when given, from zeros otherwise — a fresh state is zeros, so a
    /// prompt can be prefilled in chunks.
    private func run(_ hIn: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, B: Int, L: Int, from initial: State?) {
        let T = B * L
        h = hIn
        shape = (B, L)
        timer.start()
        prepare()
        // 1. xz = h · in_projᵀ                                  xz: [T, 2E]
        let xzp = xz.ensure(T * xzWidth)
        matmulXWt(hIn, inProj.w, xzp, T: T, inDim: D, outDim: xzWidth)
        timer.mark("fwd in_proj")
        // 2. causal depthwise conv, u = silu(xc)               xc, u: [T, E]
        let xcp = xc.ensure(T * E), up = u.ensure(T * E)
        let history = initial.map { UnsafePointer($0.conv.pointer) }
        Parallel.forEach(B) { b in
            conv(x: xzp + b * L * xzWidth, ldx: xzWidth, xc: xcp + b * L * E, L: L, history: history.map { $0 + b * K * E })
            vsilu(xcp + b * L * E, up + b * L * E, count: L * E)
        }
        timer.mark("fwd conv, silu")
        if selective, let xProj, let dtW {
            // 3. dbc = u · x_projᵀ                                  dbc: [T, R+2N]
            let dbcp = dbc.ensure(T * dbcWidth)
            matmulXWt(up, xProj.w, dbcp, T: T, inDim: E, outDim: dbcWidth)
            // 4. Δ = softplus(δr · dt_projᵀ + bias)                 delta: [T, E]
            let dtp = dtPre.ensure(T * E), dp = delta.ensure(T * E)
            for t in 0..<T { (dtp + t * E).update(from: dtB.w, count: E) }
            matmulXWt(dbcp, dtW.w, dtp, T: T, inDim: R, outDim: E, ldx: dbcWidth, beta: 1)
            Parallel.forEach(B) { b in vsoftplus(dtp + b * L * E, dp + b * L * E, count: L * E) }
        }
        timer.mark("fwd x_proj, dt_proj, softplus")
        // 5–6. selective scan, per sequence in parallel          y: [T, E]
        let yp = y.ensure(T * E)
        let sh = scanShape(L: L)
        let SN = N * Ep
        let bnd = boundaries.ensure(B * sh.chunks * SN), stp = state.ensure(B * SN)
        let ap = A.pointer, dsk = dSkip?.w, dp = delta.pointer
        let (bp, cp) = bcSource()
        let (dStride, bcStride) = selective ? (L * E, L * dbcWidth) : (0, 0)
        let s0Initial = initial.map { UnsafePointer($0.ssm.pointer) }
        Parallel.forEach(B) { b in
            let s0 = stp + b * SN
            if let s0Initial { s0.update(from: s0Initial + b * SN, count: SN) } else { s0.update(repeating: 0, count: SN) }
            SelectiveScan.forward(sh, u: up + b * L * E, delta: dp + b * dStride, A: ap,
                                  Bm: bp + b * bcStride, Cm: cp + b * bcStride, D: dsk.map { UnsafePointer($0) },
                                  y: yp + b * L * E, state: s0, boundaries: bnd + b * sh.chunks * SN)
        }
        timer.mark("fwd scan")
        // 7. gate and out_proj                                  g: [T, E], out: [T, D]
        let gp = gated(B: B, L: L)
        matmulXWt(gp, outProj.w, out, T: T, inDim: E, outDim: D)
        timer.mark("fwd gate, out_proj")
    }

    /// Where the scan reads B and C: x_proj's output columns (Mamba) or the [N, Ep] copies (S4D).
    private func bcSource() -> (UnsafePointer<Float>, UnsafePointer<Float>) {
        selective ? (UnsafePointer(dbc.pointer + R), UnsafePointer(dbc.pointer + R + N))
                  : (UnsafePointer(Bp.pointer), UnsafePointer(Cp.pointer))
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

    /// xc[t, c] = bias[c] + Σ_k w[c, k] · x[t − (K−1) + k, c]  for one sequence.
    /// Positions before the sequence are zeros, or rows of `history` ([K, E], the K raw
    /// inputs before position 0, oldest first) when given.
    private func conv(x: UnsafePointer<Float>, ldx: Int, xc: UnsafeMutablePointer<Float>, L: Int,
                      history: UnsafePointer<Float>? = nil) {
        let wt = convWT.pointer, bias = convB.w
        for t in 0..<L {
            let row = xc + t * E
            row.update(from: bias, count: E)
            for k in 0..<K {
                let src = t - (K - 1) + k
                let xr: UnsafePointer<Float>
                if src >= 0 { xr = x + src * ldx } else if let history { xr = history + (K + src) * E } else { continue }
                let wr = wt + k * E
                for c in 0..<E { row[c] += wr[c] * xr[c] }
            }
        }
    }

    // MARK: backward

    // dout: [B, L, D] → dh: [B, L, D]
    public func backward(_ dout: UnsafePointer<Float>, _ dh: UnsafeMutablePointer<Float>, B: Int, L: Int) {
        guard let h else { preconditionFailure("Mamba.backward before forward") }
        let T = B * L
        timer.start()
        let gp = gate ? g.pointer : y.pointer
        // out_proj: dW += doutᵀ·g; dg = dout·W                  dg: [T, E]
        matmulDyTX(dout, gp, outProj.g, T: T, inDim: E, outDim: D)
        let dgp = dg.ensure(T * E)
        matmulDyW(dout, outProj.w, dgp, T: T, inDim: E, outDim: D)
        timer.mark("bwd out_proj")
        // gate: dy = dg·silu(z) (in dgp), dz = dg·y·silu'(z)    dxz: [T, 2E]
        let dxzp = dxz.ensure(T * xzWidth), xzp = xz.pointer, yp = y.pointer
        if gate {
            Parallel.forEach(B) { b in for t in b * L..<(b + 1) * L {
                let z = xzp + t * 2 * E + E, dz = dxzp + t * 2 * E + E, dr = dgp + t * E, yr = yp + t * E
                var c = 0
                while c + 16 <= E {
                    let zv = ld(z, c), s = vsigmoid(zv), gv = ld(dr, c)
                    st(dz, c, gv * ld(yr, c) * s * (1 + zv * (1 - s)))
                    st(dr, c, gv * zv * s)
                    c += 16
                }
                while c < E {
                    let sg = sigmoid(z[c])
                    dz[c] = dr[c] * yr[c] * sg * (1 + z[c] * (1 - sg))
                    dr[c] *= z[c] * sg
                    c += 1
                }
            } }
        }
        timer.mark("bwd gate")
        // scan backward, per sequence in parallel. Mamba: ∂Δ is per (t, c) and ∂B, ∂C
        // per (t, n), written straight into x_proj's output gradient ddbc [T, R+2N].
        // S4D: they are shared by all positions, so each sequence accumulates into its
        // own slice and the slices are summed after.
        let sh = scanShape(L: L), SN = N * Ep
        let dSize = selective ? T * E : B * E, dStride = selective ? L * E : E
        let dup = du.ensure(T * E), ddp = dDelta.ensure(dSize)
        ddp.update(repeating: 0, count: dSize)
        let dbp: UnsafeMutablePointer<Float>, dcp: UnsafeMutablePointer<Float>, bcStride: Int
        if selective {
            let ddbcp = ddbc.ensure(T * dbcWidth)
            ddbcp.update(repeating: 0, count: T * dbcWidth)
            (dbp, dcp, bcStride) = (ddbcp + R, ddbcp + R + N, L * dbcWidth)
        } else {
            dbp = dBp.ensure(B * SN); dcp = dCp.ensure(B * SN); bcStride = SN
            dbp.update(repeating: 0, count: B * SN); dcp.update(repeating: 0, count: B * SN)
        }
        let dab = dAb.ensure(B * SN), ddb = dDb.ensure(B * E)
        dab.update(repeating: 0, count: B * SN); ddb.update(repeating: 0, count: B * E)
        let wk = work.ensure(B * sh.workSize)
        let up = u.pointer, dp = delta.pointer, ap = A.pointer
        let (bp, cp) = bcSource()
        let bnd = boundaries.pointer, dsk = dSkip?.w
        let (inD, inBC) = selective ? (L * E, L * dbcWidth) : (0, 0)
        Parallel.forEach(B) { b in
            SelectiveScan.backward(sh, u: up + b * L * E, delta: dp + b * inD, A: ap,
                                   Bm: bp + b * inBC, Cm: cp + b * inBC, D: dsk.map { UnsafePointer($0) },
                                   boundaries: bnd + b * sh.chunks * SN, gy: dgp + b * L * E,
                                   du: dup + b * L * E, dDelta: ddp + b * dStride,
                                   dB: dbp + b * bcStride, dC: dcp + b * bcStride,
                                   dA: dab + b * SN, dD: ddb + b * E, work: wk + b * sh.workSize)
        }
        timer.mark("bwd scan")
        // Reduce per-sequence dA, dD in a fixed order; ∂A_log = ∂A · A.
        let al = aLog.g
        for b in 0..<B { for c in 0..<E { for n in 0..<N {
            al[c * N + n] += dab[b * SN + n * Ep + c] * ap[n * Ep + c]
        } } }
        if let dS = dSkip { for b in 0..<B { for c in 0..<E { dS.g[c] += ddb[b * E + c] } } }
        if selective, let xProj, let dtW {
            // softplus: ∂v = ∂Δ · σ(v) (1 above the threshold)        ddp now holds ∂v
            let dtp = dtPre.pointer
            var i = 0
            while i + 16 <= T * E {
                let v = ld(dtp, i)
                var s = vsigmoid(v)
                s.replace(with: 1, where: v .> 20)
                st(ddp, i, ld(ddp, i) * s)
                i += 16
            }
            while i < T * E { let v = dtp[i]; if v <= 20 { ddp[i] *= sigmoid(v) }; i += 1 }
            // dt_proj: dW += ∂vᵀ·δr, db += Σ ∂v, ∂δr = ∂v·W        ddbc: [T, R+2N]
            let dbcp = dbc.pointer, ddbcp = ddbc.pointer      // ∂B, ∂C already in its columns R..<R+2N
            matmulDyTX(ddp, dbcp, dtW.g, T: T, inDim: R, outDim: E, ldx: dbcWidth)
            for t in 0..<T { let r = ddp + t * E; for c in 0..<E { dtB.g[c] += r[c] } }
            matmulDyW(ddp, dtW.w, ddbcp, T: T, inDim: R, outDim: E, lddx: dbcWidth)   // columns 0..<R
            // x_proj: dW += ddbcᵀ·u; du += ddbc·W
            matmulDyTX(ddbcp, up, xProj.g, T: T, inDim: E, outDim: dbcWidth)
            matmulDyW(ddbcp, xProj.w, dup, T: T, inDim: E, outDim: dbcWidth, beta: 1)
        } else if let bP = bParam, let cP = cParam {
            // Per-channel Δ = softplus(b): ∂b = Σ_seq ∂Δ · σ(b); B, C: sum the slices.
            for b in 0..<B {
                for c in 0..<E {
                    let v = dtB.w[c]
                    dtB.g[c] += ddp[b * E + c] * (v > 20 ? 1 : sigmoid(v))
                    for n in 0..<N {
                        bP.g[c * N + n] += dbp[b * SN + n * Ep + c]
                        cP.g[c * N + n] += dcp[b * SN + n * Ep + c]
                    }
                }
            }
        }
        timer.mark("bwd dA, softplus, dt_proj, x_proj")
        // silu: ∂xc = ∂u · silu'(xc)                            (in dup)
        // then conv backward → ∂x into dxz[:, :E]; per-sequence ∂w, ∂bias summed after in order
        let xcp = xc.pointer
        let dwt = dConvWT.ensure(B * (K + 1) * E)
        dwt.update(repeating: 0, count: B * (K + 1) * E)
        Parallel.forEach(B) { b in
            let lo = b * L * E, hi = lo + L * E
            var k = lo
            while k + 16 <= hi {
                let v = ld(xcp, k), s = vsigmoid(v)
                st(dup, k, ld(dup, k) * s * (1 + v * (1 - s)))
                k += 16
            }
            while k < hi {
                let v = xcp[k], s = sigmoid(v)
                dup[k] *= s * (1 + v * (1 - s))
                k += 1
            }
            let part = dwt + b * (K + 1) * E       // [K, E] weight, then [E] bias
            convBackward(x: xzp + b * L * xzWidth, ldx: xzWidth, dxc: dup + b * L * E,
                         dx: dxzp + b * L * xzWidth, L: L, dwt: part, dbias: part + K * E)
        }
        for b in 0..<B {
            let part = dwt + b * (K + 1) * E
            for c in 0..<E {
                for k in 0..<K { convW.g[c * K + k] += part[k * E + c] }
                convB.g[c] += part[K * E + c]
            }
        }
        timer.mark("bwd silu, conv")
        // in_proj: dW += dxzᵀ·h; dh = dxz·W
        matmulDyTX(dxzp, h, inProj.g, T: T, inDim: D, outDim: xzWidth)
        matmulDyW(dxzp, inProj.w, dh, T: T, inDim: D, outDim: xzWidth)
        timer.mark("bwd in_proj")
    }

    /// For one sequence: dx[t', c] = Σ_k dxc[t' + (K−1) − k, c] · w[c, k] (written);
    /// dwt[k, c] += Σ_t dxc[t, c] · x[t − (K−1) + k, c]; dbias[c] += Σ_t dxc[t, c].
    private func convBackward(x: UnsafePointer<Float>, ldx: Int, dxc: UnsafePointer<Float>,
                              dx: UnsafeMutablePointer<Float>, L: Int, dwt: UnsafeMutablePointer<Float>,
                              dbias gb: UnsafeMutablePointer<Float>) {
        let wt = convWT.pointer
        for t in 0..<L { (dx + t * ldx).update(repeating: 0, count: E) }
        for t in 0..<L {
            let gr = dxc + t * E
            for c in 0..<E { gb[c] += gr[c] }
            for k in 0..<K {
                let src = t - (K - 1) + k
                if src < 0 { continue }
                let xr = x + src * ldx, dxr = dx + src * ldx, wr = wt + k * E, dwr = dwt + k * E
                for c in 0..<E {
                    dwr[c] += gr[c] * xr[c]
                    dxr[c] += gr[c] * wr[c]
                }
            }
        }
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
    public func makeState(batch: Int, maxLength: Int) throws -> MixerState {
        prepare()
        return State(B: batch, K: K, E: E, N: N, Ep: Ep)
    }

    /// Mamba: the conv history and SSM state carry over between calls.
    public var prefillsInChunks: Bool { true }

    public func prefill(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, B: Int, L: Int, state st: MixerState) {
        let s = st as! State
        run(x, out, B: B, L: L, from: s)           // continues from the state: prompts can come in chunks
        let cv = s.conv.pointer, xzp = xz.pointer
        for b in 0..<B { pushHistory(cv + b * K * E, x: xzp + b * L * xzWidth, ldx: xzWidth, L: L) }
        s.ssm.pointer.update(from: state.pointer, count: B * N * Ep)
    }

    /// Appends a sequence's L raw conv inputs (rows of `x`, stride ldx) to its history
    /// [K, E] (the K most recent inputs, oldest first). Row k reads old row L + k > k,
    /// not yet overwritten.
    private func pushHistory(_ cv: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, ldx: Int, L: Int) {
        for k in 0..<K {
            let t = L - K + k, dst = cv + k * E
            if t >= 0 { dst.update(from: x + t * ldx, count: E) } else { dst.update(from: cv + (L + k) * E, count: E) }
        }
    }

    private let stepXZ = FloatBuffer(), stepU = FloatBuffer(), stepDBC = FloatBuffer(), stepDelta = FloatBuffer()
    private let stepY = FloatBuffer()

    // x: [B, D] → out: [B, D], one token per sequence
    public func step(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, B: Int, state st: MixerState) {
        let s = st as! State
        let xzp = stepXZ.ensure(B * xzWidth)
        matmulXWt(x, inProj.w, xzp, T: B, inDim: D, outDim: xzWidth)
        let cv = s.conv.pointer
        let up = stepU.ensure(B * E)
        for b in 0..<B {
            let cs = cv + b * K * E, xr = xzp + b * xzWidth
            conv(x: xr, ldx: xzWidth, xc: up + b * E, L: 1, history: cs)
            pushHistory(cs, x: xr, ldx: xzWidth, L: 1)
        }
        vsilu(up, up, count: B * E)
        let yp = stepY.ensure(B * E)
        let sh = scanShape(L: 1)
        let dp = stepDelta.ensure(B * E)
        var dbcp: UnsafeMutablePointer<Float>? = nil
        if selective, let xProj, let dtW {
            let p = stepDBC.ensure(B * dbcWidth)
            matmulXWt(up, xProj.w, p, T: B, inDim: E, outDim: dbcWidth)
            for b in 0..<B { (dp + b * E).update(from: dtB.w, count: E) }
            matmulXWt(p, dtW.w, dp, T: B, inDim: R, outDim: E, ldx: dbcWidth, beta: 1)
            vsoftplus(dp, dp, count: B * E)
            dbcp = p
        }
        for b in 0..<B {
            var bm = UnsafePointer(Bp.pointer), cm = UnsafePointer(Cp.pointer), dl = UnsafePointer(delta.pointer)
            if let p = dbcp {       // B_t, C_t in place in x_proj's output row
                bm = UnsafePointer(p + b * dbcWidth + R); cm = UnsafePointer(p + b * dbcWidth + R + N)
                dl = UnsafePointer(dp + b * E)
            }
            SelectiveScan.forward(sh, u: up + b * E, delta: dl, A: A.pointer, Bm: bm, Cm: cm,
                                  D: dSkip.map { UnsafePointer($0.w) }, y: yp + b * E,
                                  state: s.ssm.pointer + b * N * Ep, boundaries: nil)
            if gate {
                let z = xzp + b * xzWidth + E, yr = yp + b * E
                for c in 0..<E { yr[c] *= z[c] / (1 + Foundation.exp(-z[c])) }
            }
        }
        matmulXWt(yp, outProj.w, out, T: B, inDim: E, outDim: D)
    }
}
