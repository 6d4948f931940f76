import XCTest
import Foundation
@testable import BMCore
@testable import BMLayers
@testable import BMSpec
@testable import BMExperiments
@testable import BMInterop

/// `bmlab import` without Python: a toolkit model's weights written under each layout's
/// names (Hugging Face safetensors with its config, Zyphra's `torch.save({"model": …})`)
/// import to a run whose checkpoint holds the same weights and computes the same loss;
/// a missing tensor, a tensor no parameter takes, a wrong shape and a config the toolkit
/// cannot build are errors naming them. (Parity with `transformers` itself, on models it
/// wrote, is `make test-interop`'s.)
final class ImportTests: InteropTestCase {

    /// A toolkit model from a spec body, with seeded weights moved off their initial values.
    func model(_ yaml: String) throws -> (ExperimentSpec, LanguageModel) {
        let s = try ExperimentSpec.parse(yaml, file: "test")
        let m = try ModelBuilder.build(s)
        var rng = RNG(seed: 5)
        for p in m.params.params where !p.name.hasSuffix("A_log") && !p.name.contains("dt_proj.bias") {
            for i in 0..<p.count { p.w[i] += 0.05 * rng.normal() }
        }
        return (s, m)
    }

    func loss(_ m: LanguageModel, V: Int) -> Double {
        let B = 2, L = 9
        var rng = RNG(seed: 8)
        let tok = (0..<B * L).map { _ in Int32(rng.below(V)) }, tgt = (0..<B * L).map { _ in Int32(rng.below(V)) }
        return tok.withUnsafeBufferPointer { t in tgt.withUnsafeBufferPointer { g in
            m.forward(tokens: t.baseAddress!, targets: g.baseAddress!, B: B, L: L, pass: .eval()).loss } }
    }

    func same(_ a: LanguageModel, _ b: LanguageModel) {
        XCTAssertEqual(a.params.params.map(\.name), b.params.params.map(\.name))
        for (p, q) in zip(a.params.params, b.params.params) { XCTAssertEqual(Array(p.values), Array(q.values), p.name) }
    }

    static let hfSpec = """
    name: hf
    model: {vocab_size: 40, d_model: 16, final_norm: rmsnorm, tied_head: true,
            layers: [{mixer: mamba, d_state: 4, d_conv: 4, expand: 2, dt_rank: 3}, {mixer: mamba, d_state: 4, d_conv: 4, expand: 2, dt_rank: 3}]}
    data: {kind: markov, vocab_size: 40}
    """
    static let hfConfig = #"{"model_type": "mamba", "vocab_size": 40, "hidden_size": 16, "state_size": 4, "num_hidden_layers": 2, "expand": 2, "conv_kernel": 4, "time_step_rank": 3, "use_bias": false, "use_conv_bias": true, "layer_norm_epsilon": 1e-05, "tie_word_embeddings": true, "hidden_act": "silu"}"#

    /// The model's weights under HF names, as transformers' save_pretrained writes them.
    func writeHF(_ m: LanguageModel, to d: String, config: String = hfConfig, rename: (String) -> String? = { $0 }) throws {
        try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        try config.write(toFile: d + "/config.json", atomically: true, encoding: .utf8)
        let tensors = m.params.params.compactMap { p in rename(ImportedModel.hfName(p.name)).map { ($0, p.shape, Array(p.values)) } }
        try SafeTensorsFile.write(to: d + "/model.safetensors", tensors: tensors)
    }

    func testHuggingFaceLayoutRoundTrips() throws {
        let (_, m) = try model(Self.hfSpec)
        try writeHF(m, to: dir + "/hf")
        let r = try Importer.run(source: dir + "/hf", out: dir + "/run")
        XCTAssertEqual(r.layout, .huggingface)
        XCTAssertEqual(r.layers.count, 2)
        let (spec, imported, state) = try OpenedCheckpoint.model(dir + "/run/checkpoint.h5")
        XCTAssertEqual(state.step, 0)
        XCTAssertEqual(spec.model.vocabSize, 40)
        same(imported, m)
        XCTAssertEqual(loss(imported, V: 40), loss(m, V: 40))
        // the spec it wrote validates and builds the same model
        let again = try ModelBuilder.build(try ExperimentSpec.parse(try String(contentsOfFile: r.specPath, encoding: .utf8), file: r.specPath))
        XCTAssertEqual(again.params.params.map(\.shape), m.params.params.map(\.shape))
        // a second import into the same directory is refused, the first run kept
        XCTAssertThrowsError(try Importer.run(source: dir + "/hf", out: dir + "/run")) { XCTAssertTrue("\($0)".contains("exists"), "\($0)") }
        XCTAssertNoThrow(try Importer.run(source: dir + "/hf", out: dir + "/run", force: true))
        FileManager.default.createFile(atPath: dir + "/run/metrics.h5", contents: Data())
        XCTAssertThrowsError(try Importer.run(source: dir + "/hf", out: dir + "/run", force: true)) { XCTAssertTrue("\($0)".contains("holds a trained run"), "\($0)") }
        // the weights file itself, with config.json beside it
        XCTAssertEqual(try Importer.run(source: dir + "/hf/model.safetensors", out: dir + "/run2").tensors, r.tensors)
    }

    func testMismatchesAreNamed() throws {
        let (_, m) = try model(Self.hfSpec)
        // a tensor missing, and one no parameter takes
        try writeHF(m, to: dir + "/a") { $0 == "backbone.layers.1.mixer.D" ? "backbone.layers.1.mixer.E" : $0 }
        XCTAssertThrowsError(try Importer.run(source: dir + "/a", out: dir + "/ra")) { e in
            XCTAssertTrue("\(e)".contains("missing: backbone.layers.1.mixer.D (for decoder.layers.1.mixer.D [32])"), "\(e)")
            XCTAssertTrue("\(e)".contains("not used: backbone.layers.1.mixer.E"), "\(e)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/ra/checkpoint.h5"), "nothing written")
        // a config that describes another shape: the tensor's shape is named
        try writeHF(m, to: dir + "/b", config: Self.hfConfig.replacingOccurrences(of: #""state_size": 4"#, with: #""state_size": 5"#))
        XCTAssertThrowsError(try Importer.run(source: dir + "/b", out: dir + "/rb")) { XCTAssertTrue("\($0)".contains("tensor 'backbone.layers.0.mixer.x_proj.weight' has shape [11, 32], expected [13, 32]"), "\($0)") }
        // what the toolkit cannot build is refused by key
        for (edit, phrase) in [(#""use_bias": true"#, "use_bias: true"), (#""hidden_act": "gelu""#, "hidden_act 'gelu'"),
                               (#""layer_norm_epsilon": 1e-06"#, "norm epsilon 1e-06"), (#""state_size": "four""#, "'state_size' is the string")] {
            let key = String(edit.split(separator: ":")[0])
            let edited = Self.hfConfig.replacingOccurrences(of: key + #": [^,}]*"#, with: edit, options: .regularExpression)
            try writeHF(m, to: dir + "/c-\(phrase.hashValue)", config: edited)
            XCTAssertThrowsError(try Importer.run(source: dir + "/c-\(phrase.hashValue)", out: dir + "/rc")) { XCTAssertTrue("\($0)".contains(phrase), "\(phrase): \($0)") }
        }
        // an untied head saved separately must equal the embedding when the config ties them
        try writeHF(m, to: dir + "/d")
        var tensors = m.params.params.map { (ImportedModel.hfName($0.name), $0.shape, Array($0.values)) }
        let emb = tensors.first { $0.0 == "backbone.embeddings.weight" }!
        tensors.append(("lm_head.weight", emb.1, emb.2.map { $0 + 1 }))
        try SafeTensorsFile.write(to: dir + "/d/model.safetensors", tensors: tensors)
        XCTAssertThrowsError(try Importer.run(source: dir + "/d", out: dir + "/rd")) { XCTAssertTrue("\($0)".contains("'lm_head.weight' differs from 'backbone.embeddings.weight'"), "\($0)") }
        tensors.removeLast(); tensors.append(("lm_head.weight", emb.1, emb.2))
        try FileManager.default.removeItem(atPath: dir + "/d/model.safetensors")
        try SafeTensorsFile.write(to: dir + "/d/model.safetensors", tensors: tensors)
        XCTAssertNoThrow(try Importer.run(source: dir + "/d", out: dir + "/rd2"))
        XCTAssertThrowsError(try Importer.run(source: dir + "/none", out: dir + "/re")) { XCTAssertTrue("\($0)".contains("no such file")) }
    }

    /// Zyphra's layout: torch.save({"model": state_dict}) with its names (the toolkit's own),
    /// MoE layers routed as the released code (sigmoid-top1, GELU experts), final LayerNorm.
    func testZyphraLayout() throws {
        let spec = """
        name: z
        model: {vocab_size: 30, d_model: 16, final_norm: layernorm, tied_head: true,
                layers: [{mixer: mamba, d_state: 4, d_conv: 4, expand: 2, dt_rank: 1},
                         {mixer: moe, experts: 4, ffn: 24, activation: geglu, router: {name: sigmoid-top1}, router_bias: true}]}
        data: {kind: markov, vocab_size: 30}
        """
        let (_, m) = try model(spec)
        let d = dir + "/z"
        try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        try #"{"num_layers": 2, "hidden_size": 16, "state_size": 4, "conv_dimension": 4, "vocab_size": 30, "expansion_factor": 2, "mamba_moe_layers": ["r", "4"], "ffn_hidden_size": 24, "add_bias_linear": false, "swiglu": true, "max_sequence_length": 2048}"#
            .write(toFile: d + "/config.json", atomically: true, encoding: .utf8)
        // {"model": OrderedDict(name: tensor, …)} with one storage per tensor
        var p = TorchCheckpointTests.Pickle()
        p.b.append(UInt8(ascii: "}"))
        p.str("model"); p.global("collections", "OrderedDict"); p.b += [UInt8(ascii: ")"), UInt8(ascii: "R")]
        var members: [(String, [UInt8])] = []
        for (k, q) in m.params.params.enumerated() {
            let strides = q.shape.indices.map { i in q.shape[(i + 1)...].reduce(1, *) }
            p.entry(q.name) { $0.tensor(storage: "\(k)", numel: q.count, offset: 0, size: q.shape, stride: strides) }
            members.append(("archive/data/\(k)", TorchCheckpointTests.floats(Array(q.values))))
        }
        p.b += [UInt8(ascii: "s"), UInt8(ascii: ".")]
        try Data(TorchCheckpointTests.zip([("archive/data.pkl", p.b)] + members)).write(to: URL(fileURLWithPath: d + "/pytorch_model.bin"))
        let r = try Importer.run(source: d, out: dir + "/zrun")
        XCTAssertEqual(r.layout, .zyphra)
        XCTAssertTrue(r.notes.joined().contains("sigmoid-top1"))
        let (_, imported, _) = try OpenedCheckpoint.model(dir + "/zrun/checkpoint.h5")
        same(imported, m)
        XCTAssertEqual(loss(imported, V: 30), loss(m, V: 30))
        // parallel blocks are refused by their entry
        try #"{"num_layers": 1, "hidden_size": 16, "vocab_size": 30, "expansion_factor": 2, "mamba_moe_layers": ["r8"]}"#.write(toFile: d + "/config.json", atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try Importer.run(source: d, out: dir + "/zr2")) { XCTAssertTrue("\($0)".contains("mamba_moe_layers[0] 'r8': a parallel Mamba + MLP block"), "\($0)") }
    }
}
