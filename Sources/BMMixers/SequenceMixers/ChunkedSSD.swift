import BMCore

/// The chunked SSD algorithm (Dao & Gu 2024, "Transformers are SSMs", §6;
/// `ssd_minimal_discrete` in state-spaces/mamba) for Mamba-2's scan, forward and backward,
/// one sequence at a time. Per head h (group g), with a_t = exp(Δ_t A_h) and chunks of Q
/// positions, inside a chunk (positions l, s = 0..<q):
///
///     dec[l, s] = a_{s+1} ⋯ a_l  (s ≤ l, else 0)    e_l = a_0 ⋯ a_l    w_s = a_{s+1} ⋯ a_{q−1}
///     Y      = (C Bᵀ ⊙ dec) · (Δ ⊙ X)  +  (e ⊙ C) · S_inᵀ  +  D · X       (Y_diag + Y_off + skip)
///     S_out  = e_{q−1} · S_in  +  (w ⊙ Δ ⊙ X)ᵀ · B
///
/// with X [q, P] the head's inputs, B and C [q, N] its group's, S_in [P, N] the state
/// entering the chunk (zeros for the first chunk of a training sequence). The products
/// are OpenBLAS calls; the decays are running products of the a's (no exp, no cancellation
/// of cumulative sums), flushed to zero below 1e-30 so no denormals reach the products.
/// The chunks pass their states by the short recurrence of S_out; `states` keeps the state
/// entering each chunk, `⌈L/Q⌉·E·N` floats a sequence (the recurrence keeps L·E·N).
///
/// The backward walks the chunks from the last, carrying the adjoint of the state leaving
/// the chunk (∂S_out); per chunk and head (gY = ∂loss/∂Y, log-decays α = Δ·A):
///
///     ∂M = gY (Δ⊙X)ᵀ (lower triangle)   ∂(Δ⊙X) = Mᵀ gY + w ⊙ (B ∂S_outᵀ)   ∂(C Bᵀ) = ∂M ⊙ dec
///     ∂C += ∂(C Bᵀ) B + e ⊙ (gY S_in)    ∂B += ∂(C Bᵀ)ᵀ C + (w ⊙ Δ⊙X) ∂S_out
///     ∂S_in = gYᵀ (e ⊙ C) + e_{q−1} ∂S_out
///     ∂α_k = Σ_{l≥k, s<k} ∂M[l,s] M[l,s] + Σ_{l≥k} e_l ⟨C_l, (gY S_in)_l⟩
///            + Σ_{s<k} w_s ⟨(Δ⊙X)_s, (B ∂S_outᵀ)_s⟩ + e_{q−1} ⟨∂S_out, S_in⟩
///     ∂Δ = Σ_p X ⊙ ∂(Δ⊙X) + A ∂α    ∂A += Σ Δ ∂α    ∂x = Δ ∂(Δ⊙X) + D gY    ∂D += Σ gY ⊙ X
///
/// (docs/mixers.md derives them; `ChunkedSSDTests` checks them against the recurrence.)
struct ChunkedSSD {
    /// Inner width, state size, head dimension, heads, groups, x|B|C row width, chunk length.
    let E: Int, N: Int, P: Int, H: Int, G: Int, Cc: Int, Q: Int

    func chunks(_ L: Int) -> Int { (L + Q - 1) / Q }
    /// Scratch floats one sequence's forward or backward needs.
    var scratchFloats: Int { 5 * Q * Q + 3 * Q * P + 4 * Q * N + 3 * Q + P * N + E * N }
    /// Floats of entering states one sequence keeps for the backward.
    func stateFloats(L: Int) -> Int { chunks(L) * E * N }

    private struct Scratch {
        let cb, dec, m, gm, gcb, xd, gxd, gxw, ce, gys, gc, gb, e, w, ga, gsi, gS: UnsafeMutablePointer<Float>
        init(_ s: UnsafeMutablePointer<Float>, _ d: ChunkedSSD) {
            let QQ = d.Q * d.Q, QP = d.Q * d.P, QN = d.Q * d.N
            cb = s; dec = cb + QQ; m = dec + QQ; gm = m + QQ; gcb = gm + QQ
            xd = gcb + QQ; gxd = xd + QP; gxw = gxd + QP
            ce = gxw + QP; gys = ce + QN; gc = gys + QN; gb = gc + QN
            e = gb + QN; w = e + d.Q; ga = w + d.Q
            gsi = ga + d.Q; gS = gsi + d.P * d.N
        }
    }

    /// Running products with a flush to zero: once a decay product is below 1e-30 it is
    /// 0 (its contribution is below any float's resolution of the other terms).
    @inline(__always) private static func mul(_ x: Float, _ a: Float) -> Float {
        let r = x * a
        return r < 1e-30 ? 0 : r
    }

    /// dec [q, Q] (lower triangle; upper zero), e [q], w [q] of head h for the chunk at t0,
    /// and M = CB ⊙ dec.
    private func decays(h: Int, t0: Int, q: Int, decay: UnsafePointer<Float>, s: Scratch) {
        var run: Float = 1
        for l in 0..<q { run = l == 0 ? decay[t0 * H + h] : Self.mul(run, decay[(t0 + l) * H + h]); s.e[l] = run }
        s.w[q - 1] = 1
        for j in stride(from: q - 2, through: 0, by: -1) { s.w[j] = Self.mul(s.w[j + 1], decay[(t0 + j + 1) * H + h]) }
        for l in 0..<q {
            let dr = s.dec + l * Q, mr = s.m + l * Q, cr = s.cb + l * Q
            var v: Float = 1
            var j = l
            while j >= 0 {
                dr[j] = v; mr[j] = cr[j] * v
                v = Self.mul(v, decay[(t0 + j) * H + h])
                j -= 1
                if v == 0 { break }
            }
            while j >= 0 { dr[j] = 0; mr[j] = 0; j -= 1 }
            for k in l + 1..<max(l + 1, q) { dr[k] = 0; mr[k] = 0 }
        }
    }

    /// Xd = Δ ⊙ X of head h for the chunk at t0: [q, P].
    private func scaledInputs(h: Int, t0: Int, q: Int, xc: UnsafePointer<Float>, delta: UnsafePointer<Float>, into xd: UnsafeMutablePointer<Float>) {
        for l in 0..<q {
            let dv = delta[(t0 + l) * H + h], x = xc + (t0 + l) * Cc + h * P, r = xd + l * P
            for p in 0..<P { r[p] = dv * x[p] }
        }
    }

    // MARK: forward

    /// One sequence: xc [L, Cc] (x | B | C), delta and decay [L, H], D [H] → y [L, E]
    /// (skip included), states [⌈L/Q⌉, H, P, N] (the state entering each chunk) and, when
    /// given, `final` [H, P, N] (the state after position L−1). `initial` [H, P, N]: the
    /// state before position 0 (generation's prefill), else zeros.
    func forward(L: Int, xc: UnsafePointer<Float>, delta: UnsafePointer<Float>, decay: UnsafePointer<Float>, D: UnsafePointer<Float>,
                 initial: UnsafePointer<Float>?, states: UnsafeMutablePointer<Float>, final: UnsafeMutablePointer<Float>?,
                 y: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>) {
        let s = Scratch(scratch, self), nC = chunks(L), EN = E * N, PN = P * N, hpg = H / G
        if let initial { states.update(from: initial, count: EN) } else { states.update(repeating: 0, count: EN) }
        for c in 0..<nC {
            let t0 = c * Q, q = min(Q, L - t0)
            let hasIn = c > 0 || initial != nil
            let sIn = states + c * EN
            let sOut: UnsafeMutablePointer<Float>? = c + 1 < nC ? states + (c + 1) * EN : final
            for g in 0..<G {
                let Bm = xc + t0 * Cc + E + g * N, Cm = xc + t0 * Cc + E + G * N + g * N       // [q, N], rows of stride Cc
                // CB[l, s] = C_l · B_s: [q, q]
                sgemm(transB: true, M: q, N: q, K: N, A: Cm, lda: Cc, B: Bm, ldb: Cc, C: s.cb, ldc: Q)
                for h in g * hpg..<(g + 1) * hpg {
                    decays(h: h, t0: t0, q: q, decay: decay, s: s)
                    scaledInputs(h: h, t0: t0, q: q, xc: xc, delta: delta, into: s.xd)
                    let yh = y + t0 * E + h * P                                                   // [q, P], rows of stride E
                    sgemm(M: q, N: P, K: q, A: s.m, lda: Q, B: s.xd, ldb: P, C: yh, ldc: E)      // Y_diag = M · Xd
                    if hasIn {
                        for l in 0..<q { let el = s.e[l], cr = Cm + l * Cc, r = s.ce + l * N; for n in 0..<N { r[n] = el * cr[n] } }
                        sgemm(transB: true, M: q, N: P, K: N, A: s.ce, lda: N, B: sIn + h * PN, ldb: N,
                              beta: 1, C: yh, ldc: E)                                              // + Y_off = (e ⊙ C) · S_inᵀ
                    }
                    let dh = D[h]
                    for l in 0..<q {
                        let x = xc + (t0 + l) * Cc + h * P, r = yh + l * E
                        for p in 0..<P { r[p] += dh * x[p] }
                    }
                    if let sOut {
                        let so = sOut + h * PN, si = sIn + h * PN, eLast = s.e[q - 1]
                        if hasIn { for i in 0..<PN { so[i] = eLast * si[i] } }
                        for l in 0..<q { let wl = s.w[l], r = s.xd + l * P; for p in 0..<P { r[p] *= wl } }
                        sgemm(transA: true, M: P, N: N, K: q, A: s.xd, lda: P, B: Bm, ldb: Cc,
                              beta: hasIn ? 1 : 0, C: so, ldc: N)                                  // S_out = e_last S_in + (w ⊙ Xd)ᵀ B
                    }
                }
            }
        }
    }

    // MARK: backward

    /// One sequence, from a zero initial state: dy [L, E] (∂y, skip included) → dxc [L, Cc]
    /// (∂x, ∂B, ∂C, written), dDelta (∂Δ, written at dDelta[t · ldDelta + h]); dA (∂A_h)
    /// and dD [H] accumulate. `states` is what `forward` kept.
    func backward(L: Int, xc: UnsafePointer<Float>, delta: UnsafePointer<Float>, decay: UnsafePointer<Float>,
                  A: UnsafePointer<Float>, D: UnsafePointer<Float>, states: UnsafePointer<Float>, dy: UnsafePointer<Float>,
                  dxc: UnsafeMutablePointer<Float>, dDelta: UnsafeMutablePointer<Float>, ldDelta: Int,
                  dA: UnsafeMutablePointer<Float>, dD: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>) {
        let s = Scratch(scratch, self), nC = chunks(L), EN = E * N, PN = P * N, hpg = H / G
        s.gS.update(repeating: 0, count: EN)                   // ∂S_out of the last chunk: the loss does not read it
        for c in stride(from: nC - 1, through: 0, by: -1) {
            let t0 = c * Q, q = min(Q, L - t0)
            let hasIn = c > 0, hasOut = c + 1 < nC
            let sIn = states + c * EN
            for g in 0..<G {
                let Bm = xc + t0 * Cc + E + g * N, Cm = xc + t0 * Cc + E + G * N + g * N
                sgemm(transB: true, M: q, N: q, K: N, A: Cm, lda: Cc, B: Bm, ldb: Cc, C: s.cb, ldc: Q)
                for l in 0..<q { (s.gcb + l * Q).update(repeating: 0, count: q) }
                s.gc.update(repeating: 0, count: q * N); s.gb.update(repeating: 0, count: q * N)
                for h in g * hpg..<(g + 1) * hpg {
                    decays(h: h, t0: t0, q: q, decay: decay, s: s)
                    scaledInputs(h: h, t0: t0, q: q, xc: xc, delta: delta, into: s.xd)
                    let gy = dy + t0 * E + h * P                                                  // [q, P], stride E
                    sgemm(transB: true, M: q, N: q, K: P, A: gy, lda: E, B: s.xd, ldb: P, C: s.gm, ldc: Q)   // ∂M = gY Xdᵀ
                    sgemm(transA: true, M: q, N: P, K: q, A: s.m, lda: Q, B: gy, ldb: E, C: s.gxd, ldc: P)   // ∂Xd = Mᵀ gY
                    s.ga.update(repeating: 0, count: q)
                    // ∂(CB) = ∂M ⊙ dec; ∂α_k += Σ_{l ≥ k} Σ_{s < k} ∂M[l,s] M[l,s]
                    for l in 0..<q {
                        let gmr = s.gm + l * Q, dr = s.dec + l * Q, mr = s.m + l * Q, gcr = s.gcb + l * Q
                        var prefix: Float = 0
                        for j in 0..<l {
                            gcr[j] += gmr[j] * dr[j]
                            prefix += gmr[j] * mr[j]
                            s.ga[j + 1] += prefix
                        }
                        gcr[l] += gmr[l]
                    }
                    if hasIn {
                        // Y_off = (e ⊙ C) S_inᵀ: ∂C += e ⊙ (gY S_in); ∂α_k += Σ_{l ≥ k} e_l ⟨C_l, (gY S_in)_l⟩; ∂S_in = gYᵀ (e ⊙ C)
                        sgemm(M: q, N: N, K: P, A: gy, lda: E, B: sIn + h * PN, ldb: N, C: s.gys, ldc: N)
                        var suffix: Float = 0
                        for l in stride(from: q - 1, through: 0, by: -1) {
                            let el = s.e[l], cr = Cm + l * Cc, gr = s.gys + l * N, gcr = s.gc + l * N, cer = s.ce + l * N
                            var u: Float = 0
                            for n in 0..<N { u += cr[n] * gr[n]; gcr[n] += el * gr[n]; cer[n] = el * cr[n] }
                            suffix += el * u
                            s.ga[l] += suffix
                        }
                        sgemm(transA: true, M: P, N: N, K: q, A: gy, lda: E, B: s.ce, ldb: N, C: s.gsi, ldc: N)
                    }
                    if hasOut {
                        // S_out = e_last S_in + (w ⊙ Xd)ᵀ B
                        let gso = s.gS + h * PN
                        sgemm(transB: true, M: q, N: P, K: N, A: Bm, lda: Cc, B: gso, ldb: N, C: s.gxw, ldc: P)   // B ∂S_outᵀ
                        var prefix: Float = 0
                        for j in 0..<q {
                            let wj = s.w[j], xr = s.xd + j * P, gwr = s.gxw + j * P, gxr = s.gxd + j * P
                            var gw: Float = 0
                            for p in 0..<P { gw += xr[p] * gwr[p]; gxr[p] += wj * gwr[p]; gwr[p] = wj * xr[p] }
                            s.ga[j] += prefix                     // ∂α_k += Σ_{s < k} w_s ⟨Xd_s, (B ∂S_outᵀ)_s⟩
                            prefix += wj * gw
                        }
                        sgemm(M: q, N: N, K: P, A: s.gxw, lda: P, B: gso, ldb: N, beta: 1, C: s.gb, ldc: N)  // ∂B += (w ⊙ Xd) ∂S_out
                        if hasIn {
                            let si = sIn + h * PN, eLast = s.e[q - 1]
                            var v: Float = 0
                            for i in 0..<PN { v += gso[i] * si[i]; s.gsi[i] += eLast * gso[i] }
                            v *= eLast
                            for k in 0..<q { s.ga[k] += v }
                        }
                    }
                    if hasIn { (s.gS + h * PN).update(from: s.gsi, count: PN) }      // ∂S_out of the chunk before
                    // x and Δ
                    let dh = D[h], ah = A[h]
                    var dSum: Float = 0, aSum: Float = 0
                    for l in 0..<q {
                        let t = t0 + l, dv = delta[t * H + h]
                        let x = xc + t * Cc + h * P, gxr = s.gxd + l * P, gyr = gy + l * E, dx = dxc + t * Cc + h * P
                        var gd: Float = 0
                        for p in 0..<P {
                            gd += x[p] * gxr[p]
                            dx[p] = dv * gxr[p] + dh * gyr[p]
                            dSum += gyr[p] * x[p]
                        }
                        dDelta[t * ldDelta + h] = gd + ah * s.ga[l]
                        aSum += dv * s.ga[l]
                    }
                    dD[h] += dSum; dA[h] += aSum
                }
                // ∂C += ∂(CB) B; ∂B += ∂(CB)ᵀ C; written into the group's columns of dxc
                sgemm(M: q, N: N, K: q, A: s.gcb, lda: Q, B: Bm, ldb: Cc, beta: 1, C: s.gc, ldc: N)
                sgemm(transA: true, M: q, N: N, K: q, A: s.gcb, lda: Q, B: Cm, ldb: Cc, beta: 1, C: s.gb, ldc: N)
                for l in 0..<q {
                    let row = dxc + (t0 + l) * Cc
                    (row + E + g * N).update(from: s.gb + l * N, count: N)
                    (row + E + G * N + g * N).update(from: s.gc + l * N, count: N)
                }
            }
        }
    }
}
