import XCTest
import BMTestSupport
import Foundation
@testable import BMCore
@testable import BMStorage
@testable import BMExperiments

/// The real thing: `bmlab train` killed with SIGKILL between checkpoints and
/// rerun with --resume writes exactly the metrics of an uninterrupted run.
final class KillResumeTests: XCTestCase {
    var bmlab: String { BMLabProcess.path }
    func launch(_ args: [String]) throws -> Process { try BMLabProcess.launch(args) }
    /// Runs bmlab to completion; returns its standard output (or error) and exit status.
    func capture(_ args: [String], stderr: Bool) throws -> (String, Int32) {
        let r = try BMLabProcess.run(args)
        return (stderr ? r.err : r.out, r.status)
    }

    func testSIGKILLThenResumeEqualsUninterrupted() throws {
        try BMLabProcess.require()
        let dir = try tempDir(self)
        let spec = dir + "/kill.yaml"
        try tinySpec.replacingOccurrences(of: "steps: 12", with: "steps: 3000")
            .replacingOccurrences(of: "eval_every: 4", with: "eval_every: 500")
            .replacingOccurrences(of: "checkpoint_every: 4", with: "checkpoint_every: 200")
            .write(toFile: spec, atomically: true, encoding: .utf8)
        // Uninterrupted.
        let full = try launch(["train", spec, "--out", dir + "/full"])
        full.waitUntilExit()
        XCTAssertEqual(full.terminationStatus, 0)
        // Killed after its first checkpoint (step 200), once it has logged step 250: between
        // checkpoints, so the resume replays steps the killed run had done.
        let log = dir + "/cut.log"
        let cut = try BMLabProcess.launch(["train", spec, "--out", dir + "/cut"], log: log)
        BMLabProcess.wait(for: "the run to log step 250 of 3000") {
            !cut.isRunning || ((try? String(contentsOfFile: log, encoding: .utf8))?.contains("step 250/3000") ?? false)
        }
        XCTAssertTrue(cut.isRunning, "the run ended before it could be killed: \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
        kill(cut.processIdentifier, SIGKILL)
        cut.waitUntilExit()
        XCTAssertEqual(cut.terminationReason, .uncaughtSignal)
        let killedRows = try readColumn(dir + "/cut/metrics.h5", "train/loss").count      // readable after a kill
        XCTAssertGreaterThan(killedRows, 0)
        XCTAssertLessThan(killedRows, 3000)
        XCTAssertGreaterThanOrEqual(try OpenedCheckpoint.model(dir + "/cut/checkpoint.h5").state.step, 200)
        // Resume to the end.
        let resumed = try launch(["train", spec, "--out", dir + "/cut", "--resume"])
        resumed.waitUntilExit()
        XCTAssertEqual(resumed.terminationStatus, 0)
        for col in ["train/step", "train/loss", "train/grad_norm", "eval/loss", "router/layer_1/load", "router/layer_3/entropy"] {
            let a = try readColumn(dir + "/full/metrics.h5", col), b = try readColumn(dir + "/cut/metrics.h5", col)
            XCTAssertEqual(a.count, b.count, col)
            XCTAssertEqual(a.map(\.bitPattern), b.map(\.bitPattern), col)
        }
    }

    /// Bad input through the command line: a one-paragraph error, exit code 2, nothing written.
    func testCommandLineErrorsExitTwoAndWriteNothing() throws {
        try BMLabProcess.require()
        let dir = try tempDir(self)
        let spec = dir + "/bad.yaml"
        try tinySpec.replacingOccurrences(of: "d_model: 16", with: "d_modl: 16").write(toFile: spec, atomically: true, encoding: .utf8)
        let (msg, status) = try capture(["train", spec, "--out", dir + "/out"], stderr: true)
        XCTAssertEqual(status, 2)
        XCTAssertTrue(msg.contains("bad.yaml:3: unknown key 'model.d_modl' (did you mean 'd_model'?)"), msg)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/out"))
    }

    /// `bmlab sweep --dry-run` lists the runs; `--workers 2` runs them in two worker
    /// processes and collects sweep.h5; a rerun skips what is finished.
    func testSweepThroughTheCommandLine() throws {
        try BMLabProcess.require()
        let dir = try tempDir(self)
        try (tinySpec.replacingOccurrences(of: "steps: 12", with: "steps: 6") + "\nsweep:\n  axes:\n    train.seed: [1, 2, 3]\n")
            .write(toFile: dir + "/s.yaml", atomically: true, encoding: .utf8)
        func bm(_ args: [String]) throws -> (String, Int32) { try capture(args, stderr: false) }
        let (dry, s0) = try bm(["sweep", dir + "/s.yaml", "--dry-run"])
        XCTAssertEqual(s0, 0)
        XCTAssertEqual(dry, "3 runs (axes: train.seed):\n  0  train.seed=1\n  1  train.seed=2\n  2  train.seed=3\n")
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/out"))
        let (out, s1) = try bm(["sweep", dir + "/s.yaml", "--workers", "2", "--out", dir + "/out"])
        XCTAssertEqual(s1, 0, out)
        XCTAssertTrue(out.contains("2 worker(s) × 1 BLAS thread(s)"), out)
        let f = try H5File(path: dir + "/out/sweep.h5", mode: .readOnly)
        XCTAssertEqual(try f.dataset("ok").readInt64s(), [1, 1, 1])
        f.close()
        let (again, s2) = try bm(["sweep", dir + "/s.yaml", "--workers", "2", "--out", dir + "/out"])
        XCTAssertEqual(s2, 0)
        XCTAssertTrue(again.contains("3 of 3 runs already finished"), again)
    }
}
