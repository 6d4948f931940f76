import XCTest
@testable import BMCore

final class BLASTests: XCTestCase {
    override func setUp() { XCTAssertNoThrow(try BLAS.setup()) }

    /// sgemm against a naive Double multiply, for every transpose combination
    /// (performance.md: some kernels compute wrong results on some CPUs).
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

    /// On a CPU with AVX2 the toolkit must not run OpenBLAS's SSE3 fallback kernels.
    func testFastKernelsSelected() throws {
        try XCTSkipUnless(BLAS.cpuHasAVX2, "CPU without AVX2")
        if BLAS.coreSource == "environment" { throw XCTSkip("OPENBLAS_CORETYPE set by the environment: respected") }
        XCTAssertNotEqual(BLAS.coreName, "Prescott")
        XCTAssertEqual(BLAS.coreName, BLAS.cpuHasAVX512 ? "SkylakeX" : "Haswell")
        XCTAssertEqual(BLAS.coreSource, "cpuid")
    }

    func testThreadsFollowSetup() throws {
        BLAS.setThreads(1)
        XCTAssertEqual(BLAS.threads, 1)
        BLAS.setThreads(BLAS.availableCores)
        XCTAssertEqual(BLAS.threads, BLAS.availableCores)
    }
}
