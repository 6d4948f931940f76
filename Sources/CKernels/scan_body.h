// The selective scan on vectors of W channels (docs/mixers.md, docs/performance.md).
// Included by scan.c once per build with W (8 or 16), SUF (the name suffix) and TARGET
// (the instruction set) defined; everything here is static, so the builds share nothing
// that the linker could merge across instruction sets.
//
// A vector holds W channels c of one state index n: y needs no horizontal sum, and
// B_t[n], C_t[n] are broadcast scalars (Mamba) or vectors over channels (S4D). The
// forward runs one block of W channels through all L steps, its state [N, W] in L1;
// the backward recomputes a chunk's states and ā per block from the chunk's boundary.

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define F_(name) CAT(name, SUF)
#define VF F_(vf_)
#define VI F_(vi_)
#define INL __attribute__((target(TARGET), always_inline)) static inline

typedef float VF __attribute__((ext_vector_type(W)));
typedef int VI __attribute__((ext_vector_type(W)));

INL VF F_(splat_)(float x) { VF v = {}; return v + x; }
INL VF F_(ld_)(const float *p) { VF v; __builtin_memcpy(&v, p, sizeof v); return v; }
INL void F_(st_)(float *p, VF v) { __builtin_memcpy(p, &v, sizeof v); }
/// The first `lanes` floats, the rest 0 (the last block of a row of E channels).
INL VF F_(ldp_)(const float *p, int lanes) {
    if (lanes == W) return F_(ld_)(p);
    VF v = {};
    for (int i = 0; i < lanes; i++) v[i] = p[i];
    return v;
}
INL void F_(stp_)(float *p, VF v, int lanes) {
    if (lanes == W) { F_(st_)(p, v); return; }
    for (int i = 0; i < lanes; i++) p[i] = v[i];
}
/// B or C at (n, c..c+W) of one row: a broadcast scalar (shared by channels) or a vector.
INL VF F_(ldbc_)(const float *row, int n, int strideN, int perChannel, int c) {
    return perChannel ? F_(ld_)(row + (long)n * strideN + c) : F_(splat_)(row[(long)n * strideN]);
}
/// Σ of the lanes as a tree (halves added), a fixed order.
INL float F_(hsum_)(VF v) {
    float a[W];
    __builtin_memcpy(a, &v, sizeof a);
    for (int h = W / 2; h >= 1; h /= 2)
        for (int i = 0; i < h; i++) a[i] += a[i + h];
    return a[0];
}
/// e^x for the scan's decays, x = δ·A ≤ 0 (δ = softplus(·) > 0, A = −exp(A_log) < 0, 0 in
/// the padding lanes), by BMCore's vexp polynomial (Cephes expf, relative error ≤ 2e-7
/// on [-87, 0]): x clamped below so that 2^n stays a normal float (no upper clamp: x ≤ 0),
/// n = round(x/ln2) by the 1.5·2^23 trick, r = x − n·ln2 in two parts, e^r by the
/// polynomial, times 2^n through the exponent bits. A NaN stays NaN (all bits set), so a
/// diverged parameter shows in the output instead of becoming ā ≈ 0.
INL VF F_(vexp_)(VF x) {
    const VI isNaN = x != x;
    x = __builtin_elementwise_max(x, F_(splat_)(-87.33654f));
    VF magic = F_(splat_)(12582912.0f);
    VF t = __builtin_elementwise_fma(x, F_(splat_)(1.44269504088896341f), magic);
    VF n = t - magic;
    VF r = __builtin_elementwise_fma(n, F_(splat_)(-0.693359375f), x);
    r = __builtin_elementwise_fma(n, F_(splat_)(2.12194440e-4f), r);
    VF r2 = r * r;
    VF p = __builtin_elementwise_fma(r, F_(splat_)(1.9875691500e-4f), F_(splat_)(1.3981999507e-3f));
    p = __builtin_elementwise_fma(p, r, F_(splat_)(8.3334519073e-3f));
    p = __builtin_elementwise_fma(p, r, F_(splat_)(4.1665795894e-2f));
    p = __builtin_elementwise_fma(p, r, F_(splat_)(1.6666665459e-1f));
    p = __builtin_elementwise_fma(p, r, F_(splat_)(5.0000001201e-1f));
    VF y = __builtin_elementwise_fma(p, r2, r + 1.0f);
    VI ni = (VI)t - 0x4B400000;
    return (VF)((VI)(y * (VF)((ni + 127) << 23)) | isNaN);
}

#define ld F_(ld_)
#define st F_(st_)
#define ldp F_(ldp_)
#define stp F_(stp_)
#define ldbc F_(ldbc_)
#define splat F_(splat_)
#define vexp F_(vexp_)
#define hsum F_(hsum_)

__attribute__((target(TARGET)))
static void F_(scan_forward_)(const bm_scan_shape *s, const float *u, const float *delta, const float *A,
                              const float *Bm, const float *Cm, const float *D, float *y, float *state,
                              float *bnd, int c0, int c1) {
    const int E = s->E, Ep = s->Ep, N = s->N, L = s->L, chunk = s->chunk;
    const long deltaT = s->deltaT, bT = s->bT, cT = s->cT;
    const int bN = s->bN, cN = s->cN, bVec = s->bC == 1, cVec = s->cC == 1;
    for (int c = c0; c < c1; c += W) {
        const int lanes = E - c < W ? E - c : W;
        const VF dSkip = D ? ldp(D + c, lanes) : splat(0);
        for (int t = 0; t < L; t++) {
            if (bnd && t % chunk == 0) {
                float *dst = bnd + (long)(t / chunk) * N * Ep + c;
                for (int n = 0; n < N; n++) st(dst + (long)n * Ep, ld(state + (long)n * Ep + c));
            }
            const VF d = ldp(delta + t * deltaT + c, lanes), uu = ldp(u + (long)t * E + c, lanes);
            const VF du = d * uu;
            const float *bRow = Bm + t * bT, *cRow = Cm + t * cT;
            VF acc = dSkip * uu;
            for (int n = 0; n < N; n++) {
                const long o = (long)n * Ep + c;
                const VF sv = vexp(d * ld(A + o)) * ld(state + o) + du * ldbc(bRow, n, bN, bVec, c);
                st(state + o, sv);
                acc += sv * ldbc(cRow, n, cN, cVec, c);
            }
            stp(y + (long)t * E + c, acc, lanes);
        }
    }
}

__attribute__((target(TARGET)))
static void F_(scan_backward_)(const bm_scan_shape *s, const float *u, const float *delta, const float *A,
                               const float *Bm, const float *Cm, const float *D, const float *bnd,
                               const float *gy, float *du, float *dDelta, float *dB, float *dC, float *dA,
                               float *dD, float *work, int c0, int c1, float *sharedDB, float *sharedDC) {
    const int E = s->E, Ep = s->Ep, N = s->N, L = s->L, chunk = s->chunk, blk = N * W;
    const long deltaT = s->deltaT, bT = s->bT, cT = s->cT;
    const int bN = s->bN, cN = s->cN, bVec = s->bC == 1, cVec = s->cC == 1;
    float *mu = work;                          // [N, Ep]: ā_{t+1}·λ_{t+1}
    float *S = mu + (long)N * Ep;              // [chunk, N, W]: states of one channel block in the chunk
    float *Ab = S + (long)chunk * blk;         // [chunk, N, W]: their ā
    float *Pb = Ab + (long)chunk * blk;        // [chunk, N, W]: ∂B partial sums over channel blocks
    float *Pc = Pb + (long)chunk * blk;        //                ∂C (shared B, C only)
    __builtin_memset(mu, 0, sizeof(float) * (size_t)N * Ep);
    const int chunks = (L + chunk - 1) / chunk;
    for (int k = chunks - 1; k >= 0; k--) {
        const int t0 = k * chunk, t1 = L < t0 + chunk ? L : t0 + chunk;
        const float *start = bnd + (long)k * N * Ep;
        if (!bVec) __builtin_memset(Pb, 0, sizeof(float) * (size_t)(t1 - t0) * blk);
        if (!cVec) __builtin_memset(Pc, 0, sizeof(float) * (size_t)(t1 - t0) * blk);
        for (int c = c0; c < c1; c += W) {
            const int lanes = E - c < W ? E - c : W;
            // Recompute s_t and ā_t of this block for t in [t0, t1).
            for (int t = t0; t < t1; t++) {
                const VF d = ldp(delta + t * deltaT + c, lanes);
                const VF du_ = d * ldp(u + (long)t * E + c, lanes);
                const float *bRow = Bm + t * bT;
                float *cur = S + (long)(t - t0) * blk, *ab = Ab + (long)(t - t0) * blk;
                const float *prevRow = t == t0 ? start + c : cur - blk;
                const long prevStride = t == t0 ? Ep : W;
                for (int n = 0; n < N; n++) {
                    const VF prev = ld(prevRow + n * prevStride);
                    const VF aBar = vexp(d * ld(A + (long)n * Ep + c));
                    st(ab + n * W, aBar);
                    st(cur + n * W, aBar * prev + du_ * ldbc(bRow, n, bN, bVec, c));
                }
            }
            // Reverse pass through the chunk.
            VF dDv = splat(0);
            for (int t = t1 - 1; t >= t0; t--) {
                const VF d = ldp(delta + t * deltaT + c, lanes), g = ldp(gy + (long)t * E + c, lanes);
                const float *bRow = Bm + t * bT, *cRow = Cm + t * cT;
                const float *cur = S + (long)(t - t0) * blk, *ab = Ab + (long)(t - t0) * blk;
                float *pb = Pb + (long)(t - t0) * blk, *pc = Pc + (long)(t - t0) * blk;
                float *dBt = dB + t * bT, *dCt = dC + t * cT;
                const VF dU = d * ldp(u + (long)t * E + c, lanes);
                // s_{t-1}: the chunk's boundary at its first step, else the row before
                const float *prevRow = t == t0 ? start + c : cur - blk;
                const long prevStride = t == t0 ? Ep : W;
                // ∂δ_t = Σ_n λ·(B·u + A·ā·s_{t−1}) = u·Σ_n λ·B + Σ_n A·(λ·ā·s_{t−1}):
                // accU carries Σ λ·B (for ∂u too), accA the second sum.
                VF accU = splat(0), accA = splat(0);
                for (int n = 0; n < N; n++) {
                    const long o = (long)n * Ep + c;
                    const VF aBar = ld(ab + n * W);
                    const VF bt = ldbc(bRow, n, bN, bVec, c), ct = ldbc(cRow, n, cN, cVec, c);
                    const VF lam = g * ct + ld(mu + o);
                    const VF gC = g * ld(cur + n * W), lB = lam * dU;
                    if (cVec) { float *p = dCt + (long)n * cN + c; st(p, ld(p) + gC); } else st(pc + n * W, ld(pc + n * W) + gC);
                    if (bVec) { float *p = dBt + (long)n * bN + c; st(p, ld(p) + lB); } else st(pb + n * W, ld(pb + n * W) + lB);
                    accU += lam * bt;
                    const VF q = lam * (aBar * ld(prevRow + n * prevStride));
                    accA += ld(A + o) * q;
                    st(dA + o, ld(dA + o) + d * q);
                    st(mu + o, aBar * lam);
                }
                VF duv = d * accU;
                if (D) duv += ldp(D + c, lanes) * g;
                stp(du + (long)t * E + c, duv, lanes);
                const VF uu = ldp(u + (long)t * E + c, lanes);     // read again: fewer registers live in the loop
                float *dd = dDelta + t * deltaT + c;
                stp(dd, ldp(dd, lanes) + (uu * accU + accA), lanes);
                dDv += g * uu;
            }
            if (dD) stp(dD + c, ldp(dD + c, lanes) + dDv, lanes);
        }
        // Shared B, C: one horizontal sum per (t, n) of the blocks' partial sums.
        for (int t = t0; t < t1; t++) {
            if (!bVec) {
                const float *pb = Pb + (long)(t - t0) * blk;
                for (int n = 0; n < N; n++) {
                    float v = hsum(ld(pb + n * W));
                    if (sharedDB) sharedDB[(long)t * N + n] += v; else dB[t * bT + (long)n * bN] += v;
                }
            }
            if (!cVec) {
                const float *pc = Pc + (long)(t - t0) * blk;
                for (int n = 0; n < N; n++) {
                    float v = hsum(ld(pc + n * W));
                    if (sharedDC) sharedDC[(long)t * N + n] += v; else dC[t * cT + (long)n * cN] += v;
                }
            }
        }
    }
}

#undef ld
#undef st
#undef ldp
#undef stp
#undef ldbc
#undef splat
#undef vexp
#undef hsum
#undef INL
#undef VF
#undef VI
