import XCTest
import Foundation
@testable import BMCore
@testable import BMLayers
@testable import BMMixers
@testable import BMStorage
@testable import BMTrain
@testable import BMExperiments
@testable import BMSpec
@testable import BMData

/// Kept checkpoints (train.keep_checkpoints) and the router logits read from them:
/// the input of the Sinkhorn study on real logits.
final class RouterLogitsTests: XCTestCase {
    override func setUp() { XCTAssertNoThrow(try BLAS.setup()) }

    func train(_ dir: String, _ overrides: [String]) throws {
        let run = try ExperimentRun(spec: try ExperimentSpec.parse(tinySpec, file: "tiny.yaml", overrides: overrides), outDir: dir, resume: false)
        run.printProgress = false
        _ = try run.run()
    }

    func weights(_ path: String) throws -> [Float] {
        let (_, model, _) = try OpenedCheckpoint.model(path)
        return Array(UnsafeBufferPointer(start: model.params.values, count: model.params.count))
    }

    func testKeptCheckpointsHoldTheWeightsOfTheirStep() throws {
        let dir = try tempDir(self) + "/run"
        try train(dir, ["train.keep_checkpoints=true", "train.steps=8", "train.checkpoint_every=4"])
        let kept = try FileManager.default.contentsOfDirectory(atPath: dir + "/checkpoints").sorted()
        XCTAssertEqual(kept, ["step-000000.h5", "step-000004.h5", "step-000008.h5"])
        // step 0: the initial weights (a fresh model of the same spec); the last: checkpoint.h5's
        let spec = try ExperimentSpec.parse(tinySpec, file: "tiny.yaml", overrides: ["train.keep_checkpoints=true", "train.steps=8"])
        let fresh = try ModelBuilder.build(spec)
        XCTAssertEqual(try weights(dir + "/checkpoints/step-000000.h5"), Array(UnsafeBufferPointer(start: fresh.params.values, count: fresh.params.count)))
        XCTAssertEqual(try weights(dir + "/checkpoints/step-000008.h5"), try weights(dir + "/checkpoint.h5"))
        XCTAssertNotEqual(try weights(dir + "/checkpoints/step-000004.h5"), try weights(dir + "/checkpoint.h5"))
        XCTAssertEqual(try OpenedCheckpoint.model(dir + "/checkpoints/step-000004.h5").state.step, 4)
        // keeping checkpoints does not change training
        let plain = try tempDir(self) + "/plain"
        try train(plain, ["train.steps=8", "train.checkpoint_every=4"])
        XCTAssertEqual(try readColumn(plain + "/metrics.h5", "train/loss").map(\.bitPattern),
                       try readColumn(dir + "/metrics.h5", "train/loss").map(\.bitPattern))
        XCTAssertFalse(FileManager.default.fileExists(atPath: plain + "/checkpoints"))
    }

    /// A run stopped and resumed keeps every step once, without rewriting the ones it
    /// has; a new run refuses a directory that holds kept checkpoints; starting over
    /// removes them.
    func testKeptCheckpointsAcrossResumeAndStartOver() throws {
        let dir = try tempDir(self) + "/run"
        let o = ["train.keep_checkpoints=true", "train.steps=8", "train.checkpoint_every=4"]
        let spec = try ExperimentSpec.parse(tinySpec, file: "tiny.yaml", overrides: o)
        let first = try ExperimentRun(spec: spec, outDir: dir, resume: false)
        first.printProgress = false
        first.stopAfter = 5
        _ = try first.run()
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir + "/checkpoints").sorted(), ["step-000000.h5", "step-000004.h5"])
        let step0 = try Data(contentsOf: URL(fileURLWithPath: dir + "/checkpoints/step-000000.h5"))
        let again = try ExperimentRun(spec: spec, outDir: dir, resume: true)
        again.printProgress = false
        _ = try again.run()
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir + "/checkpoints").sorted(), ["step-000000.h5", "step-000004.h5", "step-000008.h5"])
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: dir + "/checkpoints/step-000000.h5")), step0)
        // the kept step-4 weights are those of a run that stopped at step 4
        let four = try tempDir(self) + "/four"
        try train(four, ["train.steps=4", "train.checkpoint_every=4"])
        XCTAssertEqual(try weights(dir + "/checkpoints/step-000004.h5"), try weights(four + "/checkpoint.h5"))
        // a new run (no --resume) refuses a directory with kept checkpoints
        try FileManager.default.removeItem(atPath: dir + "/metrics.h5")
        try FileManager.default.removeItem(atPath: dir + "/checkpoint.h5")
        XCTAssertThrowsError(try ExperimentRun(spec: spec, outDir: dir, resume: false)) { XCTAssertTrue("\($0)".contains("checkpoints/"), "\($0)") }
        // --resume with no checkpoint.h5 but spec.yaml: starts over, and the old kept files go
        let over = try ExperimentRun(spec: spec, outDir: dir, resume: true)
        over.printProgress = false
        over.stopAfter = 1
        _ = try over.run()
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir + "/checkpoints").sorted(), ["step-000000.h5"])
        // the key does not make a finished run's spec differ
        XCTAssertNil(try SpecDiff.firstDifference(stored: try String(contentsOfFile: four + "/spec.yaml", encoding: .utf8),
                                                  now: try ExperimentSpec.parse(tinySpec, file: "tiny.yaml", overrides: ["train.steps=4", "train.checkpoint_every=4", "train.keep_checkpoints=true"])))
    }

    func testRouterLogitsAreTheMoELayersLogits() throws {
        let dir = try tempDir(self)
        try train(dir + "/run", ["train.steps=4"])
        let (spec, step, layers) = try RouterLogits.of(checkpoint: dir + "/run/checkpoint.h5", batches: 2)
        XCTAssertEqual(step, 4)
        let B = spec.train.batch, L = spec.train.seqLen
        XCTAssertEqual(layers.map(\.layer), [1, 3])                    // tinySpec: mamba, moe, attention, moe
        for l in layers { XCTAssertEqual(l.T, 2 * B * L); XCTAssertEqual(l.E, 4); XCTAssertEqual(l.values.count, l.T * l.E) }
        // the logits are x·Wrᵀ + b of the layer's input: evaluation routes every token to their argmax
        let (_, model, _) = try OpenedCheckpoint.model(dir + "/run/checkpoint.h5")
        let ds = try Dataset(spec)
        let one = RouterLogits.compute(model: model, batches: 1, B: B, L: L) { i, inp, tgt in ds.evalBatch(i, of: 1, B: B, L: L, inputs: inp, targets: tgt) }
        XCTAssertEqual(one[0].values, Array(layers[0].values.prefix(B * L * 4)))   // batch 0 comes first
        let moe = try XCTUnwrap(model.blocks[1].mixer as? MoE)
        let load = moe.stats.load
        var counts = [Double](repeating: 0, count: 4)
        let lg = one[0].values
        for t in 0..<(B * L) { counts[(0..<4).max { lg[t * 4 + $0] < lg[t * 4 + $1] }!] += 1 }
        XCTAssertEqual(load.map(Double.init), counts)
        // written where bmlab sinkhorn --logits reads them
        try RouterLogits.write(layers, to: dir + "/logits.h5", checkpoint: "x", step: step, batches: 2)
        let f = try H5File(path: dir + "/logits.h5", mode: .readOnly)
        defer { f.close() }
        XCTAssertEqual(try f.group("router_logits").children().sorted(), ["layer_1", "layer_3"])
        XCTAssertEqual(try f.dataset("router_logits/layer_3").shape, [2 * B * L, 4])
        XCTAssertEqual(try f.dataset("router_logits/layer_3").readFloats(), layers[1].values)
        XCTAssertEqual(try f.intAttribute("step"), 4)
        // a model without a learned router: a clear error and no file
        XCTAssertThrowsError(try RouterLogits.write([], to: dir + "/none.h5", checkpoint: "dense.h5", step: 0, batches: 1)) {
            XCTAssertTrue("\($0)".contains("no learned router"), "\($0)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/none.h5"))
    }

    /// The load, its entropy and the router entropy a layer's logits give, by hand:
    /// choices 0, 0, 1, 0 (load ¾, ¼); entropies of softmax rows written out.
    func testRoutingSummary() {
        let l = RouterLogits.Layer(layer: 1, values: [1, 0, 1, 0, 0, 1, 2, 0], T: 4, E: 2)
        let s = l.summary
        XCTAssertEqual(s.load, [0.75, 0.25])
        XCTAssertEqual(s.loadEntropy, -(0.75 * log(0.75) + 0.25 * log(0.25)) / log(2), accuracy: 1e-12)
        func h(_ a: Double, _ b: Double) -> Double {
            let p = exp(a) / (exp(a) + exp(b)), q = 1 - p
            return -(p * log(p) + q * log(q))
        }
        XCTAssertEqual(s.routerEntropy, (3 * h(1, 0) + h(2, 0)) / 4, accuracy: 1e-12)
        // one expert takes every token: load entropy 0
        XCTAssertEqual(RouterLogits.Layer(layer: 0, values: [5, 0, 0, 5, 0, 0], T: 2, E: 3).summary.loadEntropy, 0, accuracy: 1e-12)
    }
}
