import XCTest
@testable import BMCore
@testable import BMLayers
@testable import BMMixers

/// `mamba2`'s chunked SSD scan against its token-by-token recurrence: the same block with
/// the same weights, `scan: chunked` at many chunk lengths (1, lengths that do and do not
/// divide L, L itself, longer than L) against `scan: recurrent` — outputs, the input's
/// gradient and every parameter's gradient. So the result does not depend on the chunk
/// length. The recurrence itself is checked against a float64 transcription of the
/// reference (Mamba2ReferenceTests) and both against finite differences (the registry).
final class ChunkedSSDTests: XCTestCase {
    override func setUp() { XCTAssertNoThrow(try BLAS.setup()) }

    /// Forward output, ∂input and ∂parameters (by name) of one train step on a fixed input.
    private func run(_ opts: [String: OptionValue], B: Int, L: Int, strongDecay: Bool = false) throws -> (y: [Float], du: [Float], grads: [String: [Float]]) {
        let D = 8
        let (m, ps) = try buildMixer("mamba2", opts, width: D)
        randomizeParameters(ps, seed: 21)
        if strongDecay {
            // A = −16 and Δ ≈ 6: a = exp(−96) per step, below 1e-30 — the flushed decays
            let mm = try XCTUnwrap(m as? Mamba2)
            for h in 0..<mm.H { mm.aLog.w[h] = log(16); mm.dtBias.w[h] = 6 }
        }
        ps.zeroGrad()
        var rng = RNG(seed: 22)
        let x = (0..<B * L * D).map { _ in rng.normal() }
        let dout = (0..<B * L * D).map { _ in rng.normal() }
        var y = [Float](repeating: 0, count: x.count), du = y
        // the mixer keeps the input's pointer for its backward: x must live until then (in a
        // release build an array may be freed right after its last use)
        x.withUnsafeBufferPointer { xb in
            y.withUnsafeMutableBufferPointer { m.forward(xb.baseAddress!, $0.baseAddress!, B: B, L: L, pass: trainPass) }
            dout.withUnsafeBufferPointer { db in du.withUnsafeMutableBufferPointer { m.backward(db.baseAddress!, $0.baseAddress!, B: B, L: L, pass: trainPass) } }
        }
        var grads: [String: [Float]] = [:]
        for p in m.parameters { grads[p.name] = Array(p.grads) }
        return (y, du, grads)
    }

    /// max |a − b| / max(|b|, 1e-3) over the array.
    private func relErr(_ a: [Float], _ b: [Float]) -> Float {
        let scale = max(1e-3, b.map { abs($0) }.max() ?? 0)
        return zip(a, b).map { abs($0 - $1) }.max()! / scale
    }

    func testEveryChunkLengthMatchesTheRecurrence() throws {
        for (G, L, N) in [(1, 7, 4), (2, 13, 5), (1, 16, 3)] {
            let common: [String: OptionValue] = ["ngroups": .int(G), "d_state": .int(N)]
            let ref = try run(common.merging(["scan": .string("recurrent")]) { $1 }, B: 2, L: L)
            XCTAssertGreaterThan(ref.y.map { abs($0) }.max()!, 0.05)
            for Q in [1, 2, 3, 5, 8, L, L + 4] {
                let got = try run(common.merging(["scan": .string("chunked"), "chunk": .int(Q)]) { $1 }, B: 2, L: L)
                // float32, the same sums in another order (within a chunk as products,
                // across chunks by the state): agreement to a few ulps of the largest value
                XCTAssertLessThan(relErr(got.y, ref.y), 2e-5, "G \(G) L \(L) Q \(Q): output")
                XCTAssertLessThan(relErr(got.du, ref.du), 2e-5, "G \(G) L \(L) Q \(Q): ∂input")
                for (name, g) in ref.grads {
                    XCTAssertLessThan(relErr(try XCTUnwrap(got.grads[name]), g), 5e-5, "G \(G) L \(L) Q \(Q): ∂\(name)")
                }
            }
        }
    }

    func testStrongDecayFlushesLikeTheRecurrence() throws {
        let ref = try run(["scan": .string("recurrent")], B: 2, L: 11, strongDecay: true)
        let got = try run(["scan": .string("chunked"), "chunk": .int(4)], B: 2, L: 11, strongDecay: true)
        XCTAssertTrue(got.y.allSatisfy(\.isFinite) && got.du.allSatisfy(\.isFinite))
        XCTAssertLessThan(relErr(got.y, ref.y), 2e-5)
        XCTAssertLessThan(relErr(got.du, ref.du), 2e-5)
        for (name, g) in ref.grads { XCTAssertLessThan(relErr(got.grads[name]!, g), 5e-5, "∂\(name)") }
    }

    /// A prompt prefilled in two calls (the second starts from the first's state, through
    /// several chunks) gives the parallel forward's outputs.
    func testPrefillFromAState() throws {
        let B = 2, L = 12, first = 4, D = 8
        let (m, ps) = try buildMixer("mamba2", ["chunk": .int(3)], width: D)
        randomizeParameters(ps, seed: 6)
        let (x, full) = randomInputAndForward(m, B: B, L: L, D: D, seed: 8)
        let state = try m.makeAnyState(batch: B, maxLength: L)
        var got = [Float](repeating: 0, count: full.count)
        for (lo, hi) in [(0, first), (first, L)] {
            let n = hi - lo
            var px = [Float](repeating: 0, count: B * n * D), py = px
            for b in 0..<B { for i in 0..<(n * D) { px[b * n * D + i] = x[(b * L + lo) * D + i] } }
            px.withUnsafeBufferPointer { pb in py.withUnsafeMutableBufferPointer { m.prefill(pb.baseAddress!, $0.baseAddress!, B: B, L: n, anyState: state, pass: .generate()) } }
            for b in 0..<B { for i in 0..<(n * D) { got[(b * L + lo) * D + i] = py[b * n * D + i] } }
        }
        XCTAssertLessThan(relErr(got, full), 1e-5)
    }

    /// Memory and FLOPs follow the chunk: the chunked scan keeps ⌈L/Q⌉ states a sequence,
    /// the recurrence L; the chunk products grow with Q.
    func testMemoryAndFlopsFollowTheScan() throws {
        let (rec, _) = try buildMixer("mamba2", ["scan": .string("recurrent"), "d_state": .int(16)], width: 16)
        let (c16, _) = try buildMixer("mamba2", ["chunk": .int(16), "d_state": .int(16)], width: 16)
        let (c64, _) = try buildMixer("mamba2", ["chunk": .int(64), "d_state": .int(16)], width: 16)
        XCTAssertGreaterThan(rec.activationFloats(B: 4, L: 256), c16.activationFloats(B: 4, L: 256))
        func flops(_ m: Mixer) -> Double { m.flopTerms(seqLen: 256).reduce(0) { $0 + $1.flops } }
        XCTAssertGreaterThan(flops(c64), flops(c16))
        // L not a multiple of Q: q̄ = (Q² · ⌊L/Q⌋ + r²) / L
        let m = try XCTUnwrap(c16 as? Mamba2)
        let e = Double(m.E), n = Double(m.N), h = Double(m.H), qBar = Double(16 * 16 + 4 * 4) / 20
        let products = try XCTUnwrap(c16.flopTerms(seqLen: 20).first { $0.name == "ssd chunk products" })
        XCTAssertEqual(products.flops, 8 * qBar * n + 6 * qBar * e + 12 * e * n, accuracy: 1e-9)
        XCTAssertEqual(c16.flopTerms(seqLen: 20).first { $0.name == "ssd chunk element-wise" }?.flops ?? 0,
                       3.5 * h * qBar + 17 * e + 6 * h * n, accuracy: 1e-9)
    }
}
