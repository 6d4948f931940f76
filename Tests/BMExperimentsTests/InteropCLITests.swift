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
}
