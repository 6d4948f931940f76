import XCTest
import BMTestSupport
import Foundation

/// The README's import → eval → sinkhorn path, through the command line, on the committed
/// Zyphra BlackMamba fixture (Tests/BMInteropTests/Fixtures/zyphra, written by
/// make test-interop): `bmlab import` makes a run, `bmlab eval --data tokens.bin
/// --router-logits` writes each MoE layer's logits, `bmlab sinkhorn --logits` studies
/// them. A damaged checkpoint is refused with exit 2 and a message naming it.
final class InteropCLITests: XCTestCase {
    static let zyphra = RunnableDocsTests.root + "/Tests/BMInteropTests/Fixtures/zyphra"

    func testImportEvalSinkhorn() throws {
        try BMLabProcess.require()
        let dir = try tempDir(self)
        // 2,100 token ids below the model's 36 (uint16, as nanoGPT's .bin): two batches of 8 × 128
        var ids = [UInt16]()
        var x: UInt32 = 12345
        for _ in 0..<2100 { x = x &* 1_103_515_245 &+ 12345; ids.append(UInt16((x >> 16) % 36)) }
        try ids.withUnsafeBytes { try Data($0).write(to: URL(fileURLWithPath: dir + "/tokens.bin")) }

        let imp = try BMLabProcess.run(["import", Self.zyphra, "--out", dir + "/bm"])
        XCTAssertEqual(imp.status, 0, imp.err)
        XCTAssertTrue(imp.out.contains("zyphra-blackmamba, 4 layers (2 mamba, 2 moe)"), imp.out)
        let ev = try BMLabProcess.run(["eval", "--checkpoint", dir + "/bm/checkpoint.h5", "--data", dir + "/tokens.bin",
                                       "--router-logits", dir + "/logits.h5"])
        XCTAssertEqual(ev.status, 0, ev.err)
        let loss = try XCTUnwrap(ev.out.split(separator: "\n").first { $0.hasPrefix("loss: ") }.flatMap { Double($0.dropFirst(6)) })
        XCTAssertLessThan(loss, 2 * log(36.0), "a loss of the random-weight model on ids below 36")
        XCTAssertTrue(ev.out.contains("layer_1") && ev.out.contains("layer_3"), ev.out)
        let sk = try BMLabProcess.run(["sinkhorn", "--logits", dir + "/logits.h5", "--no-grid", "--out", dir + "/sinkhorn"])
        XCTAssertEqual(sk.status, 0, sk.err)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/sinkhorn/sinkhorn.h5"), sk.out)

        // a truncated weights file: exit 2, the file named
        let bad = dir + "/bad"
        try FileManager.default.createDirectory(atPath: bad, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: Self.zyphra + "/config.json", toPath: bad + "/config.json")
        let bytes = try Data(contentsOf: URL(fileURLWithPath: Self.zyphra + "/pytorch_model.bin"))
        try bytes.prefix(bytes.count / 2).write(to: URL(fileURLWithPath: bad + "/pytorch_model.bin"))
        let r = try BMLabProcess.run(["import", bad, "--out", dir + "/bad-run"])
        XCTAssertEqual(r.status, 2, r.err)
        XCTAssertTrue(r.err.contains(bad + "/pytorch_model.bin"), r.err)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/bad-run/checkpoint.h5"))
    }

    /// A tokenizer travels with an import: a small Mamba of 600 tokens, trained here and
    /// exported for transformers, imports back with the fixture's tokenizer.json; `eval
    /// --data` on a text file encodes it (the token count printed), `generate --prompt`
    /// takes text and writes text, and a tokenizer larger than the model is refused.
    func testTokenizerThroughImportEvalGenerate() throws {
        try BMLabProcess.require()
        let dir = try tempDir(self)
        let spec = dir + "/m.yaml"
        try """
        name: m
        model: {vocab_size: 600, d_model: 16, final_norm: rmsnorm, tied_head: true, layers: [{mixer: mamba, d_state: 4}]}
        data: {kind: markov, vocab_size: 600}
        train: {steps: 4, batch: 2, seq_len: 16, eval_every: 4, eval_batches: 1, checkpoint_every: 4}
        """.write(toFile: spec, atomically: true, encoding: .utf8)
        let tokenizer = RunnableDocsTests.root + "/Tests/BMInteropTests/Fixtures/tokenizer/tokenizer.json"
        for args in [["train", spec, "--out", dir + "/run"], ["export", dir + "/run", "--format", "hf", "--out", dir + "/hf"],
                     ["import", dir + "/hf", "--out", dir + "/imp", "--tokenizer", tokenizer]] {
            let r = try BMLabProcess.run(args)
            XCTAssertEqual(r.status, 0, "\(args): \(r.err)")
        }
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/imp/tokenizer.json"))
        let text = String(repeating: "It's a test of the tokenizer: naïve café, 3.14 and 日本語. ", count: 60)
        try text.write(toFile: dir + "/t.txt", atomically: true, encoding: .utf8)
        let ev = try BMLabProcess.run(["eval", "--checkpoint", dir + "/imp/checkpoint.h5", "--data", dir + "/t.txt"])
        XCTAssertEqual(ev.status, 0, ev.err)
        XCTAssertTrue(ev.out.contains("bytes → ") && ev.out.contains("tokens ("), ev.out)
        let gen = try BMLabProcess.run(["generate", "--checkpoint", dir + "/imp/checkpoint.h5", "--prompt", "It's a test", "--max-tokens", "5", "--temperature", "0"])
        XCTAssertEqual(gen.status, 0, gen.err)
        XCTAssertTrue(gen.out.hasPrefix("It's a test"), gen.out)
        // the 36-token Zyphra model cannot take a 539-token tokenizer
        let bad = try BMLabProcess.run(["import", Self.zyphra, "--out", dir + "/z", "--tokenizer", tokenizer])
        XCTAssertEqual(bad.status, 2)
        XCTAssertTrue(bad.err.contains("more than the model's vocabulary of 36"), bad.err)
    }
}
