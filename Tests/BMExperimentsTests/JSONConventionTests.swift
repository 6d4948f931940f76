import XCTest
import BMTestSupport
import Foundation
@testable import BMCore
@testable import BMExperiments
@testable import BMSweeps

/// One JSON convention (snake_case keys, the HDF5 names' style) for files and --json
/// output; result.json files written before it (camelCase) still read.
final class JSONConventionTests: XCTestCase {
    func testRunResultIsSnakeCaseAndOldFilesStillRead() throws {
        var r = RunResult(index: 3, name: "train.seed=1", status: "ok")
        r.valLoss = 0.25; r.tokensPerSecond = 1000; r.parametersTotal = 42
        let text = try JSON.text(r)
        XCTAssertTrue(text.contains("\"val_loss\":0.25") && text.contains("\"tokens_per_second\":1000") && text.contains("\"parameters_total\":42"), text)
        XCTAssertFalse(text.contains("valLoss"), text)
        let back = try JSON.decoder().decode(RunResult.self, from: Data(text.utf8))
        XCTAssertEqual(back.valLoss, 0.25); XCTAssertEqual(back.parametersTotal, 42)
        let old = #"{"index": 3, "name": "x", "status": "ok", "valLoss": 0.5, "tokensPerSecond": 7, "parametersActive": 9}"#
        let o = try JSON.decoder().decode(RunResult.self, from: Data(old.utf8))
        XCTAssertEqual([o.valLoss, o.tokensPerSecond], [0.5, 7]); XCTAssertEqual(o.parametersActive, 9)
        XCTAssertEqual(JSON.snakeCase("blasOpenblasThreads"), "blas_openblas_threads")
        XCTAssertEqual(JSON.snakeCase("cpuAvx512"), "cpu_avx512")
    }

    /// `bmlab doctor` and `bmlab doctor --json` name every fact the same way, and numbers
    /// are numbers (threads an integer, not a string).
    func testDoctorTextAndJSONAgree() throws {
        try BMLabProcess.require()
        let text = try BMLabProcess.run(["doctor", "--threads", "1"])
        let json = try BMLabProcess.run(["doctor", "--threads", "1", "--json"])
        XCTAssertEqual(text.status, 0, text.err); XCTAssertEqual(json.status, 0, json.err)
        let obj = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(json.out.utf8)) as? [String: Any])
        let keys = text.out.split(separator: "\n").compactMap { $0.split(separator: ":", maxSplits: 1).first.map(String.init) }
        XCTAssertEqual(Set(keys), Set(obj.keys))
        XCTAssertTrue(keys.contains("blas_core") && keys.contains("blas_runnable_cores"), "\(keys)")
        XCTAssertEqual(obj["blas_threads"] as? Int, 1)
        XCTAssertNotNil(obj["sgemm_gflops"] as? Double)
        XCTAssertNotNil(obj["sgemm_openblas_threads_gflops"] as? Double)
        XCTAssertNotNil(obj["scan_kernel"] as? String)
        XCTAssertNotNil(obj["blas_runnable_cores"] as? [String])
    }
}
