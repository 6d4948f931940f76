import BMCore

/// The selective scan of docs/mixers.md for one sequence (one batch element):
///
///   ā_t = exp(δ_t[c]·A[c,n]),  s_t = ā_t·s_{t−1} + δ_t[c]·B_t[n]·u_t[c]
///   y_t[c] = Σ_n s_t[c,n]·C_t[n] + D[c]·u_t[c]
///
/// Vectorised over channels: a SIMD16 holds 16 channels c of one state index n, so
/// y needs no horizontal sum and B_t[n], C_t[n] are broadcast scalars. The state,
/// A and the chunk boundaries are stored [N, Ep] (Ep = E rounded up to 16, A = 0 and
/// state 0 in the padding lanes); per-token rows (u, δ, y) are [L, E] and the last
/// block of channels is loaded lane by lane when E is not a multiple of 16.
///
/// Strides let the same kernel run Mamba (δ, B, C depend on t; B_t and C_t are
/// read in place from x_proj's output) and the time-invariant S4D (δ per channel,
/// B and C per channel and state): element (t, c) of δ is at `t·deltaT + c`;
/// element (t, n, c) of B at `t·bT + n·bN + c·bC` with bC = 0 (a scalar for all
/// channels) or 1 (a vector over channels); C likewise.
///
/// Memory: the forward keeps only the state at the start of every chunk of
/// `chunk` steps; the backward recomputes the states inside a chunk from its
/// boundary, one block of 16 channels at a time (so the chunk's states stay in
/// L1) — as the CUDA kernel does.
public struct ScanShape {
    public var L: Int, E: Int, N: Int
    public var chunk: Int
    public var deltaT: Int
    public var bT: Int, bN: Int, bC: Int
    public var cT: Int, cN: Int, cC: Int
    /// Channels rounded up to whole SIMD16 blocks: the row length of A, the state, boundaries and dA.
    public var Ep: Int { (E + 15) / 16 * 16 }
    public var chunks: Int { (L + chunk - 1) / chunk }
    /// Floats of `work` that `backward` needs.
    public var workSize: Int { N * Ep + 4 * chunk * N * 16 }
    public init(L: Int, E: Int, N: Int, chunk: Int, deltaT: Int, bT: Int, bN: Int, bC: Int, cT: Int, cN: Int, cC: Int) {
        precondition(bC == 0 || bC == 1, "bC is 0 (shared by channels) or 1 (per channel)")
        precondition(cC == 0 || cC == 1, "cC is 0 (shared by channels) or 1 (per channel)")
        self.L = L; self.E = E; self.N = N; self.chunk = chunk; self.deltaT = deltaT
        self.bT = bT; self.bN = bN; self.bC = bC; self.cT = cT; self.cN = cN; self.cC = cC
    }
}

/// The first `lanes` floats (the rest 0): the last block of a row whose length is not a multiple of 16.
@inline(__always) private func ldp(_ p: UnsafePointer<Float>, _ lanes: Int) -> Vec16 {
    if lanes == 16 { return ld(p) }
    var v = Vec16()
    for i in 0..<lanes { v[i] = p[i] }
    return v
}
@inline(__always) private func stp(_ p: UnsafeMutablePointer<Float>, _ v: Vec16, _ lanes: Int) {
    if lanes == 16 { st(p, v); return }
    for i in 0..<lanes { p[i] = v[i] }
}
/// B or C at (n, c0..c0+15) of row `row`: a broadcast scalar (stride 0 over channels) or a vector.
@inline(__always) private func ldBC(_ row: UnsafePointer<Float>, _ n: Int, _ strideN: Int, _ perChannel: Bool, _ c0: Int) -> Vec16 {
    perChannel ? ld(row + n * strideN + c0) : Vec16(repeating: row[n * strideN])
}

public enum SelectiveScan {
    /// Runs the scan over L steps from `state` ([N, Ep], updated in place to s_{L−1}).
    /// u: [L, E], y: [L, E] (written). `boundaries` ([chunks, N, Ep]) receives the
    /// state before each chunk when given. `channels` (whole blocks of 16; default all)
    /// limits it to those channels, which are independent: one sequence can be split
    /// over threads by channels, with the same result.
    public static func forward(_ s: ScanShape, u: UnsafePointer<Float>, delta: UnsafePointer<Float>,
                               A: UnsafePointer<Float>, Bm: UnsafePointer<Float>, Cm: UnsafePointer<Float>,
                               D: UnsafePointer<Float>?, y: UnsafeMutablePointer<Float>,
                               state: UnsafeMutablePointer<Float>, boundaries: UnsafeMutablePointer<Float>?,
                               channels: Range<Int>? = nil) {
        let E = s.E, Ep = s.Ep, N = s.N
        let bVec = s.bC == 1, cVec = s.cC == 1
        // One block of 16 channels through all L steps: its state and A ([N, 16] each) stay in L1.
        var c0 = channels?.lowerBound ?? 0
        let cEnd = channels?.upperBound ?? E
        while c0 < cEnd {
            let lanes = min(16, E - c0)
            let dSkip = D.map { ldp($0 + c0, lanes) } ?? Vec16()
            for t in 0..<s.L {
                if let bnd = boundaries, t % s.chunk == 0 {
                    let dst = bnd + (t / s.chunk) * N * Ep + c0
                    for n in 0..<N { st(dst + n * Ep, ld(state + n * Ep + c0)) }
                }
                let d = ldp(delta + t * s.deltaT + c0, lanes), uu = ldp(u + t * E + c0, lanes)
                let du = d * uu
                let bRow = Bm + t * s.bT, cRow = Cm + t * s.cT
                var acc = dSkip * uu
                for n in 0..<N {
                    let o = n * Ep + c0
                    let sv = vexp(d * ld(A + o)) * ld(state + o) + du * ldBC(bRow, n, s.bN, bVec, c0)
                    st(state + o, sv)
                    acc += sv * ldBC(cRow, n, s.cN, cVec, c0)
                }
                stp(y + t * E + c0, acc, lanes)
            }
            c0 += 16
        }
    }

    /// Backward of `forward` for one sequence.
    /// gy: [L, E] = ∂loss/∂y. Writes du (the scan's part of ∂u, [L, E], overwritten);
    /// accumulates into dDelta (at t·deltaT + c), dB, dC (same strides as B, C),
    /// dA ([N, Ep]) and dD ([E]). `work` needs `s.workSize` floats.
    /// `channels` (whole blocks of 16) limits it to those channels, as in `forward`;
    /// everything it writes is then those channels' own, except a B or C shared by all
    /// channels (bC or cC = 0): their gradient sums over channels, so a part's share goes
    /// to `sharedDB` / `sharedDC` ([L, N] rows, accumulated) when given, for the caller to
    /// add up in a fixed order.
    public static func backward(_ s: ScanShape, u: UnsafePointer<Float>, delta: UnsafePointer<Float>,
                                A: UnsafePointer<Float>, Bm: UnsafePointer<Float>, Cm: UnsafePointer<Float>,
                                D: UnsafePointer<Float>?, boundaries: UnsafePointer<Float>, gy: UnsafePointer<Float>,
                                du: UnsafeMutablePointer<Float>, dDelta: UnsafeMutablePointer<Float>,
                                dB: UnsafeMutablePointer<Float>, dC: UnsafeMutablePointer<Float>,
                                dA: UnsafeMutablePointer<Float>, dD: UnsafeMutablePointer<Float>?,
                                work: UnsafeMutablePointer<Float>, channels: Range<Int>? = nil,
                                sharedDB: UnsafeMutablePointer<Float>? = nil, sharedDC: UnsafeMutablePointer<Float>? = nil) {
        let E = s.E, Ep = s.Ep, N = s.N, blk = N * 16
        let bVec = s.bC == 1, cVec = s.cC == 1
        let mu = work                          // [N, Ep]: ā_{t+1}·λ_{t+1}
        let S = mu + N * Ep                    // [chunk, N, 16]: states of one channel block in the chunk
        let Ab = S + s.chunk * blk             // [chunk, N, 16]: their ā
        let Pb = Ab + s.chunk * blk            // [chunk, N, 16]: ∂B partial sums over channel blocks
        let Pc = Pb + s.chunk * blk            //                 ∂C (shared B, C only)
        mu.update(repeating: 0, count: N * Ep)
        for k in stride(from: s.chunks - 1, through: 0, by: -1) {
            let t0 = k * s.chunk, t1 = min(s.L, t0 + s.chunk)
            let start = boundaries + k * N * Ep
            if !bVec { Pb.update(repeating: 0, count: (t1 - t0) * blk) }
            if !cVec { Pc.update(repeating: 0, count: (t1 - t0) * blk) }
            var c0 = channels?.lowerBound ?? 0
            let cEnd = channels?.upperBound ?? E
            while c0 < cEnd {
                let lanes = min(16, E - c0)
                // Recompute s_t and ā_t of this block for t in [t0, t1).
                for t in t0..<t1 {
                    let d = ldp(delta + t * s.deltaT + c0, lanes)
                    let du_ = d * ldp(u + t * E + c0, lanes)
                    let bRow = Bm + t * s.bT
                    let cur = S + (t - t0) * blk, ab = Ab + (t - t0) * blk
                    for n in 0..<N {
                        let prev = t == t0 ? ld(start + n * Ep + c0) : ld(cur - blk + n * 16)
                        let aBar = vexp(d * ld(A + n * Ep + c0))
                        st(ab + n * 16, aBar)
                        st(cur + n * 16, aBar * prev + du_ * ldBC(bRow, n, s.bN, bVec, c0))
                    }
                }
                // Reverse pass through the chunk.
                var dDv = Vec16()
                for t in stride(from: t1 - 1, through: t0, by: -1) {
                    let d = ldp(delta + t * s.deltaT + c0, lanes), uu = ldp(u + t * E + c0, lanes)
                    let g = ldp(gy + t * E + c0, lanes)
                    let bRow = Bm + t * s.bT, cRow = Cm + t * s.cT
                    let cur = S + (t - t0) * blk, ab = Ab + (t - t0) * blk
                    let pb = Pb + (t - t0) * blk, pc = Pc + (t - t0) * blk
                    let dB_t = dB + t * s.bT, dC_t = dC + t * s.cT
                    let dU = d * uu
                    var accU = Vec16(), accD = Vec16()
                    for n in 0..<N {
                        let o = n * Ep + c0
                        let a = ld(A + o), aBar = ld(ab + n * 16)
                        let bt = ldBC(bRow, n, s.bN, bVec, c0), ct = ldBC(cRow, n, s.cN, cVec, c0)
                        let sPrev = t == t0 ? ld(start + o) : ld(cur - blk + n * 16)
                        let lam = g * ct + ld(mu + o)
                        let gC = g * ld(cur + n * 16), lB = lam * dU
                        if cVec { let p = dC_t + n * s.cN + c0; st(p, ld(p) + gC) } else { st(pc + n * 16, ld(pc + n * 16) + gC) }
                        if bVec { let p = dB_t + n * s.bN + c0; st(p, ld(p) + lB) } else { st(pb + n * 16, ld(pb + n * 16) + lB) }
                        accU += lam * bt
                        let aBarS = aBar * sPrev
                        accD += lam * (bt * uu + a * aBarS)
                        st(dA + o, ld(dA + o) + lam * d * aBarS)
                        st(mu + o, aBar * lam)
                    }
                    var duv = d * accU
                    if let D { duv += ldp(D + c0, lanes) * g }
                    stp(du + t * E + c0, duv, lanes)
                    let dd = dDelta + t * s.deltaT + c0
                    stp(dd, ldp(dd, lanes) + accD, lanes)
                    dDv += g * uu
                }
                if let dD { stp(dD + c0, ldp(dD + c0, lanes) + dDv, lanes) }
                c0 += 16
            }
            // Shared B, C: one horizontal sum per (t, n) of the blocks' partial sums.
            for t in t0..<t1 {
                if !bVec {
                    let pb = Pb + (t - t0) * blk
                    if let part = sharedDB { for n in 0..<N { part[t * N + n] += hsum(ld(pb + n * 16)) } }
                    else { let row = dB + t * s.bT; for n in 0..<N { row[n * s.bN] += hsum(ld(pb + n * 16)) } }
                }
                if !cVec {
                    let pc = Pc + (t - t0) * blk
                    if let part = sharedDC { for n in 0..<N { part[t * N + n] += hsum(ld(pc + n * 16)) } }
                    else { let row = dC + t * s.cT; for n in 0..<N { row[n * s.cN] += hsum(ld(pc + n * 16)) } }
                }
            }
        }
    }
}
