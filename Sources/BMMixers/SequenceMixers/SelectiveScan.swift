import BMCore

/// The selective scan of mamba.md for one sequence (one batch element),
/// vectorised over the state dimension with SIMD16 (the state size is padded
/// to Np, a multiple of 16, with A = B = C = 0 in the padding, which keeps the
/// padded lanes at 0).
///
///   ā_t = exp(δ_t[c]·A[c,n]),  s_t = ā_t·s_{t−1} + δ_t[c]·B_t[n]·u_t[c]
///   y_t[c] = Σ_n s_t[c,n]·C_t[n] + D[c]·u_t[c]
///
/// Strides let the same kernel run Mamba (δ, B, C depend on t) and the
/// time-invariant S4D (δ, B, C per channel): element (t, c) of δ is at
/// `t·deltaT + c`, of B at `t·bT + c·bC` (+ n), of C at `t·cT + c·cC`.
///
/// Memory: the forward keeps only the state at the start of every chunk of
/// `chunk` steps; the backward recomputes the states inside a chunk from its
/// boundary (one extra exp per element) — as the CUDA kernel does.
public struct ScanShape {
    public var L: Int, E: Int, Np: Int
    public var chunk: Int
    public var deltaT: Int
    public var bT: Int, bC: Int, cT: Int, cC: Int
    public var chunks: Int { (L + chunk - 1) / chunk }
    public init(L: Int, E: Int, Np: Int, chunk: Int, deltaT: Int, bT: Int, bC: Int, cT: Int, cC: Int) {
        self.L = L; self.E = E; self.Np = Np; self.chunk = chunk
        self.deltaT = deltaT; self.bT = bT; self.bC = bC; self.cT = cT; self.cC = cC
    }
}

@inline(__always) private func ld(_ p: UnsafePointer<Float>, _ i: Int) -> F16 {
    UnsafeRawPointer(p).loadUnaligned(fromByteOffset: 4 * i, as: F16.self)
}
@inline(__always) private func st(_ p: UnsafeMutablePointer<Float>, _ i: Int, _ v: F16) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, toByteOffset: 4 * i, as: F16.self)
}

public enum SelectiveScan {
    /// Runs the scan over L steps from `state` ([E, Np], updated in place to s_{L−1}).
    /// u: [L, E], y: [L, E] (written). `boundaries` ([chunks, E, Np]) receives the
    /// state before each chunk when given.
    public static func forward(_ s: ScanShape, u: UnsafePointer<Float>, delta: UnsafePointer<Float>,
                               A: UnsafePointer<Float>, Bm: UnsafePointer<Float>, Cm: UnsafePointer<Float>,
                               D: UnsafePointer<Float>?, y: UnsafeMutablePointer<Float>,
                               state: UnsafeMutablePointer<Float>, boundaries: UnsafeMutablePointer<Float>?) {
        let E = s.E, Np = s.Np
        for t in 0..<s.L {
            if let bnd = boundaries, t % s.chunk == 0 {
                (bnd + (t / s.chunk) * E * Np).update(from: state, count: E * Np)
            }
            for c in 0..<E {
                let d = delta[t * s.deltaT + c], uc = u[t * E + c]
                let du = d * uc
                let bBase = t * s.bT + c * s.bC, cBase = t * s.cT + c * s.cC
                var acc = F16()
                var j = 0
                while j < Np {
                    let a = ld(A, c * Np + j)
                    var sv = ld(state, c * Np + j)
                    sv = vexp(d * a) * sv + du * ld(Bm, bBase + j)
                    st(state, c * Np + j, sv)
                    acc = acc.addingProduct(sv, ld(Cm, cBase + j))
                    j += 16
                }
                y[t * E + c] = acc.sum() + (D.map { $0[c] * uc } ?? 0)
            }
        }
    }

    /// Backward of `forward` for one sequence.
    /// gy: [L, E] = ∂loss/∂y. Writes du (the scan's part of ∂u, [L, E], overwritten);
    /// accumulates into dDelta (at t·deltaT + c), dB, dC (same strides as B, C),
    /// dA ([E, Np]) and dD ([E]). `work` needs (chunk + 1)·E·Np floats.
    public static func backward(_ s: ScanShape, u: UnsafePointer<Float>, delta: UnsafePointer<Float>,
                                A: UnsafePointer<Float>, Bm: UnsafePointer<Float>, Cm: UnsafePointer<Float>,
                                D: UnsafePointer<Float>?, boundaries: UnsafePointer<Float>, gy: UnsafePointer<Float>,
                                du: UnsafeMutablePointer<Float>, dDelta: UnsafeMutablePointer<Float>,
                                dB: UnsafeMutablePointer<Float>, dC: UnsafeMutablePointer<Float>,
                                dA: UnsafeMutablePointer<Float>, dD: UnsafeMutablePointer<Float>?,
                                work: UnsafeMutablePointer<Float>) {
        let E = s.E, Np = s.Np, EN = E * Np
        let mu = work                      // [E, Np]: ā_{t+1}·λ_{t+1}
        let S = work + EN                  // [chunk, E, Np]: states of the current chunk
        mu.update(repeating: 0, count: EN)
        for k in stride(from: s.chunks - 1, through: 0, by: -1) {
            let t0 = k * s.chunk, t1 = min(s.L, t0 + s.chunk)
            let start = boundaries + k * EN
            // Recompute s_t for t in [t0, t1).
            for t in t0..<t1 {
                let prev = t == t0 ? start : UnsafePointer(S + (t - t0 - 1) * EN)
                let cur = S + (t - t0) * EN
                for c in 0..<E {
                    let d = delta[t * s.deltaT + c], du_ = d * u[t * E + c]
                    let bBase = t * s.bT + c * s.bC
                    var j = 0
                    while j < Np {
                        let sv = vexp(d * ld(A, c * Np + j)) * ld(prev, c * Np + j) + du_ * ld(Bm, bBase + j)
                        st(cur, c * Np + j, sv)
                        j += 16
                    }
                }
            }
            // Reverse pass through the chunk.
            for t in stride(from: t1 - 1, through: t0, by: -1) {
                let prev = t == t0 ? start : UnsafePointer(S + (t - t0 - 1) * EN)
                let cur = UnsafePointer(S + (t - t0) * EN)
                for c in 0..<E {
                    let d = delta[t * s.deltaT + c], uc = u[t * E + c], g = gy[t * E + c]
                    let bBase = t * s.bT + c * s.bC, cBase = t * s.cT + c * s.cC
                    var accU = F16(), accD = F16()
                    var j = 0
                    while j < Np {
                        let a = ld(A, c * Np + j)
                        let aBar = vexp(d * a)
                        let bt = ld(Bm, bBase + j), ct = ld(Cm, cBase + j)
                        let sPrev = ld(prev, c * Np + j)
                        let lam = g * ct + ld(mu, c * Np + j)
                        st(dC, cBase + j, ld(dC, cBase + j).addingProduct(g, ld(cur, c * Np + j)))
                        st(dB, bBase + j, ld(dB, bBase + j).addingProduct(lam, d * uc))
                        accU = accU.addingProduct(lam, bt)
                        let aBarS = aBar * sPrev
                        accD = accD.addingProduct(lam, bt * uc + a * aBarS)
                        st(dA, c * Np + j, ld(dA, c * Np + j).addingProduct(lam * d, aBarS))
                        st(mu, c * Np + j, aBar * lam)
                        j += 16
                    }
                    du[t * E + c] = d * accU.sum() + (D.map { $0[c] * g } ?? 0)
                    dDelta[t * s.deltaT + c] += accD.sum()
                    if let dD { dD[c] += g * uc }
                }
            }
        }
    }
}
