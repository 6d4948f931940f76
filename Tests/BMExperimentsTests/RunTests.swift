import XCTest
import BMTestSupport
import Foundation
@testable import BMCore
@testable import BMLayers
@testable import BMMixers
@testable import BMStorage
@testable import BMTrain
@testable import BMExperiments
@testable import BMSpec
@testable import BMData

/// A small BlackMamba-shaped spec (mamba + moe with every kind of layer state)
/// on MQAR, fast enough for a debug build.
let tinySpec = """
name: tiny
model:
  d_model: 16
  layers: [mamba, moe, attention, moe]
  defaults:
    mamba: {d_state: 4, chunk: 4}
    moe: {experts: 4, ffn: 16, router: {name: sinkhorn-fast}}
    attention: {heads: 2}
data:
  kind: mqar
  vocab_size: 32
  num_pairs: 2
train:
  steps: 12
  batch: 4
  seq_len: 16
  log_every: 1
  eval_every: 4
  eval_batches: 2
  checkpoint_every: 4
"""

func tempDir(_ test: XCTestCase) throws -> String {
    let d = FileManager.default.temporaryDirectory.appendingPathComponent("bmlab-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
    test.addTeardownBlock { try? FileManager.default.removeItem(atPath: d) }
    return d
}

func readColumn(_ path: String, _ name: String) throws -> [Double] {
    let f = try H5File(path: path, mode: .readOnly)
    defer { f.close() }
    return try f.dataset(name).readDoubles()
}

final class RunTests: XCTestCase {
    override func setUp() { XCTAssertNoThrow(try BLAS.setup()) }

    func spec(_ overrides: [String] = []) throws -> ExperimentSpec {
        try ExperimentSpec.parse(tinySpec, file: "tiny.yaml", overrides: overrides)
    }

    func train(_ dir: String, _ overrides: [String] = [], resume: Bool = false, stopAfter: Int? = nil) throws -> ExperimentRun.Summary {
        let run = try ExperimentRun(spec: try spec(overrides), outDir: dir, resume: resume)
        run.printProgress = false
        run.stopAfter = stopAfter
        return try run.run()
    }

    func testSameSpecAndSeedGiveBitwiseIdenticalMetrics() throws {
        let a = try tempDir(self) + "/a", b = try tempDir(self) + "/b"
        _ = try train(a); _ = try train(b)
        for col in ["train/loss", "train/grad_norm", "eval/loss", "router/layer_1/entropy", "router/layer_3/load"] {
            let x = try readColumn(a + "/metrics.h5", col), y = try readColumn(b + "/metrics.h5", col)
            XCTAssertFalse(x.isEmpty, col)
            XCTAssertEqual(x.map(\.bitPattern), y.map(\.bitPattern), col)
        }
        let c = try tempDir(self) + "/c"
        _ = try train(c, ["train.seed=2"])
        XCTAssertNotEqual(try readColumn(a + "/metrics.h5", "train/loss"), try readColumn(c + "/metrics.h5", "train/loss"))
    }

    /// A run stopped between checkpoints (metric rows logged after the last
    /// checkpoint, as a kill leaves them) and resumed gives exactly the metrics
    /// of an uninterrupted run.
    func testStopAndResumeEqualsUninterrupted() throws {
        let full = try tempDir(self) + "/full", cut = try tempDir(self) + "/cut"
        _ = try train(full)
        _ = try train(cut, stopAfter: 6)                     // checkpoint at 4, rows up to step 6
        XCTAssertEqual(try readColumn(cut + "/metrics.h5", "train/loss").count, 6)
        _ = try train(cut, resume: true)
        for col in ["train/step", "train/loss", "train/lr", "eval/step", "eval/loss", "router/layer_1/load"] {
            let x = try readColumn(full + "/metrics.h5", col), y = try readColumn(cut + "/metrics.h5", col)
            XCTAssertEqual(x.map(\.bitPattern), y.map(\.bitPattern), col)
        }
    }

    /// Every dataset says its units and what it is; train/step and eval/step count the
    /// same thing (steps done), so an evaluation's row lines up with the training row
    /// logged at the same step.
    /// train.stop_at ends a run at the first evaluation that reaches it, with a checkpoint
    /// there; the schedule stays train.steps (train_steps in metrics.h5); a resume knows
    /// the run is complete; a run that never reaches it trains every step; text data,
    /// which reports no accuracy, is refused.
    func testStopAtEndsTheRunAtTheFirstEvaluationThatReachesIt() throws {
        let dir = try tempDir(self)
        // accuracy is always ≥ 0: the first evaluation after a step (step 4) stops it
        let s = try train(dir + "/a", ["train.stop_at=0"])
        XCTAssertEqual(s.steps, 4)
        XCTAssertEqual(s.stepsRun, 4)
        XCTAssertEqual(try readColumn(dir + "/a/metrics.h5", "eval/step"), [0, 4])
        XCTAssertEqual(try readColumn(dir + "/a/metrics.h5", "train/step").last, 4)
        let f = try H5File(path: dir + "/a/metrics.h5", mode: .readOnly)
        XCTAssertEqual(try f.intAttribute("train_steps"), 12)
        f.close()
        XCTAssertEqual(try OpenedCheckpoint.model(dir + "/a/checkpoint.h5").state.step, 4)
        let again = try train(dir + "/a", ["train.stop_at=0"], resume: true)
        XCTAssertEqual(again.stepsRun, 0)                       // complete: nothing to do
        XCTAssertEqual(again.steps, 4)
        XCTAssertEqual(try readColumn(dir + "/a/metrics.h5", "eval/step"), [0, 4])
        // an accuracy above 1 is out of range; 1.0 is not reached by this tiny run in 12 steps
        XCTAssertThrowsError(try spec(["train.stop_at=1.5"]))
        let full = try train(dir + "/b", ["train.stop_at=1.0"])
        XCTAssertEqual(full.steps, 12)
        XCTAssertThrowsError(try spec(["data.kind=text", "model.vocab_size=256", "train.stop_at=0.9"])) { e in
            XCTAssertTrue(BMError.reason(e).contains("train.stop_at"), BMError.reason(e))
        }
    }

    func testMetricsDescribeThemselvesAndStepsAgree() throws {
        let dir = try tempDir(self) + "/m"
        _ = try train(dir)
        let f = try H5File(path: dir + "/metrics.h5", mode: .readOnly)
        defer { f.close() }
        XCTAssertEqual(try f.intAttribute("metrics_version"), MetricsLog.version)
        var checked = 0
        for group in ["train", "eval", "router/layer_1", "router/layer_3"] {
            for name in try f.group(group).children() {
                let ds = try f.dataset("\(group)/\(name)")
                XCTAssertNotNil(try? ds.stringAttribute("units"), "\(group)/\(name)")
                let d = try ds.stringAttribute("description")
                XCTAssertFalse(d.isEmpty || d.contains("see its plugin"), "\(group)/\(name): \(d)")
                checked += 1
            }
        }
        XCTAssertGreaterThanOrEqual(checked, 8 + 3 + 2 * 12)
        let trainSteps = try f.dataset("train/step").readInt64s(), evalSteps = try f.dataset("eval/step").readInt64s()
        XCTAssertEqual(trainSteps, Array(1...12))                   // log_every 1: steps done 1 … 12
        XCTAssertEqual(evalSteps, [0, 4, 8, 12])
        XCTAssertEqual(try f.dataset("router/layer_1/step").readInt64s(), trainSteps)
        let load = try f.dataset("router/layer_1/load").readInt64s()          // counts are integers
        XCTAssertEqual(load.count, 12 * 4)
        XCTAssertEqual(load.prefix(4).reduce(0, +), 4 * 16)                     // batch 4 × 16 tokens, one expert each
    }

    func testCheckpointRoundTrip() throws {
        let dir = try tempDir(self) + "/r"
        let run = try ExperimentRun(spec: try spec(), outDir: dir, resume: false)
        run.printProgress = false
        _ = try run.run()
        let fresh = try ModelBuilder.build(try spec())
        let opt = AdamW(fresh.params)
        let st = try Checkpoint.load(from: dir + "/checkpoint.h5", into: fresh, optimizer: opt)
        XCTAssertEqual(st.step, 12)
        XCTAssertEqual(opt.t, run.trainer.optimizer.t)
        let n = fresh.params.count
        XCTAssertEqual(Array(UnsafeBufferPointer(start: fresh.params.values, count: n)).map(\.bitPattern),
                       Array(UnsafeBufferPointer(start: run.model.params.values, count: n)).map(\.bitPattern))
        XCTAssertEqual(opt.m.array(n).map(\.bitPattern), run.trainer.optimizer.m.array(n).map(\.bitPattern))
        XCTAssertEqual(opt.v.array(n).map(\.bitPattern), run.trainer.optimizer.v.array(n).map(\.bitPattern))
        // names and shapes as PyTorch/Zyphra
        let f = try H5File(path: dir + "/checkpoint.h5", mode: .readOnly)
        XCTAssertEqual(try f.dataset("model/decoder.layers.0.mixer.in_proj.weight").shape, [64, 16])
        XCTAssertEqual(try f.dataset("model/decoder.layers.1.mixer.local_experts.3.linear_fc1.weight").shape, [32, 16])
        XCTAssertEqual(try f.dataset("model/decoder.layers.0.mixer.A_log").shape, [32, 4])
        XCTAssertEqual(try f.dataset("optimizer/exp_avg/embedding.word_embeddings.weight").shape, [32, 16])
        f.close()
    }

    func testMismatchedAndCorruptCheckpointsAreRejected() throws {
        let dir = try tempDir(self) + "/r"
        _ = try train(dir)
        let other = try ModelBuilder.build(try spec(["model.d_model=8"]))
        XCTAssertThrowsError(try Checkpoint.load(from: dir + "/checkpoint.h5", into: other, optimizer: nil)) {
            XCTAssertTrue("\($0)".contains("has shape [32, 16] in the checkpoint but [32, 8] in the model"), "\($0)")
        }
        let bad = dir + "/corrupt.h5"
        try Data("not hdf5 at all".utf8).write(to: URL(fileURLWithPath: bad))
        XCTAssertThrowsError(try Checkpoint.load(from: bad, into: other, optimizer: nil)) {
            XCTAssertTrue("\($0)".contains("not a BlackMambaLab checkpoint"), "\($0)")
            XCTAssertEqual(($0 as? BMError)?.exitCode, 2)
        }
    }

    /// Bad input writes nothing: the output directory is not even created.
    func testBadInputWritesNothing() throws {
        let dir = try tempDir(self) + "/never"
        XCTAssertThrowsError(try ExperimentRun(spec: try spec(["data.kind=text", "data.path=/nonexistent", "model.vocab_size=256"]), outDir: dir, resume: false))
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir))
        let used = try tempDir(self) + "/used"
        _ = try train(used)
        XCTAssertThrowsError(try ExperimentRun(spec: try spec(), outDir: used, resume: false)) {
            XCTAssertTrue("\($0)".contains("already holds a run"), "\($0)")
        }
    }

    /// A diverging run stops with a message naming the step, keeps the last good checkpoint.
    func testNonFiniteLossStopsAndKeepsTheLastCheckpoint() throws {
        let dir = try tempDir(self) + "/nan"
        let run = try ExperimentRun(spec: try spec(["train.steps=40", "train.checkpoint_every=2"]), outDir: dir, resume: false)
        run.printProgress = false
        // Poison a parameter after step 3: the next loss is NaN.
        run.stopAfter = 3
        _ = try run.run()
        let before = try Data(contentsOf: URL(fileURLWithPath: dir + "/checkpoint.h5"))
        run.model.params["decoder.layers.0.mixer.out_proj.weight"]!.w[0] = .nan
        run.stopAfter = nil
        XCTAssertThrowsError(try run.run()) { e in
            XCTAssertTrue("\(e)".contains("at step 3"), "\(e)")
            XCTAssertEqual((e as? BMError)?.exitCode, 4)
        }
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: dir + "/checkpoint.h5")), before)
    }

    /// `eval --grads` gives the gradient a training step computes (before clipping).
    func testGradientDumpMatchesATrainingStep() throws {
        let s = try spec()
        let a = try ModelBuilder.build(s), b = try ModelBuilder.build(s)
        let data = try Dataset(s)
        let B = s.train.batch, L = s.train.seqLen
        let inp = IntBuffer(count: B * L), tgt = IntBuffer(count: B * L)
        data.evalBatch(0, of: 1, B: B, L: L, inputs: inp.pointer, targets: tgt.pointer)
        _ = GradientDump.compute(model: a, batches: 1, B: B, L: L) { i, x, y in data.evalBatch(i, of: 1, B: B, L: L, inputs: x, targets: y) }
        // the training step of Trainer, stopped before clipping and the update
        b.params.zeroGrad()
        b.forward(tokens: inp.pointer, targets: tgt.pointer, B: B, L: L, pass: .train())
        b.backward(pass: .train())
        let n = a.params.count
        XCTAssertEqual(Array(UnsafeBufferPointer(start: a.params.grads, count: n)).map(\.bitPattern),
                       Array(UnsafeBufferPointer(start: b.params.grads, count: n)).map(\.bitPattern))
        XCTAssertGreaterThan(a.params.gradNorm(), 0)
    }

    /// Generation (prefill + steps through every block) gives the logits of a parallel forward.
    func testGenerationMatchesTheParallelForward() throws {
        let s = try spec(["model.layers=[mamba, moe, attention, mlp]"])
        let model = try ModelBuilder.build(s)
        var rng = RNG(seed: 3)
        let seq = (0..<10).map { _ in Int32(rng.below(32)) }
        let L = seq.count
        let tgt = [Int32](repeating: 0, count: L)
        model.forward(tokens: seq, targets: tgt, B: 1, L: L, pass: .eval())
        let ref = Array(UnsafeBufferPointer(start: model.lastLogits, count: L * 32))
        let gen = try Generator(model: model, maxLength: 16)
        XCTAssertLessThan(generationError(gen, seq, prompt: 4, ref: ref, vocab: 32), 1e-4)
    }

    /// Largest |logit − reference| over the prompt's last position and every position
    /// generated after it (prefill of seq[..<prompt], then one step per further token).
    private func generationError(_ gen: Generator, _ seq: [Int32], prompt: Int, ref: [Float], vocab V: Int) -> Float {
        var got = Array(UnsafeBufferPointer(start: gen.prefill(Array(seq.prefix(prompt))), count: V))
        var worst: Float = 0
        for v in 0..<V { worst = max(worst, abs(got[v] - ref[(prompt - 1) * V + v])) }
        for t in prompt..<seq.count {
            got = Array(UnsafeBufferPointer(start: gen.step(seq[t]), count: V))
            for v in 0..<V { worst = max(worst, abs(got[v] - ref[t * V + v])) }
        }
        return worst
    }

    /// A prompt prefilled in chunks (Mamba carries its conv history and SSM state between
    /// chunks; attention attends over its KV cache; MoE and MLP are position-wise) gives
    /// the parallel forward's logits.
    func testChunkedPrefillMatchesTheParallelForward() throws {
        for layers in ["[mamba, moe, mamba, mlp]", "[mamba, attention]"] {
            let s = try spec(["model.layers=\(layers)"])
            let model = try ModelBuilder.build(s)
            var rng = RNG(seed: 4)
            let seq = (0..<23).map { _ in Int32(rng.below(32)) }
            let L = seq.count
            model.forward(tokens: seq, targets: [Int32](repeating: 0, count: L), B: 1, L: L, pass: .eval())
            let ref = Array(UnsafeBufferPointer(start: model.lastLogits, count: L * 32))
            for chunk in [1, 3, 5, 64] {
                let gen = try Generator(model: model, maxLength: 32)
                gen.prefillChunk = chunk
                XCTAssertLessThan(generationError(gen, seq, prompt: 19, ref: ref, vocab: 32), 1e-4, "\(layers) chunk \(chunk)")
            }
        }
    }

    /// h5dump lists the documented groups, datasets (extendible) and attributes.
    func testH5dumpReadsMetrics() throws {
        let dir = try tempDir(self) + "/dump"
        _ = try train(dir)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["h5dump", "-H", dir + "/metrics.h5"]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = Pipe()
        try Needs.require(Needs.which("h5dump") != nil, "h5dump is not on PATH (Debian: hdf5-tools)")
        try p.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        for name in ["GROUP \"train\"", "DATASET \"loss\"", "DATASET \"tokens_per_s\"", "GROUP \"router\"", "GROUP \"layer_1\"",
                     "ATTRIBUTE \"spec\"", "( 12 ) / ( H5S_UNLIMITED )", "( 12, 4 ) / ( H5S_UNLIMITED, 4 )"] {
            XCTAssertTrue(text.contains(name), "h5dump output lacks \(name)")
        }
    }

    /// Python's h5py reads metrics.h5 and checkpoint.h5 with the documented names (docs/metrics.md, docs/checkpoints.md).
    func testH5pyReadsMetricsAndCheckpoint() throws {
        let dir = try tempDir(self) + "/py"
        _ = try train(dir)
        let script = """
        import h5py, sys
        m = h5py.File(sys.argv[1] + '/metrics.h5', 'r')
        for k in ['spec', 'seed', 'toolkit_version', 'blas_core', 'start_time', 'parameters_total', 'parameters_active', 'flops_per_token']:
            assert k in m.attrs, k
        assert isinstance(m.attrs['spec'], str) and 'mixer: mamba' in m.attrs['spec']
        for k in ['step', 'tokens', 'loss', 'lr', 'grad_norm', 'tokens_per_s', 'flops']:
            assert m['train/' + k].shape == (12,), k
        assert m['eval/loss'].shape == (4,) and m['eval'].attrs['metric_name'] == 'accuracy'
        assert m['router/layer_1/load'].shape == (12, 4)
        assert m['router/layer_3/sinkhorn_iters'][0] == 1
        c = h5py.File(sys.argv[1] + '/checkpoint.h5', 'r')
        assert int(c.attrs['step']) == 12
        assert c['model/decoder.layers.2.mixer.q_proj.weight'].shape == (16, 16)
        assert c['model/decoder.final_layernorm.bias'].shape == (16,)
        assert c['optimizer/exp_avg_sq/decoder.layers.1.mixer.router.weight'].shape == (4, 16)
        print('ok')
        """
        try Needs.require(Needs.h5py, "python3 with h5py is not available")
        let q = Process()
        q.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        q.arguments = ["python3", "-c", script, dir]
        let out = Pipe(), err = Pipe()
        q.standardOutput = out; q.standardError = err
        try q.run()
        let o = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let e = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        q.waitUntilExit()
        XCTAssertEqual(q.terminationStatus, 0, e)
        XCTAssertEqual(o.trimmingCharacters(in: .whitespacesAndNewlines), "ok", e)
    }
}
