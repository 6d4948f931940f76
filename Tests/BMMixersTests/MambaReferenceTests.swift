import XCTest
import Foundation
import BMCore
import BMLayers
import BMMixers

// An independent, sequential, Double-precision Mamba-1 mixer (forward and
// hand-written reverse mode), written from the math in docs/mixers.md
// (steps 1–7 and the scan / gate / softplus backward), and tests that compare
// the library's Float `mamba` mixer against it on random inputs.

// MARK: - Double reference

private struct RefConfig {
    var D: Int, E: Int, N: Int, K: Int, R: Int
    var gate = true, skipD = true
}

/// Parameter names without the mixer prefix, in the PyTorch layout [out, in].
private func refParamShapes(_ c: RefConfig) -> [String: [Int]] {
    var s: [String: [Int]] = [
        "in_proj.weight": [c.gate ? 2 * c.E : c.E, c.D],
        "conv1d.weight": [c.E, 1, c.K],
        "conv1d.bias": [c.E],
        "x_proj.weight": [c.R + 2 * c.N, c.E],
        "dt_proj.weight": [c.E, c.R],
        "dt_proj.bias": [c.E],
        "A_log": [c.E, c.N],
        "out_proj.weight": [c.D, c.E],
    ]
    if c.skipD { s["D"] = [c.E] }
    return s
}

private func sigmoidD(_ v: Double) -> Double { 1 / (1 + exp(-v)) }
private func siluD(_ v: Double) -> Double { v * sigmoidD(v) }
/// d silu / dv = σ(v)·(1 + v·(1 − σ(v))).
private func siluPrimeD(_ v: Double) -> Double { let s = sigmoidD(v); return s * (1 + v * (1 - s)) }
private func softplusD(_ v: Double) -> Double { v > 20 ? v : log1p(exp(v)) }
private func softplusPrimeD(_ v: Double) -> Double { v > 20 ? 1 : sigmoidD(v) }

/// Everything the reference forward computes (all of it kept for backward).
private struct RefCache {
    var B = 0, L = 0
    var x: [Double] = []        // [B, L, D]
    var xin: [Double] = []      // [B, L, E]   x half of in_proj
    var z: [Double] = []        // [B, L, E]   z half (gate only)
    var xc: [Double] = []       // [B, L, E]   conv output (pre-silu)
    var u: [Double] = []        // [B, L, E]
    var dbc: [Double] = []      // [B, L, R+2N]
    var v: [Double] = []        // [B, L, E]   pre-softplus
    var delta: [Double] = []    // [B, L, E]
    var A: [Double] = []        // [E, N]
    var abar: [Double] = []     // [B, L, E, N]
    var s: [Double] = []        // [B, L, E, N]
    var y: [Double] = []        // [B, L, E]   pre-gate
    var g: [Double] = []        // [B, L, E]   post-gate
    var out: [Double] = []      // [B, L, D]
}

private struct RefMamba {
    var c: RefConfig
    var p: [String: [Double]]

    func forward(_ x: [Double], B: Int, L: Int) -> RefCache {
        let D = c.D, E = c.E, N = c.N, K = c.K, R = c.R, J = R + 2 * N
        let inW = p["in_proj.weight"]!, convW = p["conv1d.weight"]!, convB = p["conv1d.bias"]!
        let xW = p["x_proj.weight"]!, dtW = p["dt_proj.weight"]!, dtB = p["dt_proj.bias"]!
        let Alog = p["A_log"]!, outW = p["out_proj.weight"]!
        let Dp = c.skipD ? p["D"]! : []
        var r = RefCache()
        r.B = B; r.L = L; r.x = x
        let BLE = B * L * E
        r.xin = .init(repeating: 0, count: BLE); r.z = r.xin; r.xc = r.xin; r.u = r.xin
        r.v = r.xin; r.delta = r.xin; r.y = r.xin; r.g = r.xin
        r.dbc = .init(repeating: 0, count: B * L * J)
        r.abar = .init(repeating: 0, count: BLE * N); r.s = r.abar
        r.out = .init(repeating: 0, count: B * L * D)
        // 5. A = −exp(A_log)
        r.A = Alog.map { -exp($0) }
        for b in 0..<B {
            // 1. in_proj
            for t in 0..<L {
                let bt = b * L + t
                for ch in 0..<E {
                    var a = 0.0, zz = 0.0
                    for d in 0..<D {
                        a += x[bt * D + d] * inW[ch * D + d]
                        if c.gate { zz += x[bt * D + d] * inW[(E + ch) * D + d] }
                    }
                    r.xin[bt * E + ch] = a
                    r.z[bt * E + ch] = zz
                }
            }
            // 2. causal depthwise conv (zero left padding), u = silu(xc)
            for t in 0..<L {
                let bt = b * L + t
                for ch in 0..<E {
                    var a = convB[ch]
                    for k in 0..<K {
                        let src = t - (K - 1) + k
                        if src >= 0 { a += convW[ch * K + k] * r.xin[(b * L + src) * E + ch] }
                    }
                    r.xc[bt * E + ch] = a
                    r.u[bt * E + ch] = siluD(a)
                }
            }
            // 3. x_proj → δr, Bt, Ct;  4. δ = softplus(δr·dt_projᵀ + bias)
            for t in 0..<L {
                let bt = b * L + t
                for j in 0..<J {
                    var a = 0.0
                    for ch in 0..<E { a += r.u[bt * E + ch] * xW[j * E + ch] }
                    r.dbc[bt * J + j] = a
                }
                for ch in 0..<E {
                    var a = dtB[ch]
                    for q in 0..<R { a += r.dbc[bt * J + q] * dtW[ch * R + q] }
                    r.v[bt * E + ch] = a
                    r.delta[bt * E + ch] = softplusD(a)
                }
            }
            // 6. scan from s = 0, y = Σ_n s·C + D·u
            for ch in 0..<E {
                for n in 0..<N {
                    var st = 0.0
                    for t in 0..<L {
                        let bt = b * L + t
                        let dl = r.delta[bt * E + ch]
                        let ab = exp(dl * r.A[ch * N + n])
                        let bb = dl * r.dbc[bt * J + R + n] * r.u[bt * E + ch]
                        st = ab * st + bb
                        r.abar[(bt * E + ch) * N + n] = ab
                        r.s[(bt * E + ch) * N + n] = st
                    }
                }
            }
            for t in 0..<L {
                let bt = b * L + t
                for ch in 0..<E {
                    var a = 0.0
                    for n in 0..<N { a += r.s[(bt * E + ch) * N + n] * r.dbc[bt * J + R + N + n] }
                    if c.skipD { a += Dp[ch] * r.u[bt * E + ch] }
                    r.y[bt * E + ch] = a
                    // 7. gate
                    r.g[bt * E + ch] = c.gate ? a * siluD(r.z[bt * E + ch]) : a
                }
                for d in 0..<D {
                    var a = 0.0
                    for ch in 0..<E { a += r.g[bt * E + ch] * outW[d * E + ch] }
                    r.out[bt * D + d] = a
                }
            }
        }
        return r
    }

    /// Reverse mode of `loss = Σ out·dout`: returns dx and every parameter gradient.
    func backward(_ r: RefCache, _ dout: [Double]) -> (dx: [Double], grads: [String: [Double]]) {
        let D = c.D, E = c.E, N = c.N, K = c.K, R = c.R, J = R + 2 * N
        let B = r.B, L = r.L
        let inW = p["in_proj.weight"]!, convW = p["conv1d.weight"]!
        let xW = p["x_proj.weight"]!, dtW = p["dt_proj.weight"]!
        let outW = p["out_proj.weight"]!
        let Dp = c.skipD ? p["D"]! : []
        var gr: [String: [Double]] = [:]
        for (k, v) in p { gr[k] = .init(repeating: 0, count: v.count) }
        var dInW = gr["in_proj.weight"]!, dConvW = gr["conv1d.weight"]!, dConvB = gr["conv1d.bias"]!
        var dXW = gr["x_proj.weight"]!, dDtW = gr["dt_proj.weight"]!, dDtB = gr["dt_proj.bias"]!
        var dA = [Double](repeating: 0, count: E * N), dOutW = gr["out_proj.weight"]!
        var dDp = [Double](repeating: 0, count: E)
        var dx = [Double](repeating: 0, count: B * L * D)

        let BLE = B * L * E
        var dy = [Double](repeating: 0, count: BLE), dz = dy, du = dy, ddelta = dy
        var ddbc = [Double](repeating: 0, count: B * L * J)
        // 7. out_proj and gate
        for bt in 0..<(B * L) {
            for ch in 0..<E {
                var dg = 0.0
                for d in 0..<D {
                    dg += dout[bt * D + d] * outW[d * E + ch]
                    dOutW[d * E + ch] += dout[bt * D + d] * r.g[bt * E + ch]
                }
                if c.gate {
                    let zz = r.z[bt * E + ch]
                    dy[bt * E + ch] = dg * siluD(zz)
                    dz[bt * E + ch] = dg * r.y[bt * E + ch] * siluPrimeD(zz)
                } else {
                    dy[bt * E + ch] = dg
                }
            }
        }
        // 6. scan backward (λ: state adjoint), y = Σ s·C + D·u
        for b in 0..<B {
            for ch in 0..<E {
                for n in 0..<N {
                    let a = r.A[ch * N + n]
                    var carry = 0.0            // ā_{t+1}·λ_{t+1}
                    for t in stride(from: L - 1, through: 0, by: -1) {
                        let bt = b * L + t, i = (bt * E + ch) * N + n
                        let gy = dy[bt * E + ch]
                        let lam = gy * r.dbc[bt * J + R + N + n] + carry
                        let dl = r.delta[bt * E + ch], uu = r.u[bt * E + ch], bn = r.dbc[bt * J + R + n]
                        let sPrev = t > 0 ? r.s[((bt - 1) * E + ch) * N + n] : 0
                        let ab = r.abar[i]
                        ddbc[bt * J + R + N + n] += gy * r.s[i]               // ∂C
                        ddbc[bt * J + R + n] += lam * dl * uu                  // ∂B
                        du[bt * E + ch] += lam * dl * bn
                        ddelta[bt * E + ch] += lam * (bn * uu + a * ab * sPrev)
                        dA[ch * N + n] += lam * dl * ab * sPrev
                        carry = ab * lam
                    }
                }
            }
        }
        if c.skipD {
            for bt in 0..<(B * L) {
                for ch in 0..<E {
                    du[bt * E + ch] += Dp[ch] * dy[bt * E + ch]
                    dDp[ch] += dy[bt * E + ch] * r.u[bt * E + ch]
                }
            }
        }
        // 5. A = −exp(A_log) ⇒ ∂A_log = ∂A · A
        var dAlog = dA
        for i in 0..<(E * N) { dAlog[i] = dA[i] * r.A[i] }
        // 4. softplus and dt_proj
        for bt in 0..<(B * L) {
            for ch in 0..<E {
                let dv = ddelta[bt * E + ch] * softplusPrimeD(r.v[bt * E + ch])
                dDtB[ch] += dv
                for q in 0..<R {
                    dDtW[ch * R + q] += dv * r.dbc[bt * J + q]
                    ddbc[bt * J + q] += dv * dtW[ch * R + q]
                }
            }
        }
        // 3. x_proj
        for bt in 0..<(B * L) {
            for j in 0..<J {
                for ch in 0..<E {
                    dXW[j * E + ch] += ddbc[bt * J + j] * r.u[bt * E + ch]
                    du[bt * E + ch] += ddbc[bt * J + j] * xW[j * E + ch]
                }
            }
        }
        // 2. silu and causal conv
        var dxin = [Double](repeating: 0, count: BLE)
        for b in 0..<B {
            for t in 0..<L {
                let bt = b * L + t
                for ch in 0..<E {
                    let dxc = du[bt * E + ch] * siluPrimeD(r.xc[bt * E + ch])
                    dConvB[ch] += dxc
                    for k in 0..<K {
                        let src = t - (K - 1) + k
                        if src >= 0 {
                            dConvW[ch * K + k] += dxc * r.xin[(b * L + src) * E + ch]
                            dxin[(b * L + src) * E + ch] += dxc * convW[ch * K + k]
                        }
                    }
                }
            }
        }
        // 1. in_proj
        for bt in 0..<(B * L) {
            for ch in 0..<E {
                for d in 0..<D {
                    dInW[ch * D + d] += dxin[bt * E + ch] * r.x[bt * D + d]
                    dx[bt * D + d] += dxin[bt * E + ch] * inW[ch * D + d]
                    if c.gate {
                        dInW[(E + ch) * D + d] += dz[bt * E + ch] * r.x[bt * D + d]
                        dx[bt * D + d] += dz[bt * E + ch] * inW[(E + ch) * D + d]
                    }
                }
            }
        }
        gr["in_proj.weight"] = dInW; gr["conv1d.weight"] = dConvW; gr["conv1d.bias"] = dConvB
        gr["x_proj.weight"] = dXW; gr["dt_proj.weight"] = dDtW; gr["dt_proj.bias"] = dDtB
        gr["A_log"] = dAlog; gr["out_proj.weight"] = dOutW
        if c.skipD { gr["D"] = dDp }
        return (dx, gr)
    }

    func loss(_ x: [Double], _ dout: [Double], B: Int, L: Int) -> Double {
        let o = forward(x, B: B, L: L).out
        var s = 0.0
        for i in 0..<o.count { s += o[i] * dout[i] }
        return s
    }
}

// MARK: - Library harness

private struct LibResult {
    var out: [Float]
    var dx: [Float]
    var grads: [String: [Float]]   // names without "m."
}

private func refStrip(_ name: String) -> String { name.hasPrefix("m.") ? String(name.dropFirst(2)) : name }

private func refBuildLibrary(_ c: RefConfig, chunk: Int) throws -> (Mixer, ParameterSet) {
    precondition(c.E == 2 * c.D)
    let ps = ParameterSet()
    let ctx = MixerContext(params: ps, prefix: "m", width: c.D, layerIndex: 0, layerCount: 1, initScheme: .megatron)
    let opts: [String: OptionValue] = [
        "d_state": .int(c.N), "d_conv": .int(c.K), "expand": .int(2), "dt_rank": .int(c.R),
        "chunk": .int(chunk), "gate": .bool(c.gate), "skip_d": .bool(c.skipD),
    ]
    let m = try MixerRegistry.build("mamba", options: opts, in: ctx, context: "test")
    ps.finalize(seed: 1)
    return (m, ps)
}

/// Moves all parameters to realistic but non-trivial values, written into the
/// library's Float storage (the reference then copies exactly these values).
private func refPerturb(_ ps: ParameterSet, seed: UInt64) {
    var rng = RNG(seed: seed)
    for p in ps.params {
        let n = refStrip(p.name)
        for i in 0..<p.count {
            switch n {
            case "A_log":
                p.w[i] = Float(log(Double(rng.uniform(0.5, 4))))
            case "dt_proj.bias":
                // δ = exp(U(ln 0.05, ln 1)) ∈ [0.05, 1], bias = softplus⁻¹(δ)
                let dt = exp(log(0.05) + Double(rng.uniformFloat()) * (log(1.0) - log(0.05)))
                p.w[i] = Float(dt + log(-expm1(-dt)))
            case "in_proj.weight", "x_proj.weight", "out_proj.weight":
                p.w[i] = 0.3 * rng.normal()
            default:   // conv weight/bias, dt_proj.weight, D
                p.w[i] += 0.3 * rng.normal()
            }
        }
    }
}

private func refCopyParams(_ ps: ParameterSet) -> [String: [Double]] {
    var d: [String: [Double]] = [:]
    for p in ps.params { d[refStrip(p.name)] = (0..<p.count).map { Double(p.w[$0]) } }
    return d
}

private func refRunLibrary(_ m: Mixer, _ ps: ParameterSet, x: [Float], dy: [Float], B: Int, L: Int, D: Int) -> LibResult {
    var out = [Float](repeating: .nan, count: B * L * D)
    var dx = [Float](repeating: .nan, count: B * L * D)
    x.withUnsafeBufferPointer { xb in
        out.withUnsafeMutableBufferPointer { m.forward(xb.baseAddress!, $0.baseAddress!, B: B, L: L, pass: trainPass) }
        ps.zeroGrad()
        dy.withUnsafeBufferPointer { db in
            dx.withUnsafeMutableBufferPointer { m.backward(db.baseAddress!, $0.baseAddress!, B: B, L: L, pass: trainPass) }
        }
    }
    var g: [String: [Float]] = [:]
    for p in ps.params { g[refStrip(p.name)] = Array(p.grads) }
    return LibResult(out: out, dx: dx, grads: g)
}

private func refFmt(_ v: Double) -> String { String(format: "%.3e", v) }

/// (max |lib − ref|, max |ref|)
private func refMaxDiff(_ lib: [Float], _ ref: [Double]) -> (diff: Double, refMax: Double) {
    precondition(lib.count == ref.count, "size \(lib.count) vs \(ref.count)")
    var d = 0.0, m = 0.0
    for i in 0..<ref.count {
        let e = abs(Double(lib[i]) - ref[i])
        d = max(d, e.isNaN ? .infinity : e)
        m = max(m, abs(ref[i]))
    }
    return (d, m)
}

// MARK: - Tests

final class MambaReferenceTests: XCTestCase {
    override func setUp() { XCTAssertNoThrow(try BLAS.setup()) }

    static let gradTensors = ["in_proj.weight", "conv1d.weight", "conv1d.bias", "x_proj.weight",
                              "dt_proj.weight", "dt_proj.bias", "A_log", "D", "out_proj.weight"]

    /// Builds the library mixer (optionally perturbed), runs forward+backward on
    /// random x, dy, runs the Double reference on the same values, and checks
    /// output, dx and every parameter gradient.
    private func compare(_ c: RefConfig, B: Int, L: Int, chunk: Int = 3, perturb: Bool,
                         checkGrads: Bool = true, seed: UInt64 = 11, label: String) throws {
        let (m, ps) = try refBuildLibrary(c, chunk: chunk)
        if perturb { refPerturb(ps, seed: seed &+ 100) }

        // Names and shapes must be exactly the documented PyTorch ones.
        let expected = refParamShapes(c)
        XCTAssertEqual(Set(ps.params.map { refStrip($0.name) }), Set(expected.keys), label)
        for p in ps.params {
            XCTAssertEqual(p.shape, expected[refStrip(p.name)], "\(label): shape of \(p.name)")
        }
        guard Set(ps.params.map { refStrip($0.name) }) == Set(expected.keys),
              ps.params.allSatisfy({ $0.shape == expected[refStrip($0.name)] }) else { return }

        var rng = RNG(seed: seed)
        let x = (0..<B * L * c.D).map { _ in rng.normal() }
        let dy = (0..<B * L * c.D).map { _ in rng.normal() }
        let lib = refRunLibrary(m, ps, x: x, dy: dy, B: B, L: L, D: c.D)

        let ref = RefMamba(c: c, p: refCopyParams(ps))
        let cache = ref.forward(x.map(Double.init), B: B, L: L)

        // Forward: each output is a chain of Float32 dot products (D terms in
        // in_proj, E in x_proj, N in the scan, E in out_proj) plus Float exp/log;
        // the rounding error is ~ sqrt(terms)·6e-8 relative to the magnitudes of
        // the summands, far below 1e-4 of max(1, |out|).
        let (fd, fm) = refMaxDiff(lib.out, cache.out)
        let fTol = 1e-4 * max(1, fm)
        print("[MambaRef] \(label) out: maxdiff \(refFmt(fd)) (max|ref| \(refFmt(fm)), tol \(refFmt(fTol)))")
        XCTAssertLessThanOrEqual(fd, fTol, "\(label): forward")
        guard checkGrads else { return }

        // Gradients: per tensor, max|lib − ref| ≤ 1e-3 · max|ref|. Gradients are
        // sums over B·L positions (and N, E, D) of products of forward values that
        // already carry ~1e-6 relative error, with cancellations between positive
        // and negative terms; 1e-3 of the tensor's largest entry leaves ample room
        // for Float32 rounding yet fails on any missing term, wrong index or
        // missing chunk boundary state (those produce O(1) relative errors).
        let (back, rg) = ref.backward(cache, dy.map(Double.init))
        var tensors: [(String, [Float], [Double])] = [("input (dx)", lib.dx, back)]
        for n in Self.gradTensors where rg[n] != nil { tensors.append((n, lib.grads[n]!, rg[n]!)) }
        for (n, l, r) in tensors {
            let (d, mx) = refMaxDiff(l, r)
            let tol = 1e-3 * mx
            print("[MambaRef] \(label) d\(n): maxdiff \(refFmt(d)) (max|ref| \(refFmt(mx)), rel \(refFmt(mx > 0 ? d / mx : d)))")
            XCTAssertGreaterThan(mx, 0, "\(label): reference gradient of \(n) is identically zero")
            XCTAssertLessThanOrEqual(d, tol, "\(label): gradient of \(n)")
        }
    }

    private static let base = RefConfig(D: 8, E: 16, N: 4, K: 4, R: 2)

    /// 1. Forward equality, library init and perturbed parameters, L = 7 (chunk 3 <
    /// L, so chunk-boundary states are used), L = 1 and L = 2 (shorter than K).
    func testForwardMatchesReference() throws {
        for perturb in [false, true] {
            for L in [7, 1, 2] {
                try compare(Self.base, B: 2, L: L, perturb: perturb, checkGrads: false,
                            label: "fwd \(perturb ? "perturbed" : "init") L=\(L)")
            }
        }
    }

    /// 2. dx and every parameter gradient, default options, gate=false and skip_d=false.
    func testGradientsMatchReference() throws {
        var noGate = Self.base; noGate.gate = false
        var noSkip = Self.base; noSkip.skipD = false
        for (name, c) in [("default", Self.base), ("gate=false", noGate), ("skip_d=false", noSkip)] {
            for perturb in [false, true] {
                for L in [7, 2] {
                    try compare(c, B: 2, L: L, perturb: perturb,
                                label: "grad \(name) \(perturb ? "perturbed" : "init") L=\(L)")
                }
            }
        }
    }

    /// 3. Channel blocks: the scan vectorises 16 channels at a time, so E = 20 and
    /// E = 36 exercise a partial last block (4 lanes) after one or two full ones, and
    /// N = 20 / N = 5 state sizes that are not powers of two; E = 16 a single full block.
    func testChannelBlocksAndPartialLastBlock() throws {
        for (D, N) in [(10, 20), (18, 5), (8, 16)] {
            var c = Self.base; c.D = D; c.E = 2 * D; c.N = N
            for perturb in [false, true] {
                try compare(c, B: 2, L: 7, perturb: perturb,
                            label: "E=\(2 * D) N=\(N) \(perturb ? "perturbed" : "init") L=7")
            }
        }
    }

    /// The Double reference's own backward against central finite differences of
    /// its own forward (h = 1e-6): every parameter element and every input element.
    /// Truncation error ~h²·f''' ≈ 1e-12 and rounding ~1e-16·|loss|/h ≈ 1e-9, so a
    /// 1e-6 relative-to-max tolerance proves the hand-written backward.
    func testReferenceBackwardMatchesFiniteDifferences() {
        let B = 2, L = 5, h = 1e-6
        var variants: [RefConfig] = []
        let tiny = RefConfig(D: 3, E: 5, N: 3, K: 4, R: 2)
        variants.append(tiny)
        var v2 = tiny; v2.gate = false; variants.append(v2)
        var v3 = tiny; v3.skipD = false; variants.append(v3)
        for (vi, c) in variants.enumerated() {
            var rng = RNG(seed: 77 + UInt64(vi))
            var p: [String: [Double]] = [:]
            for (n, shape) in refParamShapes(c) {
                let cnt = shape.reduce(1, *)
                p[n] = (0..<cnt).map { _ in
                    switch n {
                    case "A_log": return log(0.5 + 3.5 * rng.uniform())
                    case "dt_proj.bias": return -1.5 + 0.7 * Double(rng.normal())
                    case "D": return 1 + 0.3 * Double(rng.normal())
                    default: return 0.5 * Double(rng.normal())
                    }
                }
            }
            let x = (0..<B * L * c.D).map { _ in Double(rng.normal()) }
            let dout = (0..<B * L * c.D).map { _ in Double(rng.normal()) }
            let ref = RefMamba(c: c, p: p)
            let (dx, grads) = ref.backward(ref.forward(x, B: B, L: L), dout)

            // input
            var fdx = [Double](repeating: 0, count: x.count)
            for i in 0..<x.count {
                var xp = x, xm = x
                xp[i] += h; xm[i] -= h
                fdx[i] = (ref.loss(xp, dout, B: B, L: L) - ref.loss(xm, dout, B: B, L: L)) / (2 * h)
            }
            var all: [(String, [Double], [Double])] = [("input", dx, fdx)]
            for n in p.keys.sorted() {
                var fd = [Double](repeating: 0, count: p[n]!.count)
                for i in 0..<fd.count {
                    var rp = ref, rm = ref
                    rp.p[n]![i] += h; rm.p[n]![i] -= h
                    fd[i] = (rp.loss(x, dout, B: B, L: L) - rm.loss(x, dout, B: B, L: L)) / (2 * h)
                }
                all.append((n, grads[n]!, fd))
            }
            for (n, an, fd) in all {
                var d = 0.0, mx = 0.0
                for i in 0..<an.count { d = max(d, abs(an[i] - fd[i])); mx = max(mx, abs(an[i])) }
                print("[MambaRef] self-check gate=\(c.gate) skipD=\(c.skipD) \(n): maxdiff \(refFmt(d)) (max|an| \(refFmt(mx)))")
                XCTAssertGreaterThan(mx, 0, "reference gradient of \(n) is zero")
                XCTAssertLessThanOrEqual(d, 1e-6 * mx, "reference self-check \(n) gate=\(c.gate) skipD=\(c.skipD)")
            }
        }
    }
}
