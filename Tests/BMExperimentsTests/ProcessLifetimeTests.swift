import XCTest
import BMTestSupport
import Foundation
@testable import BMCore
@testable import BMExperiments
@testable import BMSpec

/// No process outlives the command that started it: SIGTERM / SIGINT to a sweep stop
/// its workers, and it exits 143 / 130 with the runs resumable; a sweep killed outright
/// (SIGKILL) takes its workers with it (PR_SET_PDEATHSIG); a notebook that would run
/// itself, directly or through another notebook, is refused naming the cycle.
final class ProcessLifetimeTests: XCTestCase {
    /// PIDs of the processes whose command line contains `needle` (from /proc).
    func processes(containing needle: String) -> [Int32] {
        let fm = FileManager.default
        return ((try? fm.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { entry -> Int32? in
            guard let pid = Int32(entry), pid != getpid(),
                  let raw = fm.contents(atPath: "/proc/\(entry)/cmdline") else { return nil }
            let cmd = String(decoding: raw.map { $0 == 0 ? 32 : $0 }, as: UTF8.self)
            return cmd.contains(needle) ? pid : nil
        }
    }

    /// A sweep of two long runs, started with two workers; returns the process and its out dir.
    func startSweep(_ dir: String) throws -> (Process, String) {
        try (tinySpec + "\nsweep:\n  axes:\n    train.seed: [1, 2]\n").write(toFile: dir + "/s.yaml", atomically: true, encoding: .utf8)
        let out = dir + "/out"
        let p = try BMLabProcess.launch(["sweep", dir + "/s.yaml", "train.steps=100000", "train.checkpoint_every=20",
                                         "--workers", "2", "--out", out], log: dir + "/sweep.log")
        BMLabProcess.wait(for: "both workers to start") {
            !p.isRunning || processes(containing: "--run-index 1 --out \(out)").count == 1 && processes(containing: "--run-index 0 --out \(out)").count == 1
        }
        // until both have a checkpoint, so that the runs have something to resume from
        BMLabProcess.wait(for: "both runs' first checkpoint") { !p.isRunning || [1, 2].allSatisfy { FileManager.default.fileExists(atPath: "\(out)/runs/train.seed=\($0)/checkpoint.h5") } }
        XCTAssertTrue(p.isRunning, "the sweep ended: \((try? String(contentsOfFile: dir + "/sweep.log", encoding: .utf8)) ?? "")")
        return (p, out)
    }

    /// Sends `sig` to a running sweep; returns its exit status, its log and its out dir,
    /// once it has ended, after checking that no worker is left.
    func interruptSweep(with sig: Int32) throws -> (status: Int32, log: String, out: String) {
        let dir = try tempDir(self)
        let (p, out) = try startSweep(dir)
        kill(p.processIdentifier, sig)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationReason, .exit)
        XCTAssertTrue(processes(containing: "--out \(out)").isEmpty, "workers left running")
        return (p.terminationStatus, try String(contentsOfFile: dir + "/sweep.log", encoding: .utf8), out)
    }

    func testSigtermStopsTheWorkersAndTheRunsResume() throws {
        try BMLabProcess.require()
        let (status, log, out) = try interruptSweep(with: SIGTERM)
        XCTAssertEqual(status, 143)
        XCTAssertTrue(log.contains("interrupted by SIGTERM") && log.contains("resumes from its last checkpoint"), log)
        // both runs are resumable: a checkpoint past step 0 that opens, and no result, so
        // the same sweep command resumes them
        for seed in [1, 2] {
            let run = "\(out)/runs/train.seed=\(seed)"
            XCTAssertGreaterThan(try OpenedCheckpoint.model(run + "/checkpoint.h5").state.step, 0)
            XCTAssertFalse(FileManager.default.fileExists(atPath: run + "/result.json"))
        }
    }

    func testSigintExits130() throws {
        try BMLabProcess.require()
        let (status, log, _) = try interruptSweep(with: SIGINT)
        XCTAssertEqual(status, 130)
        XCTAssertTrue(log.contains("interrupted by SIGINT"), log)
    }

    func testWorkersDieWithAKilledSweep() throws {
        try BMLabProcess.require()
        let dir = try tempDir(self)
        let (p, out) = try startSweep(dir)
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        BMLabProcess.wait(for: "the workers to end with their killed sweep (PR_SET_PDEATHSIG)", timeout: 60) { processes(containing: "--out \(out)").isEmpty }
    }

    /// A run directory belongs to one process: a second `train` into it is refused naming
    /// the holder; once the holder is killed the run can be resumed, with a note.
    func testARunDirectoryBelongsToOneProcess() throws {
        try BMLabProcess.require()
        let dir = try tempDir(self)
        try tinySpec.write(toFile: dir + "/t.yaml", atomically: true, encoding: .utf8)
        let args = ["train", dir + "/t.yaml", "train.steps=100000000", "train.checkpoint_every=20", "--out", dir + "/run"]
        let holder = try BMLabProcess.launch(args, log: dir + "/holder.log")
        defer { if holder.isRunning { kill(holder.processIdentifier, SIGKILL); holder.waitUntilExit() } }
        BMLabProcess.wait(for: "the holder's first checkpoint") { !holder.isRunning || FileManager.default.fileExists(atPath: dir + "/run/checkpoint.h5") }
        let second = try BMLabProcess.run(args + ["--resume"])
        XCTAssertEqual(second.status, 2, second.err)
        XCTAssertTrue(second.err.contains("\(dir)/run is in use by another bmlab process (PID \(holder.processIdentifier): bmlab train"), second.err)
        kill(holder.processIdentifier, SIGKILL)
        holder.waitUntilExit()
        let s = try ExperimentSpec.parse(tinySpec, file: "t.yaml", overrides: ["train.steps=100000000", "train.checkpoint_every=20"])
        let resumed = try ExperimentRun(spec: s, outDir: dir + "/run", resume: true)
        XCTAssertTrue(resumed.notice?.contains("was last written by PID \(holder.processIdentifier)") ?? false, resumed.notice ?? "no notice")
    }

    func testANotebookThatWouldRunItselfIsRefused() throws {
        try BMLabProcess.require()
        let dir = try tempDir(self)
        try "# a\n\n```bmlab\nnotebook \(dir)/a.md\n```\n".write(toFile: dir + "/a.md", atomically: true, encoding: .utf8)
        let direct = try BMLabProcess.run(["notebook", dir + "/a.md"])
        XCTAssertFalse(direct.signaled)
        XCTAssertNotEqual(direct.status, 0)
        let a = try String(contentsOfFile: dir + "/a.md", encoding: .utf8)
        XCTAssertTrue(a.contains("the notebook would run itself (a.md → a.md)"), a)
        // through another notebook: b runs c, c runs b
        try "```bmlab\nnotebook \(dir)/c.md\n```\n".write(toFile: dir + "/b.md", atomically: true, encoding: .utf8)
        try "```bmlab\nnotebook \(dir)/b.md\n```\n".write(toFile: dir + "/c.md", atomically: true, encoding: .utf8)
        let chain = try BMLabProcess.run(["notebook", dir + "/b.md"])
        XCTAssertNotEqual(chain.status, 0)
        let c = try String(contentsOfFile: dir + "/c.md", encoding: .utf8)
        XCTAssertTrue(c.contains("(b.md → c.md → b.md)"), c)
        XCTAssertTrue(processes(containing: dir).isEmpty)
        // nesting is bounded without a cycle too
        try "```bmlab\nlist\n```\n".write(toFile: dir + "/d.md", atomically: true, encoding: .utf8)
        let deep = try BMLabProcess.run(["notebook", dir + "/d.md"],
                                        environment: ["BMLAB_NOTEBOOK_CHAIN": (1...4).map { "\(dir)/n\($0).md" }.joined(separator: "\n")])
        XCTAssertEqual(deep.status, 2, deep.err)
        XCTAssertTrue(deep.err.contains("notebooks nested 5 deep"), deep.err)
    }
}
