import XCTest
import Foundation
@testable import BMCore
@testable import BMData

/// The byte-level BPE tokenizer against Hugging Face `tokenizers` itself: a tokenizer.json
/// of the GPT-NeoX kind (NFC, ByteLevel pre-tokenizer and decoder, BPE with merges, two
/// special tokens, runs of spaces as added tokens) trained by `tokenizers` 0.22 in
/// make test-interop, and what that package's encode and decode give on texts with
/// contractions, numbers, indentation, tabs and newlines, accents, CJK, emoji, a combining
/// accent (NFC), special tokens in the text, leading and trailing spaces, and nothing.
final class TokenizerTests: XCTestCase {
    static let dir = ParityTests.fixtures + "/tokenizer"
    struct Expected: Decodable { struct Case: Decodable { var text: String; var ids: [Int32]; var decoded: String }; var vocab_size: Int; var cases: [Case] }

    func testEncodeAndDecodeEqualTheTokenizersPackage() throws {
        let tok = try ByteLevelBPE(path: Self.dir + "/tokenizer.json")
        let e = try JSONDecoder().decode(Expected.self, from: Data(contentsOf: URL(fileURLWithPath: Self.dir + "/expected.json")))
        XCTAssertEqual(tok.vocabSize, e.vocab_size)
        XCTAssertGreaterThan(e.cases.count, 5)
        for c in e.cases {
            XCTAssertEqual(try tok.encode(c.text), c.ids, "encode \(c.text.debugDescription)")
            XCTAssertEqual(tok.decode(c.ids), c.decoded, "decode \(c.text.debugDescription)")
        }
    }

    func testThePreTokenizerSplitsAsTheGPT2Pattern() {
        XCTAssertEqual(ByteLevelBPE.pretokenize("Hello world's  end\n\n  x"), ["Hello", " world", "'s", " ", " end", "\n\n ", " x"])
        XCTAssertEqual(ByteLevelBPE.pretokenize("a1b  ?!3.5"), ["a", "1", "b", " ", " ?!", "3", ".", "5"])
        XCTAssertEqual(ByteLevelBPE.pretokenize("  "), ["  "])
        XCTAssertEqual(ByteLevelBPE.pretokenize("\nx"), ["\n", "x"])
    }

    func testUnsupportedFilesAreRefusedByKey() throws {
        let dir = NSTemporaryDirectory() + "tok-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let good = try String(contentsOfFile: Self.dir + "/tokenizer.json", encoding: .utf8)
        for (from, to, phrase) in [(#""type": "BPE""#, #""type": "WordPiece""#, "model.type is 'WordPiece'"),
                                   (#""type": "ByteLevel""#, #""type": "Metaspace""#, "pre_tokenizer.type is 'Metaspace'"),
                                   (#""type": "NFC""#, #""type": "NFKC""#, "only NFC (or none)"),
                                   (#""id": 0,"#, #""id": 3000000000,"#, "an 'id' from 0 to 2^24")] {
            guard let r = good.range(of: from) else { return XCTFail("fixture lacks \(from)") }
            let p = dir + "/t.json"
            try good.replacingCharacters(in: r, with: to).write(toFile: p, atomically: true, encoding: .utf8)
            XCTAssertThrowsError(try ByteLevelBPE(path: p)) { XCTAssertTrue("\($0)".contains(phrase), "\(phrase): \($0)") }
        }
        XCTAssertThrowsError(try ByteLevelBPE(path: dir + "/none.json")) { XCTAssertTrue("\($0)".contains("cannot open"), "\($0)") }
    }
}
