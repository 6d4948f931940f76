import XCTest
import BMTestSupport
import Foundation
@testable import BMCore
@testable import BMLayers
@testable import BMStorage
@testable import BMExperiments
@testable import BMSpec

/// Every failure a user hit (issue: "Trustworthy on every machine", section 2) ends in
/// a clear one-line error and a non-zero exit with nothing lost, or works as documented.
/// One test per item; each failed on the code before the fix.
final class FailureModeTests: XCTestCase {
    override func setUp() { XCTAssertNoThrow(try BLAS.setup()) }

    func writeTiny(_ dir: String, _ edits: [(String, String)] = [], name: String = "tiny.yaml") throws -> String {
        var text = tinySpec
        for (a, b) in edits { text = text.replacingOccurrences(of: a, with: b) }
        let path = dir + "/" + name
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func assertOneLineError(_ r: (out: String, err: String, status: Int32, signaled: Bool), contains parts: [String],
                            file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertFalse(r.signaled, "killed by a signal: \(r.err)", file: file, line: line)
        XCTAssertEqual(r.status, 2, r.err, file: file, line: line)
        let lines = r.err.split(separator: "\n")
        XCTAssertEqual(lines.count, 1, "expected one line, got: \(r.err)", file: file, line: line)
        XCTAssertTrue(r.err.hasPrefix("bmlab: error: "), r.err, file: file, line: line)
        for p in parts { XCTAssertTrue(r.err.contains(p), "'\(p)' not in: \(r.err)", file: file, line: line) }
        XCTAssertFalse(r.err.contains("NSCocoaErrorDomain"), r.err, file: file, line: line)
    }

    // 1. Too large a model or batch: refused before any allocation or file, exit 2.
    func testTooLargeModelOrBatchIsRefusedBeforeAnyFile() throws {
        try BMLabProcess.require()
        let dir = try tempDir(self)
        let spec = try writeTiny(dir)
        for o in ["model.d_model=100000", "train.batch=10000000"] {
            let r = try BMLabProcess.run(["train", spec, o, "train.steps=1", "--out", dir + "/out"])
            assertOneLineError(r, contains: ["this run needs about", "available", "train.batch"])
            XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/out"), o)
        }
        // the same limit from the library, with a machine of 64 MiB
        let s = try ExperimentSpec.parse(tinySpec, file: "tiny.yaml", overrides: ["model.d_model=1024"])
        let m = try MemoryEstimate(s)
        XCTAssertThrowsError(try m.check(s, available: 64 << 20))
        XCTAssertNoThrow(try m.check(s, available: 64 << 30))
        // validate prints the estimate
        let v = try BMLabProcess.run(["validate", spec])
        XCTAssertEqual(v.status, 0)
        XCTAssertTrue(v.out.contains("memory: about"), v.out)
    }

    /// The estimate of parameters is exact: the declared-only model counts what the real one allocates.
    func testMemoryEstimateCountsTheParameters() throws {
        let s = try ExperimentSpec.parse(tinySpec, file: "tiny.yaml")
        let model = try ModelBuilder.build(s)
        XCTAssertEqual(try MemoryEstimate(s).parameters, model.params.count)
        XCTAssertEqual(try MemoryEstimate(s).parameterBytes, Double(model.params.count * 16))
    }

    // 2. Damaged checkpoints: at least 200 seeded corruptions, each refused with exit 2
    //    ("damaged") or loading bitwise the original weights; never a signal.
    func testCorruptedCheckpointsAreRefusedNeverCrash() throws {
        let dir = try tempDir(self)
        let spec = try ExperimentSpec.parse(tinySpec, file: "tiny.yaml", overrides: ["train.steps=4"])
        try quietRun(spec, dir + "/run")
        let ck = dir + "/run/checkpoint.h5"
        let original = try Data(contentsOf: URL(fileURLWithPath: ck))
        let reference = try ModelBuilder.build(spec)
        try Checkpoint.load(from: ck, into: reference, optimizer: nil)
        let want = Array(UnsafeBufferPointer(start: reference.params.values, count: reference.params.count)).map(\.bitPattern)
        var rng = RNG(seed: 2024)
        var refused = 0, identical = 0
        let corruptions = 240
        for i in 0..<corruptions {
            var bytes = [UInt8](original)
            let length = 1 + rng.below(i % 3 == 0 ? 8 : 4096)
            let offset = rng.below(bytes.count)
            for k in offset..<min(bytes.count, offset + length) {
                bytes[k] = i % 4 == 1 ? 0xFF : UInt8(truncatingIfNeeded: rng.below(256))
            }
            let path = dir + "/c\(i).h5"
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            let model = try ModelBuilder.build(spec)
            do {
                try Checkpoint.load(from: path, into: model, optimizer: nil)
                let got = Array(UnsafeBufferPointer(start: model.params.values, count: model.params.count)).map(\.bitPattern)
                XCTAssertEqual(got, want, "corruption \(i) (offset \(offset), \(length) bytes) loaded different weights")
                identical += 1
            } catch let e as BMError {
                XCTAssertEqual(e.exitCode, 2)
                XCTAssertTrue(e.description.contains("damaged") || e.description.contains("non-finite"), e.description)
                refused += 1
            }
            try? FileManager.default.removeItem(atPath: path)
        }
        print("checkpoint fault injection: \(corruptions) corruptions, \(refused) refused as damaged, \(identical) loaded the original weights")
        XCTAssertEqual(refused + identical, corruptions)
        XCTAssertGreaterThan(refused, corruptions * 9 / 10)
    }

    /// The two corruptions the issue reported, through eval, generate and --resume; and
    /// a checkpoint holding a NaN weight.
    func testDamagedCheckpointThroughTheCommandLine() throws {
        try BMLabProcess.require()
        let dir = try tempDir(self)
        let spec = try writeTiny(dir, [("steps: 12", "steps: 4")])
        XCTAssertEqual(try BMLabProcess.run(["train", spec, "--out", dir + "/run"]).status, 0)
        let ck = dir + "/run/checkpoint.h5"
        let good = try Data(contentsOf: URL(fileURLWithPath: ck))
        var a = [UInt8](good); for k in 4000..<4064 { a[k] = UInt8(truncatingIfNeeded: k * 37) }
        var b = [UInt8](good); let mid = b.count / 2; for k in mid..<min(b.count, mid + 4096) { b[k] = 0xFF }
        for (name, bytes) in [("a", a), ("b", b)] {
            try Data(bytes).write(to: URL(fileURLWithPath: ck))
            assertOneLineError(try BMLabProcess.run(["eval", "--checkpoint", ck]), contains: ["damaged"])
            assertOneLineError(try BMLabProcess.run(["generate", "--checkpoint", ck, "--tokens", "1 2"]), contains: ["damaged"])
            assertOneLineError(try BMLabProcess.run(["train", spec, "train.steps=8", "--out", dir + "/run", "--resume"]), contains: ["damaged"])
            _ = name
        }
        // non-finite weights in an intact file
        let s = try ExperimentSpec.load(path: spec)
        let model = try ModelBuilder.build(s)
        model.params.values[3] = .nan
        try Checkpoint.save(to: ck, model: model, optimizer: nil, state: .init(step: 4, optimizerStep: 4, dataRNG: [1, 2, 3, 4], specYAML: try s.resolvedYAML()))
        assertOneLineError(try BMLabProcess.run(["eval", "--checkpoint", ck]), contains: ["non-finite"])
    }

    // 3. --resume of a run killed before its first checkpoint starts over, and says so.
    func testResumeWithoutCheckpointStartsOver() throws {
        let dir = try tempDir(self)
        let s = try ExperimentSpec.parse(tinySpec, file: "tiny.yaml", overrides: ["train.checkpoint_every=100"])
        try quietRun(s, dir + "/full")
        try quietRun(s, dir + "/cut", stopAfter: 5)    // "killed" at step 5, before any checkpoint
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/cut/checkpoint.h5"))
        XCTAssertThrowsError(try ExperimentRun(spec: s, outDir: dir + "/cut", resume: false))   // without --resume: refused
        let again = try ExperimentRun(spec: s, outDir: dir + "/cut", resume: true)
        XCTAssertNotNil(again.notice)
        XCTAssertTrue(again.notice!.contains("starting it over"), again.notice!)
        again.printProgress = false
        _ = try again.run()
        for col in ["train/step", "train/loss", "eval/loss"] {
            XCTAssertEqual(try readColumn(dir + "/full/metrics.h5", col).map(\.bitPattern),
                           try readColumn(dir + "/cut/metrics.h5", col).map(\.bitPattern), col)
        }
    }

    // 4. Without a terminal, a plain progress line every log_every steps, flushed at once.
    func testProgressIsLoggedWithoutATerminal() throws {
        try BMLabProcess.require()
        let dir = try tempDir(self)
        let spec = try writeTiny(dir, [("steps: 12", "steps: 100000"), ("log_every: 1", "log_every: 5"),
                                       ("eval_every: 4", "eval_every: 100000"), ("checkpoint_every: 4", "checkpoint_every: 100000")])
        let log = dir + "/log.txt"
        let p = try BMLabProcess.launch(["train", spec, "--out", dir + "/out"], log: log)
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() } }
        var text = ""
        BMLabProcess.wait(for: "the log to show step 10") {
            text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            return text.contains("step 10/100000") || !p.isRunning
        }
        XCTAssertTrue(p.isRunning, "the run ended early: \(text)")
        XCTAssertTrue(text.contains("step 5/100000"), text)
        XCTAssertTrue(text.contains("step 10/100000"), text)
        XCTAssertTrue(text.contains("tok/s") && text.contains("ETA"), text)
        // the last evaluation (here the one before step 1) with the task's metric, labelled with its step
        XCTAssertTrue(text.contains("  val@0 ") && text.contains("  accuracy 0."), text)
        XCTAssertTrue(text.contains("tiny: mamba,moe,attention,moe"), "the start-up header (stdout) is not in the log yet: \(text)")
    }

    // 5. A sweep rerun with a different spec into the same --out is refused, naming the difference.
    func testSweepRerunWithDifferentSpecIsRefused() throws {
        try BMLabProcess.require()
        let dir = try tempDir(self)
        try (tinySpec + "\nsweep:\n  axes:\n    train.seed: [1, 2]\n").write(toFile: dir + "/s.yaml", atomically: true, encoding: .utf8)
        let first = try BMLabProcess.run(["sweep", dir + "/s.yaml", "train.steps=2", "--out", dir + "/out"])
        XCTAssertEqual(first.status, 0, first.err)
        let same = try BMLabProcess.run(["sweep", dir + "/s.yaml", "train.steps=2", "--out", dir + "/out"])
        XCTAssertEqual(same.status, 0, same.err)
        XCTAssertTrue(same.out.contains("2 of 2 runs already finished"), same.out)
        let other = try BMLabProcess.run(["sweep", dir + "/s.yaml", "train.steps=4", "--out", dir + "/out"])
        assertOneLineError(other, contains: ["different spec", "train.steps is 2 in the stored spec but 4 now"])
        XCTAssertEqual(try readColumn(dir + "/out/runs/train.seed=1/metrics.h5", "train/step").count, 2)    // untouched
        // resuming a run with another spec is refused the same way
        let s2 = try ExperimentSpec.parse(tinySpec, file: "tiny.yaml", overrides: ["train.steps=6", "train.seed=1"])
        XCTAssertThrowsError(try ExperimentRun(spec: s2, outDir: dir + "/out/runs/train.seed=1", resume: true)) { e in
            XCTAssertTrue("\(e)".contains("train.steps is 2 in the stored spec but 6 now"), "\(e)")
        }
    }

    // 6. Paths in a spec are relative to the spec file and stored resolved; a notebook
    //    runs its blocks in its own project.
    func testPathsDoNotDependOnTheWorkingDirectory() throws {
        try BMLabProcess.require()
        let dir = try tempDir(self)
        try FileManager.default.createDirectory(atPath: dir + "/proj/Experiments/data", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: dir + "/proj/notebooks-md", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: dir + "/elsewhere", withIntermediateDirectories: true)
        try String(repeating: "the quick brown fox jumps over the lazy dog. ", count: 400)
            .write(toFile: dir + "/proj/Experiments/data/corpus.txt", atomically: true, encoding: .utf8)
        let spec = try writeTiny(dir + "/proj/Experiments", [("kind: mqar", "kind: text\n  path: data/corpus.txt"),
                                                           ("  vocab_size: 32\n", ""), ("  num_pairs: 2\n", ""), ("steps: 12", "steps: 2")])
        let s = try ExperimentSpec.load(path: spec)
        XCTAssertEqual(s.data.path, dir + "/proj/Experiments/data/corpus.txt")
        XCTAssertTrue(try s.resolvedYAML().contains(dir + "/proj/Experiments/data/corpus.txt"))
        // an override's path is relative to the working directory
        let o = try ExperimentSpec.load(path: spec, overrides: ["data.path=Experiments/data/corpus.txt"])
        XCTAssertEqual(o.data.path, FileManager.default.currentDirectoryPath + "/Experiments/data/corpus.txt")
        // train from one directory, evaluate from another
        let t = try BMLabProcess.run(["train", "Experiments/tiny.yaml", "--out", "results/t"], in: dir + "/proj")
        XCTAssertEqual(t.status, 0, t.err)
        let e = try BMLabProcess.run(["eval", "--checkpoint", dir + "/proj/results/t/checkpoint.h5"], in: dir + "/elsewhere")
        XCTAssertEqual(e.status, 0, e.err)
        XCTAssertTrue(e.out.contains("bits_per_byte"), e.out)
        // a notebook run from elsewhere runs in its project
        try "# nb\n\n```bmlab\nbmlab validate Experiments/tiny.yaml\n```\n".write(toFile: dir + "/proj/notebooks-md/nb.md", atomically: true, encoding: .utf8)
        let n = try BMLabProcess.run(["notebook", dir + "/proj/notebooks-md/nb.md"], in: dir + "/elsewhere")
        XCTAssertEqual(n.status, 0, n.out + n.err)
        XCTAssertTrue(try String(contentsOfFile: dir + "/proj/notebooks-md/nb.md", encoding: .utf8).contains("Experiments/tiny.yaml: ok"))
    }

    // 7. generate reads and prints token ids for models not trained on bytes.
    func testGenerateUsesTokenIdsForTokenModels() throws {
        try BMLabProcess.require()
        let dir = try tempDir(self)
        let spec = try writeTiny(dir, [("steps: 12", "steps: 2")])
        XCTAssertEqual(try BMLabProcess.run(["train", spec, "--out", dir + "/run"]).status, 0)
        let ck = dir + "/run/checkpoint.h5"
        assertOneLineError(try BMLabProcess.run(["generate", "--checkpoint", ck, "--prompt", "hello"]), contains: ["token ids", "--tokens"])
        let g = try BMLabProcess.run(["generate", "--checkpoint", ck, "--tokens", "3 17 5", "--max-tokens", "6", "--temperature", "0"])
        XCTAssertEqual(g.status, 0, g.err)
        let parts = g.out.trimmingCharacters(in: .whitespacesAndNewlines).components(separatedBy: " | ")
        XCTAssertEqual(parts.count, 2, g.out)
        XCTAssertEqual(parts[0], "3 17 5")
        let ids = parts[1].split(separator: " ").compactMap { Int($0) }
        XCTAssertEqual(ids.count, 6, g.out)
        XCTAssertTrue(ids.allSatisfy { $0 >= 0 && $0 < 32 }, g.out)
        assertOneLineError(try BMLabProcess.run(["generate", "--checkpoint", ck, "--tokens", "3 99"]), contains: ["'99'", "0 to 31"])
    }

    // 9. Raw or inconsistent errors: one line naming the option or override, exit 2.
    func testUserErrorsAreOneClearLine() throws {
        try BMLabProcess.require()
        let dir = try tempDir(self)
        let spec = try writeTiny(dir)
        FileManager.default.createFile(atPath: dir + "/afile", contents: Data())
        assertOneLineError(try BMLabProcess.run(["train", spec, "--out", dir + "/afile/out"]), contains: ["--out", "cannot"])
        assertOneLineError(try BMLabProcess.run(["train", spec, "--out", "/proc/bmlab-test-out"]), contains: ["--out /proc/bmlab-test-out", "cannot"])
        assertOneLineError(try BMLabProcess.run(["validate", spec, "train.stpes=3"]),
                           contains: ["override 'train.stpes=3': unknown key 'train.stpes' (did you mean 'steps'?)"])
        assertOneLineError(try BMLabProcess.run(["train", spec, "--threads=-1"]), contains: ["--threads", "-1"])
        assertOneLineError(try BMLabProcess.run(["generate", "--checkpoint", "x.h5", "--prompt", "a", "--temperature=-1"]), contains: ["--temperature"])
        assertOneLineError(try BMLabProcess.run(["generate", "--checkpoint", "x.h5", "--prompt", "a", "--top-k=-1"]), contains: ["--top-k"])
        assertOneLineError(try BMLabProcess.run(["sweep", spec, "--workers=0"]), contains: ["--workers"])
        // --resume of nothing is an error naming the directory (not a fresh start), and creates nothing
        assertOneLineError(try BMLabProcess.run(["train", spec, "--resume", "--out", dir + "/missing"]),
                           contains: ["--resume: \(dir)/missing does not exist"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/missing"))
        try FileManager.default.createDirectory(atPath: dir + "/empty", withIntermediateDirectories: true)
        assertOneLineError(try BMLabProcess.run(["train", spec, "--resume", "--out", dir + "/empty"]),
                           contains: ["--resume: \(dir)/empty holds no run"])
        // eval writes no file over a run's own, nor over an existing one without --force
        let train = try BMLabProcess.run(["train", spec, "--out", dir + "/run"])
        XCTAssertEqual(train.status, 0, train.err)
        let ck = dir + "/run/checkpoint.h5"
        let before = try Data(contentsOf: URL(fileURLWithPath: ck)), metricsBefore = try Data(contentsOf: URL(fileURLWithPath: dir + "/run/metrics.h5"))
        assertOneLineError(try BMLabProcess.run(["eval", "--checkpoint", ck, "--grads", ck]), contains: ["--grads \(ck) is a file this command reads"])
        assertOneLineError(try BMLabProcess.run(["eval", "--checkpoint", ck, "--grads", ck, "--force"]), contains: ["--grads"])
        assertOneLineError(try BMLabProcess.run(["eval", "--checkpoint", ck, "--router-logits", dir + "/run/metrics.h5", "--force"]),
                           contains: ["--router-logits \(dir)/run/metrics.h5 is a run's own metrics.h5"])
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: ck)), before)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: dir + "/run/metrics.h5")), metricsBefore)
        FileManager.default.createFile(atPath: dir + "/mine.h5", contents: Data("keep".utf8))
        assertOneLineError(try BMLabProcess.run(["eval", "--checkpoint", ck, "--grads", dir + "/mine.h5"]), contains: ["--grads \(dir)/mine.h5 exists; pass --force"])
        XCTAssertEqual(try String(contentsOfFile: dir + "/mine.h5", encoding: .utf8), "keep")
        let forced = try BMLabProcess.run(["eval", "--checkpoint", ck, "--grads", dir + "/mine.h5", "--force"])
        XCTAssertEqual(forced.status, 0, forced.err)
        // a generation longer than the attention layer's KV cache can hold is refused before allocation
        assertOneLineError(try BMLabProcess.run(["generate", "--checkpoint", ck, "--tokens", "1 2 3", "--max-tokens", "100000000000"]),
                           contains: ["KV cache", "--max-tokens"])
        // a spec's name is a plain name, never a path out of results/
        for bad in ["../../x", "/tmp/x", "a/b", ".."] {
            assertOneLineError(try BMLabProcess.run(["validate", spec, "name=\(bad)"]), contains: ["name '\(bad)' must be a plain name"])
        }
        // sizes are checked before anything is built: a run's token count, a model's layers,
        // and the YAML's nesting (a parser that recurses per level is never reached)
        assertOneLineError(try BMLabProcess.run(["validate", spec, "train.steps=9223372036854775807"]), contains: ["more tokens than a run can count"])
        assertOneLineError(try BMLabProcess.run(["validate", spec, "~model.layers", "model.pattern=[mamba]", "model.repeat=100000000"]), contains: ["model.repeat", "4096"])
        try ("a: " + String(repeating: "[", count: 20_000) + String(repeating: "]", count: 20_000) + "\n").write(toFile: dir + "/deep.yaml", atomically: true, encoding: .utf8)
        assertOneLineError(try BMLabProcess.run(["validate", dir + "/deep.yaml"]), contains: ["deep.yaml:1: lists or mappings nested more than 64 deep"])
        // a sweep grid past the cap is refused before it is built
        let axis = "[" + (1...1000).map(String.init).joined(separator: ", ") + "]"
        try (tinySpec + "\nsweep:\n  axes:\n    train.seed: \(axis)\n    train.steps: \(axis)\n").write(toFile: dir + "/huge.yaml", atomically: true, encoding: .utf8)
        assertOneLineError(try BMLabProcess.run(["sweep", dir + "/huge.yaml", "--dry-run"]), contains: ["1000000 runs or more; at most 10000 runs a sweep"])
        // a setting that does nothing useful is a warning, not an error
        let w = try BMLabProcess.run(["validate", spec, "train.schedule.warmup=50", "train.steps=20"])
        XCTAssertEqual(w.status, 0, w.err)
        XCTAssertTrue(w.err.contains("bmlab: warning: ") && w.err.contains("train.schedule.warmup (50) is not below train.steps (20)"), w.err)
        XCTAssertTrue(try BMLabProcess.run(["validate", spec, "train.schedule.warmup=2"]).err.isEmpty)
        // an unknown command is named with the nearest one (a usage error: 64)
        let unknown = try BMLabProcess.run(["trian", spec])
        XCTAssertEqual(unknown.status, 64, unknown.err)
        XCTAssertTrue(unknown.err.contains("unknown command 'trian' (did you mean 'train'?)"), unknown.err)
        // a Foundation error is named by its file and reason
        let ns = CocoaError(.fileWriteNoPermission, userInfo: [NSFilePathErrorKey: "/x/spec.yaml"])
        XCTAssertEqual(BMError.reason(ns), "/x/spec.yaml: permission denied")
    }

    // 10. The documented overrides work on a pattern spec; keys can be deleted; validate takes sweeps.
    func testDocumentedOverridesAndSweepValidation() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
        let demo = root + "/Experiments/blackmamba-tiny.yaml"
        let a = try ExperimentSpec.load(path: demo, overrides: ["model.layers.0=attention"])
        XCTAssertEqual(a.model.layers.map(\.mixer), ["attention", "moe", "mamba", "moe"])
        let b = try ExperimentSpec.load(path: demo, overrides: ["model.layers=[attention, mlp]"])
        XCTAssertEqual(b.model.layers.map(\.mixer), ["attention", "mlp"])
        let c = try ExperimentSpec.load(path: demo, overrides: ["model.layers=[attention, mlp]", "model.pattern=[mamba]", "model.repeat=3"])
        XCTAssertEqual(c.model.layers.map(\.mixer), ["mamba", "mamba", "mamba"])
        let d = try ExperimentSpec.load(path: demo, overrides: ["~model.final_norm"])
        XCTAssertEqual(d.model.finalNorm, .layernorm)
        XCTAssertThrowsError(try ExperimentSpec.load(path: demo, overrides: ["~model.nope"])) { e in
            XCTAssertTrue("\(e)".contains("no key 'nope' to delete"), "\(e)")
        }
        try BMLabProcess.require()
        let v = try BMLabProcess.run(["validate", root + "/Experiments/sweeps/tiny-layers.yaml"])
        XCTAssertEqual(v.status, 0, v.err)
        XCTAssertTrue(v.out.contains("ok (a sweep of 8 runs"), v.out)
    }

    /// Trains `spec` into `dir` without a progress line, optionally stopping after `stopAfter` steps.
    @discardableResult
    func quietRun(_ spec: ExperimentSpec, _ dir: String, stopAfter: Int? = nil) throws -> ExperimentRun.Summary {
        let run = try ExperimentRun(spec: spec, outDir: dir, resume: false)
        run.printProgress = false
        run.stopAfter = stopAfter
        return try run.run()
    }
}
