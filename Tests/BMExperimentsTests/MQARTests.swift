import XCTest
import Foundation
@testable import BMCore
@testable import BMStorage
@testable import BMExperiments

/// A 2-layer Mamba learns MQAR (seq 64, 4 pairs, vocab 64) to ≥ 90 % held-out accuracy
/// for two seeds: 1, the seed that failed on an Intel machine, and 2.
///
/// Experiments/mqar-mamba.yaml is the best recipe of the robustness study so far
/// (notebooks-md/mqar-robustness.md): 9 of 10 seeds ≥ 90 % with 2 threads here (seeds 1
/// and 2 at 97 % and 100 %), but not yet what every thread count and kernel gives; the
/// study and this test's seeds are issue #11's open part. The accuracy is measured on
/// 256 held-out sequences (1,024 queries) from a generator the training data never uses.
final class MQARTests: XCTestCase {
    override func setUp() { XCTAssertNoThrow(try BLAS.setup()) }

    func testTwoLayerMambaLearnsMQARForTwoSeeds() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let path = root.appendingPathComponent("Experiments/mqar-mamba.yaml").path
        for seed in [1, 2] {
            let spec = try ExperimentSpec.load(path: path, overrides: ["train.seed=\(seed)"])
            XCTAssertEqual(spec.model.layers.map(\.mixer), ["mamba", "mamba"])
            XCTAssertEqual([spec.train.seqLen, spec.data.numPairs, spec.vocabSize], [64, 4, 64])
            let dir = try tempDir(self) + "/mqar-\(seed)"
            let run = try ExperimentRun(spec: spec, outDir: dir, resume: false)
            run.printProgress = false
            let s = try run.run()
            let acc = try XCTUnwrap(s.evalMetric)
            print("MQAR seed \(seed): accuracy \(acc) after \(s.steps) steps, \(Int(s.seconds)) s of training, \(BLAS.threads) threads, \(BLAS.coreName)")
            XCTAssertGreaterThanOrEqual(acc, 0.9, "seed \(seed)")
            let curve = try readColumn(dir + "/metrics.h5", "eval/metric")
            XCTAssertLessThan(curve.first!, 0.1, "seed \(seed)")              // it starts at chance
        }
    }
}
