import XCTest
@testable import BMCore
@testable import BMLayers
@testable import BMMixers

/// Attention works on blocks of query rows (FlashAttention's row blocking): the
/// result must not depend on the block size, gradients must hold across block
/// edges, a prompt prefilled in chunks must continue exactly from the KV cache, and
/// the score scratch must stay [rowBlock, keys], not [L, L].
final class AttentionBlockTests: XCTestCase {
    override func setUp() { XCTAssertNoThrow(try BLAS.setup()) }

    func attention(rowBlock: Int, seed: UInt64 = 3) throws -> (Attention, ParameterSet) {
        let (m, ps) = try buildMixer("attention", ["heads": .int(2)], seed: seed)
        randomizeParameters(ps, seed: 11)
        let a = try XCTUnwrap(m as? Attention)
        a.rowBlock = rowBlock
        return (a, ps)
    }

    /// Forward and backward through (B, L) with given rows per block: out, dx, and every parameter gradient.
    func run(_ rowBlock: Int, B: Int, L: Int) throws -> [Float] {
        let (a, ps) = try attention(rowBlock: rowBlock)
        let D = 8, n = B * L * D
        var rng = RNG(seed: 21)
        let x = (0..<n).map { _ in rng.normal() }, dy = (0..<n).map { _ in rng.normal() }
        var y = [Float](repeating: 0, count: n), dx = y
        ps.zeroGrad()
        // backward reads the input forward cached: x must live until then
        x.withUnsafeBufferPointer { xb in
            y.withUnsafeMutableBufferPointer { a.forward(xb.baseAddress!, $0.baseAddress!, B: B, L: L, pass: trainPass) }
            dy.withUnsafeBufferPointer { db in dx.withUnsafeMutableBufferPointer { a.backward(db.baseAddress!, $0.baseAddress!, B: B, L: L, pass: trainPass) } }
        }
        return y + dx + a.parameters.flatMap { Array(UnsafeBufferPointer(start: $0.g, count: $0.count)) }
    }

    func testResultDoesNotDependOnTheBlockSize() throws {
        for (B, L) in [(2, 23), (1, 150)] {
            let one = try run(1 << 20, B: B, L: L)          // a single block: every row at once
            let scale = one.map { abs($0) }.max()!
            for rb in [1, 5, 64] {
                let got = try run(rb, B: B, L: L)
                let worst = zip(one, got).map { abs($0 - $1) }.max()! / scale
                XCTAssertLessThan(worst, 1e-5, "rowBlock \(rb), B \(B), L \(L)")
            }
        }
    }

    func testGradientsAcrossBlockEdges() throws {
        let (a, ps) = try attention(rowBlock: 3)               // L 7: blocks of 3, 3, 1
        var checker = GradientChecker()
        checker.maxCoordinates = 30
        let report = checker.check(layer: a, set: ps, B: 2, L: 7, inputScale: 1)
        XCTAssertTrue(report.passed, "\(report)")
    }

    /// A 150-token prompt prefilled in chunks of 37 (crossing row blocks of 16, each
    /// chunk attending over the cache before it), then 20 steps, equals the parallel forward.
    func testChunkedPrefillContinuesFromTheCache() throws {
        let (a, _) = try attention(rowBlock: 16)
        let B = 2, L = 170, prompt = 150, chunk = 37, D = 8
        let (x, full) = randomInputAndForward(a, B: B, L: L, D: D, seed: 8)
        let state = try a.makeState(batch: B, maxLength: L)
        var got = [Float](repeating: 0, count: B * L * D)
        var start = 0
        while start < prompt {
            let n = min(chunk, prompt - start)
            var cx = [Float](repeating: 0, count: B * n * D), cy = cx
            for b in 0..<B { for i in 0..<(n * D) { cx[b * n * D + i] = x[(b * L + start) * D + i] } }
            cx.withUnsafeBufferPointer { xb in cy.withUnsafeMutableBufferPointer { a.prefill(xb.baseAddress!, $0.baseAddress!, B: B, L: n, state: state, pass: .generate()) } }
            for b in 0..<B { for i in 0..<(n * D) { got[(b * L + start) * D + i] = cy[b * n * D + i] } }
            start += n
        }
        var xs = [Float](repeating: 0, count: B * D), ys = xs
        for t in prompt..<L {
            for b in 0..<B { for c in 0..<D { xs[b * D + c] = x[(b * L + t) * D + c] } }
            xs.withUnsafeBufferPointer { xb in ys.withUnsafeMutableBufferPointer { a.step(xb.baseAddress!, $0.baseAddress!, B: B, state: state, pass: .generate()) } }
            for b in 0..<B { for c in 0..<D { got[(b * L + t) * D + c] = ys[b * D + c] } }
        }
        let scale = full.map { abs($0) }.max()!
        XCTAssertLessThan(zip(full, got).map { abs($0 - $1) }.max()! / scale, 1e-5)
    }

    /// Prefilling 4,096 positions in chunks of 512 leaves a score scratch of
    /// rowBlock × 4,096 floats (1 MiB), where one [L, L] matrix would be 64 MiB.
    func testScoreScratchIsRowBlockByKeys() throws {
        let (a, _) = try attention(rowBlock: 64)
        let L = 4096, chunk = 512, D = 8
        let state = try a.makeState(batch: 1, maxLength: L)
        var rng = RNG(seed: 2)
        let x = (0..<chunk * D).map { _ in rng.normal() }
        var y = [Float](repeating: 0, count: chunk * D)
        for _ in 0..<(L / chunk) {
            x.withUnsafeBufferPointer { xb in y.withUnsafeMutableBufferPointer { a.prefill(xb.baseAddress!, $0.baseAddress!, B: 1, L: chunk, state: state, pass: .generate()) } }
        }
        XCTAssertTrue(y.allSatisfy(\.isFinite))
        XCTAssertLessThanOrEqual(a.scores.capacity, 64 * L)
        XCTAssertEqual(a.activationFloats(B: 1, L: L) - 8 * L * D - 2 * L, 2 * 64 * L)   // what the memory estimate counts
    }
}
