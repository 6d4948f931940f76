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
/// backward work one (sequence, head) at a time with one [L, L] scratch for the
/// scores/probabilities and one for their gradient, recomputing P = exp(S − lse)
/// in backward (FlashAttention's trick, without tiling).
public final class Attention: Mixer {
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
    private let scores = FloatBuffer(), dScores = FloatBuffer()
    private let dq = FloatBuffer(), dk = FloatBuffer(), dv = FloatBuffer(), dO = FloatBuffer()
    private let cosT = FloatBuffer(), sinT = FloatBuffer()
    private var tableLength = 0
    private var shape = (B: 0, L: 0)

    public let pluginName: String
    /// Causal scores and the weighted sum of values: 6·L·d FLOPs per token in training.
    public func extraFlops(seqLen: Int) -> Double { 6 * Double(seqLen) * Double(D) }

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
        // q, k, v, o and their gradients [T, D]; lse [B, H, L]; scores, P, dP [L, L] (reused per head)
        8 * B * L * D + B * H * L + 3 * L * L
    }

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
    public func forward(_ xIn: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, B: Int, L: Int) {
        let T = B * L
        x = xIn; shape = (B, L)
        let qp = q.ensure(T * D), kp = k.ensure(T * D), vp = v.ensure(T * D), op = o.ensure(T * D)
        matmulXWt(xIn, wq.w, qp, T: T, inDim: D, outDim: D)
        matmulXWt(xIn, wk.w, kp, T: T, inDim: D, outDim: D)
        matmulXWt(xIn, wv.w, vp, T: T, inDim: D, outDim: D)
        if rope {
            ensureTables(L)
            for t in 0..<T { rotate(qp + t * D, position: t % L, inverse: false); rotate(kp + t * D, position: t % L, inverse: false) }
        }
        let lp = lse.ensure(B * H * L), S = scores.ensure(L * L)
        for b in 0..<B {
            for h in 0..<H {
                let qb = qp + b * L * D + h * hd, kb = kp + b * L * D + h * hd, vb = vp + b * L * D + h * hd
                // S = Q Kᵀ · scale                                   S: [L, L]
                sgemm(transB: true, M: L, N: L, K: hd, alpha: scale, A: qb, lda: D, B: kb, ldb: D, C: S, ldc: L)
                // causal softmax per row; entries j > i are set to 0
                for i in 0..<L {
                    let row = S + i * L
                    var m = row[0]
                    for j in stride(from: 1, through: i, by: 1) where row[j] > m { m = row[j] }
                    mapSIMD(row, row, i + 1) { vexp($0 - m) }
                    var sum: Float = 0
                    for j in 0...i { sum += row[j] }
                    let inv = 1 / sum
                    for j in 0...i { row[j] *= inv }
                    if i + 1 < L { (row + i + 1).update(repeating: 0, count: L - i - 1) }
                    lp[(b * H + h) * L + i] = m + Foundation.log(sum)
                }
                // O = P V                                            O: [L, hd] (head columns of o)
                sgemm(M: L, N: hd, K: L, A: S, lda: L, B: vb, ldb: D, C: op + b * L * D + h * hd, ldc: D)
            }
        }
        matmulXWt(op, wo.w, out, T: T, inDim: D, outDim: D)
    }

    // MARK: backward

    // dout: [B, L, D] → dx: [B, L, D]
    public func backward(_ dout: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>, B: Int, L: Int) {
        guard let x else { preconditionFailure("Attention.backward before forward") }
        let T = B * L
        let qp = q.pointer, kp = k.pointer, vp = v.pointer, op = o.pointer, lp = lse.pointer
        // o_proj
        matmulDyTX(dout, op, wo.g, T: T, inDim: D, outDim: D)
        let dop = dO.ensure(T * D)
        matmulDyW(dout, wo.w, dop, T: T, inDim: D, outDim: D)
        let dqp = dq.ensure(T * D), dkp = dk.ensure(T * D), dvp = dv.ensure(T * D)
        let P = scores.ensure(L * L), dP = dScores.ensure(L * L)
        for b in 0..<B {
            for h in 0..<H {
                let off = b * L * D + h * hd
                let qb = qp + off, kb = kp + off, vb = vp + off, ob = op + off, dob = dop + off
                // P = exp(S − lse), causal
                sgemm(transB: true, M: L, N: L, K: hd, alpha: scale, A: qb, lda: D, B: kb, ldb: D, C: P, ldc: L)
                for i in 0..<L {
                    let row = P + i * L, l = lp[(b * H + h) * L + i]
                    mapSIMD(row, row, i + 1) { vexp($0 - l) }
                    if i + 1 < L { (row + i + 1).update(repeating: 0, count: L - i - 1) }
                }
                // dV = Pᵀ dO                                         [L, hd]
                sgemm(transA: true, M: L, N: hd, K: L, A: P, lda: L, B: dob, ldb: D, C: dvp + off, ldc: D)
                // dP = dO Vᵀ                                         [L, L]
                sgemm(transB: true, M: L, N: L, K: hd, A: dob, lda: D, B: vb, ldb: D, C: dP, ldc: L)
                // dS = P ⊙ (dP − rowsum(dO ⊙ O)) · scale
                for i in 0..<L {
                    var di: Float = 0
                    for c in 0..<hd { di += dob[i * D + c] * ob[i * D + c] }
                    let pr = P + i * L, dr = dP + i * L
                    for j in 0...i { dr[j] = pr[j] * (dr[j] - di) * scale }
                    if i + 1 < L { (dr + i + 1).update(repeating: 0, count: L - i - 1) }
                }
                // dQ = dS K, dK = dSᵀ Q                              [L, hd]
                sgemm(M: L, N: hd, K: L, A: dP, lda: L, B: kb, ldb: D, C: dqp + off, ldc: D)
                sgemm(transA: true, M: L, N: hd, K: L, A: dP, lda: L, B: qb, ldb: D, C: dkp + off, ldc: D)
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

    public func makeState(batch: Int, maxLength: Int) throws -> MixerState { State(B: batch, maxLength: maxLength, D: D) }

    public func prefill(_ xIn: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, B: Int, L: Int, state st: MixerState) {
        let s = st as! State
        precondition(L <= s.maxLength, "prompt longer than the KV cache")
        forward(xIn, out, B: B, L: L)
        for b in 0..<B {
            (s.k.pointer + b * s.maxLength * D).update(from: k.pointer + b * L * D, count: L * D)
            (s.v.pointer + b * s.maxLength * D).update(from: v.pointer + b * L * D, count: L * D)
        }
        s.length = L
    }

    private let stepQ = FloatBuffer(), stepK = FloatBuffer(), stepV = FloatBuffer(), stepO = FloatBuffer(), stepP = FloatBuffer()

    // x: [B, D] → out: [B, D] at position state.length
    public func step(_ xIn: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, B: Int, state st: MixerState) {
        let s = st as! State
        let pos = s.length
        precondition(pos < s.maxLength, "KV cache full (\(s.maxLength) positions)")
        let qp = stepQ.ensure(B * D), kp = stepK.ensure(B * D), vp = stepV.ensure(B * D), op = stepO.ensure(B * D)
        matmulXWt(xIn, wq.w, qp, T: B, inDim: D, outDim: D)
        matmulXWt(xIn, wk.w, kp, T: B, inDim: D, outDim: D)
        matmulXWt(xIn, wv.w, vp, T: B, inDim: D, outDim: D)
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
                var m = p[0]
                for j in 1..<n where p[j] > m { m = p[j] }
                mapSIMD(p, p, n) { vexp($0 - m) }
                var sum: Float = 0
                for j in 0..<n { sum += p[j] }
                let inv = 1 / sum
                for j in 0..<n { p[j] *= inv }
                // o_h = Vᵀ p                                          [hd]
                bm_gemvT(vc + h * hd, rows: n, cols: hd, ld: D, x: p, y: op + b * D + h * hd)
            }
        }
        s.length = n
        matmulXWt(op, wo.w, out, T: B, inDim: D, outDim: D)
    }
}
