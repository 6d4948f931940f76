import XCTest
import CBLASShim
@testable import BMCore

/// bf16 weights for the one-token products: rounding, the kernels (each one the CPU
/// runs), the thread split, and the lookup that `matmulXWt` does.
final class BF16Tests: XCTestCase {
    override func setUp() { XCTAssertNoThrow(try BLAS.setup()) }

    func bf16(_ xs: [Float]) -> [UInt16] {
        var out = [UInt16](repeating: 0, count: xs.count)
        xs.withUnsafeBufferPointer { s in out.withUnsafeMutableBufferPointer { bm_f32_to_bf16(s.baseAddress!, $0.baseAddress!, xs.count) } }
        return out
    }
    func widen(_ h: [UInt16]) -> [Float] { h.map { Float(bitPattern: UInt32($0) << 16) } }

    func testRoundingIsToNearestEven() {
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to even (1); just above rounds up
        let xs: [Float] = [1, 1 + 0x1p-8, 1 + 0x1p-8 + 0x1p-20, 1 + 3 * 0x1p-8, -2.5, 0, .infinity, 3.0e38, 1e-40]
        let w = widen(bf16(xs))
        XCTAssertEqual(w[0], 1)
        XCTAssertEqual(w[1], 1)
        XCTAssertEqual(w[2], 1 + 0x1p-7)
        XCTAssertEqual(w[3], 1 + 4 * 0x1p-8)          // 1.01171875 is a tie between 1.0078125 and 1.015625: even
        XCTAssertEqual(w[4], -2.5)
        XCTAssertEqual(w[5], 0)
        XCTAssertEqual(w[6], .infinity)
        XCTAssertTrue(widen(bf16([.nan]))[0].isNaN)
        var rng = RNG(seed: 3)
        for _ in 0..<10000 {
            let x = rng.normal() * 10
            let y = widen(bf16([x]))[0]
            XCTAssertLessThanOrEqual(abs(y - x), abs(x) * 0x1p-8, "\(x)")        // half an ulp of an 8-bit significand
        }
    }

    /// The bf16 product equals the fp32 product on the widened weights bit for bit, for
    /// every kernel this CPU runs (generic C, AVX2 + FMA, AVX-512), on 1 and 2 threads, with
    /// and without accumulation (the two vector builds against each other:
    /// `testVectorBuildsAgree`).
    func testBF16ProductIsTheFP32ProductOfTheWidenedWeights() {
        let best = BLAS.gemvKernel
        let savedWorkers = Parallel.workers
        defer { Parallel.workers = savedWorkers; _ = bm_rowgemv_use_kernel(best) }
        let kernels = Kernels.paths.filter { k in bm_rowgemv_use_kernel(k) == 1 }
        _ = bm_rowgemv_use_kernel(best)
        XCTAssertTrue(kernels.contains("avx2"), "every machine of this kind runs the AVX2 build")
        XCTAssertEqual(kernels.contains("avx512"), BLAS.cpuHasAVX512)
        // CPUID chooses the widest build, unless BMLAB_KERNELS forces a path (make test-matrix)
        XCTAssertEqual(best, Kernels.forced != "cpuid" ? Kernels.forced : BLAS.cpuHasAVX512 ? "avx512" : "avx2")
        XCTAssertEqual(bm_rowgemv_use_kernel("no-such-kernel"), 0)
        var rng = RNG(seed: 12)
        // columns: under 8, exactly 8 and 24 (the 8-wide step), 29 (16 + 8 + 5), 256 and 257
        for (rows, cols, lda) in [(1, 1, 1), (6, 8, 8), (7, 24, 27), (5, 19, 21), (37, 29, 29), (1030, 257, 260), (2048, 256, 256)] {
            let a = (0..<rows * lda).map { _ in rng.normal() }, x = (0..<cols).map { _ in rng.normal() }
            let y0 = (0..<rows).map { _ in rng.normal() }
            let a16 = bf16(a), aw = widen(a16)
            for k in kernels {
                XCTAssertEqual(bm_rowgemv_use_kernel(k), 1)
                for threads in [1, 2] {
                    Parallel.workers = threads
                    for acc in [false, true] {
                        var y16 = y0, y32 = y0
                        a16.withUnsafeBufferPointer { ap in x.withUnsafeBufferPointer { xp in y16.withUnsafeMutableBufferPointer {
                            bm_rowgemv_bf16(ap.baseAddress!, Int32(rows), Int32(cols), Int32(lda), xp.baseAddress!, $0.baseAddress!, acc ? 1 : 0)
                        } } }
                        aw.withUnsafeBufferPointer { ap in x.withUnsafeBufferPointer { xp in y32.withUnsafeMutableBufferPointer {
                            bm_rowgemv(ap.baseAddress!, Int32(rows), Int32(cols), Int32(lda), xp.baseAddress!, $0.baseAddress!, acc ? 1 : 0)
                        } } }
                        XCTAssertEqual(y16, y32, "\(rows)x\(cols) \(k) threads \(threads) acc \(acc)")
                        // and the fp32 kernel itself against a float64 sum
                        for i in 0..<rows {
                            var s = acc ? Double(y0[i]) : 0
                            for j in 0..<cols { s += Double(aw[i * lda + j]) * Double(x[j]) }
                            XCTAssertEqual(Double(y32[i]), s, accuracy: 1e-5 * (Double(cols).squareRoot() + abs(s)), "\(k) row \(i)")
                        }
                    }
                }
            }
        }
    }

    /// Where the CPU runs both vector builds of the one-token product (AVX2 and AVX-512: one
    /// source, the same arithmetic), they give the same bits, fp32 and bf16, with and without
    /// accumulation. Skipped, with the reason, on a CPU that runs one of them.
    func testVectorBuildsAgree() throws {
        let best = BLAS.gemvKernel
        let savedWorkers = Parallel.workers
        defer { Parallel.workers = savedWorkers; _ = bm_rowgemv_use_kernel(best) }
        let builds = Kernels.paths.filter { k in k != "generic" && bm_rowgemv_use_kernel(k) == 1 }
        guard builds.count == 2 else { throw XCTSkip("this CPU runs one vector build of the one-token product (\(builds))") }
        Parallel.workers = 1
        var rng = RNG(seed: 13)
        for (rows, cols, lda) in [(1, 1, 1), (6, 8, 8), (7, 24, 27), (5, 19, 21), (37, 29, 29), (1030, 257, 260), (2048, 256, 256)] {
            let a = (0..<rows * lda).map { _ in rng.normal() }, x = (0..<cols).map { _ in rng.normal() }
            let y0 = (0..<rows).map { _ in rng.normal() }
            let a16 = bf16(a)
            var results: [[Float]] = []
            for k in builds {
                XCTAssertEqual(bm_rowgemv_use_kernel(k), 1)
                var all: [Float] = []
                for acc in [false, true] {
                    var y16 = y0, y32 = y0
                    a16.withUnsafeBufferPointer { ap in x.withUnsafeBufferPointer { xp in y16.withUnsafeMutableBufferPointer {
                        bm_rowgemv_bf16(ap.baseAddress!, Int32(rows), Int32(cols), Int32(lda), xp.baseAddress!, $0.baseAddress!, acc ? 1 : 0)
                    } } }
                    a.withUnsafeBufferPointer { ap in x.withUnsafeBufferPointer { xp in y32.withUnsafeMutableBufferPointer {
                        bm_rowgemv(ap.baseAddress!, Int32(rows), Int32(cols), Int32(lda), xp.baseAddress!, $0.baseAddress!, acc ? 1 : 0)
                    } } }
                    all += y16 + y32
                }
                results.append(all)
            }
            XCTAssertEqual(results[0], results[1], "\(rows)x\(cols): AVX2 and AVX-512 builds")
        }
    }

    /// `matmulXWt` with one row reads a bf16 copy of the slab when it is handed one that
    /// holds the weight, and fp32 without it (or with a copy of another slab).
    func testCopyIsReadByOneTokenProductsItIsHanded() {
        var rng = RNG(seed: 4)
        let slab = UnsafeMutablePointer<Float>.allocate(capacity: 100 + 64 * 96)
        let other = UnsafeMutablePointer<Float>.allocate(capacity: 64)
        defer { slab.deallocate(); other.deallocate() }
        for i in 0..<(100 + 64 * 96) { slab[i] = rng.normal() }
        for i in 0..<64 { other[i] = rng.normal() }
        let w = UnsafePointer(slab + 100)                                  // a weight inside the slab
        let x = (0..<96).map { _ in rng.normal() }
        func product(_ copy: BF16Weights?) -> [Float] {
            var y = [Float](repeating: 0, count: 64)
            x.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { matmulXWt(xp.baseAddress!, w, $0.baseAddress!, T: 1, inDim: 96, outDim: 64, bf16: copy) } }
            return y
        }
        let fp32 = product(nil)
        let copy = BF16Weights(slab, count: 100 + 64 * 96)
        XCTAssertEqual(copy.bytes, 2 * (100 + 64 * 96))
        let viaCopy = product(copy)
        var direct = [Float](repeating: 0, count: 64)
        let w16 = bf16(Array(UnsafeBufferPointer(start: w, count: 64 * 96)))
        w16.withUnsafeBufferPointer { wp in x.withUnsafeBufferPointer { xp in direct.withUnsafeMutableBufferPointer {
            bm_rowgemv_bf16(wp.baseAddress!, 64, 96, 96, xp.baseAddress!, $0.baseAddress!, 0)
        } } }
        XCTAssertEqual(viaCopy, direct)
        XCTAssertNotEqual(viaCopy, fp32)
        XCTAssertEqual(product(BF16Weights(other, count: 64)), fp32, "a copy of another slab is not read")
        XCTAssertEqual(product(nil), fp32)
    }
}
