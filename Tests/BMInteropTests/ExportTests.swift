import XCTest
import Foundation
@testable import BMCore
@testable import BMLayers
@testable import BMSpec
@testable import BMExperiments
@testable import BMInterop

/// `bmlab export`: a Mamba-only run exported for transformers imports back to the same
/// weights and loss (the layout both directions agree on; transformers' own reading of it
/// is `make test-interop`'s); its config says what MambaForCausalLM needs; a model it
/// cannot hold is refused naming the layer; the safetensors format keeps any model with
/// its spec.
final class ExportTests: InteropTestCase {

    func checkpoint(_ yaml: String, untied: Bool = false) throws -> (String, LanguageModel) {
        let s = try ExperimentSpec.parse(yaml, file: "test")
        let m = try ModelBuilder.build(s)
        var rng = RNG(seed: 3)
        for p in m.params.params { for i in 0..<p.count { p.w[i] += 0.03 * rng.normal() } }
        let path = dir + "/ck-\(UUID().uuidString).h5"
        try Checkpoint.save(to: path, model: m, optimizer: nil, state: .init(step: 5, optimizerStep: 5, dataRNG: [1, 2, 3, 4], specYAML: try s.resolvedYAML()))
        return (path, m)
    }

    func testHFExportImportsBackToTheSameModel() throws {
        for tied in [true, false] {
            let spec = ImportTests.hfSpec.replacingOccurrences(of: "tied_head: true", with: "tied_head: \(tied)")
            let (ck, m) = try checkpoint(spec)
            let out = dir + "/hf-\(tied)"
            let r = try Exporter.run(checkpoint: ck, format: .hf, out: out)
            XCTAssertEqual(r.tensors, m.params.params.count)
            let cfg = try JSONValue.parse(try Data(contentsOf: URL(fileURLWithPath: out + "/config.json")), what: "config")
            XCTAssertEqual(cfg["model_type"], .string("mamba"))
            XCTAssertEqual(cfg["time_step_rank"]?.intValue, 3)
            XCTAssertEqual(cfg["tie_word_embeddings"], .bool(tied))
            let st = try SafeTensorsFile(path: out + "/model.safetensors")
            XCTAssertEqual(st.metadata.first { $0.0 == "format" }?.1, "pt")
            XCTAssertEqual(st.entry("lm_head.weight") != nil, !tied, "a tied head is saved once")
            XCTAssertEqual(st.entry("backbone.layers.1.mixer.A_log")?.shape, [32, 4])
            _ = try Importer.run(source: out, out: dir + "/back-\(tied)")
            let (_, back, _) = try OpenedCheckpoint.model(dir + "/back-\(tied)/checkpoint.h5")
            for (p, q) in zip(back.params.params, m.params.params) { XCTAssertEqual(Array(p.values), Array(q.values), q.name) }
            XCTAssertThrowsError(try Exporter.run(checkpoint: ck, format: .hf, out: out)) { XCTAssertTrue("\($0)".contains("exists"), "\($0)") }
        }
    }

    func testModelsMambaForCausalLMCannotHoldAreRefusedButExportAsSafetensors() throws {
        let moe = """
        name: m
        model: {vocab_size: 20, d_model: 16, final_norm: rmsnorm, layers: [mamba, {mixer: moe, experts: 2, ffn: 8}]}
        data: {kind: markov, vocab_size: 20}
        """
        let (ck, m) = try checkpoint(moe)
        XCTAssertThrowsError(try Exporter.run(checkpoint: ck, format: .hf, out: dir + "/x")) {
            XCTAssertTrue("\($0)".contains("layer 1 is moe, and MambaForCausalLM has Mamba layers only; use --format safetensors"), "\($0)")
        }
        let ln = ImportTests.hfSpec.replacingOccurrences(of: "final_norm: rmsnorm", with: "final_norm: layernorm")
        XCTAssertThrowsError(try Exporter.run(checkpoint: try checkpoint(ln).0, format: .hf, out: dir + "/y")) { XCTAssertTrue("\($0)".contains("final norm is layernorm"), "\($0)") }
        let r = try Exporter.run(checkpoint: ck, format: .safetensors, out: dir + "/st")
        XCTAssertEqual(r.tensors, m.params.params.count)
        let st = try SafeTensorsFile(path: dir + "/st/model.safetensors")
        for p in m.params.params { XCTAssertEqual(try st.floats(p.name), Array(p.values), p.name) }
        let cfg = try JSONValue.parse(try Data(contentsOf: URL(fileURLWithPath: dir + "/st/config.json")), what: "config")
        let specText = try XCTUnwrap(cfg["spec_yaml"]?.stringValue)
        XCTAssertEqual(try ModelBuilder.build(try ExperimentSpec.parse(specText, file: "exported")).params.params.map(\.shape), m.params.params.map(\.shape))
    }
}
