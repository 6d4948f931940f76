import XCTest
import Foundation
@testable import BMCore
@testable import BMLayers
@testable import BMSpec
@testable import BMExperiments
@testable import BMInterop

/// Parity with the PyTorch world on the committed fixtures (`make test-interop` writes
/// them with transformers and torch; scripts/interop/make_fixtures.py): every model
/// imported from every form it was saved in gives the reference's per-position
/// log-probabilities (≤ 1e-4, relative to max(1, |log p|)) and, generating recurrently,
/// its greedy tokens. The cases: transformers' MambaForCausalLM at three shapes (tied and
/// untied heads, time_step_rank not the default, conv_kernel 2–4), saved as
/// model.safetensors and as pytorch_model.bin; the same weights in mamba_ssm's layout
/// (a tied head under two names on one storage); a Zyphra BlackMamba against a float64
/// transcription of the released forward.
final class ParityTests: InteropTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures").path

    struct Expected: Decodable { var tokens: [Int32]; var logprobs: [[Double]]; var prompt: [Int32]; var greedy: [Int32]; var greedy_min_margin: Double }

    func check(_ source: String, expected e: Expected, layout: SourceLayout) throws {
        let out = dir + "/" + UUID().uuidString
        let r = try Importer.run(source: source, out: out)
        XCTAssertEqual(r.layout, layout, source)
        let (_, model, _) = try OpenedCheckpoint.model(out + "/checkpoint.h5")
        model.headOnScoredPositions = false
        let L = e.tokens.count, V = model.vocab
        XCTAssertEqual(e.logprobs.first?.count, V)
        let targets = [Int32](repeating: 0, count: L)
        e.tokens.withUnsafeBufferPointer { t in targets.withUnsafeBufferPointer { g in
            _ = model.forward(tokens: t.baseAddress!, targets: g.baseAddress!, B: 1, L: L, pass: .eval()) } }
        var worst = 0.0
        for t in 0..<L {
            let row = model.lastLogits + t * V
            var mx = -Double.infinity
            for v in 0..<V { mx = max(mx, Double(row[v])) }
            var sum = 0.0
            for v in 0..<V { sum += exp(Double(row[v]) - mx) }
            let lse = mx + log(sum)
            for v in 0..<V {
                let want = e.logprobs[t][v]
                worst = max(worst, abs(Double(row[v]) - lse - want) / max(1, abs(want)))
            }
        }
        XCTAssertLessThan(worst, 1e-4, "\(source): log-probabilities")
        // recurrent generation, greedy
        let g = try Generator(model: model, maxLength: e.prompt.count + e.greedy.count + 1)
        var logits = g.prefill(e.prompt)
        var got: [Int32] = []
        for _ in e.greedy {
            var best = 0
            for v in 1..<V where logits[v] > logits[best] { best = v }
            got.append(Int32(best))
            logits = g.step(Int32(best))
        }
        XCTAssertEqual(got, e.greedy, "\(source): greedy tokens (reference's smallest top-2 margin \(e.greedy_min_margin))")
    }

    func expected(_ d: String) throws -> Expected {
        try JSONDecoder().decode(Expected.self, from: Data(contentsOf: URL(fileURLWithPath: d + "/expected.json")))
    }

    func testTransformersMambaBothFormats() throws {
        let cases = ["hf-tied", "hf-untied-rank5", "hf-expand3-k2"]
        for c in cases {
            let d = Self.fixtures + "/" + c
            let e = try expected(d)
            for form in ["safetensors", "bin"] { try check(d + "/" + form, expected: e, layout: .huggingface) }
        }
    }

    func testMambaSSMLayout() throws {
        let d = Self.fixtures + "/mamba-ssm"
        try check(d, expected: try expected(d), layout: .mambaSSM)
        // the tied head is stored twice, on one storage
        let c = try TorchCheckpoint(path: d + "/pytorch_model.bin")
        XCTAssertEqual(c.aliases["lm_head.weight"], "backbone.embedding.weight")
    }

    func testZyphraBlackMambaAgainstAFloat64Reference() throws {
        let d = Self.fixtures + "/zyphra"
        try check(d, expected: try expected(d), layout: .zyphra)
    }
}
