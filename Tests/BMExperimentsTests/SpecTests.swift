import XCTest
@testable import BMCore
@testable import BMMixers
@testable import BMExperiments
@testable import BMSpec
@testable import BMData

final class SpecTests: XCTestCase {
    let base = """
    name: t
    model:
      d_model: 16
      pattern: [mamba, moe]
      repeat: 2
      defaults:
        moe: {experts: 4, ffn: 32, router: {name: topk, k: 2}}
    data:
      kind: mqar
      vocab_size: 32
    train:
      steps: 5
      batch: 2
      seq_len: 16
    """

    func parse(_ text: String, _ overrides: [String] = []) throws -> ExperimentSpec {
        try ExperimentSpec.parse(text, file: "x.yaml", overrides: overrides)
    }

    func assertError(_ text: String, _ overrides: [String] = [], contains parts: [String], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try parse(text, overrides), file: file, line: line) { e in
            for p in parts { XCTAssertTrue("\(e)".contains(p), "‘\(e)’ lacks ‘\(p)’", file: file, line: line) }
            XCTAssertEqual((e as? BMError)?.exitCode, 2, file: file, line: line)
        }
    }

    func testPatternDefaultsAndResolvedValues() throws {
        let s = try parse(base)
        XCTAssertEqual(s.model.layers.map(\.mixer), ["mamba", "moe", "mamba", "moe"])
        XCTAssertEqual(s.model.layers[1].options["experts"], .int(4))
        XCTAssertEqual(s.model.layers[1].options["router"], .table(["name": .string("topk"), "k": .int(2)]))
        XCTAssertEqual(s.model.finalNorm, .layernorm)          // default
        XCTAssertEqual(s.train.lr, 3e-3)
        XCTAssertEqual(s.vocabSize, 32)
        XCTAssertEqual(s.train.evalEvery, 100)
    }

    func testExplicitLayersWithOptions() throws {
        let s = try parse(base.replacingOccurrences(of: "  pattern: [mamba, moe]\n  repeat: 2\n",
                                                    with: "  layers: [{mixer: mamba, d_state: 8}, attention]\n"))
        XCTAssertEqual(s.model.layers.map(\.mixer), ["mamba", "attention"])
        XCTAssertEqual(s.model.layers[0].options["d_state"], .int(8))
    }

    func testOverrides() throws {
        let s = try parse(base, ["train.steps=100", "model.d_model=32", "model.defaults.moe.experts=8",
                                 "train.optimizer.lr=1e-4", "model.pattern=[attention, mlp]", "data.num_pairs=2"])
        XCTAssertEqual(s.train.steps, 100)
        XCTAssertEqual(s.model.dModel, 32)
        XCTAssertEqual(s.train.lr, 1e-4)
        XCTAssertEqual(s.model.layers.map(\.mixer), ["attention", "mlp", "attention", "mlp"])
        XCTAssertEqual(s.data.numPairs, 2)
        let t = try parse(base, ["model.pattern.0=attention"])
        XCTAssertEqual(t.model.layers.map(\.mixer), ["attention", "moe", "attention", "moe"])
    }

    func testResolvedYAMLRoundTrips() throws {
        let s = try parse(base)
        let y = try s.resolvedYAML()
        let again = try ExperimentSpec.parse(y, file: "resolved")
        XCTAssertEqual(try again.resolvedYAML(), y)
        XCTAssertEqual(again.model.layers.map(\.resolved), s.model.layers.map(\.resolved))
        var train = s.train
        train.minLR = s.resolvedMinLR          // the default, resolved
        XCTAssertEqual(again.train, train)
        XCTAssertEqual(again.schedule, s.schedule)
        XCTAssertTrue(y.contains("dt_rank: auto"))
        // the router with every option it has, its name first
        XCTAssertTrue(y.contains("router: {name: topk, aux_loss: 0.01, bias_rate: 0.0, k: 2, pre_softmax: true, z_loss: 0.001}"), y)
        XCTAssertTrue(y.contains("min_lr: 0.0003\n"), y)      // lr / 10, not 0.00030000000000000003
        XCTAssertTrue(y.contains("eps: 1.0e-08\n"), y)        // a float to YAML 1.1 (PyYAML) too
    }

    /// Markov data's dense [V, V] table is refused above 4,096 tokens, before any of it is
    /// allocated (50,304 would need 20 GB).
    func testMarkovVocabularyIsBounded() throws {
        let y = "name: m\nmodel: {d_model: 8, layers: [mlp]}\ndata: {kind: markov, vocab_size: 50304}\n"
        XCTAssertThrowsError(try ExperimentSpec.parse(y, file: "m.yaml")) {
            XCTAssertTrue("\($0)".contains("data.vocab_size 50304 for markov data") && "\($0)".contains("at most 4096"), "\($0)")
        }
        XCTAssertNoThrow(try ExperimentSpec.parse(y.replacingOccurrences(of: "50304", with: "4096"), file: "m.yaml"))
    }

    func testEveryShippedSpecValidates() throws {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Experiments").path
        let files = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".yaml") }
        XCTAssertTrue(files.contains("bench-small.yaml") && files.contains("blackmamba-tiny.yaml"))
        for f in files { XCTAssertNoThrow(try ExperimentSpec.load(path: "\(dir)/\(f)"), f) }
    }

    /// `base:` in a spec file: the base with the file's keys merged over it (mappings key
    /// by key, lists replaced), chains of bases, relative to each file's folder; a cycle
    /// and a missing base are refused naming the files.
    func testBaseMergesAnotherSpecUnderneath() throws {
        let dir = try tempDir(self)
        try FileManager.default.createDirectory(atPath: dir + "/sub", withIntermediateDirectories: true)
        try base.write(toFile: dir + "/a.yaml", atomically: true, encoding: .utf8)
        try "base: ../a.yaml\nmodel: {d_model: 32, defaults: {moe: {experts: 8}}}\n".write(toFile: dir + "/sub/b.yaml", atomically: true, encoding: .utf8)
        try "base: sub/b.yaml\nname: c\nmodel: {pattern: [mamba, mlp, mamba, moe], repeat: 1}\n".write(toFile: dir + "/c.yaml", atomically: true, encoding: .utf8)
        let a = try ExperimentSpec.load(path: dir + "/a.yaml")
        let b = try ExperimentSpec.load(path: dir + "/sub/b.yaml")
        XCTAssertEqual(b.model.dModel, 32)
        XCTAssertEqual(b.model.layers.map(\.mixer), a.model.layers.map(\.mixer))
        XCTAssertEqual(b.model.layers[1].resolved.int("experts"), 8)
        XCTAssertEqual(b.model.layers[1].resolved.int("ffn"), 32, "a mapping is merged key by key: ffn stays the base's")
        XCTAssertEqual(b.train, a.train)
        let c = try ExperimentSpec.load(path: dir + "/c.yaml")
        XCTAssertEqual(c.name, "c")
        XCTAssertEqual(c.model.layers.map(\.mixer), ["mamba", "mlp", "mamba", "moe"], "a list is replaced whole")
        XCTAssertEqual(c.model.dModel, 32, "the base's base")
        XCTAssertFalse(try c.resolvedYAML().contains("base:"))
        // a model given the other way replaces the base's; another router's options do not carry over
        try "base: sub/b.yaml\nmodel: {layers: [mamba, mlp], defaults: {moe: {router: {name: sinkhorn-fast}}}}\n".write(toFile: dir + "/g.yaml", atomically: true, encoding: .utf8)
        let g = try ExperimentSpec.load(path: dir + "/g.yaml")
        XCTAssertEqual(g.model.layers.map(\.mixer), ["mamba", "mlp"])
        try "base: a.yaml\nmodel: {defaults: {moe: {router: {name: sinkhorn-fast}}}}\n".write(toFile: dir + "/h.yaml", atomically: true, encoding: .utf8)
        let h = try ExperimentSpec.load(path: dir + "/h.yaml")
        XCTAssertTrue(try h.resolvedYAML().contains("router: {name: sinkhorn-fast"), "topk's k: 2 is not carried over to sinkhorn-fast")
        try "base: e.yaml\n".write(toFile: dir + "/d.yaml", atomically: true, encoding: .utf8)
        try "base: d.yaml\n".write(toFile: dir + "/e.yaml", atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try ExperimentSpec.load(path: dir + "/d.yaml")) { e in
            XCTAssertTrue("\(e)".contains("is already a base") && "\(e)".contains("e.yaml"), "\(e)")
        }
        try "base: nowhere.yaml\n".write(toFile: dir + "/f.yaml", atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try ExperimentSpec.load(path: dir + "/f.yaml")) { e in
            XCTAssertTrue("\(e)".contains("f.yaml: base: cannot read") && "\(e)".contains("nowhere.yaml"), "\(e)")
        }
    }

    /// The published BlackMamba configurations as specs give the published sizes
    /// (arXiv 2402.01771 and the hub's model cards: ≈1.46 B / ≈344 M active, and
    /// 2,783,213,584 / ≈629 M active), counted without allocating them.
    func testPublishedBlackMambaConfigsHaveThePublishedSizes() throws {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Experiments").path
        for (file, total, active, exact) in [("blackmamba-1.5b", 1.46e9, 344e6, false), ("blackmamba-2.8b", 2_783_213_584.0, 629e6, true)] {
            let s = try ExperimentSpec.load(path: "\(dir)/\(file).yaml")
            let c = ModelBuilder.counts(try ModelBuilder.build(s, allocate: false), seqLen: s.train.seqLen)
            if exact { XCTAssertEqual(Double(c.total), total, file) } else { XCTAssertEqual(Double(c.total), total, accuracy: 0.005 * total, file) }
            XCTAssertEqual(Double(c.active), active, accuracy: 0.005 * active, file)
        }
    }

    func testBenchSmallIsThePerformanceModel() throws {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Experiments").path
        let s = try ExperimentSpec.load(path: "\(dir)/bench-small.yaml")
        let m = try ModelBuilder.build(s)
        let c = ModelBuilder.counts(m, seqLen: s.train.seqLen)
        XCTAssertEqual(Double(c.total) / 1e6, 27.1, accuracy: 0.15)         // docs/performance.md: "about 27.1 M"; we count 26.99M (tied head)
        XCTAssertEqual(Double(c.matmulActive) / 1e6, 4.9, accuracy: 0.05)   // about 4.9M active
        XCTAssertEqual(6 * Double(c.matmulActive) / 1e6, 29.5, accuracy: 0.2)   // about 29.5 MFLOP per token in weight products
        // every term (docs/flops.md): + attention's scores 1.57 M, the scan 0.92 M, … = 30.7 M
        XCTAssertEqual(c.flopsPerToken / 1e6, 30.73, accuracy: 0.01)
        XCTAssertEqual(s.train.batch * s.train.seqLen, 2048)
        // The counterparts have about the same active parameters.
        for name in ["mamba", "transformer", "transformer-moe"] {
            let o = try ExperimentSpec.load(path: "\(dir)/\(name).yaml")
            let oc = ModelBuilder.counts(try ModelBuilder.build(o), seqLen: o.train.seqLen)
            XCTAssertEqual(Double(oc.matmulActive), Double(c.matmulActive), accuracy: 0.01 * Double(c.matmulActive), name)
        }
    }

    // MARK: every error path: file, key, what was expected, nearest name, exit code 2

    func testUnknownKeySuggestsNearest() {
        assertError(base.replacingOccurrences(of: "d_model: 16", with: "d_modle: 16"),
                    contains: ["x.yaml:3", "unknown key 'model.d_modle'", "did you mean 'd_model'?"])
        assertError(base + "\n  stpes: 3\n", contains: ["unknown key 'train.stpes'", "did you mean 'steps'?"])
    }

    func testWrongTypes() {
        assertError(base.replacingOccurrences(of: "steps: 5", with: "steps: many"),
                    contains: ["x.yaml:12", "train.steps must be an integer, got 'many'"])
        assertError(base, ["train.optimizer.lr=fast"], contains: ["train.optimizer.lr must be a number, got 'fast'"])
        assertError(base, ["model.tied_head=maybe"], contains: ["model.tied_head must be true or false"])
        assertError(base, ["train.batch=0"], contains: ["train.batch must be at least 1, got 0"])
    }

    func testUnknownPluginNames() {
        assertError(base, ["model.pattern=[mamba, mo]"], contains: ["model.layers[1]: unknown mixer 'mo'", "did you mean 'moe'?"])
        assertError(base, ["model.defaults.moe.router.name=sinkhorm"], contains: ["unknown router 'sinkhorm'", "did you mean 'sinkhorn'?"])
        assertError(base, ["model.defaults.moe.expert=4"], contains: ["unknown option 'expert'", "did you mean 'experts'?"])
        assertError(base, ["data.kind=mqa"], contains: ["data.kind must be one of", "did you mean 'mqar'?"])
    }

    func testImpossibleShapes() {
        assertError(base, ["model.pattern=[attention]", "model.defaults.attention.heads=3"],
                    contains: ["heads (3) must divide d_model (16)"])
        assertError(base, ["model.defaults.moe.router.k=9"], contains: ["k (9) exceeds the number of experts (4)"])
        assertError(base.replacingOccurrences(of: "kind: mqar", with: "kind: text"), ["model.vocab_size=100"],
                    contains: ["text data is byte-level: it needs 256"])
    }

    func testStructuralErrors() {
        assertError("model: [1, 2]\n", contains: ["x.yaml:1", "model must be a mapping"])
        assertError("model:\n  d_model: 8\n", contains: ["'layers' (or 'pattern' with 'repeat') is required"])
        assertError(base.replacingOccurrences(of: "  repeat: 2\n", with: "  repeat: 2\n  layers: [mamba]\n"), contains: ["not both"])
        assertError("model: {layers: [mamba]\n", contains: ["not valid YAML"])
        assertError(base, ["train.steps"], contains: ["expected key.path=value"])
    }

    func testMissingFiles() throws {
        XCTAssertThrowsError(try ExperimentSpec.load(path: "/nonexistent/spec.yaml")) {
            XCTAssertTrue("\($0)".contains("/nonexistent/spec.yaml: no such spec file"))
        }
        let s = try parse(base, ["data.kind=text", "data.path=/nonexistent/corpus.txt", "model.vocab_size=256"])
        XCTAssertThrowsError(try Dataset(s)) {
            XCTAssertTrue("\($0)".contains("data.path: no such file or directory: /nonexistent/corpus.txt"), "\($0)")
        }
        let t = try parse(base, ["data.kind=tokens", "data.path=/nonexistent/x.bin", "data.vocab_size=100", "model.vocab_size=100"])
        XCTAssertThrowsError(try Dataset(t)) { XCTAssertTrue("\($0)".contains("cannot read /nonexistent/x.bin"), "\($0)") }
    }
}
