import XCTest
import Foundation
@testable import BMCore
@testable import BMLayers
@testable import BMStorage
@testable import BMTrain
import BMData

final class TrainTests: XCTestCase {
    override func setUp() { XCTAssertNoThrow(try BLAS.setup()) }

    func testAdamWMatchesHandComputedSteps() {
        let ps = ParameterSet()
        let w = ps.declare("w", [2], init: .constant(1))
        let n = ps.declare("n", [1], init: .constant(2), decay: false)
        ps.finalize(seed: 0)
        let opt = AdamW(ps, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0.5)
        var ref: [Double] = [1, 1, 2], m: [Double] = [0, 0, 0], v: [Double] = [0, 0, 0]
        let grads: [[Double]] = [[0.5, -1, 2], [0.1, 0.2, -0.3], [1, 1, 1]]
        for (t, g) in grads.enumerated() {
            w.g[0] = Float(g[0]); w.g[1] = Float(g[1]); n.g[0] = Float(g[2])
            opt.step(lr: 0.1)
            for i in 0..<3 {
                if i < 2 { ref[i] *= 1 - 0.1 * 0.5 }
                m[i] = 0.9 * m[i] + 0.1 * g[i]; v[i] = 0.99 * v[i] + 0.01 * g[i] * g[i]
                let mh = m[i] / (1 - pow(0.9, Double(t + 1))), vh = v[i] / (1 - pow(0.99, Double(t + 1)))
                ref[i] -= 0.1 * mh / (vh.squareRoot() + 1e-8)
            }
        }
        XCTAssertEqual(Double(w.w[0]), ref[0], accuracy: 1e-5)
        XCTAssertEqual(Double(w.w[1]), ref[1], accuracy: 1e-5)
        XCTAssertEqual(Double(n.w[0]), ref[2], accuracy: 1e-5)
    }

    /// The `ssm` group (A_log, Δ projection) moves at lr × ssm_lr_scale, the rest at lr:
    /// Adam's first step moves every weight by lr · sign(g) (m̂ / √v̂ = ±1).
    func testSSMGroupLearningRateScale() {
        let ps = ParameterSet()
        let a = ps.declare("a", [20], init: .constant(1), decay: false)
        let b = ps.declare("b", [20], init: .constant(1), decay: false, group: .ssm)
        ps.finalize(seed: 0)
        for i in 0..<20 { a.g[i] = Float(i + 1) * 0.3; b.g[i] = -Float(i + 1) * 0.7 }
        let opt = AdamW(ps, eps: 0, weightDecay: 0, ssmLRScale: 0.1)
        opt.step(lr: 0.01)
        for i in 0..<20 {
            XCTAssertEqual(a.w[i], 1 - 0.01, accuracy: 1e-6)
            XCTAssertEqual(b.w[i], 1 + 0.001, accuracy: 1e-6)
        }
    }

    func testAdamWVectorAndTailPathsAgree() {
        // 37 elements: two SIMD16 blocks and a scalar tail must give the same update per element.
        let ps = ParameterSet()
        let p = ps.declare("p", [37], init: .constant(0.5))
        ps.finalize(seed: 0)
        for i in 0..<37 { p.g[i] = 0.25 }
        AdamW(ps).step(lr: 0.01)
        // Adam's first step moves each weight by lr against its gradient's sign (m̂ = g,
        // v̂ = g²); weight decay, if any, moves it by at most lr × 0.1 × 0.5 more
        XCTAssertEqual(p.w[0], 0.49, accuracy: 1e-3)
        for i in 0..<37 { XCTAssertEqual(p.w[i].bitPattern, p.w[0].bitPattern, "element \(i)") }
    }

    /// Clipping inside AdamW (gradScale, the trainer's path) gives bitwise the update
    /// of clipping the gradients first and then stepping.
    func testAdamWGradScaleEqualsClippingFirst() {
        func make() -> (ParameterSet, Param) {
            let ps = ParameterSet()
            let p = ps.declare("p", [300], init: .normal(std: 1))
            ps.finalize(seed: 4)
            var rng = RNG(seed: 9)
            for i in 0..<300 { p.g[i] = rng.normal() * 3 }
            return (ps, p)
        }
        let (a, pa) = make(), (b, pb) = make()
        let norm = a.gradNorm()
        XCTAssertGreaterThan(norm, 1)                       // clipping is active
        _ = a.clipGradients(maxNorm: 1)
        AdamW(a).step(lr: 0.01)
        AdamW(b).step(lr: 0.01, gradScale: ParameterSet.clipScale(norm: b.gradNorm(), maxNorm: 1))
        for i in 0..<300 { XCTAssertEqual(pa.w[i].bitPattern, pb.w[i].bitPattern, "element \(i)") }
        XCTAssertEqual(ParameterSet.clipScale(norm: 0.5, maxNorm: 1), 1)
        XCTAssertEqual(ParameterSet.clipScale(norm: 5, maxNorm: 0), 1)   // clip 0 = off
    }

    func testSchedules() {
        let s = LRSchedule.cosine(lr: 1, warmup: 10, total: 110, minLR: 0.1)
        XCTAssertEqual(s.lr(at: 0), 0.1, accuracy: 1e-12)
        XCTAssertEqual(s.lr(at: 9), 1, accuracy: 1e-12)
        XCTAssertEqual(s.lr(at: 60), 0.55, accuracy: 1e-12)     // half-way down the cosine
        XCTAssertEqual(s.lr(at: 110), 0.1, accuracy: 1e-12)
        XCTAssertEqual(s.lr(at: 500), 0.1, accuracy: 1e-12)
        XCTAssertEqual(LRSchedule.constant(lr: 3e-4).lr(at: 1234), 3e-4)
    }

    func testNonFiniteLossStopsWithAClearError() {
        let model = LanguageModel(vocab: 8, width: 8, layers: 1, finalNorm: .rmsnorm, tiedHead: true, embeddingStd: 0.02, seed: 1) { ps, name, _ in GatedMLP(ps, name, d: 8, F: 8) }
        model.params.values[0] = .nan
        let trainer = Trainer(model: model, settings: TrainSettings(steps: 3, batch: 2, seqLen: 4, schedule: .constant(lr: 1e-3)))
        var src = MarkovSource(task: MarkovTask(vocab: 8, seed: 1), seed: 1)
        // The tied head reads every embedding row, so the NaN reaches the loss at step 0.
        XCTAssertThrowsError(try { for _ in 0..<3 { _ = try trainer.trainStep(&src) } }()) { e in
            XCTAssertTrue("\(e)".contains("at step"), "\(e)")
            XCTAssertEqual((e as? BMError)?.exitCode, 4)
        }
    }
}

/// Batches of a `MarkovTask` (the tests' smallest language to learn).
struct MarkovSource: BatchSource {
    let task: MarkovTask
    var rng: RNG
    init(task: MarkovTask, seed: UInt64) { self.task = task; rng = RNG(seed: seed) }
    mutating func next(inputs: UnsafeMutablePointer<Int32>, targets: UnsafeMutablePointer<Int32>, B: Int, L: Int) {
        task.batch(&rng, B: B, L: L, inputs: inputs, targets: targets)
    }
}
