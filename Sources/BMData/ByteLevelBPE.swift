import Foundation
import BMCore

/// A byte-level BPE tokenizer read from a Hugging Face `tokenizer.json` — the kind GPT-2,
/// GPT-NeoX and the published Mamba and BlackMamba models use (docs/weights.md,
/// "Tokenizer"): `model.type` BPE with `vocab` and `merges` (either form: `"a b"` strings or
/// `["a", "b"]` pairs), a ByteLevel pre-tokenizer and decoder, an optional NFC
/// normalizer, and `added_tokens` split out of the text before anything else.
///
/// Encoding: added tokens are cut out first (longest first, leftmost); every other piece
/// is NFC-normalised (when the file says so), split by the GPT-2 pattern
/// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`, mapped
/// byte by byte to the printable characters of GPT-2's `bytes_to_unicode`, and merged by
/// the lowest-ranked adjacent pair until none applies. Decoding maps the characters back
/// to bytes. What the file asks for beyond that (another model type, a pre-tokenizer
/// other than ByteLevel, lstrip/rstrip/single_word added tokens) is refused by key.
public final class ByteLevelBPE {
    public let path: String
    public let vocabSize: Int
    private let vocab: [String: Int32]
    private let tokenStrings: [Int32: String]
    private let ranks: [Pair: Int]
    private let added: [(content: String, id: Int32)]        // longest first
    private let addedByID: [Int32: String]
    private let nfc: Bool
    private let addPrefixSpace: Bool
    private var cache: [[UInt8]: [Int32]] = [:]       // by bytes: Swift's String equality is canonical, BPE's is not

    struct Pair: Hashable { let a: String, b: String }

    /// GPT-2's `bytes_to_unicode`: printable bytes map to themselves, the other 68 to U+0100 + n in order.
    static let byteChars: [Character] = {
        var table = [Character](repeating: " ", count: 256)
        var n = 0
        for b in 0..<256 {
            let printable = (0x21...0x7E).contains(b) || (0xA1...0xAC).contains(b) || (0xAE...0xFF).contains(b)
            table[b] = Character(Unicode.Scalar(printable ? UInt32(b) : UInt32(0x100 + n))!)
            if !printable { n += 1 }
        }
        return table
    }()
    static let charBytes: [Character: UInt8] = Dictionary(uniqueKeysWithValues: byteChars.enumerated().map { ($1, UInt8($0)) })

    public init(path: String) throws {
        self.path = path
        let j = try JSONValue.parse(try ReadOnlyFile.contents(path, limit: 1 << 28), what: path)
        func bad(_ m: String) -> BMError { .invalid("\(path): \(m)") }
        guard let model = j["model"], model.objectMembers != nil else { throw bad("no 'model' object") }
        let type = model["type"]?.stringValue ?? "BPE"
        guard type == "BPE" else { throw bad("model.type is '\(type)'; only byte-level BPE tokenizers are read") }
        for k in ["continuing_subword_prefix", "end_of_word_suffix"] where !(model[k] == nil || model[k] == .null || model[k] == .string("")) {
            throw bad("model.\(k) is set (\(model[k]!.text)); a byte-level BPE has none")
        }
        if model["ignore_merges"] == .bool(true) { throw bad("model.ignore_merges: true is not read") }
        if let d = model["dropout"], d != .null, d.doubleValue != 0 { throw bad("model.dropout \(d.text): BPE dropout is for training, not read here") }
        guard let pre = j["pre_tokenizer"], let preType = pre["type"]?.stringValue else { throw bad("no pre_tokenizer (expected type ByteLevel)") }
        guard preType == "ByteLevel" else { throw bad("pre_tokenizer.type is '\(preType)'; only ByteLevel is read") }
        if pre["use_regex"] == .bool(false) { throw bad("pre_tokenizer.use_regex: false is not read (the GPT-2 split pattern is applied)") }
        addPrefixSpace = pre["add_prefix_space"] == .bool(true)
        switch j["normalizer"] {
        case nil, .null?: nfc = false
        case let n?:
            guard n["type"]?.stringValue == "NFC" else { throw bad("normalizer \(n.text.prefix(60)): only NFC (or none) is read") }
            nfc = true
        }
        if let dec = j["decoder"], dec != .null, dec["type"]?.stringValue != "ByteLevel" {
            throw bad("decoder.type is '\(dec["type"]?.stringValue ?? "?")'; only ByteLevel is read")
        }
        guard let v = model["vocab"]?.objectMembers else { throw bad("model.vocab is not an object of token: id") }
        var vocab: [String: Int32] = [:], strings: [Int32: String] = [:]
        for (tok, idv) in v {
            guard let id = idv.intValue, id >= 0, id < 1 << 24 else { throw bad("model.vocab['\(tok)'] is \(idv.kindDescription), expected a token id") }
            vocab[tok] = Int32(id); strings[Int32(id)] = tok
        }
        guard let ms = model["merges"]?.arrayValue else { throw bad("model.merges is not a list") }
        var ranks: [Pair: Int] = [:]
        for (r, m) in ms.enumerated() {
            let parts: [String]
            if let s = m.stringValue { parts = s.split(separator: " ", omittingEmptySubsequences: false).map(String.init) }
            else if let a = m.arrayValue { parts = a.compactMap(\.stringValue) } else { parts = [] }
            guard parts.count == 2 else { throw bad("model.merges[\(r)] is \(m.kindDescription), expected \"a b\" or [\"a\", \"b\"]") }
            let p = Pair(a: parts[0], b: parts[1])
            if ranks[p] == nil { ranks[p] = r }
        }
        var added: [(String, Int32)] = [], addedByID: [Int32: String] = [:]
        for (i, a) in (j["added_tokens"]?.arrayValue ?? []).enumerated() {
            guard let c = a["content"]?.stringValue, !c.isEmpty, let id = a["id"]?.intValue, id >= 0, id < 1 << 24 else {
                throw bad("added_tokens[\(i)]: needs 'content' and an 'id' from 0 to 2^24")
            }
            for k in ["lstrip", "rstrip", "single_word"] where a[k] == .bool(true) {
                throw bad("added_tokens[\(i)] ('\(c)') has \(k): true, which is not read")
            }
            added.append((c, Int32(id))); addedByID[Int32(id)] = c
            strings[Int32(id)] = strings[Int32(id)] ?? c
        }
        self.vocab = vocab; self.tokenStrings = strings; self.ranks = ranks
        self.added = added.sorted { $0.0.unicodeScalars.count > $1.0.unicodeScalars.count }
        self.addedByID = addedByID
        vocabSize = Int((strings.keys.max() ?? -1) + 1)
    }

    // MARK: encoding

    public func encode(_ text: String) throws -> [Int32] {
        var out: [Int32] = []
        for (piece, id) in splitAdded(text) {
            if let id { out.append(id); continue }
            var s = nfc ? piece.precomposedStringWithCanonicalMapping : piece
            if addPrefixSpace, let f = s.unicodeScalars.first, f != " " { s = " " + s }
            for word in Self.pretokenize(s) { out += try bpe(word) }
        }
        return out
    }

    /// The text cut at added tokens: (piece, nil) for text, (content, id) for an added token.
    func splitAdded(_ text: String) -> [(String, Int32?)] {
        guard !added.isEmpty else { return [(text, nil)] }
        let scalars = Array(text.unicodeScalars)
        let addedScalars = added.map { (Array($0.content.unicodeScalars), $0.id) }
        var out: [(String, Int32?)] = [], start = 0, i = 0
        func flush(_ end: Int) {
            if end > start { var s = String.UnicodeScalarView(); s.append(contentsOf: scalars[start..<end]); out.append((String(s), nil)) }
        }
        while i < scalars.count {
            if let (a, id) = addedScalars.first(where: { a, _ in i + a.count <= scalars.count && Array(scalars[i..<i + a.count]) == a }) {
                flush(i)
                out.append((String(String.UnicodeScalarView(a)), id))
                i += a.count; start = i
            } else { i += 1 }
        }
        flush(scalars.count)
        return out
    }

    /// The GPT-2 split, by hand on Unicode scalars (\s White_Space, \p{L} letters, \p{N} numbers).
    static func pretokenize(_ s: String) -> [String] {
        let c = Array(s.unicodeScalars), n = c.count
        func isL(_ u: Unicode.Scalar) -> Bool {
            switch u.properties.generalCategory {
            case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return true
            default: return false
            }
        }
        func isN(_ u: Unicode.Scalar) -> Bool {
            switch u.properties.generalCategory { case .decimalNumber, .letterNumber, .otherNumber: return true; default: return false }
        }
        func isS(_ u: Unicode.Scalar) -> Bool { u.properties.isWhitespace }
        func isOther(_ u: Unicode.Scalar) -> Bool { !isS(u) && !isL(u) && !isN(u) }
        var out: [String] = [], i = 0
        func take(_ j: Int) { var v = String.UnicodeScalarView(); v.append(contentsOf: c[i..<j]); out.append(String(v)); i = j }
        while i < n {
            // 's 't 're 've 'm 'll 'd
            if c[i] == "'" {
                let rest = c[(i + 1)...].prefix(2).map { Character($0) }
                if let r = rest.first, "stmd".contains(r) { take(i + 2); continue }
                if rest.count == 2, ["re", "ve", "ll"].contains(String(rest)) { take(i + 3); continue }
            }
            // ' ?' then a run of letters, of numbers, or of anything else but whitespace
            let j0 = c[i] == " " && i + 1 < n ? i + 1 : i
            if let cls = [isL, isN, isOther].first(where: { $0(c[j0]) }) {
                var j = j0 + 1
                while j < n && cls(c[j]) { j += 1 }
                take(j)
                continue
            }
            // whitespace: \s+(?!\S) leaves the last one for the next word; else \s+
            var j = i
            while j < n && isS(c[j]) { j += 1 }
            if j < n && j - i >= 2 { j -= 1 }
            take(j)
        }
        return out
    }

    /// BPE of one pre-token: its bytes as GPT-2 characters, merged by rank.
    func bpe(_ word: String) throws -> [Int32] {
        let key = Array(word.utf8)
        if let hit = cache[key] { return hit }
        var sym = key.map { String(Self.byteChars[Int($0)]) }
        while sym.count > 1 {
            var best = Int.max, at = -1
            for k in 0..<(sym.count - 1) {
                if let r = ranks[Pair(a: sym[k], b: sym[k + 1])], r < best { best = r; at = k }
            }
            if at < 0 { break }
            let (a, b) = (sym[at], sym[at + 1])
            var merged: [String] = [], k = 0
            while k < sym.count {
                if k + 1 < sym.count && sym[k] == a && sym[k + 1] == b { merged.append(a + b); k += 2 } else { merged.append(sym[k]); k += 1 }
            }
            sym = merged
        }
        let ids = try sym.map { s -> Int32 in
            guard let id = vocab[s] else { throw BMError.invalid("\(path): the symbol '\(s)' of '\(word)' is not in the vocabulary") }
            return id
        }
        if cache.count < 1 << 16 { cache[key] = ids }
        return ids
    }

    // MARK: decoding

    /// The bytes a token stands for (an added token: its UTF-8; others: the byte-level characters mapped back).
    public func bytes(of id: Int32) -> [UInt8] {
        if let a = addedByID[id] { return Array(a.utf8) }
        guard let s = tokenStrings[id] else { return [] }
        return s.compactMap { Self.charBytes[$0] }
    }

    public func decode(_ ids: [Int32]) -> String {
        String(decoding: ids.flatMap { bytes(of: $0) }, as: UTF8.self)
    }
}
