import XCTest
@testable import BMCore
@testable import BMLayers
@testable import BMMixers
@testable import BMSpec
@testable import BMExperiments

/// Hybrid layouts with shared layers (Zamba-style): layers of a `shared` group use the
/// parameters of the group's first layer — one set in the slab and the checkpoint, the
/// gradient of every use added into it — while each keeps its own activations and
/// generation state.
final class SharedLayerTests: XCTestCase {
    override func setUp() { XCTAssertNoThrow(try BLAS.setup()) }

    func spec(_ layers: String) throws -> ExperimentSpec {
        try ExperimentSpec.parse(tinySpec, file: "tiny.yaml", overrides: ["model.layers=\(layers)"])
    }

    let sharedAttention = "[mamba, {mixer: attention, shared: a}, mlp, {mixer: attention, shared: a}]"
    let unshared = "[mamba, attention, mlp, attention]"

    /// One set of parameters, under the first layer's names; counted once, computed twice.
    func testOneSetOfParametersCountedOnceComputedAtEveryUse() throws {
        let s = try spec(sharedAttention), u = try spec(unshared)
        XCTAssertEqual(s.model.layers.map(\.shared), [nil, "a", nil, "a"])
        let m = try ModelBuilder.build(s), mu = try ModelBuilder.build(u)
        let names = m.params.params.map(\.name)
        XCTAssertTrue(names.contains { $0.hasPrefix("decoder.layers.1.mixer.") })
        XCTAssertFalse(names.contains { $0.hasPrefix("decoder.layers.3.mixer.") })
        XCTAssertTrue(names.contains("decoder.layers.3.norm.weight"), "each block keeps its own norm")
        let attention = mu.params.params.filter { $0.name.hasPrefix("decoder.layers.3.mixer.") }.reduce(0) { $0 + $1.count }
        XCTAssertGreaterThan(attention, 0)
        XCTAssertEqual(m.params.parameterCount, mu.params.parameterCount - attention)
        let c = ModelBuilder.counts(m, seqLen: 16), cu = ModelBuilder.counts(mu, seqLen: 16)
        XCTAssertEqual(c.total, cu.total - attention)
        XCTAssertEqual(c.active, cu.active - attention)
        XCTAssertEqual(c.flopsPerToken, cu.flopsPerToken, "both uses compute")
        XCTAssertTrue(try s.resolvedYAML().contains("{mixer: attention, shared: a, "))
        let again = try ExperimentSpec.parse(try s.resolvedYAML(), file: "resolved").model.layers
        XCTAssertEqual(again.map(\.resolved), s.model.layers.map(\.resolved))
        XCTAssertEqual(again.map(\.shared), s.model.layers.map(\.shared))
    }

    /// The loss's gradient with respect to every parameter, a shared one included (the
    /// sum of its uses' gradients), against central differences.
    func testGradientsOfSharedLayers() throws {
        for layers in [sharedAttention, "[{mixer: mamba, shared: m}, mlp, {mixer: mamba, shared: m}, mlp]"] {
            let model = try ModelBuilder.build(try spec(layers))
            var rng = RNG(seed: 5)
            for p in model.params.params { for i in 0..<p.count { p.w[i] += 0.1 * rng.normal() } }
            let B = 2, L = 6
            let tokens = (0..<B * L).map { _ in Int32(rng.below(32)) }
            let targets = (0..<B * L).map { _ in Int32(rng.below(32)) }
            var checker = GradientChecker()
            checker.maxCoordinates = 8
            let shared = model.params.params.filter { $0.name.hasPrefix("decoder.layers.\(layers.hasPrefix("[{") ? 0 : 1).mixer.") }
            XCTAssertFalse(shared.isEmpty)
            let report = checker.check(model: model, tokens: tokens, targets: targets, B: B, L: L)
            XCTAssertTrue(report.passed, "\(layers): \(report)")
            XCTAssertEqual(report.checked.count, model.params.params.count)
        }
    }

    /// Generation: each use of a shared layer keeps its own state (conv and SSM state,
    /// KV cache), and the recurrent logits are the parallel forward's.
    func testGenerationOfSharedLayersMatchesTheParallelForward() throws {
        for layers in [sharedAttention, "[{mixer: mamba, shared: m}, moe, {mixer: mamba, shared: m}, moe]"] {
            let model = try ModelBuilder.build(try spec(layers))
            var rng = RNG(seed: 6)
            let seq = (0..<12).map { _ in Int32(rng.below(32)) }
            model.forward(tokens: seq, targets: [Int32](repeating: 0, count: seq.count), B: 1, L: seq.count, pass: .eval())
            let ref = Array(UnsafeBufferPointer(start: model.lastLogits, count: seq.count * 32))
            let gen = try Generator(model: model, maxLength: 16)
            var worst: Float = 0
            var got = Array(UnsafeBufferPointer(start: gen.prefill(Array(seq.prefix(5))), count: 32))
            for v in 0..<32 { worst = max(worst, abs(got[v] - ref[4 * 32 + v])) }
            for t in 5..<seq.count {
                got = Array(UnsafeBufferPointer(start: gen.step(seq[t]), count: 32))
                for v in 0..<32 { worst = max(worst, abs(got[v] - ref[t * 32 + v])) }
            }
            XCTAssertLessThan(worst, 1e-4, layers)
        }
    }

    /// Layers of one group must be the same mixer with the same options; the error names both layers.
    func testAGroupOfDifferentLayersIsRefused() throws {
        XCTAssertThrowsError(try spec("[{mixer: mamba, shared: x}, {mixer: attention, shared: x}]")) { e in
            XCTAssertTrue("\(e)".contains("model.layers[1]") && "\(e)".contains("model.layers[0]") && "\(e)".contains("same mixer"), "\(e)")
        }
        XCTAssertThrowsError(try spec("[{mixer: mamba, shared: x}, {mixer: mamba, shared: x, d_state: 8}]")) { e in
            XCTAssertTrue("\(e)".contains("option d_state differs"), "\(e)")
        }
        XCTAssertThrowsError(try spec("[{mixer: mamba, shared: [x]}]")) { e in
            XCTAssertTrue("\(e)".contains("model.layers[0].shared must be a name"), "\(e)")
        }
        // one balancing bias cannot follow the loads of several uses
        let biased = try spec("[mamba, {mixer: moe, shared: m, router: {name: lossfree}}, mamba, {mixer: moe, shared: m, router: {name: lossfree}}]")
        XCTAssertThrowsError(try ModelBuilder.build(biased, allocate: false)) { e in
            XCTAssertTrue("\(e)".contains("model.layers[3]") && "\(e)".contains("balancing bias"), "\(e)")
        }
        XCTAssertNoThrow(try ModelBuilder.build(try spec("[mamba, {mixer: moe, shared: m}, mamba, {mixer: moe, shared: m}]"), allocate: false))
    }
}
