import XCTest
import Foundation
@testable import BMCore
import BMLayers
import BMMixers
import BMStorage
import BMTrain
import BMSpec
import BMData
@testable import BMExperiments

/// Data-parallel steps in one process (`Trainer(shards:)`, `bmlab train --shards`): the
/// arithmetic every rank of an MPI run does, without MPI. The runs across processes
/// (2 ranks bitwise equal to 2 shards here, a killed rank, a resume on another number of
/// ranks, the Slurm launch) are `make test-mpi` (scripts/test-mpi.sh).
final class DataParallelTests: XCTestCase {
    /// Random tokens; with `ignoreShare` > 0 that share of targets is ignored at random
    /// places, so the shards of a batch score unequal numbers of tokens.
    struct RandomSource: BatchSource {
        var rng: RNG
        let vocab: Int, ignoreShare: Double
        mutating func next(inputs: UnsafeMutablePointer<Int32>, targets: UnsafeMutablePointer<Int32>, B: Int, L: Int) {
            for i in 0..<(B * L) {
                inputs[i] = Int32(rng.below(vocab))
                targets[i] = rng.uniform() < ignoreShare ? CrossEntropy(vocab: vocab).ignoreIndex : Int32(rng.below(vocab))
            }
        }
    }

    func model(_ layers: String, router: String = "topk") throws -> (LanguageModel, ExperimentSpec) {
        let s = try ExperimentSpec.parse("""
            name: dp
            model: {d_model: 16, layers: \(layers), defaults: {mamba: {d_state: 4}, mlp: {ffn: 32}, moe: {experts: 4, ffn: 8, router: {name: \(router)}}}}
            data: {kind: markov, vocab_size: 32}
            train: {batch: 8, seq_len: 16, seed: 3, optimizer: {lr: 3.0e-3}}
            """, file: "dp.yaml")
        return (try ModelBuilder.build(s), s)
    }

    /// Losses and gradient norms of `steps` steps, and the parameters after them.
    func train(_ layers: String, router: String = "topk", shards: Int, steps: Int = 3, ignoreShare: Double = 0)
        throws -> (loss: [Double], norm: [Double], params: [Float], grads: [Float], model: LanguageModel) {
        let (m, s) = try model(layers, router: router)
        let t = Trainer(model: m, settings: s.trainSettings, shards: shards)
        var src = RandomSource(rng: RNG(seed: 9), vocab: 32, ignoreShare: ignoreShare)
        var loss: [Double] = [], norm: [Double] = []
        for _ in 0..<steps {
            let r = try t.trainStep(&src)
            loss.append(r.loss); norm.append(r.gradNorm)
        }
        return (loss, norm, Array(UnsafeBufferPointer(start: m.params.values, count: m.params.count)),
                Array(UnsafeBufferPointer(start: m.params.grads, count: m.params.count)), m)
    }

    /// Shards of a batch give the gradient of the whole batch: the shards' gradients are
    /// weighted by their share of the scored tokens and summed. Float32 sums in another
    /// order differ by a few ulps a step (relative ~1e-7 per product, a few hundred terms),
    /// so the first step's gradient agrees to 1e-5 of its largest element, and losses and
    /// gradient norms over 3 AdamW steps to 2e-5 relative (parameters are not compared:
    /// AdamW divides a near-zero gradient by its own size, so ulps of one become 1e-4 of
    /// the other)
    /// — while a weighting error (each shard's mean gradient summed unweighted: twice the
    /// gradient with 2 shards) changes the norm by 100 % and fails at once. The MoE model
    /// routes top-1 without Switch's aux loss: that loss is a product of two batch means, so
    /// each shard's differs from the whole batch's (docs/distributed.md: per shard, as
    /// Megatron-LM computes it per micro-batch); routing itself is per token.
    func testShardsComputeTheWholeBatchGradient() throws {
        for layers in ["[mamba, mlp]", "[mamba, moe]"] {
            for ignore in [0.0, 0.4] {                       // equal and unequal scored tokens a shard
                let one = try train(layers, router: "topk, aux_loss: 0", shards: 1, ignoreShare: ignore)
                for k in [2, 4, 8] {
                    let many = try train(layers, router: "topk, aux_loss: 0", shards: k, ignoreShare: ignore)
                    let what = "\(layers), \(k) shards, \(ignore) ignored"
                    for i in one.loss.indices {
                        XCTAssertEqual(many.loss[i], one.loss[i], accuracy: 2e-5 * one.loss[i], "loss, step \(i), \(what)")
                        XCTAssertEqual(many.norm[i], one.norm[i], accuracy: 2e-5 * one.norm[i], "gradient norm, step \(i), \(what)")
                    }
                    let g1 = try train(layers, router: "topk, aux_loss: 0", shards: 1, steps: 1, ignoreShare: ignore).grads
                    let gk = try train(layers, router: "topk, aux_loss: 0", shards: k, steps: 1, ignoreShare: ignore).grads
                    let worst = zip(g1, gk).map { abs($0 - $1) }.max()!, scale = g1.map(abs).max()!
                    XCTAssertLessThan(worst, 1e-5 * scale, "the first step's gradient, \(what)")
                }
            }
        }
    }

    /// One shard is the single-process step, bit for bit (existing runs are unchanged).
    func testOneShardIsTheSingleProcessStep() throws {
        let a = try train("[mamba, moe]", shards: 1)
        let (m, s) = try model("[mamba, moe]")
        let t = Trainer(model: m, settings: s.trainSettings)
        var src = RandomSource(rng: RNG(seed: 9), vocab: 32, ignoreShare: 0)
        var loss: [Double] = []
        for _ in 0..<3 { loss.append(try t.trainStep(&src).loss) }
        XCTAssertEqual(loss, a.loss)
        XCTAssertEqual(Array(UnsafeBufferPointer(start: m.params.values, count: m.params.count)), a.params)
    }

    /// A router whose bias moves with its load (`lossfree`) moves it once a step, from the
    /// load summed over the shards — as one process moves it from the whole batch's load —
    /// not once per shard.
    func testLossFreeBiasMovesOnceFromTheSummedLoad() throws {
        let name = "decoder.layers.1.mixer.router.expert_bias"
        func bias(_ r: (loss: [Double], norm: [Double], params: [Float], grads: [Float], model: LanguageModel)) -> [Float] {
            let p = r.model.params[name]!
            return Array(UnsafeBufferPointer(start: p.w, count: p.count))
        }
        let one = try train("[mamba, moe]", router: "lossfree", shards: 1, steps: 1)
        let two = try train("[mamba, moe]", router: "lossfree", shards: 2, steps: 1)
        let four = try train("[mamba, moe]", router: "lossfree", shards: 4, steps: 1)
        XCTAssertNotEqual(bias(one), [0, 0, 0, 0], "the bias moved")
        XCTAssertEqual(bias(two), bias(one))
        XCTAssertEqual(bias(four), bias(one))
    }

    /// A sharded step's router statistics describe the whole batch: the load of a
    /// per-token router summed over the shards is the single-process step's load (every
    /// token counted once), and values are the shards' mean.
    func testRouterStatisticsCoverTheWholeBatch() throws {
        func stats(_ shards: Int) throws -> [(String, LayerStatistic)] {
            let (m, s) = try model("[mamba, moe]", router: "topk, aux_loss: 0")
            let t = Trainer(model: m, settings: s.trainSettings, shards: shards)
            var src = RandomSource(rng: RNG(seed: 9), vocab: 32, ignoreShare: 0)
            _ = try t.trainStep(&src)
            return shards == 1 ? m.blocks[1].mixer.statistics : try XCTUnwrap(t.lastStatistics?[1])
        }
        func load(_ s: [(String, LayerStatistic)]) -> [Int] {
            guard case .counts(let c)? = s.first(where: { $0.0 == "load" })?.1 else { return [] }
            return c
        }
        let one = try stats(1)
        XCTAssertEqual(load(one).reduce(0, +), 8 * 16, "one expert a token")
        for k in [2, 4] {
            let many = try stats(k)
            XCTAssertEqual(load(many), load(one), "\(k) shards: the summed load")
            XCTAssertEqual(many.map(\.0), one.map(\.0), "the same statistics")
        }
    }

    /// The parameter hash the ranks compare changes with any one bit of any parameter and
    /// not with the gradients (what a diverged rank would differ in).
    func testParameterHashSeesOneBit() throws {
        let (m, _) = try model("[mamba, moe]")
        let h = m.params.valuesHash()
        XCTAssertEqual(m.params.valuesHash(), h)
        m.params.grads[0] = 42
        XCTAssertEqual(m.params.valuesHash(), h, "gradients are not hashed")
        for i in [0, m.params.count / 2, m.params.count - 1] {
            let old = m.params.values[i]
            m.params.values[i] = Float(bitPattern: old.bitPattern ^ 1)           // the last bit of one value
            XCTAssertNotEqual(m.params.valuesHash(), h, "element \(i)")
            m.params.values[i] = old
        }
        XCTAssertEqual(m.params.valuesHash(), h)
    }

    /// `bmlab train --shards`: the run records how it ran (metrics.h5's world_size, shards,
    /// rank_batch; a comment atop spec.yaml), and a batch that cannot be cut evenly is
    /// refused, naming the key.
    func testRunRecordsItsShardsAndRefusesUnevenBatches() throws {
        let dir = try tempDir(self)
        let (_, s) = try model("[mamba, mlp]")
        var spec = s
        spec.train.steps = 2; spec.train.logEvery = 1; spec.train.evalEvery = 2; spec.train.checkpointEvery = 2
        let r = try ExperimentRun(spec: spec, outDir: dir + "/run", resume: false, shards: 4)
        r.printProgress = false
        _ = try r.run()
        let f = try H5File(path: dir + "/run/metrics.h5", mode: .readOnly)
        XCTAssertEqual(try f.intAttribute("world_size"), 1)
        XCTAssertEqual(try f.intAttribute("shards"), 4)
        XCTAssertEqual(try f.intAttribute("rank_batch"), 8)
        f.close()
        let yaml = try String(contentsOfFile: dir + "/run/spec.yaml", encoding: .utf8)
        XCTAssertTrue(yaml.hasPrefix("# data-parallel: 1 rank(s), 4 shard(s) of 2 rows"), yaml)
        XCTAssertNoThrow(try ExperimentSpec.load(path: dir + "/run/spec.yaml", overrides: []), "spec.yaml still reads")
        XCTAssertThrowsError(try ExperimentRun(spec: spec, outDir: dir + "/uneven", resume: false, shards: 3)) { e in
            XCTAssertTrue("\(e)".contains("train.batch 8 cannot be cut into 3 equal shards"), "\(e)")
        }
    }
}
