import BMCore
import CKernels

/// The selective scan of docs/mixers.md for one sequence (one batch element):
///
///   ā_t = exp(δ_t[c]·A[c,n]),  s_t = ā_t·s_{t−1} + δ_t[c]·B_t[n]·u_t[c]
///   y_t[c] = Σ_n s_t[c,n]·C_t[n] + D[c]·u_t[c]
///
/// The kernel is C (`Sources/CKernels/scan_body.h`), one source built for AVX2 and
/// AVX-512 and chosen from CPUID (`SelectiveScan.kernel`).
/// Vectorised over channels: a vector holds 16 channels c of one state index n, so
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
    /// The C kernel's view of this shape.
    var c: bm_scan_shape {
        bm_scan_shape(L: Int32(L), E: Int32(E), N: Int32(N), Ep: Int32(Ep), chunk: Int32(chunk), deltaT: Int32(deltaT),
                      bT: Int32(bT), bN: Int32(bN), bC: Int32(bC), cT: Int32(cT), cN: Int32(cN), cC: Int32(cC))
    }
    public init(L: Int, E: Int, N: Int, chunk: Int, deltaT: Int, bT: Int, bN: Int, bC: Int, cT: Int, cN: Int, cC: Int) {
        precondition(bC == 0 || bC == 1, "bC is 0 (shared by channels) or 1 (per channel)")
        precondition(cC == 0 || cC == 1, "cC is 0 (shared by channels) or 1 (per channel)")
        // a B or C per channel is read and its gradient written 16 channels at a time:
        // its rows must be padded to whole blocks of 16 (as A and the state are)
        let Ep = (E + 15) / 16 * 16
        precondition(bC == 0 || (bN % 16 == 0 && bN >= Ep && bT % 16 == 0), "a per-channel B needs rows padded to \(Ep)")
        precondition(cC == 0 || (cN % 16 == 0 && cN >= Ep && cT % 16 == 0), "a per-channel C needs rows padded to \(Ep)")
        self.L = L; self.E = E; self.N = N; self.chunk = chunk; self.deltaT = deltaT
        self.bT = bT; self.bN = bN; self.bC = bC; self.cT = cT; self.cN = cN; self.cC = cC
    }
}

public enum SelectiveScan {
    /// The kernel in use: "avx512" on CPUs with AVX-512, else "avx2" (both 16 channels
    /// a vector: one zmm or two ymm registers; the same arithmetic).
    public static var kernel: String { String(cString: bm_scan_kernel()) }
    /// Every build of the kernel, best first.
    public static let kernels = ["avx512", "avx2"]
    /// Whether this CPU can run the named kernel.
    public static func runs(_ name: String) -> Bool { bm_scan_kernel_runs(name) != 0 }
    /// Chooses the kernel for the whole process (tests and benchmarks); false if this
    /// CPU cannot run it.
    @discardableResult public static func use(_ name: String) -> Bool { bm_scan_use_kernel(name) != 0 }

    /// The kernel's channel range (all when nil), checked: whole blocks of 16 within E,
    /// ending at a block or at E (the kernel writes the state 16 channels at a time).
    private static func blocks(_ channels: Range<Int>?, _ s: ScanShape) -> (Int32, Int32) {
        let r = channels ?? 0..<s.E
        precondition(r.lowerBound >= 0 && r.lowerBound % 16 == 0 && (r.upperBound % 16 == 0 || r.upperBound == s.E) && r.upperBound <= s.E,
                     "channels are whole blocks of 16 within E (the kernel writes the state 16 channels at a time)")
        return (Int32(r.lowerBound), Int32(r.upperBound))
    }

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
        var sh = s.c
        let (c0, c1) = blocks(channels, s)
        bm_scan_forward(&sh, u, delta, A, Bm, Cm, D, y, state, boundaries, c0, c1)
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
        var sh = s.c
        let (c0, c1) = blocks(channels, s)
        bm_scan_backward(&sh, u, delta, A, Bm, Cm, D, boundaries, gy, du, dDelta, dB, dC, dA, dD, work,
                         c0, c1, sharedDB, sharedDC)
    }
}
