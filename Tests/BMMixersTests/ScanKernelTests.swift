import XCTest
@testable import BMCore
@testable import BMMixers

/// Every build of the selective-scan kernel that this CPU runs (`SelectiveScan.kernels`:
/// AVX2 everywhere, AVX-512 where the CPU has it) against a Double reference: the
/// forward directly, the backward against central finite differences of the Double
/// forward. Shapes that reach every branch: E = 40 (a partial last block of 16), a
/// chunk that does not divide L, B and C shared by channels (Mamba) or per channel with
/// δ per channel (S4D), with and without D, a non-zero initial state, and channel ranges.
final class ScanKernelTests: XCTestCase {
    /// The kernel in use before the test (the CPU's choice, or the path BMLAB_KERNELS forces), restored after.
    private var before = ""
    override func setUp() { before = SelectiveScan.kernel }
    override func tearDown() { SelectiveScan.use(before) }

    struct Case {
        var mamba: Bool, withD: Bool
        let L = 11, E = 40, N = 3, chunk = 4
        var Ep: Int { 48 }
        var shape: ScanShape {
            mamba ? ScanShape(L: L, E: E, N: N, chunk: chunk, deltaT: E, bT: N + 2, bN: 1, bC: 0, cT: N + 1, cN: 1, cC: 0)
                  : ScanShape(L: L, E: E, N: N, chunk: chunk, deltaT: 0, bT: 0, bN: Ep, bC: 1, cT: 0, cN: Ep, cC: 1)
        }
        var deltaCount: Int { mamba ? L * E : E }
        var bCount: Int { mamba ? L * (N + 2) : N * Ep }
        var cCount: Int { mamba ? L * (N + 1) : N * Ep }
        func b(_ v: [Double], _ t: Int, _ n: Int, _ c: Int) -> Double { mamba ? v[t * (N + 2) + n] : v[n * Ep + c] }
        func cc(_ v: [Double], _ t: Int, _ n: Int, _ c: Int) -> Double { mamba ? v[t * (N + 1) + n] : v[n * Ep + c] }
    }

    /// The inputs: u [L, E], δ > 0, A < 0 ([N, Ep], 0 in the padding), B, C, D, initial state [N, Ep], gy [L, E].
    struct Inputs { var u, delta, A, B, C, D, s0, gy: [Double] }

    func inputs(_ k: Case, seed: UInt64) -> Inputs {
        var rng = RNG(seed: seed)
        func r(_ n: Int, _ f: (Float) -> Float = { $0 }) -> [Double] { (0..<n).map { _ in Double(f(rng.normal())) } }
        func padded(_ f: @escaping (Float) -> Float) -> [Double] {
            var v = r(k.N * k.Ep, f)
            for n in 0..<k.N { for c in k.E..<k.Ep { v[n * k.Ep + c] = 0 } }
            return v
        }
        return Inputs(u: r(k.L * k.E), delta: r(k.deltaCount) { 0.05 + 0.3 * abs($0) },
                      A: padded { -0.2 - abs($0) }, B: r(k.bCount), C: r(k.cCount), D: r(k.E),
                      s0: padded { 0.5 * $0 }, gy: r(k.L * k.E))
    }

    /// Σ_t,c gy·y of the Double reference.
    func referenceLoss(_ k: Case, _ x: Inputs) -> Double {
        var s = x.s0, loss = 0.0
        for t in 0..<k.L {
            for c in 0..<k.E {
                let d = k.mamba ? x.delta[t * k.E + c] : x.delta[c], u = x.u[t * k.E + c]
                var y = k.withD ? x.D[c] * u : 0
                for n in 0..<k.N {
                    let o = n * k.Ep + c
                    s[o] = Foundation.exp(d * x.A[o]) * s[o] + d * k.b(x.B, t, n, c) * u
                    y += s[o] * k.cc(x.C, t, n, c)
                }
                loss += x.gy[t * k.E + c] * y
            }
        }
        return loss
    }

    /// The kernel's y and its gradients (du, dδ, dA, dB, dC, dD), channels [c0, c1) or all.
    func kernel(_ k: Case, _ x: Inputs, ranges: [Range<Int>]) -> (y: [Float], grads: [[Float]]) {
        let sh = k.shape
        let f = { (v: [Double]) in v.map(Float.init) }
        let u = f(x.u), delta = f(x.delta), A = f(x.A), B = f(x.B), C = f(x.C), D = f(x.D), gy = f(x.gy)
        var state = f(x.s0), y = [Float](repeating: 0, count: k.L * k.E)
        var bnd = [Float](repeating: 0, count: sh.chunks * k.N * k.Ep), work = [Float](repeating: 0, count: sh.workSize)
        var du = [Float](repeating: .nan, count: k.L * k.E), dDelta = [Float](repeating: 0, count: k.deltaCount)
        var dA = [Float](repeating: 0, count: k.N * k.Ep), dB = [Float](repeating: 0, count: k.bCount)
        var dC = [Float](repeating: 0, count: k.cCount)
        let dD = UnsafeMutableBufferPointer<Float>.allocate(capacity: k.E), Dp = UnsafeMutableBufferPointer<Float>.allocate(capacity: k.E)
        defer { dD.deallocate(); Dp.deallocate() }
        _ = dD.initialize(from: [Float](repeating: 0, count: k.E)); _ = Dp.initialize(from: D)
        let dOpt: UnsafePointer<Float>? = k.withD ? UnsafePointer(Dp.baseAddress!) : nil
        let dDOpt: UnsafeMutablePointer<Float>? = k.withD ? dD.baseAddress! : nil
        for r in ranges {
            SelectiveScan.forward(sh, u: u, delta: delta, A: A, Bm: B, Cm: C, D: dOpt, y: &y,
                                  state: &state, boundaries: &bnd, channels: r)
        }
        for r in ranges {
            SelectiveScan.backward(sh, u: u, delta: delta, A: A, Bm: B, Cm: C, D: dOpt, boundaries: bnd,
                                   gy: gy, du: &du, dDelta: &dDelta, dB: &dB, dC: &dC, dA: &dA,
                                   dD: dDOpt, work: &work, channels: r)
        }
        return (y, [du, dDelta, dA, dB, dC, Array(dD)])
    }

    func testEveryKernelAgainstTheDoubleReference() throws {
        let runnable = SelectiveScan.kernels.filter(SelectiveScan.runs)
        XCTAssertTrue(runnable.contains("avx2"), "every machine of this kind runs the AVX2 build")
        XCTAssertEqual(SelectiveScan.runs("avx512"), BLAS.cpuHasAVX512)
        XCTAssertFalse(SelectiveScan.use("no-such-kernel"))
        for name in runnable {
            XCTAssertTrue(SelectiveScan.use(name))
            XCTAssertEqual(SelectiveScan.kernel, name)
            for mamba in [true, false] {
                for withD in [true, false] {
                    let k = Case(mamba: mamba, withD: withD), x = inputs(k, seed: mamba ? 3 : 4)
                    let what = "\(name) \(mamba ? "mamba" : "s4d")\(withD ? " with D" : "")"
                    let got = kernel(k, x, ranges: [0..<k.E])
                    // forward: y against the Double reference, relative to y's scale. Float
                    // rounding over 11 steps of 3 states is ~1e-7 relative; 1e-5 leaves room
                    // for vexp (≤ 2e-7 relative) compounded through the recurrence.
                    var yRef = [Double](repeating: 0, count: k.L * k.E)
                    do {
                        var s = x.s0
                        for t in 0..<k.L { for c in 0..<k.E {
                            let d = k.mamba ? x.delta[t * k.E + c] : x.delta[c], u = x.u[t * k.E + c]
                            var y = withD ? x.D[c] * u : 0
                            for n in 0..<k.N {
                                let o = n * k.Ep + c
                                s[o] = Foundation.exp(d * x.A[o]) * s[o] + d * k.b(x.B, t, n, c) * u
                                y += s[o] * k.cc(x.C, t, n, c)
                            }
                            yRef[t * k.E + c] = y
                        } }
                    }
                    let yScale = yRef.map(abs).max()!
                    let yErr = zip(got.y, yRef).map { abs(Double($0) - $1) }.max()! / yScale
                    XCTAssertLessThan(yErr, 1e-5, "\(what): forward")
                    // backward: each gradient against central differences of the Double loss
                    // (h = 1e-5: truncation ~h² and cancellation ~1e-16/h, both ≪ the
                    // 1e-4 allowed, which covers the kernel's Float sums over up to 11 steps).
                    func fd(_ path: WritableKeyPath<Inputs, [Double]>, _ i: Int) -> Double {
                        var p = x, m = x
                        p[keyPath: path][i] += 1e-5; m[keyPath: path][i] -= 1e-5
                        return (referenceLoss(k, p) - referenceLoss(k, m)) / 2e-5
                    }
                    let paths: [(String, WritableKeyPath<Inputs, [Double]>)] = [("du", \.u), ("dDelta", \.delta), ("dA", \.A), ("dB", \.B), ("dC", \.C), ("dD", \.D)]
                    for (j, (gname, path)) in paths.enumerated() {
                        if gname == "dD" && !withD { continue }
                        var ref = (0..<x[keyPath: path].count).map { fd(path, $0) }
                        if gname == "dA" { for n in 0..<k.N { for c in k.E..<k.Ep { ref[n * k.Ep + c] = 0 } } }
                        let scale = max(ref.map(abs).max()!, 1e-3)
                        let g = got.grads[j]
                        let worst = zip(g, ref).enumerated().map { i, p in
                            gname == "dA" && i % k.Ep >= k.E ? 0 : abs(Double(p.0) - p.1) }.max()!
                        XCTAssertLessThan(worst / scale, 1e-4, "\(what): \(gname)")
                    }
                    // channel ranges (whole blocks of 16): the forward is bitwise the whole
                    // one; the backward adds a shared B, C over the ranges in another order.
                    let parts = kernel(k, x, ranges: [0..<16, 16..<k.E])
                    XCTAssertEqual(parts.y, got.y, "\(what): forward by channel ranges")
                    for (a, b) in zip(parts.grads, got.grads) {
                        let s = max(b.map(abs).max()!, 1e-3)
                        XCTAssertLessThan(zip(a, b).map { abs($0 - $1) }.max()! / s, 1e-5, "\(what): backward by channel ranges")
                    }
                }
            }
        }
    }

    /// Where the CPU runs more than one build, they give the same bits (the same source
    /// at the same width, FMA contraction decided before code generation), in every case.
    func testBuildsAgree() throws {
        let runnable = SelectiveScan.kernels.filter(SelectiveScan.runs)
        guard runnable.count > 1 else { throw XCTSkip("this CPU runs one build of the scan (\(runnable))") }
        for mamba in [true, false] {
            for withD in [true, false] {
                let k = Case(mamba: mamba, withD: withD), x = inputs(k, seed: 8)
                var results: [(y: [Float], grads: [[Float]])] = []
                for name in runnable { SelectiveScan.use(name); results.append(kernel(k, x, ranges: [0..<k.E])) }
                for r in results.dropFirst() {
                    XCTAssertEqual(r.y, results[0].y, "mamba \(mamba) D \(withD): forward")
                    for (a, b) in zip(r.grads, results[0].grads) { XCTAssertEqual(a, b, "mamba \(mamba) D \(withD): backward") }
                }
            }
        }
    }

    /// A NaN in the decay's argument stays NaN (it is not clamped into ā ≈ 0), so a
    /// diverged parameter shows in the output, as with BMCore's vexp.
    func testNaNStaysNaN() {
        for name in SelectiveScan.kernels.filter(SelectiveScan.runs) {
            SelectiveScan.use(name)
            let k = Case(mamba: true, withD: false)
            var x = inputs(k, seed: 9)
            x.A[5] = .nan                                   // state n = 0, channel 5
            let got = kernel(k, x, ranges: [0..<k.E])
            XCTAssertTrue(got.y[5].isNaN, "\(name): y at channel 5")
            XCTAssertFalse(got.y[6].isNaN, "\(name): other channels unaffected")
        }
    }
}
