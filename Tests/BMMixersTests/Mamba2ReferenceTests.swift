import XCTest
@testable import BMCore
@testable import BMLayers
@testable import BMMixers

/// `mamba2`'s forward against an independent float64 transcription of the reference block
/// (state-spaces/mamba `mamba2.py`, non-fused path, as docs/mixers.md states it):
/// in_proj → split z, xBC, dt → causal depthwise conv + SiLU → split x, B, C →
/// Δ = softplus(dt + dt_bias), S_t = exp(Δ A) S_{t−1} + Δ x_t B_tᵀ, y = S C + D x →
/// rmsnorm per group of (y ⊙ silu(z)) · w → out_proj; with ngroups 1 and 2 (head h reads
/// group h ÷ (H/G)). The gradients are checked against finite differences by the
/// registry's test; recurrent generation against this forward by its parity test.
final class Mamba2ReferenceTests: XCTestCase {
    override func setUp() { XCTAssertNoThrow(try BLAS.setup()) }

    func testForwardMatchesAFloat64Reference() throws {
        for (G, K, scan) in [(1, 4, "chunked"), (2, 3, "chunked"), (1, 4, "recurrent"), (2, 3, "recurrent")] {
            let Dm = 8, B = 2, L = 7
            let (mix, ps) = try buildMixer("mamba2", ["ngroups": .int(G), "d_conv": .int(K), "headdim": .int(4), "d_state": .int(3), "scan": .string(scan)], width: Dm)
            randomizeParameters(ps, seed: 9)
            let m = try XCTUnwrap(mix as? Mamba2)
            let E = m.E, N = m.N, P = m.P, H = m.H, Cc = m.Cc, W = m.W
            XCTAssertEqual(H, E / 4)
            var rng = RNG(seed: 10)
            let u = (0..<B * L * Dm).map { _ in rng.normal() }
            var out = [Float](repeating: 0, count: u.count)
            u.withUnsafeBufferPointer { ub in out.withUnsafeMutableBufferPointer { mix.forward(ub.baseAddress!, $0.baseAddress!, B: B, L: L, pass: evalPass) } }
            func w(_ p: Param, _ i: Int) -> Double { Double(p.w[i]) }
            func sig(_ x: Double) -> Double { 1 / (1 + exp(-x)) }
            var worst = 0.0, scale = 0.0
            for b in 0..<B {
                // in_proj
                var zx = [[Double]](repeating: [Double](repeating: 0, count: W), count: L)
                for t in 0..<L { for r in 0..<W {
                    var s = 0.0
                    for c in 0..<Dm { s += w(m.inProj, r * Dm + c) * Double(u[(b * L + t) * Dm + c]) }
                    zx[t][r] = s
                } }
                // conv over xBC, SiLU
                var xc = [[Double]](repeating: [Double](repeating: 0, count: Cc), count: L)
                for t in 0..<L { for c in 0..<Cc {
                    var s = w(m.convB, c)
                    for k in 0..<K where t - (K - 1) + k >= 0 { s += w(m.convW, c * K + k) * zx[t - (K - 1) + k][E + c] }
                    xc[t][c] = s * sig(s)
                } }
                // the recurrence per head
                var S = [Double](repeating: 0, count: H * P * N)
                var y = [[Double]](repeating: [Double](repeating: 0, count: E), count: L)
                for t in 0..<L {
                    for h in 0..<H {
                        let g = h / (H / G)
                        let raw = zx[t][2 * E + 2 * G * N + h] + w(m.dtBias, h)
                        let dt = log(1 + exp(raw)), a = exp(-exp(w(m.aLog, h)) * dt)
                        for p in 0..<P {
                            var acc = 0.0
                            for n in 0..<N {
                                let i = (h * P + p) * N + n
                                S[i] = a * S[i] + dt * xc[t][h * P + p] * xc[t][E + g * N + n]
                                acc += S[i] * xc[t][E + G * N + g * N + n]
                            }
                            y[t][h * P + p] = acc + w(m.dSkip, h) * xc[t][h * P + p]
                        }
                    }
                }
                // gated RMSNorm per group, out_proj
                for t in 0..<L {
                    var v = (0..<E).map { c in y[t][c] * zx[t][c] * sig(zx[t][c]) }
                    let gm = E / G
                    for g in 0..<G {
                        let ms = (g * gm..<(g + 1) * gm).reduce(0.0) { $0 + v[$1] * v[$1] } / Double(gm)
                        for c in g * gm..<(g + 1) * gm { v[c] = v[c] / (ms + 1e-5).squareRoot() * w(m.normW, c) }
                    }
                    for r in 0..<Dm {
                        var s = 0.0
                        for c in 0..<E { s += w(m.outProj, r * E + c) * v[c] }
                        worst = max(worst, abs(s - Double(out[(b * L + t) * Dm + r])))
                        scale = max(scale, abs(s))
                    }
                }
            }
            XCTAssertGreaterThan(scale, 0.05, "G \(G): the output is not trivially small")
            // float32 against float64 through ~10 roundings of sums of a few dozen terms
            XCTAssertLessThan(worst, 2e-5 * max(1, scale), "G \(G) K \(K): worst \(worst), scale \(scale)")
        }
    }
}
