import XCTest
@testable import BMCore
@testable import BMLayers
@testable import BMRouting
@testable import BMMixers

/// Token ids for routers that hash them (B·L ≤ 1024 in these tests).
nonisolated(unsafe) let testTokens: UnsafeMutablePointer<Int32> = {
    let p = UnsafeMutablePointer<Int32>.allocate(capacity: 1024)
    var rng = RNG(seed: 99)
    for i in 0..<1024 { p[i] = Int32(rng.below(50)) }
    return p
}()

/// The passes these tests run mixers in, over `testTokens`: training, and evaluation
/// (routing by each token's logits, as generation does).
let trainPass = Pass.train().with(tokens: UnsafePointer(testTokens))
let evalPass = Pass.eval().with(tokens: UnsafePointer(testTokens))

/// Builds one mixer for tests at small sizes.
func buildMixer(_ name: String, _ options: [String: OptionValue], width: Int = 8, seed: UInt64 = 3) throws -> (Mixer, ParameterSet) {
    let ps = ParameterSet()
    let ctx = MixerContext(params: ps, prefix: "m", width: width, layerIndex: 0, layerCount: 2, initScheme: .megatron)
    var opts = options
    // Small, fast test sizes unless the variant sets them.
    let entry = try MixerRegistry.entry(name, context: "test")
    let names = Set(entry.options.map(\.name))
    if names.contains("chunk"), opts["chunk"] == nil { opts["chunk"] = .int(3) }
    if names.contains("d_state"), opts["d_state"] == nil { opts["d_state"] = .int(4) }
    if names.contains("heads"), opts["heads"] == nil { opts["heads"] = .int(2) }
    if names.contains("headdim"), opts["headdim"] == nil { opts["headdim"] = .int(4) }
    if names.contains("ffn"), opts["ffn"] == nil { opts["ffn"] = .int(12) }
    if names.contains("experts"), opts["experts"] == nil { opts["experts"] = .int(4) }
    let m = try MixerRegistry.build(name, options: opts, in: ctx, context: "test")
    ps.finalize(seed: seed)
    // Gradient checks hold the routing fixed (a finite difference must not flip an argmax).
    (m as? MoE)?.freezeRouting = true
    return (m, ps)
}

/// Lets an MoE route again (`buildMixer` holds its routing fixed for gradient checks).
func unfreezeRouting(_ m: Mixer) {
    (m as? MoE)?.freezeRouting = false
}

/// Moves every parameter away from its special initial values (ones, zeros,
/// tiny std) so that all gradient paths carry signal, keeping Mamba's Δ > 0 and A < 0.
func randomizeParameters(_ ps: ParameterSet, seed: UInt64) {
    var rng = RNG(seed: seed)
    for p in ps.params {
        for i in 0..<p.count {
            if p.name.hasSuffix("A_log") { p.w[i] = log(0.5 + 3 * rng.uniformFloat()) }
            else if p.name.hasSuffix("dt_proj.bias") || p.name.hasSuffix("dt_bias") { p.w[i] = -1.5 + rng.normal() * 0.5 }
            else { p.w[i] += rng.normal() * 0.3 }
        }
    }
}

final class MixerRegistryTests: XCTestCase {
    override func setUp() { XCTAssertNoThrow(try BLAS.setup()) }

    /// Every registered mixer, in every variant that changes the math: input and
    /// all parameter gradients against finite differences.
    func testRegistryWideGradientCheck() throws {
        XCTAssertFalse(MixerRegistry.entries.isEmpty)
        for entry in MixerRegistry.entries {
            for variant in entry.variants { try checkGradients(entry.name, variant) }
        }
    }

    /// Changing the input at position t changes no output before t.
    func testCausality() throws {
        for entry in MixerRegistry.entries {
            for variant in entry.variants { try checkCausality(entry.name, variant) }
        }
    }

    /// prefill(prompt) then step() for each further token equals the parallel
    /// forward over the whole sequence, within 1e-4 relative.
    func testRecurrentParity() throws {
        for entry in MixerRegistry.entries {
            for variant in entry.variants { try checkRecurrentParity(entry.name, variant) }
        }
    }

    func testUnknownMixerAndOptionErrors() throws {
        let ps = ParameterSet()
        let ctx = MixerContext(params: ps, prefix: "m", width: 10, layerIndex: 0, layerCount: 1, initScheme: .megatron)
        XCTAssertThrowsError(try MixerRegistry.build("mambaa", options: [:], in: ctx, context: "x.yaml: model.layers[0]")) {
            XCTAssertTrue("\($0)".contains("x.yaml: model.layers[0]: unknown mixer 'mambaa' (did you mean 'mamba'?)"), "\($0)")
            XCTAssertEqual(($0 as? BMError)?.exitCode, 2)
        }
        XCTAssertThrowsError(try MixerRegistry.build("mamba", options: ["d_stat": .int(8)], in: ctx, context: "spec")) {
            XCTAssertTrue("\($0)".contains("unknown option 'd_stat' (did you mean 'd_state'?)"), "\($0)")
            XCTAssertTrue("\($0)".contains("valid options: d_state, d_conv"), "\($0)")
        }
        XCTAssertThrowsError(try MixerRegistry.build("mamba", options: ["d_state": .string("big")], in: ctx, context: "spec")) {
            XCTAssertTrue("\($0)".contains("option 'd_state' must be an integer"), "\($0)")
        }
        XCTAssertThrowsError(try MixerRegistry.build("attention", options: ["heads": .int(3)], in: ctx, context: "spec")) {
            XCTAssertTrue("\($0)".contains("heads (3) must divide d_model (10)"), "\($0)")
        }
        XCTAssertThrowsError(try MixerRegistry.build("mamba", options: ["dt_min": .double(0.5), "dt_max": .double(0.1)], in: ctx, context: "spec"))
    }

    func testMambaInitialisationFollowsTheReference() throws {
        let (m, ps) = try buildMixer("mamba", ["d_state": .int(16)], width: 32)
        let mamba = try XCTUnwrap((m as? SSMBlock)?.dynamics as? SelectiveDynamics)
        XCTAssertEqual(mamba.R, 2)                                  // ceil(32/16)
        XCTAssertEqual(ps["m.A_log"]!.shape, [64, 16])
        for c in 0..<64 { for n in 0..<16 { XCTAssertEqual(Double(ps["m.A_log"]!.w[c * 16 + n]), log(Double(n + 1)), accuracy: 1e-6) } }
        let bias = ps["m.dt_proj.bias"]!
        for i in 0..<bias.count {
            let dt = log1p(exp(Double(bias.w[i])))                  // softplus(bias) = initial Δ
            XCTAssertGreaterThanOrEqual(dt, 0.001 * 0.999); XCTAssertLessThanOrEqual(dt, 0.1 * 1.001)
        }
        XCTAssertEqual(Array(ps["m.D"]!.values), [Float](repeating: 1, count: 64))
        XCTAssertEqual(ps.params.filter { !$0.decay }.map(\.name), ["m.conv1d.bias", "m.dt_proj.bias", "m.A_log", "m.D"])
        XCTAssertEqual(ps.params.map { "\($0.name)\($0.shape)" }, [
            "m.in_proj.weight[128, 32]", "m.conv1d.weight[64, 1, 4]", "m.conv1d.bias[64]", "m.x_proj.weight[34, 64]",
            "m.dt_proj.weight[64, 2]", "m.dt_proj.bias[64]", "m.A_log[64, 16]", "m.D[64]", "m.out_proj.weight[32, 64]",
        ])
    }

    /// Mamba's generation state does not grow with the context; attention's KV cache does.
    func testGenerationStateMemory() throws {
        let (mamba, _) = try buildMixer("mamba", [:])
        let (attn, _) = try buildMixer("attention", [:])
        let ms = try mamba.makeAnyState(batch: 1, maxLength: 64), as_ = try attn.makeAnyState(batch: 1, maxLength: 64)
        let x = [Float](repeating: 0.1, count: 8)
        var y = x
        var mBytes: [Int] = [], aBytes: [Int] = []
        for _ in 0..<40 {
            x.withUnsafeBufferPointer { xb in y.withUnsafeMutableBufferPointer {
                mamba.step(xb.baseAddress!, $0.baseAddress!, B: 1, anyState: ms, pass: .generate())
                attn.step(xb.baseAddress!, $0.baseAddress!, B: 1, anyState: as_, pass: .generate())
            } }
            mBytes.append(ms.bytes); aBytes.append(as_.bytes)
        }
        XCTAssertEqual(Set(mBytes).count, 1)
        XCTAssertEqual(aBytes.last!, 40 * aBytes.first!)
    }
}

// The checks every registered plugin gets (the registry-wide tests above, and the
// toy plugins of ToyPluginTests.swift, which show a new plugin gets them too).

/// Input and every parameter gradient against finite differences.
func checkGradients(_ name: String, _ variant: [String: OptionValue]) throws {
    let (m, ps) = try buildMixer(name, variant)
    randomizeParameters(ps, seed: 9)
    var checker = GradientChecker()
    checker.maxCoordinates = 20
    let report = checker.check(layer: m, set: ps, B: 2, L: 7, inputScale: 1, pass: trainPass)
    XCTAssertTrue(report.passed, "\(name) \(variant): \(report)")
    XCTAssertEqual(Set(report.checked.keys), Set(["input"] + m.parameters.map(\.name)), "\(name) \(variant)")
}

/// Changing the input at position t changes no output before t.
func checkCausality(_ name: String, _ variant: [String: OptionValue]) throws {
    let (m, ps) = try buildMixer(name, variant)
    randomizeParameters(ps, seed: 4)
    unfreezeRouting(m)
    if let moe = m as? MoE, !moe.router.isCausal { return }   // expert choice: tested to refuse generation
    let B = 2, L = 9, D = 8
    var rng = RNG(seed: 5)
    var x = (0..<B * L * D).map { _ in rng.normal() }
    var y0 = [Float](repeating: 0, count: B * L * D), y1 = y0
    x.withUnsafeBufferPointer { xb in y0.withUnsafeMutableBufferPointer { m.forward(xb.baseAddress!, $0.baseAddress!, B: B, L: L, pass: evalPass) } }
    let t = 5
    for b in 0..<B { for c in 0..<D { x[(b * L + t) * D + c] += 1 } }
    x.withUnsafeBufferPointer { xb in y1.withUnsafeMutableBufferPointer { m.forward(xb.baseAddress!, $0.baseAddress!, B: B, L: L, pass: evalPass) } }
    for b in 0..<B {
        for l in 0..<L {
            let changed = (0..<D).contains { y0[(b * L + l) * D + $0] != y1[(b * L + l) * D + $0] }
            if l < t { XCTAssertFalse(changed, "\(name) \(variant): output \(l) changed by input \(t)") }
            if l == t { XCTAssertTrue(changed, "\(name) \(variant): output \(t) ignores its own input") }
        }
    }
}

/// A seeded random input [B, L, D] and the mixer's parallel forward of it in an
/// evaluation pass: the reference that prefill and step are compared with.
func randomInputAndForward(_ m: Mixer, B: Int, L: Int, D: Int, seed: UInt64) -> (x: [Float], y: [Float]) {
    var rng = RNG(seed: seed)
    let x = (0..<B * L * D).map { _ in rng.normal() }
    var y = [Float](repeating: 0, count: B * L * D)
    x.withUnsafeBufferPointer { xb in y.withUnsafeMutableBufferPointer { m.forward(xb.baseAddress!, $0.baseAddress!, B: B, L: L, pass: evalPass) } }
    return (x, y)
}

/// prefill(prompt) then step() for each further token equals the parallel forward.
func checkRecurrentParity(_ name: String, _ variant: [String: OptionValue]) throws {
    for (L, prompt) in [(1, 0), (2, 0), (3, 1), (17, 5), (300, 7)] {
        let (m, ps) = try buildMixer(name, variant)
        randomizeParameters(ps, seed: 6)
        unfreezeRouting(m)
        if let moe = m as? MoE, !moe.router.isCausal {
            XCTAssertThrowsError(try m.makeAnyState(batch: 1, maxLength: 4))
            continue
        }
        let B = 2, D = 8
        let (x, full) = randomInputAndForward(m, B: B, L: L, D: D, seed: 7)
        let state = try m.makeAnyState(batch: B, maxLength: L)
        var got = [Float](repeating: 0, count: B * L * D)
        if prompt > 0 {
            var px = [Float](repeating: 0, count: B * prompt * D), py = px
            for b in 0..<B { for i in 0..<(prompt * D) { px[b * prompt * D + i] = x[b * L * D + i] } }
            var promptTokens = [Int32](repeating: 0, count: B * prompt)
            for b in 0..<B { for t in 0..<prompt { promptTokens[b * prompt + t] = testTokens[b * L + t] } }
            promptTokens.withUnsafeBufferPointer { tb in
                let pass = Pass.generate().with(tokens: tb.baseAddress!)
                px.withUnsafeBufferPointer { pb in py.withUnsafeMutableBufferPointer { m.prefill(pb.baseAddress!, $0.baseAddress!, B: B, L: prompt, anyState: state, pass: pass) } }
            }
            for b in 0..<B { for i in 0..<(prompt * D) { got[b * L * D + i] = py[b * prompt * D + i] } }
        }
        var xs = [Float](repeating: 0, count: B * D), ys = xs
        let stepTokens = UnsafeMutablePointer<Int32>.allocate(capacity: B)
        defer { stepTokens.deallocate() }
        for t in prompt..<L {
            for b in 0..<B { for c in 0..<D { xs[b * D + c] = x[(b * L + t) * D + c] } }
            // token ids of this position, for routers that read them
            for b in 0..<B { stepTokens[b] = testTokens[b * L + t] }
            let pass = Pass.generate().with(tokens: UnsafePointer(stepTokens))
            xs.withUnsafeBufferPointer { xb in ys.withUnsafeMutableBufferPointer { m.step(xb.baseAddress!, $0.baseAddress!, B: B, anyState: state, pass: pass) } }
            for b in 0..<B { for c in 0..<D { got[(b * L + t) * D + c] = ys[b * D + c] } }
        }
        let scale = max(1e-3, full.map { abs($0) }.max()!)
        var worst: Float = 0
        for i in 0..<full.count { worst = max(worst, abs(full[i] - got[i]) / scale) }
        XCTAssertLessThan(worst, 1e-4, "\(name) \(variant) L=\(L) prompt=\(prompt)")
    }
}
