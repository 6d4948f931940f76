import XCTest
@testable import BMCore
import CBLASShim

final class BLASTests: XCTestCase {
    override func setUp() { XCTAssertNoThrow(try BLAS.setup()) }

    /// sgemm against a naive Double multiply, for every transpose combination
    /// (docs/blas.md: some kernels compute wrong results on some CPUs).
    func testSgemmMatchesNaive() {
        var rng = RNG(seed: 3)
        let M = 37, N = 53, K = 71
        for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
            let a = (0..<M * K).map { _ in rng.normal() }, b = (0..<K * N).map { _ in rng.normal() }
            var c = (0..<M * N).map { _ in rng.normal() }
            let c0 = c
            a.withUnsafeBufferPointer { ap in b.withUnsafeBufferPointer { bp in c.withUnsafeMutableBufferPointer { cp in
                sgemm(transA: ta, transB: tb, M: M, N: N, K: K, alpha: 0.5, A: ap.baseAddress!, lda: ta ? M : K,
                      B: bp.baseAddress!, ldb: tb ? K : N, beta: 2, C: cp.baseAddress!, ldc: N)
            } } }
            for i in 0..<M { for j in 0..<N {
                var s = 0.0
                for k in 0..<K {
                    let av = ta ? a[k * M + i] : a[i * K + k]
                    let bv = tb ? b[j * K + k] : b[k * N + j]
                    s += Double(av) * Double(bv)
                }
                let want = 0.5 * s + 2 * Double(c0[i * N + j])
                XCTAssertEqual(Double(c[i * N + j]), want, accuracy: 1e-4 * (1 + abs(want)), "trans \(ta) \(tb) at \(i),\(j)")
            } }
        }
    }

    /// `sgemm` splits a product over the toolkit's threads (rows of C, or columns when C
    /// is wide and short). For every transpose combination and shapes that split by rows
    /// and by columns: the split product agrees with the one-thread product to rounding
    /// (OpenBLAS's kernels for a part's edge may add in another order, so not bitwise),
    /// and the same thread count gives bitwise the same result twice (determinism).
    func testSplitProductsAgreeAndAreDeterministic() {
        var rng = RNG(seed: 21)
        defer { BLAS.setThreads(BLAS.availableCores) }
        for (M, N, K) in [(300, 200, 100), (24, 1000, 300), (1000, 40, 70)] {
            for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
                let a = (0..<M * K).map { _ in rng.normal() }, b = (0..<K * N).map { _ in rng.normal() }
                func product(threads: Int) -> [Float] {
                    BLAS.setThreads(threads)
                    var c = [Float](repeating: 0.5, count: M * N)
                    a.withUnsafeBufferPointer { ap in b.withUnsafeBufferPointer { bp in c.withUnsafeMutableBufferPointer { cp in
                        sgemm(transA: ta, transB: tb, M: M, N: N, K: K, alpha: 1, A: ap.baseAddress!, lda: ta ? M : K,
                              B: bp.baseAddress!, ldb: tb ? K : N, beta: 1, C: cp.baseAddress!, ldc: N)
                    } } }
                    return c
                }
                let one = product(threads: 1)
                for threads in [2, 3] {
                    let split = product(threads: threads)
                    XCTAssertEqual(split, product(threads: threads), "\(M)x\(N)x\(K) trans \(ta) \(tb): \(threads) threads not deterministic")
                    // each element: a sum of K products of N(0,1) values, |sum| ~ sqrt(K)
                    let worst = zip(one, split).map { abs($0 - $1) }.max()!
                    XCTAssertLessThan(worst, 1e-5 * Float(K), "\(M)x\(N)x\(K) trans \(ta) \(tb), \(threads) threads")
                }
            }
        }
    }

    /// On a CPU with AVX2 the toolkit must not run OpenBLAS's SSE3 fallback kernels.
    func testFastKernelsSelected() throws {
        try XCTSkipUnless(BLAS.cpuHasAVX2, "CPU without AVX2")
        if BLAS.coreSource == "environment" { throw XCTSkip("OPENBLAS_CORETYPE set by the environment: respected") }
        XCTAssertNotEqual(BLAS.coreName, "Prescott")
        XCTAssertEqual(BLAS.coreName, BLAS.cpuHasAVX512 ? "SkylakeX" : "Haswell")
        XCTAssertEqual(BLAS.coreSource, "cpuid")
    }

    /// `setup(threads:)` decides the split of matrix products and the toolkit's parallel
    /// loops together, and leaves OpenBLAS itself on one thread (asked of OpenBLAS, not
    /// of the toolkit's own record): an explicit count wins, 0 takes `BMLAB_THREADS`,
    /// and without it every available core.
    func testSetupDecidesEveryThreadCount() throws {
        let saved = ProcessInfo.processInfo.environment["BMLAB_THREADS"]
        defer {
            if let saved { setenv("BMLAB_THREADS", saved, 1) } else { unsetenv("BMLAB_THREADS") }
            XCTAssertNoThrow(try BLAS.setup())
        }
        setenv("BMLAB_THREADS", "2", 1)
        for (asked, want) in [(3, 3), (1, 1), (0, 2)] {
            try BLAS.setup(threads: asked)
            XCTAssertEqual(BLAS.threads, want, "setup(threads: \(asked)) with BMLAB_THREADS=2: products")
            XCTAssertEqual(Parallel.workers, want, "setup(threads: \(asked)) with BMLAB_THREADS=2: parallel loops")
            XCTAssertEqual(BLAS.openblasThreads, 1, "OpenBLAS's own threads after setup(threads: \(asked))")
        }
        unsetenv("BMLAB_THREADS")
        try BLAS.setup(threads: 0)
        XCTAssertEqual(BLAS.threads, BLAS.availableCores)
        XCTAssertEqual(Parallel.workers, BLAS.availableCores)
    }

    /// The one-token product (matmulXWt with T = 1, generation's path) against a naive
    /// Double product: rows not a multiple of 4, columns not a multiple of 8 or 16, a
    /// leading dimension wider than the row, accumulation; and bitwise the same result
    /// on 1, 2 and 3 threads and after lowering 3 to 2 (each row is summed by one thread
    /// in a fixed order), each product issued right after the pool was resized.
    func testOneTokenProductMatchesNaiveOnAnyThreadCount() {
        var rng = RNG(seed: 11)
        let savedWorkers = Parallel.workers
        defer { Parallel.workers = savedWorkers }
        for (rows, cols, lda) in [(1, 1, 1), (3, 5, 7), (37, 29, 29), (1030, 257, 260), (512, 1024, 1024), (2048, 256, 256)] {
            let a = (0..<rows * lda).map { _ in rng.normal() }, x = (0..<cols).map { _ in rng.normal() }
            let y0 = (0..<rows).map { _ in rng.normal() }
            var results: [[Float]] = []
            for threads in [1, 2, 3, 2] {               // 3 then 2: a helper left idle after lowering
                Parallel.workers = threads
                for acc in [false, true] {
                    var y = y0
                    a.withUnsafeBufferPointer { ap in x.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { yp in
                        bm_rowgemv(ap.baseAddress!, Int32(rows), Int32(cols), Int32(lda), xp.baseAddress!, yp.baseAddress!, acc ? 1 : 0)
                    } } }
                    for i in 0..<rows {
                        var s = 0.0
                        for j in 0..<cols { s += Double(a[i * lda + j]) * Double(x[j]) }
                        let want = s + (acc ? Double(y0[i]) : 0)
                        XCTAssertEqual(Double(y[i]), want, accuracy: 1e-5 * (Double(cols).squareRoot() + abs(want)),
                                       "\(rows)x\(cols) lda \(lda) row \(i) acc \(acc) threads \(threads)")
                    }
                    results.append(y)
                }
            }
            for k in stride(from: 2, to: results.count, by: 2) {
                XCTAssertEqual(results[0], results[k], "\(rows)x\(cols): thread settings differ (run \(k / 2))")
                XCTAssertEqual(results[1], results[k + 1], "\(rows)x\(cols) accumulating: thread settings differ (run \(k / 2))")
            }
        }
        // the library entry point: matmulXWt with one row goes through the same product
        let w = (0..<64 * 96).map { _ in rng.normal() }, xv = (0..<96).map { _ in rng.normal() }
        var viaLayer = [Float](repeating: 0, count: 64), direct = viaLayer
        w.withUnsafeBufferPointer { wp in xv.withUnsafeBufferPointer { xp in
            viaLayer.withUnsafeMutableBufferPointer { matmulXWt(xp.baseAddress!, wp.baseAddress!, $0.baseAddress!, T: 1, inDim: 96, outDim: 64) }
            direct.withUnsafeMutableBufferPointer { bm_rowgemv(wp.baseAddress!, 64, 96, 96, xp.baseAddress!, $0.baseAddress!, 0) }
        } }
        XCTAssertEqual(viaLayer, direct)
    }
}
