import XCTest
@testable import BMCore
@testable import BMLayers

/// One entry per layer kind to gradient-check. Later modules (mixers, routers)
/// add their registry entries to `GradientCases.all` in their own tests by the
/// same `(name, build)` shape, so iterating a registry is one loop.
struct LayerCase: @unchecked Sendable {
    let name: String
    /// Builds the layer on a fresh ParameterSet (finalised by the caller).
    let build: @Sendable (ParameterSet) -> SequenceLayer
    var B = 2, L = 5
    var inputScale: Float = 1
}

enum GradientCases {
    static let d = 8
    static let all: [LayerCase] = [
        LayerCase(name: "linear", build: { Linear($0, "lin", in: d, out: 6) }),
        LayerCase(name: "linear+bias", build: { Linear($0, "lin", in: d, out: 6, bias: true, init: .normal(std: 0.3)) }),
        LayerCase(name: "rmsnorm", build: { RMSNorm($0, "norm", width: d) }),
        LayerCase(name: "layernorm", build: { LayerNorm($0, "ln", width: d) }),
        LayerCase(name: "mlp-swiglu", build: { GatedMLP($0, "mlp", d: d, F: 12, activation: .swiglu, init: .normal(std: 0.3), outputInit: .normal(std: 0.3)) }),
        LayerCase(name: "mlp-geglu", build: { GatedMLP($0, "mlp", d: d, F: 12, activation: .geglu, init: .normal(std: 0.3), outputInit: .normal(std: 0.3)) }),
        LayerCase(name: "residual(rmsnorm, mlp)", build: { ps in
            ResidualBlock(norm: RMSNorm(ps, "n", width: d), mixer: GatedMLP(ps, "m", d: d, F: 12, init: .normal(std: 0.3), outputInit: .normal(std: 0.3)))
        }),
    ]
}

/// Makes norm weights non-trivial so their gradients are tested away from 1 / 0.
func perturbParameters(_ ps: ParameterSet, seed: UInt64) {
    var rng = RNG(seed: seed)
    for p in ps.params where p.name.hasSuffix("norm.weight") || p.name.contains("ln.") || p.name.hasSuffix(".bias") {
        for i in 0..<p.count { p.w[i] += 0.3 * rng.normal() }
    }
}

final class LayerGradientTests: XCTestCase {
    override func setUp() { XCTAssertNoThrow(try BLAS.setup()) }

    func testEveryLayerInputAndParameterGradients() {
        for c in GradientCases.all {
            let ps = ParameterSet()
            let layer = c.build(ps)
            ps.finalize(seed: 5)
            perturbParameters(ps, seed: 6)
            var checker = GradientChecker()
            checker.maxCoordinates = 40
            let report = checker.check(layer: layer, set: ps, B: c.B, L: c.L, inputScale: c.inputScale)
            XCTAssertTrue(report.passed, "\(c.name): \(report)")
            XCTAssertEqual(Set(report.checked.keys), Set(["input"] + layer.parameters.map(\.name)), c.name)
            for (k, v) in report.relativeL2 { XCTAssertLessThan(v, 1e-2, "\(c.name) \(k)") }
        }
    }

    /// The checker must catch a wrong backward; otherwise the test above proves nothing.
    func testCheckerRejectsAWrongGradient() {
        final class Wrong: SequenceLayer {
            let inner: Linear
            init(_ ps: ParameterSet) { inner = Linear(ps, "w", in: 4, out: 4, init: .normal(std: 0.5)) }
            var inWidth: Int { 4 }; var outWidth: Int { 4 }
            var parameters: [Param] { inner.parameters }
            func forward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, B: Int, L: Int, pass: Pass) { inner.forward(x, y, B: B, L: L, pass: pass) }
            func backward(_ dy: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>, B: Int, L: Int, pass: Pass) {
                inner.backward(dy, dx, B: B, L: L, pass: pass)
                for i in 0..<(B * L * 4) { dx[i] *= 1.05 }    // 5 % too large
            }
        }
        let ps = ParameterSet()
        let layer = Wrong(ps)
        ps.finalize(seed: 1)
        let report = GradientChecker().check(layer: layer, set: ps, B: 2, L: 3)
        XCTAssertFalse(report.passed)
        XCTAssertTrue(report.failures.allSatisfy { $0.tensor == "input" })
    }

    func testCrossEntropyWithIgnoreIndex() {
        let V = 7, T = 6
        var rng = RNG(seed: 2)
        let logits = (0..<T * V).map { _ in rng.normal() * 2 }
        let targets: [Int32] = [3, -1, 0, 6, -1, 2]
        let ce = CrossEntropy(vocab: V)
        // Reference loss by hand, in Double.
        var ref = 0.0
        for t in 0..<T where targets[t] >= 0 {
            let row = logits[t * V..<(t + 1) * V].map(Double.init)
            let m = row.max()!
            ref += log(row.map { exp($0 - m) }.reduce(0, +)) + m - row[Int(targets[t])]
        }
        ref /= 4
        let r = ce.forwardBackward(logits: logits, targets: targets, T: T, dlogits: nil)
        XCTAssertEqual(r.loss, ref, accuracy: 1e-6)
        XCTAssertEqual(r.counted, 4)
        // In training the gradient overwrites the logits in place: same loss.
        var inPlace = logits
        let r2 = inPlace.withUnsafeMutableBufferPointer {
            ce.forwardBackward(logits: $0.baseAddress!, targets: targets, T: T, dlogits: $0.baseAddress!)
        }
        XCTAssertEqual(r2.loss, ref, accuracy: 1e-6)
        for t in [1, 4] { XCTAssertEqual(inPlace[t * V..<(t + 1) * V].map { $0 }, [Float](repeating: 0, count: V)) }
        for t in [0, 2, 3, 5] { XCTAssertEqual(Double(inPlace[t * V..<(t + 1) * V].reduce(0, +)), 0, accuracy: 1e-6) }
        let report = GradientChecker().check(input: logits, params: [], set: nil, loss: { x in
            let l = ce.forwardBackward(logits: x, targets: targets, T: T, dlogits: nil).loss
            return (l, abs(l))
        }, gradient: { x, dx in
            _ = ce.forwardBackward(logits: x, targets: targets, T: T, dlogits: dx)
        })
        XCTAssertTrue(report.passed, "\(report)")
    }

    /// Embedding + tied head + the whole model: the loss's gradient for every parameter.
    func testLanguageModelGradients() {
        for norm in NormKind.allCases {
            for tied in [true, false] {
                let V = 11, D = 8, B = 2, L = 4
                let model = LanguageModel(vocab: V, width: D, layers: 2, finalNorm: norm, tiedHead: tied, embeddingStd: 0.5, seed: 3) { ps, name, _ in
                    GatedMLP(ps, name, d: D, F: 12, init: .normal(std: 0.3), outputInit: .normal(std: 0.3))
                }
                perturbParameters(model.params, seed: 4)
                var rng = RNG(seed: 8)
                let tokens = (0..<B * L).map { _ in Int32(rng.below(V)) }
                let targets = (0..<B * L).map { i in i == 3 ? Int32(-1) : Int32(rng.below(V)) }
                var checker = GradientChecker()
                checker.maxCoordinates = 16
                let report = checker.check(model: model, tokens: tokens, targets: targets, B: B, L: L)
                XCTAssertTrue(report.passed, "norm \(norm) tied \(tied): \(report)")
                XCTAssertEqual(report.checked.count, model.params.params.count)
            }
        }
    }

    func testParameterNamesAndShapesFollowZyphra() {
        let model = LanguageModel(vocab: 256, width: 16, layers: 2, finalNorm: .layernorm, tiedHead: true, embeddingStd: 0.02, seed: 1) { ps, name, _ in
            GatedMLP(ps, name, d: 16, F: 32)
        }
        let names = model.params.params.map { "\($0.name) \($0.shape)" }
        XCTAssertEqual(names, [
            "embedding.word_embeddings.weight [256, 16]",
            "decoder.layers.0.norm.weight [16]",
            "decoder.layers.0.mixer.linear_fc1.weight [64, 16]",
            "decoder.layers.0.mixer.linear_fc2.weight [16, 32]",
            "decoder.layers.1.norm.weight [16]",
            "decoder.layers.1.mixer.linear_fc1.weight [64, 16]",
            "decoder.layers.1.mixer.linear_fc2.weight [16, 32]",
            "decoder.final_layernorm.weight [16]",
            "decoder.final_layernorm.bias [16]",
        ])
        XCTAssertEqual(model.params.params.filter { !$0.decay }.map(\.name), [
            "embedding.word_embeddings.weight", "decoder.layers.0.norm.weight", "decoder.layers.1.norm.weight",
            "decoder.final_layernorm.weight", "decoder.final_layernorm.bias",
        ])
    }

    func testSameSeedSameInitialisation() {
        func build(_ seed: UInt64 = 77) -> LanguageModel {
            LanguageModel(vocab: 32, width: 16, layers: 2, finalNorm: .rmsnorm, tiedHead: true, embeddingStd: 0.02, seed: seed) { ps, name, _ in GatedMLP(ps, name, d: 16, F: 24) }
        }
        func weights(_ m: LanguageModel) -> [UInt32] { Array(UnsafeBufferPointer(start: m.params.values, count: m.params.count)).map(\.bitPattern) }
        let a = build(), b = build()
        XCTAssertEqual(weights(a), weights(b))
        XCTAssertNotEqual(weights(a), weights(build(78)))       // and the seed is what decides them
    }

    func testGradientClipping() {
        let ps = ParameterSet()
        let p = ps.declare("p", [3], init: .zeros)
        ps.finalize(seed: 0)
        p.g[0] = 3; p.g[1] = 4
        XCTAssertEqual(ps.gradNorm(), 5, accuracy: 1e-9)
        let before = ps.clipGradients(maxNorm: 1)
        XCTAssertEqual(before, 5, accuracy: 1e-9)
        XCTAssertEqual(ps.gradNorm(), 1, accuracy: 1e-5)
        XCTAssertEqual(Double(p.g[0]), 0.6, accuracy: 1e-5)
    }
}
