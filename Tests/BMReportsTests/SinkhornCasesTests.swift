import XCTest
import Foundation
@testable import BMCore
@testable import BMExperiments
@testable import BMStudies
@testable import BMReports
@testable import BMSpec

/// `bmlab sinkhorn --checkpoints DIR`: the kept checkpoints of a sweep's runs become
/// one real-logit case per (run, step, MoE layer), labelled by configuration and seed.
final class SinkhornCasesTests: XCTestCase {
    override func setUp() { XCTAssertNoThrow(try BLAS.setup()) }

    func testKeptCheckpointsOfASweepBecomeCases() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("bmlab-\(UUID().uuidString)").path
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        let yaml = """
        name: c
        model:
          d_model: 16
          layers: [mamba, moe, mamba, moe]
          defaults: {mamba: {d_state: 4}, moe: {experts: 4, ffn: 16}}
        data: {kind: mqar, vocab_size: 32, num_pairs: 2}
        train: {steps: 4, batch: 2, seq_len: 16, eval_every: 2, eval_batches: 1, checkpoint_every: 2, keep_checkpoints: true}
        """
        for (router, seed) in [("sinkhorn", 1), ("sinkhorn", 2), ("topk", 1)] {
            let spec = try ExperimentSpec.parse(yaml, file: "c.yaml", overrides: ["model.defaults.moe.router.name=\(router)", "train.seed=\(seed)"])
            let run = try ExperimentRun(spec: spec, outDir: "\(dir)/out/model.defaults.moe.router.name=\(router),train.seed=\(seed)", resume: false)
            run.printProgress = false
            _ = try run.run()
        }
        let cases = try SinkhornCases.load(under: dir + "/out", batches: 1)
        XCTAssertEqual(cases.count, 3 * 3 * 2)                           // runs × steps 0, 2, 4 × two MoE layers
        XCTAssertEqual(Set(cases.map(\.config)), ["name=sinkhorn", "name=topk"])
        XCTAssertEqual(Set(cases.map(\.step)), [0, 2, 4])
        XCTAssertEqual(Set(cases.map(\.layer)), [1, 3])
        XCTAssertEqual(Set(cases.filter { $0.config == "name=sinkhorn" }.map(\.seed)), [1, 2])
        for c in cases { XCTAssertEqual(c.T, 32); XCTAssertEqual(c.E, 4); XCTAssertEqual(c.values.count, 128) }
        // the same checkpoint read twice gives the same logits; training moves them
        let a = cases.filter { $0.config == "name=topk" && $0.layer == 1 }
        XCTAssertNotEqual(a.first { $0.step == 0 }!.values, a.first { $0.step == 4 }!.values)
        XCTAssertEqual(try SinkhornCases.load(under: dir + "/out", batches: 1).map(\.values), cases.map(\.values))
        // the study runs on them: one row per case and variant
        var study = SinkhornStudy()
        study.tokens = []
        XCTAssertEqual(study.run(cases: cases).count, cases.count * 2)
        // a directory without kept checkpoints says what to do
        try FileManager.default.createDirectory(atPath: dir + "/empty", withIntermediateDirectories: true)
        XCTAssertThrowsError(try SinkhornCases.load(under: dir + "/empty", batches: 1)) {
            XCTAssertTrue("\($0)".contains("keep_checkpoints"), "\($0)")
        }
        XCTAssertThrowsError(try SinkhornCases.load(under: dir + "/missing", batches: 1)) {
            XCTAssertTrue("\($0)".contains("no directory"), "\($0)")
        }
    }
}
