import XCTest
import Foundation
@testable import BMCore
@testable import BMStorage
@testable import BMExperiments

/// issue: a 2-layer Mamba model reaches ≥ 90 % accuracy on MQAR (seq 64, 4 pairs,
/// vocab 64) within 3 minutes of training inside the test suite. The spec
/// (Experiments/mqar-mamba.yaml: 2,000 steps of 64 sequences, ~2.5 minutes here) was
/// chosen to pass with a margin for every seed tried (97–99.9 % for seeds 1–5), not for
/// one lucky trajectory, so it survives numerical changes to the kernels and thread
/// counts. The accuracy is measured on 256 held-out sequences (1,024 queries) from a
/// generator the training data never uses.
final class MQARTests: XCTestCase {
    override func setUp() { XCTAssertNoThrow(try BLAS.setup()) }

    func testTwoLayerMambaLearnsMQAR() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let spec = try ExperimentSpec.load(path: root.appendingPathComponent("Experiments/mqar-mamba.yaml").path)
        XCTAssertEqual(spec.model.layers.map(\.mixer), ["mamba", "mamba"])
        XCTAssertEqual([spec.train.seqLen, spec.data.numPairs, spec.vocabSize], [64, 4, 64])
        XCTAssertEqual(spec.model.dModel, 64)
        let dir = try tempDir(self) + "/mqar"
        let run = try ExperimentRun(spec: spec, outDir: dir, resume: false)
        run.printProgress = false
        let s = try run.run()
        let acc = try XCTUnwrap(s.evalMetric)
        print("MQAR: accuracy \(acc) after \(s.steps) steps, \(Int(s.seconds)) s of training")
        XCTAssertGreaterThanOrEqual(acc, 0.9)
        let curve = try readColumn(dir + "/metrics.h5", "eval/metric")
        XCTAssertLessThan(curve.first!, 0.1)                 // it starts at chance
    }
}
