import Foundation
import CBLASShim

/// Micro-benchmarks of the core kernels (`bmlab doctor`, `bmlab bench kernels`).
public enum KernelBench {
    /// GFLOP/s of an M×N×K single-precision multiply, best of `repeats`: split over the
    /// toolkit's threads as training runs its products, or, with `openblasThreads` (> 0),
    /// unsplit on that many of OpenBLAS's own threads (then back to one) — the figure
    /// the split is measured against (`bmlab doctor`).
    public static func sgemmGFLOPS(M: Int = 1024, N: Int = 1024, K: Int = 1024, repeats: Int = 5, openblasThreads: Int = 0) -> Double {
        let a = FloatBuffer(count: M * K), b = FloatBuffer(count: K * N), c = FloatBuffer(count: M * N)
        var rng = RNG(seed: 1)
        rng.fillUniform(a.pointer, M * K, -1, 1)
        rng.fillUniform(b.pointer, K * N, -1, 1)
        if openblasThreads > 0 { bm_blas_set_threads(Int32(openblasThreads)) }
        defer { if openblasThreads > 0 { bm_blas_set_threads(1) } }
        let t = bestTime(repeats: repeats) {
            if openblasThreads > 0 {
                bm_sgemm(Int32(BM_NO_TRANS), Int32(BM_NO_TRANS), Int32(M), Int32(N), Int32(K), 1, a.pointer, Int32(K),
                         b.pointer, Int32(N), 0, c.pointer, Int32(N))
            } else {
                sgemm(M: M, N: N, K: K, A: a.pointer, lda: K, B: b.pointer, ldb: N, C: c.pointer, ldc: N)
            }
        }
        return 2.0 * Double(M) * Double(N) * Double(K) / t / 1e9
    }

    /// Nanoseconds per element of vectorised and scalar exp over an L1-resident
    /// block of `n` values in [-10, 0], repeated `inner` times (as in the scan,
    /// where exp works on values already in cache, not streamed from memory).
    public static func exp(n: Int = 4096, inner: Int = 256, repeats: Int = 7) -> (vector: Double, scalar: Double) {
        let x = FloatBuffer(count: n), y = FloatBuffer(count: n)
        var rng = RNG(seed: 2)
        rng.fillUniform(x.pointer, n, -10, 0)
        let xp = x.pointer, yp = y.pointer
        let tv = bestTime(repeats: repeats) { for _ in 0..<inner { vexp(xp, yp, count: n) } }
        let ts = bestTime(repeats: repeats) { for _ in 0..<inner { for i in 0..<n { yp[i] = Foundation.exp(xp[i]) } } }
        let total = Double(n * inner)
        return (tv / total * 1e9, ts / total * 1e9)
    }
}
