import Foundation
import BMCore
import BMLayers

/// Causal multi-head self-attention with optional rotary embeddings (RoPE,
/// GPT-NeoX half-split layout) and a KV cache for generation. Names:
/// `q_proj.weight`, `k_proj.weight`, `v_proj.weight` `[D, D]`, `o_proj.weight [D, D]`
/// (no biases; Llama-style, since BlackMamba has no attention to copy names from).
///
/// Memory: forward keeps q, k, v, o ([B, L, D] each) and the softmax
/// log-normaliser per row ([B, H, L]); it never keeps a score matrix. Forward and
/// backward work one (sequence, head) at a time and, within it, on blocks of
/// `rowBlock` query rows against the keys those rows can see (FlashAttention's row
/// blocking; exact, since a block holds its rows' every visible key): the only score
/// memory is one [rowBlock, L] scratch for the scores/probabilities and one for their
/// gradient, and backward recomputes P = exp(S − lse) from the saved log-normaliser.
/// The causal upper triangle is never computed. Prefill continues from the KV cache,
/// so a long prompt is prefilled in chunks (`LanguageModel.prefillChunk`) with a
/// working set of one chunk, whatever the context.
public final class Attention: GeneratingMixer {
    public static let entry = MixerEntry(
        name: "attention", kind: .sequence,
        summary: "causal multi-head self-attention, optional RoPE, KV cache for generation",
        options: [
            .int("heads", 4, "number of heads (must divide d_model)", min: 1),
            .bool("rope", true, "rotary position embeddings on q and k"),
            .double("rope_base", 10000, "RoPE base θ", min: 1),
        ],
        variants: [[:], ["rope": .bool(false)], ["heads": .int(1)]],
        validate: { o, width, ctx in
            let h = o.int("heads")
            if width % h != 0 { throw BMError.invalid("\(ctx): heads (\(h)) must divide d_model (\(width))") }
            if o.bool("rope"), (width / h) % 2 != 0 { throw BMError.invalid("\(ctx): RoPE needs an even head size; d_model/heads = \(width / h)") }
        },
        build: { ctx, o in Attention(ctx, o) })

    public let D: Int, H: Int, hd: Int
    public let rope: Bool, ropeBase: Double
    public let wq: Param, wk: Param, wv: Param, wo: Param
    private var x: UnsafePointer<Float>?
    private let q = FloatBuffer(), k = FloatBuffer(), v = FloatBuffer(), o = FloatBuffer(), lse = FloatBuffer()
    let scores = FloatBuffer(), dScores = FloatBuffer()     // [rowBlock, keys] each (internal: a test checks the bound)
    private let dq = FloatBuffer(), dk = FloatBuffer(), dv = FloatBuffer(), dO = FloatBuffer()
    private let cosT = FloatBuffer(), sinT = FloatBuffer()
    private var tableLength = 0
    private var shape = (B: 0, L: 0)

    public let pluginName: String
    /// Per token, forward: the causal scores q·k and the weighted sum of values over
    /// L/2 keys on average, 2 · (L/2) · d each; the softmax, 5 FLOPs (max, subtract,
    /// exp, sum, divide) per score, H · L/2 scores; rotary embedding of q and k, 3 FLOPs
    /// per element (two products and a sum). Training: × 3.
    public func flopTerms(seqLen: Int) -> [FlopTerm] {
        let L = Double(seqLen), d = Double(D), h = Double(H)
        return [FlopTerm("attention scores and values", 3 * 2 * L * d), FlopTerm("attention softmax", 3 * 5 * h * L / 2)]
            + (rope ? [FlopTerm("rotary embedding", 3 * 3 * 2 * d)] : [])
    }

    public init(_ ctx: MixerContext, _ opt: ResolvedOptions) {
        pluginName = ctx.pluginName
        D = ctx.width; H = opt.int("heads"); hd = D / H
        rope = opt.bool("rope"); ropeBase = opt.double("rope_base")
        let ps = ctx.params, p = ctx.prefix
        wq = ps.declare("\(p).q_proj.weight", [D, D], init: ctx.hiddenInit(fanIn: D))
        wk = ps.declare("\(p).k_proj.weight", [D, D], init: ctx.hiddenInit(fanIn: D))
        wv = ps.declare("\(p).v_proj.weight", [D, D], init: ctx.hiddenInit(fanIn: D))
        wo = ps.declare("\(p).o_proj.weight", [D, D], init: ctx.outputInit(fanIn: D))
    }

    public func activationFloats(B: Int, L: Int) -> Int {
        // q, k, v, o and their gradients [T, D]; lse [B, H, L]; scores and their gradient [rowBlock, L]
        8 * B * L * D + B * H * L + 2 * min(L, rowBlock) * L
    }

    /// Query rows per block of scores (a test sets a small one to cross blocks).
    var rowBlock = 64

    public var inWidth: Int { D }
    public var outWidth: Int { D }
    public var parameters: [Param] { [wq, wk, wv, wo] }
    var scale: Float { 1 / Float(hd).squareRoot() }

    // MARK: RoPE

    private func ensureTables(_ needed: Int) {
        guard rope, needed > tableLength else { return }
        // Grow geometrically: generation asks for one more position per token.
        let L = max(needed, 2 * tableLength)
        let half = hd / 2
        let c = cosT.ensure(L * half), s = sinT.ensure(L * half)
        for t in 0..<L {
            for i in 0..<half {
                let theta = Double(t) * pow(ropeBase, -2 * Double(i) / Double(hd))
                c[t * half + i] = Float(cos(theta)); s[t * half + i] = Float(sin(theta))
            }
        }
        tableLength = L
    }

    /// Rotates every head of row `r` (position `t`) in place; `inverse` applies the transpose (for gradients).
    @inline(__always)
    private func rotate(_ r: UnsafeMutablePointer<Float>, position t: Int, inverse: Bool) {
        let half = hd / 2
        let c = cosT.pointer + t * half, s = sinT.pointer + t * half
        let sign: Float = inverse ? -1 : 1
        for h in 0..<H {
            let a = r + h * hd, b = a + half
            for i in 0..<half {
                let x0 = a[i], x1 = b[i], si = sign * s[i]
                a[i] = x0 * c[i] - x1 * si
                b[i] = x0 * si + x1 * c[i]
            }
        }
    }

    // MARK: forward

    // x: [B, L, D] → out: [B, L, D]
    public func forward(_ xIn: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, B: Int, L: Int, pass: Pass) {
        let T = B * L
        x = xIn; shape = (B, L)
        let qp = q.ensure(T * D), kp = k.ensure(T * D), vp = v.ensure(T * D), op = o.ensure(T * D)
        matmulXWt(xIn, wq.w, qp, T: T, inDim: D, outDim: D, bf16: pass.bf16)
        matmulXWt(xIn, wk.w, kp, T: T, inDim: D, outDim: D, bf16: pass.bf16)
        matmulXWt(xIn, wv.w, vp, T: T, inDim: D, outDim: D, bf16: pass.bf16)
        if rope {
            ensureTables(L)
            for t in 0..<T { rotate(qp + t * D, position: t % L, inverse: false); rotate(kp + t * D, position: t % L, inverse: false) }
        }
        let lp = lse.ensure(B * H * L), S = scores.ensure(min(L, rowBlock) * L)
        for b in 0..<B {
            for h in 0..<H {
                let off = b * L * D + h * hd
                attend(q: qp + off, ldq: D, k: kp + off, v: vp + off, ldkv: D, o: op + off, ldo: D,
                       n: L, p0: 0, lse: lp + (b * H + h) * L, S: S)
            }
        }
        matmulXWt(op, wo.w, out, T: T, inDim: D, outDim: D, bf16: pass.bf16)
    }

    /// Causal attention of one head for `n` query rows at positions p0 ..< p0+n over the
    /// keys and values at positions 0 ..< p0+n, a block of `rowBlock` rows at a time:
    ///   S = q kᵀ · scale   [r, keys the block sees]   (row i sees keys 0 … p0+i)
    ///   P = softmax(S) per row, 0 beyond the row's last key;   o = P v   [r, hd]
    /// q, o: rows of stride ldq, ldo; k, v: rows of stride ldkv (the head's columns);
    /// lse (optional): each row's log-normaliser, for backward; S: rowBlock · (p0+n) scratch.
    private func attend(q: UnsafePointer<Float>, ldq: Int, k: UnsafePointer<Float>, v: UnsafePointer<Float>, ldkv: Int,
                        o: UnsafeMutablePointer<Float>, ldo: Int, n: Int, p0: Int,
                        lse: UnsafeMutablePointer<Float>?, S: UnsafeMutablePointer<Float>) {
        var i0 = 0
        while i0 < n {
            let r = min(rowBlock, n - i0), keys = p0 + i0 + r
            sgemm(transB: true, M: r, N: keys, K: hd, alpha: scale, A: q + i0 * ldq, lda: ldq, B: k, ldb: ldkv, C: S, ldc: keys)
            for i in 0..<r {
                let row = S + i * keys, seen = p0 + i0 + i + 1
                let l = softmax(row, seen)
                if seen < keys { (row + seen).update(repeating: 0, count: keys - seen) }
                lse?[i0 + i] = l
            }
            sgemm(M: r, N: hd, K: keys, A: S, lda: keys, B: v, ldb: ldkv, C: o + i0 * ldo, ldc: ldo)
            i0 += r
        }
    }

    /// Softmax of the first n scores of `row`, in place; returns their logsumexp.
    @inline(__always)
    private func softmax(_ row: UnsafeMutablePointer<Float>, _ n: Int) -> Float {
        var m = row[0]
        for j in 1..<n where row[j] > m { m = row[j] }
        mapSIMD(row, row, n) { vexp($0 - m) }
        var sum: Float = 0
        for j in 0..<n { sum += row[j] }
        let inv = 1 / sum
        for j in 0..<n { row[j] *= inv }
        return m + Foundation.log(sum)
    }

    // MARK: backward

    // dout: [B, L, D] → dx: [B, L, D]
    public func backward(_ dout: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>, B: Int, L: Int, pass: Pass) {
        guard let x else { preconditionFailure("Attention.backward before forward") }
        let T = B * L
        let qp = q.pointer, kp = k.pointer, vp = v.pointer, op = o.pointer, lp = lse.pointer
        // o_proj
        matmulDyTX(dout, op, wo.g, T: T, inDim: D, outDim: D)
        let dop = dO.ensure(T * D)
        matmulDyW(dout, wo.w, dop, T: T, inDim: D, outDim: D)
        let dqp = dq.ensure(T * D), dkp = dk.ensure(T * D), dvp = dv.ensure(T * D)
        let rb = min(L, rowBlock)
        let P = scores.ensure(rb * L), dP = dScores.ensure(rb * L)
        // dK and dV gather from every row block that sees a key
        dkp.update(repeating: 0, count: T * D)
        dvp.update(repeating: 0, count: T * D)
        for b in 0..<B {
            for h in 0..<H {
                let off = b * L * D + h * hd
                let qb = qp + off, kb = kp + off, vb = vp + off, ob = op + off, dob = dop + off
                let lr = lp + (b * H + h) * L
                var i0 = 0
                while i0 < L {
                    let r = min(rb, L - i0), keys = i0 + r
                    // P = exp(S − lse), causal                       [r, keys]
                    sgemm(transB: true, M: r, N: keys, K: hd, alpha: scale, A: qb + i0 * D, lda: D, B: kb, ldb: D, C: P, ldc: keys)
                    for i in 0..<r {
                        let row = P + i * keys, l = lr[i0 + i], seen = i0 + i + 1
                        mapSIMD(row, row, seen) { vexp($0 - l) }
                        if seen < keys { (row + seen).update(repeating: 0, count: keys - seen) }
                    }
                    // dV[0..<keys] += Pᵀ dO                           [keys, hd]
                    sgemm(transA: true, M: keys, N: hd, K: r, A: P, lda: keys, B: dob + i0 * D, ldb: D, beta: 1, C: dvp + off, ldc: D)
                    // dP = dO Vᵀ                                     [r, keys]
                    sgemm(transB: true, M: r, N: keys, K: hd, A: dob + i0 * D, lda: D, B: vb, ldb: D, C: dP, ldc: keys)
                    // dS = P ⊙ (dP − rowsum(dO ⊙ O)) · scale
                    for i in 0..<r {
                        let t = i0 + i, seen = t + 1
                        var di: Float = 0
                        for c in 0..<hd { di += dob[t * D + c] * ob[t * D + c] }
                        let pr = P + i * keys, dr = dP + i * keys
                        for j in 0..<seen { dr[j] = pr[j] * (dr[j] - di) * scale }
                        if seen < keys { (dr + seen).update(repeating: 0, count: keys - seen) }
                    }
                    // dQ = dS K                                      [r, hd]
                    sgemm(M: r, N: hd, K: keys, A: dP, lda: keys, B: kb, ldb: D, C: dqp + off + i0 * D, ldc: D)
                    // dK[0..<keys] += dSᵀ Q                           [keys, hd]
                    sgemm(transA: true, M: keys, N: hd, K: r, A: dP, lda: keys, B: qb + i0 * D, ldb: D, beta: 1, C: dkp + off, ldc: D)
                    i0 += r
                }
            }
        }
        if rope {
            for t in 0..<T { rotate(dqp + t * D, position: t % L, inverse: true); rotate(dkp + t * D, position: t % L, inverse: true) }
        }
        matmulDyTX(dqp, x, wq.g, T: T, inDim: D, outDim: D)
        matmulDyTX(dkp, x, wk.g, T: T, inDim: D, outDim: D)
        matmulDyTX(dvp, x, wv.g, T: T, inDim: D, outDim: D)
        matmulDyW(dqp, wq.w, dx, T: T, inDim: D, outDim: D)
        matmulDyW(dkp, wk.w, dx, T: T, inDim: D, outDim: D, beta: 1)
        matmulDyW(dvp, wv.w, dx, T: T, inDim: D, outDim: D, beta: 1)
    }

    // MARK: generation with a KV cache

    public final class State: MixerState {
        public let k: FloatBuffer, v: FloatBuffer     // [B, maxLength, D] (k after RoPE)
        public let maxLength: Int
        public var length = 0
        init(B: Int, maxLength: Int, D: Int) {
            self.maxLength = maxLength
            k = FloatBuffer(count: B * maxLength * D); v = FloatBuffer(count: B * maxLength * D)
        }
        /// Bytes in use (grows with the context).
        public var bytes: Int { 2 * length * (k.capacity / max(1, maxLength)) * 4 }
    }

    public func makeState(batch: Int, maxLength: Int) throws -> State { State(B: batch, maxLength: maxLength, D: D) }
    /// The KV cache: keys and values, [B, maxLength, D] each.
    public func stateFloats(batch: Int, maxLength: Int) -> Int {
        let (a, o1) = (2 * batch).multipliedReportingOverflow(by: maxLength)
        let (n, o2) = a.multipliedReportingOverflow(by: D)
        return o1 || o2 ? Int.max : n
    }

    /// Prefill continues from the cache: a long prompt goes in chunks.
    public var prefillsInChunks: Bool { true }

    // x: [B, L, D] → out: [B, L, D], the L positions after the cache's
    public func prefill(_ xIn: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, B: Int, L: Int, state s: State, pass: Pass) {
        let pos = s.length, T = B * L
        precondition(pos + L <= s.maxLength, "prompt longer than the KV cache")
        let qp = q.ensure(T * D), kp = k.ensure(T * D), vp = v.ensure(T * D), op = o.ensure(T * D)
        matmulXWt(xIn, wq.w, qp, T: T, inDim: D, outDim: D, bf16: pass.bf16)
        matmulXWt(xIn, wk.w, kp, T: T, inDim: D, outDim: D, bf16: pass.bf16)
        matmulXWt(xIn, wv.w, vp, T: T, inDim: D, outDim: D, bf16: pass.bf16)
        if rope {
            ensureTables(pos + L)
            for t in 0..<T { rotate(qp + t * D, position: pos + t % L, inverse: false); rotate(kp + t * D, position: pos + t % L, inverse: false) }
        }
        let S = scores.ensure(min(L, rowBlock) * (pos + L))
        for b in 0..<B {
            let kc = s.k.pointer + b * s.maxLength * D, vc = s.v.pointer + b * s.maxLength * D
            (kc + pos * D).update(from: kp + b * L * D, count: L * D)
            (vc + pos * D).update(from: vp + b * L * D, count: L * D)
            for h in 0..<H {
                let off = b * L * D + h * hd
                attend(q: qp + off, ldq: D, k: kc + h * hd, v: vc + h * hd, ldkv: D, o: op + off, ldo: D,
                       n: L, p0: pos, lse: nil, S: S)
            }
        }
        s.length = pos + L
        matmulXWt(op, wo.w, out, T: T, inDim: D, outDim: D, bf16: pass.bf16)
    }

    private let stepQ = FloatBuffer(), stepK = FloatBuffer(), stepV = FloatBuffer(), stepO = FloatBuffer(), stepP = FloatBuffer()

    // x: [B, D] → out: [B, D] at position state.length
    public func step(_ xIn: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, B: Int, state s: State, pass: Pass) {
        let pos = s.length
        precondition(pos < s.maxLength, "KV cache full (\(s.maxLength) positions)")
        let qp = stepQ.ensure(B * D), kp = stepK.ensure(B * D), vp = stepV.ensure(B * D), op = stepO.ensure(B * D)
        matmulXWt(xIn, wq.w, qp, T: B, inDim: D, outDim: D, bf16: pass.bf16)
        matmulXWt(xIn, wk.w, kp, T: B, inDim: D, outDim: D, bf16: pass.bf16)
        matmulXWt(xIn, wv.w, vp, T: B, inDim: D, outDim: D, bf16: pass.bf16)
        if rope {
            ensureTables(pos + 1)
            for b in 0..<B { rotate(qp + b * D, position: pos, inverse: false); rotate(kp + b * D, position: pos, inverse: false) }
        }
        let n = pos + 1
        let p = stepP.ensure(n)
        for b in 0..<B {
            let kc = s.k.pointer + b * s.maxLength * D, vc = s.v.pointer + b * s.maxLength * D
            (kc + pos * D).update(from: kp + b * D, count: D)
            (vc + pos * D).update(from: vp + b * D, count: D)
            for h in 0..<H {
                let qh = qp + b * D + h * hd
                // scores over the cache: p = K_h q_h · scale           [n]
                bm_gemv(kc + h * hd, rows: n, cols: hd, ld: D, x: qh, y: p, alpha: scale)
                _ = softmax(p, n)
                // o_h = Vᵀ p                                          [hd]
                bm_gemvT(vc + h * hd, rows: n, cols: hd, ld: D, x: p, y: op + b * D + h * hd)
            }
        }
        s.length = n
        matmulXWt(op, wo.w, out, T: B, inDim: D, outDim: D, bf16: pass.bf16)
    }
}
