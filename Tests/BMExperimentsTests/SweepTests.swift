import XCTest
import Foundation
@testable import BMCore
@testable import BMStorage
@testable import BMExperiments
@testable import BMSweeps

final class SweepTests: XCTestCase {
    /// sbatch's --time forms, and what is not one.
    func testSlurmTimeLimits() {
        for ok in ["60", "10080", "30:00", "01:00:00", "2-12", "2-12:30", "7-00:00:00", "UNLIMITED", "infinite"] {
            XCTAssertTrue(Slurm.isTimeLimit(ok), ok)
        }
        for bad in ["", "forever", "1:2:3:4", "-5", "2-", "1h", "1-2-3", "12:", "٣٠"] {
            XCTAssertFalse(Slurm.isTimeLimit(bad), bad)
        }
    }

    override func setUp() { XCTAssertNoThrow(try BLAS.setup()) }

    func writeSweep(_ dir: String, _ sweepSection: String, extra: String = "") throws -> String {
        try tinySpec.write(toFile: dir + "/base.yaml", atomically: true, encoding: .utf8)
        let path = dir + "/sweep.yaml"
        try "base: base.yaml\ntrain: {steps: 4, eval_every: 2, checkpoint_every: 2}\n\(extra)sweep:\n\(sweepSection)"
            .write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// The Slurm scripts of data-parallel work (docs/distributed.md): a sweep's array tasks
    /// and `train --slurm-ranks` ask for N tasks and launch them with srun through PMIx,
    /// ending every task when one fails, with the fixed reduction order; one rank stays a
    /// plain task.
    func testSlurmScriptsOfDistributedRuns() throws {
        let dir = try tempDir(self)
        let runner = SweepRunner(sweep: try Sweep(path: try writeSweep(dir, "  axes:\n    train.seed: [1, 2]\n")), outDir: dir + "/out")
        var o = Slurm.Options()
        o.ranks = 4; o.nodes = 2; o.cpus = 3
        let sweep = try String(contentsOfFile: try Slurm.writeScript(runner: runner, bmlab: "/x/bmlab", sweepArgs: ["s.yaml"], options: o), encoding: .utf8)
        for line in ["#SBATCH --ntasks=4", "#SBATCH --nodes=2", "#SBATCH --cpus-per-task=3", "#SBATCH --array=0-1",
                     "export OMPI_MCA_coll_tuned_allreduce_algorithm=1", "export OMPI_MCA_coll_tuned_use_dynamic_rules=1",
                     "exec srun --mpi=pmix --kill-on-bad-exit=1 --cpus-per-task=3 '/x/bmlab' sweep 's.yaml' --run-index \"$SLURM_ARRAY_TASK_ID\""] {
            XCTAssertTrue(sweep.contains(line), "\(line) in\n\(sweep)")
        }
        XCTAssertFalse(sweep.contains("OMPI_ALLOW_RUN_AS_ROOT"), "a cluster job does not run as root")
        o.ranks = 1; o.nodes = nil
        let single = try String(contentsOfFile: try Slurm.writeScript(runner: runner, bmlab: "/x/bmlab", sweepArgs: ["s.yaml"], options: o), encoding: .utf8)
        XCTAssertTrue(single.contains("#SBATCH --ntasks=1") && single.contains("exec '/x/bmlab' sweep") && !single.contains("srun"), single)
        o.ranks = 2
        let train = try String(contentsOfFile: try Slurm.writeTrainScript(bmlab: "/x/bmlab", trainArgs: ["spec.yaml", "train.steps=5"], outDir: dir + "/run", options: o), encoding: .utf8)
        for line in ["#SBATCH --ntasks=2", "#SBATCH --cpus-per-task=3", "#SBATCH --output=\(dir)/run/slurm-%j.out",
                     "exec srun --mpi=pmix --kill-on-bad-exit=1 --cpus-per-task=3 '/x/bmlab' train 'spec.yaml' 'train.steps=5' --out '\(dir)/run' --threads 3"] {
            XCTAssertTrue(train.contains(line), "\(line) in\n\(train)")
        }
    }

    func testAxisExpansionAndStableNames() throws {
        let dir = try tempDir(self)
        let s = try Sweep(path: try writeSweep(dir, """
          axes:
            train.seed: [1, 2]
            model.layers: [[mamba, moe], [attention, mlp]]
          zip:
            - {model.d_model: [16, 32], train.optimizer.lr: [2.0e-3, 1.0e-3]}
        """))
        XCTAssertEqual(s.runs.count, 8)                          // 2 × 2 × (zip of 2)
        XCTAssertEqual(s.axes, ["model.d_model", "model.layers", "train.optimizer.lr", "train.seed"])
        XCTAssertEqual(s.runs[0].name, "model.d_model=16,model.layers=mamba+moe,train.optimizer.lr=2.0e-3,train.seed=1")
        XCTAssertEqual(Set(s.runs.map(\.name)).count, 8)
        // zip: d_model and lr move together
        for r in s.runs { XCTAssertEqual(r.spec.model.dModel == 16, r.spec.train.lr == 2e-3, r.name) }
        XCTAssertEqual(s.runs.filter { $0.spec.model.layers.map(\.mixer) == ["attention", "mlp"] }.count, 4)
        XCTAssertEqual(Set(s.runs.map(\.spec.train.seed)), [1, 2])
        XCTAssertEqual(s.runs[0].spec.train.steps, 4)             // merged over the base
        // the same file gives the same names and order
        XCTAssertEqual(try Sweep(path: dir + "/sweep.yaml").runs.map(\.name), s.runs.map(\.name))
    }

    func testSweepErrors() throws {
        let dir = try tempDir(self)
        XCTAssertThrowsError(try Sweep(path: try writeSweep(dir, "  axis:\n    train.seed: [1]\n"))) {
            XCTAssertTrue("\($0)".contains("unknown key 'sweep.axis' (did you mean 'axes'?)"), "\($0)")
        }
        XCTAssertThrowsError(try Sweep(path: try writeSweep(dir, "  axes:\n    model.layers: [[mamba, mooe]]\n"))) {
            XCTAssertTrue("\($0)".contains("unknown mixer 'mooe'"), "\($0)")
        }
        XCTAssertThrowsError(try Sweep(path: try writeSweep(dir, "  zip:\n    - {train.seed: [1, 2], model.d_model: [8]}\n"))) {
            XCTAssertTrue("\($0)".contains("same length"), "\($0)")
        }
        // report.cells: x a numeric axis, panel another axis
        let grid = "  axes:\n    model.d_model: [8, 16]\n    model.layers: [[mamba], [attention]]\n    train.seed: [1]\n"
        let ok = try Sweep(path: try writeSweep(dir, grid, extra: "report:\n  cells: {x: model.d_model, panel: model.layers}\n"))
        XCTAssertEqual(ok.cells, Sweep.Cells(x: "model.d_model", panel: "model.layers"))
        XCTAssertNil(try Sweep(path: try writeSweep(dir, grid)).cells)
        for (cells, message) in [("{x: model.layers}", "report.cells.x: the axis model.layers must have numbers as values"),
                                 ("{x: model.d_modl}", "report.cells.x: 'model.d_modl' is not an axis of the sweep (other than train.seed and the learning rate) (did you mean 'model.d_model'?)"),
                                 ("{x: train.seed}", "report.cells.x: 'train.seed' is not an axis of the sweep"),
                                 ("{panel: model.layers}", "report.cells needs x"),
                                 ("{x: model.d_model, panel: model.d_model}", "x and panel are the same axis"),
                                 ("{x: model.d_model, colour: model.layers}", "unknown key 'report.cells.colour'"),
                                 ("[model.d_model]", "report.cells must be a mapping")] {
            XCTAssertThrowsError(try Sweep(path: try writeSweep(dir, grid, extra: "report:\n  cells: \(cells)\n")), cells) {
                XCTAssertTrue("\($0)".contains(message), "\(cells): \($0)")
                XCTAssertTrue("\($0)".contains("sweep.yaml:"), "\($0)")
            }
        }
    }

    /// Runs in-process; a failing run is recorded while the rest complete; a
    /// rerun finishes only what was missing.
    func testFailuresAreRecordedAndRerunsFinishOnlyWhatIsMissing() throws {
        let dir = try tempDir(self)
        // The second layer pattern's heads do not divide d_model at run time? No: make one run fail on its data.
        let path = try writeSweep(dir, """
          axes:
            data.num_pairs: [2, 9]
            train.seed: [1, 2]
        """)
        let sweep = try Sweep(path: path)
        XCTAssertEqual(sweep.runs.count, 4)
        let runner = SweepRunner(sweep: sweep, outDir: dir + "/out")
        for r in sweep.runs { try runner.runOne(r.index) }
        let rows = try runner.collect()
        XCTAssertEqual(rows.map { $0.result?.status }, ["ok", "ok", "failed", "failed"])   // num_pairs 9 > seq_len/4
        XCTAssertTrue(rows[2].result!.error!.contains("data.num_pairs"), rows[2].result!.error!)
        XCTAssertTrue(FileManager.default.fileExists(atPath: runner.runDir(sweep.runs[2]) + "/error.txt"))
        // sweep.h5 has a row per run
        let f = try H5File(path: dir + "/out/sweep.h5", mode: .readOnly)
        XCTAssertEqual(try f.dataset("ok").readInt64s(), [1, 1, 0, 0])
        XCTAssertEqual(try f.stringArrayAttribute("run_names"), sweep.runs.map(\.name))
        XCTAssertEqual(try f.stringArrayAttribute("axis:train.seed"), ["1", "2", "1", "2"])
        let val = try f.dataset("val_loss").readDoubles()
        XCTAssertTrue(val[0].isFinite && val[2].isNaN)
        f.close()
        // A finished run is not run again: its files stay untouched.
        let m0 = try Data(contentsOf: URL(fileURLWithPath: runner.runDir(sweep.runs[0]) + "/metrics.h5"))
        try runner.runOne(0)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: runner.runDir(sweep.runs[0]) + "/metrics.h5")), m0)
    }

    /// `--adopt`: the finished runs of another sweep with the same spec (up to its name)
    /// are copied in and not run again; a run of another spec, an unfinished one, or a
    /// run directory already here is left alone.
    func testFinishedRunsOfAnotherSweepAreAdopted() throws {
        let dir = try tempDir(self)
        let half = try Sweep(path: try writeSweep(dir, "  axes:\n    train.seed: [1, 2]\n", extra: "name: half\n"),
                             overrides: ["train.optimizer.lr=1.0e-3"])
        let first = SweepRunner(sweep: half, outDir: dir + "/half")
        try first.runOne(0)
        // seed 2 of the half: an unfinished attempt (no result.json)
        try FileManager.default.createDirectory(atPath: first.runDir(half.runs[1]), withIntermediateDirectories: true)
        try "x".write(toFile: first.runDir(half.runs[1]) + "/spec.yaml", atomically: true, encoding: .utf8)
        let other = try tempDir(self)
        let whole = try Sweep(path: try writeSweep(other, "  axes:\n    train.seed: [1, 2, 3]\n    train.optimizer.lr: [1.0e-3, 2.0e-3]\n",
                                                   extra: "name: whole\n"))
        let runner = SweepRunner(sweep: whole, outDir: other + "/out")
        let target = try XCTUnwrap(whole.runs.first { $0.spec.train.seed == 1 && $0.spec.train.lr == 1e-3 })
        XCTAssertEqual(half.runs[0].spec.train.lr, 1e-3)
        // a hidden copy in the source's runs/ (a staging directory) is never a candidate
        try FileManager.default.copyItem(atPath: first.runDir(half.runs[0]), toPath: dir + "/half/runs/.adopting-1-0")
        let sourceResult = try Data(contentsOf: URL(fileURLWithPath: first.runDir(half.runs[0]) + "/result.json"))
        let lines = try runner.adopt(from: [dir + "/half"])
        XCTAssertEqual(lines, ["[adopt] run \(target.index): \(target.name) <- \(first.runDir(half.runs[0]))"])
        let r = try XCTUnwrap(runner.result(target))
        XCTAssertEqual(r.status, "ok"); XCTAssertEqual(r.index, target.index); XCTAssertEqual(r.name, target.name)
        XCTAssertEqual(r.adoptedFrom, first.runDir(half.runs[0]))
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: runner.runDir(target) + "/metrics.h5")),
                       try Data(contentsOf: URL(fileURLWithPath: first.runDir(half.runs[0]) + "/metrics.h5")))
        // only that run: the others have no directory; runOne leaves the adopted one as it is
        XCTAssertEqual(whole.runs.filter { runner.result($0) != nil }.map(\.index), [target.index])
        let m = try Data(contentsOf: URL(fileURLWithPath: runner.runDir(target) + "/metrics.h5"))
        XCTAssertEqual(try runner.runOne(target.index).adoptedFrom, first.runDir(half.runs[0]))
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: runner.runDir(target) + "/metrics.h5")), m)
        // adopting again does nothing; a run directory already here is not replaced
        XCTAssertEqual(try runner.adopt(from: [dir + "/half"]), [])
        let mine = try XCTUnwrap(SweepRunner(sweep: whole, outDir: other + "/mine").sweep.runs.first { $0.index == target.index })
        let mineRunner = SweepRunner(sweep: whole, outDir: other + "/mine")
        try FileManager.default.createDirectory(atPath: mineRunner.runDir(mine), withIntermediateDirectories: true)
        XCTAssertEqual(try mineRunner.adopt(from: [dir + "/half"]),
                       ["[adopt] run \(target.index): not adopted from \(first.runDir(half.runs[0])): \(mineRunner.runDir(mine)) holds an unfinished attempt (remove it to adopt)"])
        XCTAssertNil(mineRunner.result(mine))
        XCTAssertFalse(FileManager.default.fileExists(atPath: other + "/out/.adopting"))   // staging removed
        // adopted again (from the adopting sweep, through a symlinked run directory): the
        // source keeps its result.json, and adopted_from names where the run ran
        try FileManager.default.createDirectory(atPath: other + "/linked/runs", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: other + "/linked/runs/L", withDestinationPath: runner.runDir(target))
        let third = SweepRunner(sweep: whole, outDir: other + "/third")
        XCTAssertEqual(try third.adopt(from: [other + "/linked"]).count, 1)
        XCTAssertEqual(third.result(target)?.adoptedFrom, first.runDir(half.runs[0]))
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: first.runDir(half.runs[0]) + "/result.json")), sourceResult)
        XCTAssertEqual(runner.result(target)?.index, target.index)
        var isLink = false
        if let t = try? FileManager.default.attributesOfItem(atPath: third.runDir(target))[.type] as? FileAttributeType { isLink = t == .typeSymbolicLink }
        XCTAssertFalse(isLink)
        // --run-index adopts its own run only
        let fourth = SweepRunner(sweep: whole, outDir: other + "/fourth")
        XCTAssertEqual(try fourth.adopt(from: [dir + "/half"], only: target.index + 1), [])
        XCTAssertEqual(try fourth.adopt(from: [dir + "/half"], only: target.index).count, 1)
        // not a sweep's output
        XCTAssertThrowsError(try runner.adopt(from: [other + "/nothing"])) {
            XCTAssertTrue("\($0)".contains("--adopt \(other)/nothing: not a sweep's output directory"), "\($0)")
        }
    }

    /// A sweep interrupted in the middle of a run resumes that run from its checkpoint.
    func testInterruptedRunIsResumed() throws {
        let dir = try tempDir(self)
        let sweep = try Sweep(path: try writeSweep(dir, "  axes:\n    train.seed: [1]\n"))
        let runner = SweepRunner(sweep: sweep, outDir: dir + "/out")
        // interrupt: 3 of 4 steps (checkpoint at 2), no result.json; the interrupted run
        // ends (and releases the run's lock) before the sweep resumes it
        do {
            let run = try ExperimentRun(spec: sweep.runs[0].spec, outDir: runner.runDir(sweep.runs[0]), resume: false)
            run.printProgress = false
            run.stopAfter = 3
            _ = try run.run()
        }
        XCTAssertNil(runner.result(sweep.runs[0]))
        let r = try runner.runOne(0)
        XCTAssertEqual(r.status, "ok")
        XCTAssertEqual(r.steps, 4)
        // the same metrics as a run that was never interrupted
        let other = try tempDir(self)
        let clean = SweepRunner(sweep: sweep, outDir: other)
        try clean.runOne(0)
        XCTAssertEqual(try readColumn(runner.runDir(sweep.runs[0]) + "/metrics.h5", "train/loss").map(\.bitPattern),
                       try readColumn(clean.runDir(sweep.runs[0]) + "/metrics.h5", "train/loss").map(\.bitPattern))
    }

    /// Every sweep shipped in Experiments/sweeps/ expands and validates (with its
    /// report baseline, where it names one).
    func testEveryShippedSweepValidates() throws {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Experiments/sweeps").path
        let files = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".yaml") }.sorted()
        XCTAssertTrue(files.contains("routers.yaml") && files.contains("experts.yaml") && files.contains("mqar-init.yaml"))
        for f in files {
            let s = try Sweep(path: "\(dir)/\(f)")
            XCTAssertFalse(s.runs.isEmpty, f)
        }
        XCTAssertEqual(try Sweep(path: "\(dir)/routers.yaml").baseline, ["model.defaults.moe.router.name": "sinkhorn-fast"])
        XCTAssertEqual(try Sweep(path: "\(dir)/experts.yaml").runs.count, 15)
    }
}
