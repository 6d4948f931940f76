import XCTest
import BMTestSupport
import Foundation
@testable import BMCore
@testable import BMLayers
@testable import BMMixers
@testable import BMRouting
@testable import BMStorage
@testable import BMTrain
@testable import BMExperiments
@testable import BMSpec
@testable import BMData

/// What a study's conclusions rest on (docs/data.md, docs/routing.md, docs/flops.md):
/// the split rule, evaluation windows, evaluation routing and its agreement, the
/// auxiliary-loss-free router, argmax fine-tuning, the test split and the FLOP count.
final class StudyProtocolTests: XCTestCase {
    override func setUp() { XCTAssertNoThrow(try BLAS.setup()) }

    // MARK: the split rule

    /// Among the first n blocks, validation holds n · fraction blocks within ±2.5, and 40
    /// consecutive blocks at 0.05 hold 1–3 (what docs/data.md promises).
    func testGoldenRatioRuleSpreadsEveryShareEvenly() {
        for (v, t) in [(0.05, 0.05), (0.1, 0.05)] {
            var val = 0, test = 0
            for n in 1...5_000 {
                let p = Corpus.part(ofBlock: n - 1, validation: v, test: t)
                if p == 1 { val += 1 } else if p == 2 { test += 1 }
                XCTAssertLessThanOrEqual(abs(Double(val) - Double(n) * v), 2.5, "validation, first \(n) blocks at \(v)")
                XCTAssertLessThanOrEqual(abs(Double(test) - Double(n) * t), 2.5, "test, first \(n) blocks at \(t)")
            }
        }
        for start in 0..<2_000 {
            let c = (start..<start + 40).filter { Corpus.part(ofBlock: $0, validation: 0.05, test: 0.05) == 1 }.count
            XCTAssertTrue((1...3).contains(c), "blocks \(start)..<\(start + 40): \(c) validation blocks")
        }
    }

    /// Every source gives its share to each part, block by block, in source order; no
    /// token is lost or repeated.
    func testSplitTakesEverySourceEvenly() {
        var rng = RNG(seed: 3)
        let sizes = [2_000, 37_000, 400_000, 64]
        let sources = sizes.enumerated().map { i, n in
            Corpus.Source(name: "f\(i)", tokens: (0..<n).map { _ in UInt16(rng.below(256)) })
        }
        let s = Corpus.split(sources, validation: 0.05, test: 0.05)
        XCTAssertEqual(s.train.count + s.validation.count + s.test.count, sizes.reduce(0, +))
        var expect: [[UInt16]] = [[], [], []]
        for src in sources {
            let size = Corpus.blockSize(src.tokens.count)
            XCTAssertEqual(size, min(8192, max(64, src.tokens.count / 400)))
            var b = 0
            for start in stride(from: 0, to: src.tokens.count, by: size) {
                expect[Corpus.part(ofBlock: b, validation: 0.05, test: 0.05)] += src.tokens[start..<min(src.tokens.count, start + size)]
                b += 1
            }
        }
        XCTAssertEqual(s.train, expect[0]); XCTAssertEqual(s.validation, expect[1]); XCTAssertEqual(s.test, expect[2])
        for (src, per) in zip(sources.dropLast(), s.perSource.dropLast()) {     // the 64-token file is one block
            let share = Double(per.validation) / Double(src.tokens.count)
            XCTAssertEqual(share, 0.05, accuracy: src.tokens.count >= 25_600 ? 0.007 : 0.05, "\(src.name): validation share \(share)")
            XCTAssertGreaterThan(per.test, 0, src.name)
        }
    }

    /// `bible -f` lines lose their reference, keep their text and line ends.
    func testVerseReferencesAreStripped() {
        let text = "Ge1:1 In the beginning God created the heaven and the earth.\nRe22:21 The grace of our Lord Jesus Christ be with you all. Amen.\n"
        let out = String(decoding: Corpus.stripVerseReferences(Data(text.utf8)).map { UInt8($0) }, as: UTF8.self)
        XCTAssertEqual(out, "In the beginning God created the heaven and the earth.\nThe grace of our Lord Jesus Christ be with you all. Amen.\n")
    }

    /// The english corpus: at least 10 MB from the three packages, each held out evenly.
    func testEnglishCorpusIsTenMegabytesAndSplitsEverySource() throws {
        try Needs.require(FileManager.default.fileExists(atPath: Corpus.gcidePath) && FileManager.default.isExecutableFile(atPath: Corpus.bibleProgram),
                          "Debian's bible-kjv and dict-gcide are not installed")
        let sources = try Corpus.sources(.english, file: "test")
        let total = sources.reduce(0) { $0 + $1.tokens.count }
        XCTAssertGreaterThan(total, 10_000_000)
        let bible = try XCTUnwrap(sources.first { $0.name == "bible-kjv" })
        XCTAssertGreaterThan(bible.tokens.count, 4_000_000)
        XCTAssertTrue(String(decoding: bible.tokens.prefix(40).map { UInt8($0) }, as: UTF8.self).hasPrefix("In the beginning God created"))
        let s = Corpus.split(sources, validation: 0.05, test: 0.05)
        for per in s.perSource where per.total >= 25_600 {      // 400 blocks or more: within 2.5 blocks
            XCTAssertEqual(Double(per.validation) / Double(per.total), 0.05, accuracy: 0.007, per.name)
            XCTAssertEqual(Double(per.test) / Double(per.total), 0.05, accuracy: 0.007, per.name)
        }
    }

    // MARK: evaluation windows

    func textSpec(_ dir: String, _ overrides: [String] = []) throws -> ExperimentSpec {
        var rng = RNG(seed: 11)
        let bytes = (0..<60_000).map { _ in UInt8(97 + rng.below(26)) }
        let path = dir + "/text.txt"
        FileManager.default.createFile(atPath: path, contents: Data(bytes))
        return try ExperimentSpec.parse("""
            name: text
            model: {d_model: 16, layers: [mamba, moe], defaults: {mamba: {d_state: 4}, moe: {experts: 4, ffn: 16}}}
            data: {kind: text, path: \(path), val_fraction: 0.1, test_fraction: 0.05}
            train: {steps: 6, batch: 2, seq_len: 32, log_every: 2, eval_every: 3, eval_batches: 2, checkpoint_every: 3}
            """, file: "text.yaml", overrides: overrides)
    }

    /// Evenly spaced windows span the whole validation split; enough batches score
    /// every window once.
    func testEvaluationWindowsSpanTheWholeSplit() throws {
        let dir = try tempDir(self)
        let ds = try Dataset(try textSpec(dir))
        let L = 32
        let slots = ds.windows(.validation, L: L)
        let B = (2...7).first { slots % $0 != 0 }!        // so the last covering batch has ignored rows
        XCTAssertEqual(slots, (ds.count(.validation) - 1) / L)
        let v = ds.split.validation
        func starts(_ batches: Int) -> [Int] {
            var out: [Int] = []
            let inp = IntBuffer(count: B * L), tgt = IntBuffer(count: B * L)
            for i in 0..<batches {
                ds.evalBatch(i, of: batches, B: B, L: L, inputs: inp.pointer, targets: tgt.pointer)
                for b in 0..<B {
                    if tgt.pointer[b * L] == -1 {                        // past the split's windows: ignored
                        XCTAssertTrue((0..<L).allSatisfy { tgt.pointer[b * L + $0] == -1 })
                        continue
                    }
                    // find the window by its content (the split is random letters: unique)
                    let w = (0..<slots).first { s in (0..<L).allSatisfy { Int32(v[s * L + $0]) == inp.pointer[b * L + $0] } }!
                    XCTAssertEqual(tgt.pointer[b * L + L - 1], Int32(v[w * L + L]))
                    out.append(w)
                }
            }
            return out
        }
        let few = starts(2)                                   // 2·B windows of `slots`
        XCTAssertEqual(few, (0..<(2 * B)).map { $0 * slots / (2 * B) })
        XCTAssertGreaterThanOrEqual(few.last!, slots * (2 * B - 1) / (2 * B) - 1, "reaches the end of the split")
        let all = starts(ds.batchesCovering(.validation, B: B, L: L))
        XCTAssertEqual(all.sorted(), Array(0..<slots), "every window scored once")
        XCTAssertGreaterThan(ds.batchesCovering(.validation, B: B, L: L) * B, slots, "the last batch had ignored rows")
    }

    // MARK: evaluation routing

    func moeModel(router: String, seed: Int = 1) throws -> (LanguageModel, ExperimentSpec) {
        let s = try ExperimentSpec.parse("""
            name: r
            model: {d_model: 16, layers: [moe, moe], defaults: {moe: {experts: 4, ffn: 8, router: {name: \(router)}}}}
            data: {kind: markov, vocab_size: 16}
            train: {batch: 2, seq_len: 16, seed: \(seed)}
            """, file: "r.yaml")
        return (try ModelBuilder.build(s), s)
    }

    func evaluate(_ m: LanguageModel, _ tokens: [Int32], routing: EvalRouting) -> Evaluator.Routed {
        let B = 2, L = tokens.count / 2
        return try! Evaluator.evaluate(model: m, batches: 1, B: B, L: L, metric: .none, routing: routing) { _, inp, tgt in
            for i in 0..<(B * L) { inp[i] = tokens[i]; tgt[i] = tokens[(i + 1) % tokens.count] }
        }
    }

    /// An evaluation reads only its own pass: with the random router routed as in training
    /// (seeded by the pass's step), the same weights give the same loss whichever training
    /// step ran before it. The trainer's steps here move no weight (learning rate 0), so
    /// only state shared between passes could change the evaluation; the step number once
    /// was (a shared mutable context), and evaluations after different steps differed.
    func testAnEvaluationDependsOnlyOnItsPass() throws {
        let (m, _) = try moeModel(router: "random")
        var rng = RNG(seed: 4)
        let tokens = (0..<32).map { _ in Int32(rng.below(16)) }
        let trainer = Trainer(model: m, settings: TrainSettings(steps: 10, batch: 2, seqLen: 16, schedule: .constant(lr: 0)))
        struct Repeat: BatchSource {          // the same batch every step
            let tokens: [Int32]
            mutating func next(inputs: UnsafeMutablePointer<Int32>, targets: UnsafeMutablePointer<Int32>, B: Int, L: Int) {
                for i in 0..<(B * L) { inputs[i] = tokens[i]; targets[i] = tokens[(i + 1) % tokens.count] }
            }
        }
        var src = Repeat(tokens: tokens)
        let weights = { Array(UnsafeBufferPointer(start: m.params.values, count: m.params.count)) }
        let before = weights()
        let first = evaluate(m, tokens, routing: .train).primary.loss
        var losses: [Double] = []
        for _ in 0..<3 {
            _ = try trainer.trainStep(&src)
            losses.append(evaluate(m, tokens, routing: .train).primary.loss)
        }
        XCTAssertEqual(weights(), before, "a step at learning rate 0 moved the weights")
        XCTAssertEqual(losses, [first, first, first])
        // and the training assignment really does depend on the step: two training passes
        // at different steps route differently on the same batch
        func trainLoss(step: Int) -> Double {
            let tgt = tokens.map { ($0 + 1) % 16 }
            return tokens.withUnsafeBufferPointer { t in tgt.withUnsafeBufferPointer { g in
                m.forward(tokens: t.baseAddress!, targets: g.baseAddress!, B: 2, L: 16, pass: .train(step: step)).loss } }
        }
        XCTAssertNotEqual(trainLoss(step: 1), trainLoss(step: 2))
    }

    /// `both` = the two single routings; the Sinkhorn choice differs from the argmax on
    /// some tokens (agreement < 1), top-k's does not (agreement 1, equal losses).
    func testBothRoutingsAreTheSingleOnesSideBySide() throws {
        var rng = RNG(seed: 4)
        let tokens = (0..<32).map { _ in Int32(rng.below(16)) }
        for router in ["sinkhorn", "topk"] {
            let (m, _) = try moeModel(router: router)
            // larger router weights, so logits are far from uniform
            for p in m.params.params where p.name.hasSuffix("router.weight") { for i in 0..<p.count { p.w[i] *= 40 } }
            let both = evaluate(m, tokens, routing: .both)
            let a = evaluate(m, tokens, routing: .argmax), t = evaluate(m, tokens, routing: .train)
            XCTAssertEqual(both.argmax!.loss, a.primary.loss, router)
            XCTAssertEqual(both.train!.loss, t.primary.loss, router)
            XCTAssertEqual(both.primary.loss, a.primary.loss, "the primary result is the causal one")
            XCTAssertEqual(both.agreement.map(\.layer), [0, 1])
            if router == "topk" {
                XCTAssertEqual(both.agreement.map(\.value), [1, 1])
                XCTAssertEqual(both.argmax!.loss, both.train!.loss)
            } else {
                XCTAssertLessThan(both.agreement[0].value, 1, "Sinkhorn rebalances some tokens away from their argmax")
                XCTAssertGreaterThan(both.agreement[0].value, 0)
                XCTAssertNotEqual(both.argmax!.loss, both.train!.loss)
            }
        }
    }

    /// argmax routing is causal, training's Sinkhorn routing is not: changing the last
    /// token of a sequence moves the loss of an earlier position only under `train`.
    func testTrainRoutingIsNotCausalArgmaxIs() throws {
        let (m, _) = try moeModel(router: "sinkhorn")
        for p in m.params.params where p.name.hasSuffix("router.weight") { for i in 0..<p.count { p.w[i] *= 40 } }
        var rng = RNG(seed: 9)
        let base = (0..<32).map { _ in Int32(rng.below(16)) }
        func earlyLosses(_ tokens: [Int32], _ routing: EvalRouting) -> [Float] {
            let tgt = tokens.map { ($0 + 1) % 16 }
            _ = tokens.withUnsafeBufferPointer { t in tgt.withUnsafeBufferPointer { g in
                m.forward(tokens: t.baseAddress!, targets: g.baseAddress!, B: 2, L: 16, pass: .eval(routing: routing)) } }
            // log-probabilities of the first 8 positions of sequence 0
            return (0..<8).map { i in m.lastLogits[i * 16 + Int(tgt[i])] }
        }
        var changed = base
        for i in 8..<16 { changed[i] = (changed[i] + 5) % 16 }     // later tokens of sequence 0
        changed[16..<32] = base[16..<32]
        XCTAssertEqual(earlyLosses(base, .argmax), earlyLosses(changed, .argmax), "argmax: earlier positions unchanged")
        var differs = false
        for trial in 0..<8 {
            var c = base
            for i in 8..<32 { c[i] = Int32((Int(c[i]) + trial + 1) % 16) }
            if earlyLosses(base, .train) != earlyLosses(c, .train) { differs = true; break }
        }
        XCTAssertTrue(differs, "train routing: a later token changes an earlier position's output")
    }

    // MARK: the auxiliary-loss-free router

    /// b ← b + rate · sign(mean − load), then re-centred to mean 0.
    func testLossFreeBiasUpdateFollowsTheSignRule() {
        let r = SigmoidTop1Router(biasRate: 0.1, alwaysBiased: true)
        var bias: [Float] = [0, 0, 0, 0]
        bias.withUnsafeMutableBufferPointer { r.updateBias($0.baseAddress!, load: [10, 0, 5, 5]) }
        XCTAssertEqual(bias[0], -0.1, accuracy: 1e-7); XCTAssertEqual(bias[1], 0.1, accuracy: 1e-7)
        XCTAssertEqual(bias[2], 0, accuracy: 1e-7); XCTAssertEqual(bias[3], 0, accuracy: 1e-7)
        bias.withUnsafeMutableBufferPointer { r.updateBias($0.baseAddress!, load: [0, 12, 4, 4]) }
        // + [0.1, −0.1, 0.1, 0.1] = [0, 0, 0.1, 0.1], mean 0.05 → [−0.05, −0.05, 0.05, 0.05]
        for (b, e) in zip(bias, [Float(-0.05), -0.05, 0.05, 0.05]) { XCTAssertEqual(b, e, accuracy: 1e-6) }
    }

    /// The bias selects (argmax of sigmoid(logit) + b), the gate ignores it.
    func testLossFreeBiasSelectsButDoesNotGate() {
        let r = SigmoidTop1Router(biasRate: 0.001, alwaysBiased: true)
        let logits: [Float] = [2, 0, 0, 0,   0, 1, 0, 0]
        let bias: [Float] = [0, 0, 0.9, 0]
        let a = Assignment()
        var st = RouterStats()
        logits.withUnsafeBufferPointer { l in bias.withUnsafeBufferPointer { b in
            let input = RouteInput(logits: l.baseAddress!, tokens: nil, T: 2, E: 4, mode: .eval, seed: 0, expertBias: b.baseAddress!)
            r.assign(input, a, stats: &st)
            _ = r.gates(input, a, stats: &st)
        } }
        // token 0: σ(2) = 0.881 > σ(0) + 0.9 = 1.4? no: 1.4 wins → expert 2; token 1: σ(1) = 0.731 < 1.4 → expert 2
        XCTAssertEqual([a.expert.pointer[0], a.expert.pointer[1]], [2, 2])
        XCTAssertEqual(a.gate.pointer[0], 0.5, accuracy: 1e-6, "gate is sigmoid of the chosen logit (0), without the bias")
    }

    /// Training moves `router.expert_bias` (never its optimizer moments), and the bias
    /// evens the load: the most loaded expert's share falls.
    func testLossFreeTrainingBalancesWithoutGradient() throws {
        let dir = try tempDir(self)
        func run(_ rate: Double) throws -> (bias: [Double], maxShare: Double) {
            let s = try ExperimentSpec.parse("""
                name: lf
                model: {d_model: 16, layers: [mamba, moe], defaults: {mamba: {d_state: 4}, moe: {experts: 4, ffn: 8, router: {name: lossfree, rate: \(rate)}}}}
                data: {kind: markov, vocab_size: 16}
                train: {steps: 60, batch: 4, seq_len: 16, log_every: 60, eval_every: 60, checkpoint_every: 60}
                """, file: "lf.yaml")
            let r = try ExperimentRun(spec: s, outDir: dir + "/\(rate)", resume: false)
            r.printProgress = false
            _ = try r.run()
            let f = try H5File(path: dir + "/\(rate)/checkpoint.h5", mode: .readOnly)
            defer { f.close() }
            let bias = try f.dataset("model/decoder.layers.1.mixer.router.expert_bias").readDoubles()
            XCTAssertEqual(try f.dataset("optimizer/exp_avg/decoder.layers.1.mixer.router.expert_bias").readDoubles(), [0, 0, 0, 0])
            let load = try readColumn(dir + "/\(rate)/metrics.h5", "router/layer_1/load")
            return (bias, load.max()! / load.reduce(0, +))
        }
        let off = try run(0), on = try run(0.05)
        XCTAssertEqual(off.bias, [0, 0, 0, 0])
        XCTAssertEqual(on.bias.reduce(0, +), 0, accuracy: 1e-5, "re-centred")
        XCTAssertGreaterThan(on.bias.map(abs).max()!, 0.05)
        XCTAssertLessThan(on.maxShare, off.maxShare, "bias evens the load (\(on.maxShare) vs \(off.maxShare))")
    }

    /// Auxiliary-loss-free balancing as an option of `sigmoid-top1` and of `topk` (without
    /// its aux loss): with `bias_rate` the bias moves (re-centred), evens the load, and
    /// gets no optimizer state; at rate 0 the layer has no bias at all.
    func testBiasBalancingIsAnOptionOfSigmoidTop1AndTopK() throws {
        let dir = try tempDir(self)
        for router in ["{name: sigmoid-top1", "{name: topk, aux_loss: 0, z_loss: 0"] {
            func run(_ rate: Double) throws -> (bias: [Double]?, maxShare: Double) {
                let out = dir + "/\(router.count)-\(rate)"
                let s = try ExperimentSpec.parse("""
                    name: bias
                    model: {d_model: 16, layers: [mamba, moe], defaults: {mamba: {d_state: 4}, moe: {experts: 4, ffn: 8, router: \(router), bias_rate: \(rate)}}}}
                    data: {kind: markov, vocab_size: 16}
                    train: {steps: 60, batch: 4, seq_len: 16, log_every: 60, eval_every: 60, checkpoint_every: 60}
                    """, file: "bias.yaml")
                let r = try ExperimentRun(spec: s, outDir: out, resume: false)
                r.printProgress = false
                _ = try r.run()
                let f = try H5File(path: out + "/checkpoint.h5", mode: .readOnly)
                defer { f.close() }
                let name = "decoder.layers.1.mixer.router.expert_bias"
                var bias: [Double]? = nil
                if f.exists("model/\(name)") {
                    bias = try f.dataset("model/\(name)").readDoubles()
                    XCTAssertEqual(try f.dataset("optimizer/exp_avg/\(name)").readDoubles(), [0, 0, 0, 0], router)
                }
                let load = try readColumn(out + "/metrics.h5", "router/layer_1/load")
                return (bias, load.max()! / load.reduce(0, +))
            }
            let off = try run(0), on = try run(0.05)
            XCTAssertNil(off.bias, "\(router): no bias at rate 0")
            let b = try XCTUnwrap(on.bias, router)
            XCTAssertEqual(b.reduce(0, +), 0, accuracy: 1e-5, "\(router): re-centred")
            // 60 steps of ±0.05 that oscillate once the load is even (topk ends near 0.04,
            // sigmoid-top1 above 0.05): a bias that moved, not one left at 0
            XCTAssertGreaterThan(b.map(abs).max()!, 0.02, router)
            XCTAssertLessThan(on.maxShare, off.maxShare, "\(router): the bias evens the load (\(on.maxShare) vs \(off.maxShare))")
        }
    }

    /// A gradient dump, evaluations and a gradient check's forwards leave the bias alone:
    /// only the trainer's step moves it.
    func testLossFreeBiasMovesOnlyInATrainingStep() throws {
        let (m, s) = try moeModel(router: "lossfree")
        let bias = m.params.params.filter { $0.name.hasSuffix("router.expert_bias") }
        XCTAssertEqual(bias.count, 2)
        var rng = RNG(seed: 2)
        let tokens = (0..<32).map { _ in Int32(rng.below(16)) }
        let fill: (Int, UnsafeMutablePointer<Int32>, UnsafeMutablePointer<Int32>) -> Void = { _, inp, tgt in
            for i in 0..<32 { inp[i] = tokens[i]; tgt[i] = tokens[(i + 1) % 32] }
        }
        _ = GradientDump.compute(model: m, batches: 3, B: 2, L: 16, fill: fill)
        _ = try Evaluator.evaluate(model: m, batches: 2, B: 2, L: 16, metric: .none, routing: .both, fill: fill)
        XCTAssertTrue(bias.allSatisfy { b in (0..<b.count).allSatisfy { b.w[$0] == 0 } }, "unchanged outside training")
        var source = DatasetSource(data: try Dataset(s), rng: RNG(seed: 1))
        let t = Trainer(model: m, settings: s.trainSettings)
        _ = try t.trainStep(&source)
        XCTAssertTrue(bias.contains { b in (0..<b.count).contains { b.w[$0] != 0 } }, "a training step moves it")
    }

    /// A gradient dump is the gradient of the mean loss over every scored target: a batch
    /// whose rows are all ignored (past a split's windows) changes nothing.
    func testGradientDumpWeightsBatchesByScoredTargets() throws {
        let (m, _) = try moeModel(router: "topk")
        var rng = RNG(seed: 5)
        let tokens = (0..<32).map { _ in Int32(rng.below(16)) }
        func fill(ignoreSecond: Bool) -> (Int, UnsafeMutablePointer<Int32>, UnsafeMutablePointer<Int32>) -> Void {
            { i, inp, tgt in
                for j in 0..<32 { inp[j] = tokens[j]; tgt[j] = (i == 1 && ignoreSecond) ? -1 : tokens[(j + 1) % 32] }
            }
        }
        let one = GradientDump.compute(model: m, batches: 1, B: 2, L: 16, fill: fill(ignoreSecond: true))
        let g1 = Array(UnsafeBufferPointer(start: m.params.grads, count: m.params.count))
        let two = GradientDump.compute(model: m, batches: 2, B: 2, L: 16, fill: fill(ignoreSecond: true))
        let g2 = Array(UnsafeBufferPointer(start: m.params.grads, count: m.params.count))
        XCTAssertEqual(one, two)
        XCTAssertEqual(g1, g2, "an ignored batch adds nothing (it would halve the gradient if batches were weighted equally)")
        XCTAssertTrue(g1.contains { $0 != 0 })
    }

    /// A run stored before the block split existed is not resumed under it.
    func testARunFromTheTailSplitIsNotResumedUnderTheBlockSplit() throws {
        let dir = try tempDir(self)
        let s = try textSpec(dir)
        let now = try s.resolvedYAML()
        XCTAssertTrue(now.contains("  split: blocks\n") && now.contains("  test_fraction: 0.05\n"))
        // stored before data.split and data.test_fraction existed: the tail split
        let old = now.replacingOccurrences(of: "  split: blocks\n", with: "").replacingOccurrences(of: "  test_fraction: 0.05\n", with: "")
        let diff = try XCTUnwrap(try SpecDiff.firstDifference(stored: old, now: s))
        XCTAssertTrue(diff.hasPrefix("data.split is absent (an older version's tail split) in the stored spec but blocks now"), diff)
        // stored with test_fraction but before data.split was recorded: already the block split
        XCTAssertNil(try SpecDiff.firstDifference(stored: now.replacingOccurrences(of: "  split: blocks\n", with: ""), now: s))
        XCTAssertNil(try SpecDiff.firstDifference(stored: now, now: s))
    }

    /// No test split unless something scores it; asking to score none is an error naming both keys.
    func testTestFractionZero() throws {
        let dir = try tempDir(self)
        let ds = try Dataset(try textSpec(dir, ["data.test_fraction=0"]))
        XCTAssertEqual(ds.count(.test), 0)
        XCTAssertThrowsError(try Dataset(try textSpec(dir, ["data.test_fraction=0", "eval.test=true"]))) { e in
            XCTAssertTrue("\(e)".contains("eval.test is true but data.test_fraction is 0"), "\(e)")
        }
    }

    // MARK: argmax fine-tuning, the test split, metrics

    func testArgmaxRoutingStepsTheTestSplitAndEvaluationRecords() throws {
        let dir = try tempDir(self)
        let s = try textSpec(dir, ["train.argmax_routing_steps=2", "train.log_every=1", "model.defaults.moe.router.name=sinkhorn",
                                   "eval.test=true", "eval.test_batches=3"])
        let run = try ExperimentRun(spec: s, outDir: dir + "/run", resume: false)
        run.printProgress = false
        _ = try run.run()
        let m = dir + "/run/metrics.h5"
        // Sinkhorn runs in the first 4 steps (iterations > 0), not in the last 2 (argmax)
        let iters = try readColumn(m, "router/layer_1/sinkhorn_iters")
        XCTAssertEqual(iters.count, 6)
        XCTAssertTrue(iters.prefix(4).allSatisfy { $0 > 0 }, "\(iters)")
        XCTAssertEqual(Array(iters.suffix(2)), [0, 0])
        XCTAssertEqual(try readColumn(m, "test/step"), [6])
        XCTAssertEqual(try readColumn(m, "test/tokens"), [Double(3 * 2 * 32)])
        XCTAssertEqual(try readColumn(m, "eval/tokens"), [128, 128, 128])
        do {
            let f = try H5File(path: m, mode: .readOnly)
            defer { f.close() }
            let ds = try Dataset(s)
            XCTAssertEqual(try f.group("eval").intAttribute("split_tokens"), ds.count(.validation))
            XCTAssertEqual(try f.group("eval").stringAttribute("routing"), "both")
            XCTAssertEqual(try f.dataset("eval/routing_agreement").shape, [3, 1])
            let la = try f.dataset("test/loss_argmax").readDoubles(), lt = try f.dataset("test/loss_train").readDoubles()
            XCTAssertEqual(try f.dataset("test/loss").readDoubles(), la)
            XCTAssertTrue(la[0].isFinite && lt[0].isFinite)
        }
        // a resume of the complete run adds no second test row
        let again = try ExperimentRun(spec: s, outDir: dir + "/run", resume: true)
        again.printProgress = false
        _ = try again.run()
        XCTAssertEqual(try readColumn(m, "test/step"), [6])
    }

    // MARK: FLOPs

    /// Each plugin's terms against a count by hand for one small layer (docs/flops.md).
    func testFlopTermsMatchAHandCount() throws {
        let s = try ExperimentSpec.parse("""
            name: f
            model:
              d_model: 16
              layers: [mamba, {mixer: moe, router: sinkhorn}, {mixer: attention, heads: 2, rope: true}, {mixer: moe, router: topk}, s4d, mlp,
                       {mixer: moe, router: lossfree}, {mixer: moe, router: {name: expert-choice, capacity_factor: 2.0}}, {mixer: moe, router: hash},
                       {mixer: moe, router: random}]
              defaults: {mamba: {d_state: 4, d_conv: 4, expand: 2}, s4d: {d_state: 4, d_conv: 4, expand: 2}, moe: {experts: 4, ffn: 8}, mlp: {ffn: 8}}
              final_norm: layernorm
            data: {kind: markov, vocab_size: 16}
            train: {seq_len: 8}
            """, file: "f.yaml")
        let m = try ModelBuilder.build(s, allocate: false)
        func terms(_ i: Int) -> [String: Double] {
            Dictionary(uniqueKeysWithValues: m.blocks[i].mixer.flopTerms(seqLen: 8).map { ($0.name, $0.flops) })
        }
        // mamba, E = 32, N = 4, K = 4: scan 4·7·32·4; conv 3·2·4·32; element-wise 3·(4+4+2+6)·32
        XCTAssertEqual(terms(0), ["selective scan": 3584, "causal conv": 768, "ssm element-wise": 1536])
        // s4d: no per-token softplus: 3·(4+2+6)·32
        XCTAssertEqual(terms(4), ["selective scan": 3584, "causal conv": 768, "ssm element-wise": 1152])
        // sinkhorn, E = 4, F = 8, d = 16: exp 2·4 + one iteration 4·4; gate 3·4; softmax 5·4;
        // SwiGLU 3·6·8; combine 3·2·16
        XCTAssertEqual(terms(1), ["sinkhorn (1 iteration)": 24, "router gate": 12, "router softmax (statistics)": 20,
                                  "expert activation": 144, "expert combine": 96])
        // top-1 with aux and z losses: softmax 3·5·4, aux 3·4, z 3·2
        XCTAssertEqual(terms(3), ["router softmax": 60, "router aux loss": 12, "router z-loss": 6, "expert activation": 144, "expert combine": 96])
        // attention, L = 8, d = 16, H = 2: 3·2·8·16; softmax 3·5·2·4; rope 3·3·2·16
        XCTAssertEqual(terms(2), ["attention scores and values": 768, "attention softmax": 120, "rotary embedding": 288])
        XCTAssertEqual(terms(5), ["mlp activation": 144])
        // lossfree: choice (4 + 1)·4 once, gate 3·4, statistics softmax 5·4
        XCTAssertEqual(terms(6), ["router choice": 20, "router gate": 12, "router softmax (statistics)": 20, "expert activation": 144, "expert combine": 96])
        // expert choice (capacity factor 2: two experts a token on average): softmax 3·5·4; activation and combine × 2
        XCTAssertEqual(terms(7), ["router softmax": 60, "expert activation": 288, "expert combine": 192])
        // hash and random: no router computation
        XCTAssertEqual(terms(8), ["expert activation": 144, "expert combine": 96])
        XCTAssertEqual(terms(9), ["expert activation": 144, "expert combine": 96])
        let c = ModelBuilder.counts(m, seqLen: 8)
        // 10 blocks × 3·(5·16 + 16) + final LayerNorm 3·8·16; the loss 3·5·16
        let norms = c.flopTerms.first { $0.name == "norms and residual adds" }!.flops
        XCTAssertEqual(norms, 10 * 288 + 384)
        XCTAssertEqual(c.flopTerms.first { $0.name == "loss softmax" }!.flops, 240)
        let layerSum = (0..<10).reduce(0.0) { $0 + terms($1).values.reduce(0, +) }
        XCTAssertEqual(c.flopsPerToken, 6 * Double(c.matmulActive) + layerSum + norms + 240)
        XCTAssertNil(c.flopTerms.first { $0.name == "output head at scored positions" })
        // a task that scores a quarter of the positions: the head (V·D = 16·16 weights) and
        // the loss's softmax run on those only
        let q = ModelBuilder.counts(m, seqLen: 8, scoredFraction: 0.25)
        XCTAssertEqual(q.flopTerms.first { $0.name == "output head at scored positions" }!.flops, 6 * 256 * 0.25)
        XCTAssertEqual(q.flopTerms.first { $0.name == "loss softmax" }!.flops, 60)
        XCTAssertEqual(q.weightProductFlops, 6 * Double(c.matmulActive - 256), accuracy: 1e-9)
        XCTAssertEqual(q.flopsPerToken, 6 * Double(c.matmulActive - 256) + 6 * 256 * 0.25 + layerSum + norms + 60, accuracy: 1e-9)
        XCTAssertEqual(q.matmulActive, c.matmulActive)        // the weights a token may use do not change
    }

    /// The head on the scored positions only (gathered rows, the gradient scattered back)
    /// gives the loss, accuracy count and every parameter gradient of the head run on all
    /// positions. Same sums in the same order except inside the head's matrix products,
    /// whose row count differs: agreement to 1e-6 relative is float rounding, not a
    /// different function (a wrong row or a missed scatter moves gradients by O(1)).
    func testHeadOnScoredPositionsEqualsTheFullHead() throws {
        for head in ["true", "false"] {
            let s = try ExperimentSpec.parse("""
                name: f
                model: {d_model: 16, layers: [mamba, {mixer: moe, router: sinkhorn}, attention], tied_head: \(head),
                        defaults: {mamba: {d_state: 4}, moe: {experts: 4, ffn: 8}, attention: {heads: 2}}}
                data: {kind: mqar, vocab_size: 64, num_pairs: 4}
                train: {seq_len: 32, batch: 3}
                """, file: "f.yaml")
            let m = try ModelBuilder.build(s)
            let task = try MQARTask(vocabSize: 64, seqLen: 32, numPairs: 4)
            var rng = RNG(seed: 11)
            var x = [Int32](repeating: 0, count: 3 * 32), y = x
            task.batch(&rng, B: 3, inputs: &x, targets: &y)
            func run(_ gather: Bool) -> (CrossEntropy.Result, [Float]) {
                m.headOnScoredPositions = gather
                m.params.zeroGrad()
                let r = m.forward(tokens: x, targets: y, B: 3, L: 32, pass: .train())
                m.backward(pass: .train())
                return (r, Array(UnsafeBufferPointer(start: m.params.grads, count: m.params.count)))   // the whole (padded) slab
            }
            let (full, gFull) = run(false), (part, gPart) = run(true)
            XCTAssertEqual(full.counted, 12); XCTAssertEqual(part.counted, 12)
            XCTAssertEqual(part.correct, full.correct)
            XCTAssertEqual(part.loss, full.loss, accuracy: 1e-6 * abs(full.loss))
            let scale = gFull.map(abs).max()!
            XCTAssertGreaterThan(scale, 0)
            var worst: Float = 0
            for i in gFull.indices { worst = max(worst, abs(gFull[i] - gPart[i])) }
            XCTAssertLessThan(worst, 1e-6 * scale, "tied_head \(head)")
            // the head's own gradient is in the comparison (declared last: the slab's end)
            let headName = head == "true" ? "embedding.word_embeddings.weight" : "output_layer.weight"
            let hp = try XCTUnwrap(m.params.params.first { $0.name == headName })
            XCTAssertGreaterThan(hp.grads.map(abs).max()!, 0)
            XCTAssertLessThanOrEqual(hp.grads.baseAddress! + hp.count, m.params.grads + m.params.count)
        }
    }

    /// Each synthetic task scores the same number of positions in every example (what
    /// the FLOP count and the head's gathered rows assume), and the spec's fraction is it / L.
    func testTasksScoreTheirStatedPositions() throws {
        let tasks: [SequenceTask] = [try MQARTask(vocabSize: 64, seqLen: 64, numPairs: 4), try MQARTask(vocabSize: 8192, seqLen: 256, numPairs: 16),
                                     try SelectiveCopyTask(vocabSize: 16, seqLen: 32, numTokens: 4), try InductionTask(vocabSize: 16, seqLen: 32)]
        var rng = RNG(seed: 5)
        for t in tasks {
            var inputs = [Int32](repeating: 0, count: t.seqLen), targets = inputs
            for _ in 0..<50 {
                t.example(&rng, inputs: &inputs, targets: &targets)
                XCTAssertEqual(targets.filter { $0 != -1 }.count, t.scoredPerSequence, t.name)
            }
        }
        let s = try ExperimentSpec.parse("""
            name: f
            model: {d_model: 16, layers: [mamba]}
            data: {kind: mqar, vocab_size: 64, num_pairs: 8}
            train: {seq_len: 128}
            """, file: "f.yaml")
        XCTAssertEqual(try Dataset.scoredFraction(s), 8.0 / 128)
        let text = try ExperimentSpec.parse("name: f\nmodel: {d_model: 16, layers: [mamba]}\ndata: {kind: markov, vocab_size: 16}\n", file: "f.yaml")
        XCTAssertEqual(try Dataset.scoredFraction(text), 1)
    }
}
