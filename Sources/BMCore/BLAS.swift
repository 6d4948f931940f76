import Foundation
import CBLASShim

/// OpenBLAS, loaded with the right kernels for this CPU (see docs/blas.md).
///
/// Call `BLAS.setup(threads:)` once at start-up (bmlab and the test helpers do);
/// any BLAS call made before it loads the library single-threaded (products are not split).
public enum BLAS {
    /// Loads OpenBLAS and sets the threads matrix products and the toolkit's parallel
    /// loops run on (0 = `BMLAB_THREADS` if set, else one per available core). Throws a
    /// clear error when the library is missing or `OPENBLAS_CORETYPE` names a kernel
    /// this CPU cannot run.
    ///
    /// OpenBLAS itself runs single-threaded: `sgemm` splits a product's rows (or
    /// columns) over our own threads and calls OpenBLAS on each part. OpenBLAS's
    /// own idle threads spin in `sched_yield` after every call and took 15–25 % of
    /// the CPU from the selective scan running between the products
    /// (docs/performance.md); with one thread pool there is nothing to spin.
    public static func setup(threads: Int = 0) throws {
        if let core = ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"], !core.isEmpty {
            try checkRunnable(core, "OPENBLAS_CORETYPE")
        }
        try Kernels.checkEnvironment()
        if bm_blas_load(1) != 0 {
            throw BMError.system(String(cString: bm_blas_error()))
        }
        bm_blas_set_threads(1)
        // 0 = BMLAB_THREADS when set (how `make test` runs the whole suite on 1 thread), else every core
        let env = ProcessInfo.processInfo.environment["BMLAB_THREADS"].flatMap { Int($0) }.map { max(1, $0) }
        let n = threads > 0 ? threads : env ?? availableCores
        setThreads(n)
        Parallel.workers = n
    }

    /// Cores this process may run on (its CPU affinity mask).
    public static var availableCores: Int { Int(bm_cpu_available()) }

    /// The kernel family OpenBLAS actually runs, e.g. `Haswell`, `SkylakeX`.
    public static var coreName: String { String(cString: bm_blas_corename()) }
    /// Threads a matrix product is split over (OpenBLAS runs one thread per part).
    public static var threads: Int { splitThreads }
    public static func setThreads(_ n: Int) { splitThreads = max(1, n) }
    nonisolated(unsafe) private(set) static var splitThreads = 1
    /// OpenBLAS's own thread count (1: the toolkit splits products itself).
    public static var openblasThreads: Int { Int(bm_blas_get_threads()) }
    /// `environment` (OPENBLAS_CORETYPE was set by the user), `cpuid` (chosen by
    /// BlackMambaLab) or `openblas` (left to OpenBLAS's own detection).
    public static var coreSource: String { String(cString: bm_blas_coretype_source()) }
    public static var libraryPath: String { String(cString: bm_blas_library_path()) }
    public static var config: String { String(cString: bm_blas_config()) }
    public static var cpuHasAVX512: Bool { bm_cpu_features() & 2 != 0 }
    public static var cpuHasAVX2: Bool { bm_cpu_features() & 1 != 0 }
    public static var cpuHasAVX: Bool { bm_cpu_features() & 4 != 0 }

    /// OpenBLAS x86-64 kernel families this CPU can execute, oldest first (forcing one
    /// the CPU cannot run would end in SIGILL). `OPENBLAS_CORETYPE` / `--blas-core`
    /// must name one of them.
    public static var runnableCores: [String] {
        var c = ["Prescott", "Core2", "Nehalem"]
        if cpuHasAVX { c.append("Sandybridge") }
        if cpuHasAVX2 { c += ["Haswell", "Zen"] }
        if cpuHasAVX512 { c += ["SkylakeX", "CooperLake"] }
        return c
    }

    /// Throws a clear error (exit 2) when `core` is not a kernel family this CPU runs.
    public static func checkRunnable(_ core: String, _ what: String) throws {
        let ok = runnableCores
        guard let name = ok.first(where: { $0.lowercased() == core.lowercased() }) else {
            throw BMError.invalid("\(what)=\(core): not an OpenBLAS kernel this CPU can run\(didYouMean(core, in: ok)); it runs: \(ok.joined(separator: ", "))")
        }
        _ = name
    }

    /// Forces OpenBLAS's kernel family (before `setup`), as `OPENBLAS_CORETYPE` does;
    /// child processes (sweep workers) inherit it.
    public static func forceCore(_ core: String) throws {
        try checkRunnable(core, "--blas-core")
        setenv("OPENBLAS_CORETYPE", core, 1)
    }

    /// Batch-1 generation: OpenBLAS on one thread (waking its threads costs more than a
    /// token's products are worth); the one-token products' rows split over the
    /// toolkit's pool (`Parallel.workers`: `threads`, else `BMLAB_THREADS`, else every
    /// core), on which a prefill's experts also run side by side.
    public static func setUpForGeneration(threads n: Int = 0) throws {
        try setup(threads: 1)
        Parallel.workers = n > 0 ? n : ProcessInfo.processInfo.environment["BMLAB_THREADS"].flatMap { Int($0) }.map { max(1, $0) } ?? availableCores
    }
    /// The one-token product's build: `avx512`, `avx2` or `generic` (from CPUID, or the
    /// path `Kernels` forces; docs/performance.md).
    public static var gemvKernel: String { String(cString: bm_rowgemv_kernel()) }
}

// MARK: - Matrix products (row-major; weights stored PyTorch-style as W[out, in])

/// C[M,N] = alpha · op(A) · op(B) + beta · C.  `transA`: A is stored [K, M].
@inline(__always)
public func sgemm(transA: Bool = false, transB: Bool = false,
                  M: Int, N: Int, K: Int, alpha: Float = 1,
                  A: UnsafePointer<Float>, lda: Int,
                  B: UnsafePointer<Float>, ldb: Int,
                  beta: Float = 0,
                  C: UnsafeMutablePointer<Float>, ldc: Int) {
    if M == 0 || N == 0 { return }
    if K == 0 {
        // BLAS would leave C untouched for beta = 1 and is undefined-ish otherwise.
        if beta != 1 { for i in 0..<M { let row = C + i * ldc; for j in 0..<N { row[j] *= beta } } }
        return
    }
    let ta = Int32(transA ? BM_TRANS : BM_NO_TRANS), tb = Int32(transB ? BM_TRANS : BM_NO_TRANS)
    let parts = BLAS.threads
    // Split only products worth a thread hand-off (~1 MFLOP, tens of µs), by the rows of
    // C (A's rows, or columns when transposed) or, when C is wide and short, its columns
    // (B's columns, or rows when transposed); parts are whole multiples of 16.
    if parts > 1 && !Parallel.isNested && 2 * M * N * K >= 1 << 20 && max(M, N) >= 32 * parts {
        let byRows = M >= N || M >= 64 * parts
        let total = byRows ? M : N
        let step = ((total + parts - 1) / parts + 15) & ~15
        Parallel.split(parts) { p in
            let lo = p * step, hi = min(total, lo + step)
            if lo >= hi { return }
            if byRows {
                bm_sgemm(ta, tb, Int32(hi - lo), Int32(N), Int32(K), alpha, A + (transA ? lo : lo * lda), Int32(lda),
                         B, Int32(ldb), beta, C + lo * ldc, Int32(ldc))
            } else {
                bm_sgemm(ta, tb, Int32(M), Int32(hi - lo), Int32(K), alpha, A, Int32(lda),
                         B + (transB ? lo * ldb : lo), Int32(ldb), beta, C + lo, Int32(ldc))
            }
        }
        return
    }
    bm_sgemm(ta, tb, Int32(M), Int32(N), Int32(K), alpha, A, Int32(lda), B, Int32(ldb), beta, C, Int32(ldc))
}

/// y[T, out] = x[T, in] · W[out, in]ᵀ  (+ beta · y).  A Linear layer's forward.
/// With one row, W is read from `bf16` when the copy holds it (a bf16 generation pass).
@inline(__always)
public func matmulXWt(_ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>,
                      T: Int, inDim: Int, outDim: Int, ldx: Int? = nil, ldy: Int? = nil, beta: Float = 0,
                      bf16: BF16Weights? = nil) {
    if T == 1 {
        // One token (generation): a matrix-vector product, bound by reading W (see bmgemv.h).
        precondition(beta == 0 || beta == 1, "matmulXWt: beta must be 0 or 1")
        if let w16 = bf16?.lookup(w) {
            bm_rowgemv_bf16(w16, Int32(outDim), Int32(inDim), Int32(inDim), x, y, beta == 0 ? 0 : 1)
        } else {
            bm_rowgemv(w, Int32(outDim), Int32(inDim), Int32(inDim), x, y, beta == 0 ? 0 : 1)
        }
        return
    }
    sgemm(transB: true, M: T, N: outDim, K: inDim, A: x, lda: ldx ?? inDim, B: w, ldb: inDim,
          beta: beta, C: y, ldc: ldy ?? outDim)
}

/// dx[T, in] (= or +=) dy[T, out] · W[out, in].  A Linear layer's input gradient.
@inline(__always)
public func matmulDyW(_ dy: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>,
                      T: Int, inDim: Int, outDim: Int, lddy: Int? = nil, lddx: Int? = nil, beta: Float = 0) {
    sgemm(M: T, N: inDim, K: outDim, A: dy, lda: lddy ?? outDim, B: w, ldb: inDim,
          beta: beta, C: dx, ldc: lddx ?? inDim)
}

/// dW[out, in] += dy[T, out]ᵀ · x[T, in].  A Linear layer's weight gradient (accumulates).
@inline(__always)
public func matmulDyTX(_ dy: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ dw: UnsafeMutablePointer<Float>,
                       T: Int, inDim: Int, outDim: Int, lddy: Int? = nil, ldx: Int? = nil, beta: Float = 1) {
    sgemm(transA: true, M: outDim, N: inDim, K: T, A: dy, lda: lddy ?? outDim, B: x, ldb: ldx ?? inDim,
          beta: beta, C: dw, ldc: inDim)
}

/// y[rows] = alpha · A[rows, cols] · x[cols]  (A row-major with leading dimension ld).
@inline(__always)
public func bm_gemv(_ A: UnsafePointer<Float>, rows: Int, cols: Int, ld: Int, x: UnsafePointer<Float>,
                    y: UnsafeMutablePointer<Float>, alpha: Float = 1, beta: Float = 0) {
    bm_sgemv(Int32(BM_NO_TRANS), Int32(rows), Int32(cols), alpha, A, Int32(ld), x, beta, y)
}

/// y[cols] = alpha · A[rows, cols]ᵀ · x[rows].
@inline(__always)
public func bm_gemvT(_ A: UnsafePointer<Float>, rows: Int, cols: Int, ld: Int, x: UnsafePointer<Float>,
                     y: UnsafeMutablePointer<Float>, alpha: Float = 1, beta: Float = 0) {
    bm_sgemv(Int32(BM_TRANS), Int32(rows), Int32(cols), alpha, A, Int32(ld), x, beta, y)
}
