import Foundation
import BMCore

import BMSpec

/// Training and validation data for a spec: a byte-level text corpus, a token
/// file (flat little-endian uint16, as nanoGPT writes), or a synthetic task
/// generated from the seed. Training windows are drawn at random (seeded; the
/// generator's state is the data position saved in checkpoints); validation
/// windows are fixed, so every evaluation sees the same data.
public final class Dataset {
    public enum Metric: String, Sendable { case bitsPerByte = "bits_per_byte", accuracy, none }
    public let kind: DataSpec.Kind
    /// Text or tokens, split into parts (`DataSpec.Kind.isSplit`).
    public var isSplit: Bool { kind.isSplit }
    public let vocab: Int
    public let description: String
    public let metric: Metric
    /// Text bytes or token ids, split by `Corpus.split` (empty for synthetic tasks).
    public private(set) var split = Corpus.Split()
    /// The held-out parts a model is scored on: validation for every choice made in
    /// a study, test only for its final numbers.
    public enum Part: String, Sendable, CaseIterable { case validation, test }
    private let task: SequenceTask?
    private let markov: MarkovTask?
    private let seed: UInt64

    /// A synthetic task's refusal in the spec's words: the file, and the keys
    /// (`data.num_pairs`, not the task's `numPairs`).
    static func inSpecTerms<T>(_ spec: ExperimentSpec, _ make: () throws -> T) throws -> T {
        do { return try make() } catch let e as BMError {
            guard case .invalid(var m) = e else { throw e }
            for (a, b) in [("numPairs", "data.num_pairs"), ("numTokens", "data.num_tokens"), ("vocabSize", "data.vocab_size"),
                           ("seqLen", "train.seq_len")] { m = m.replacingOccurrences(of: a, with: b) }
            throw BMError.invalid("\(spec.file): data.kind \(m)")
        }
    }

    /// The synthetic task a spec names (nil for text, tokens and markov).
    static func makeTask(_ spec: ExperimentSpec) throws -> SequenceTask? {
        let d = spec.data, L = spec.train.seqLen, V = spec.vocabSize
        switch d.kind {
        case .mqar: return try inSpecTerms(spec) { try MQARTask(vocabSize: V, seqLen: L, numPairs: d.numPairs) }
        case .selectiveCopy: return try inSpecTerms(spec) { try SelectiveCopyTask(vocabSize: V, seqLen: L, numTokens: d.numTokens) }
        case .induction: return try inSpecTerms(spec) { try InductionTask(vocabSize: V, seqLen: L) }
        case .text, .tokens, .markov: return nil
        }
    }

    /// The share of positions the loss scores, which the head runs on (docs/flops.md):
    /// 1 for text, tokens and markov; a synthetic task's scored positions / seq_len.
    public static func scoredFraction(_ spec: ExperimentSpec) throws -> Double {
        guard let t = try makeTask(spec) else { return 1 }
        return Double(t.scoredPerSequence) / Double(t.seqLen)
    }

    public init(_ spec: ExperimentSpec) throws {
        let d = spec.data
        kind = d.kind
        vocab = spec.vocabSize
        seed = UInt64(spec.train.seed)
        let L = spec.train.seqLen
        switch d.kind {
        case .text, .tokens:
            task = nil; markov = nil
            let sources: [Corpus.Source]
            let desc: String
            if d.kind == .tokens {
                let (data, dd) = try Dataset.readTokens(d.path, vocab: vocab, file: spec.file)
                sources = [Corpus.Source(name: d.path ?? "", tokens: data)]; desc = dd
            } else if let path = d.path {
                sources = try Dataset.readTextSources(path, file: spec.file)
                desc = "text \(path), \(sources.reduce(0) { $0 + $1.tokens.count }) bytes"
            } else {
                sources = try Corpus.sources(d.corpus, file: spec.file)
                desc = "text: \(d.corpus.rawValue) corpus (\(sources.count) files, \(sources.reduce(0) { $0 + $1.tokens.count }) bytes)"
            }
            split = Corpus.split(sources, validation: d.valFraction, test: d.testFraction)
            description = desc
            metric = d.kind == .text ? .bitsPerByte : .none
            if spec.eval.test && d.testFraction == 0 {
                throw BMError.invalid("\(spec.file): eval.test is true but data.test_fraction is 0: there is no test split to score (give data.test_fraction > 0, e.g. 0.05)")
            }
            // the test split must hold a window only when something scores it
            let needed = [("training", split.train.count), ("validation", split.validation.count)]
                + (spec.eval.test || d.testFraction > 0 ? [("test", split.test.count)] : [])
            for (name, n) in needed where n < L + 1 {
                throw BMError.invalid("\(spec.file): data (\(desc)) gives the \(name) split \(n) tokens: too few for train.seq_len \(L) (each split needs seq_len + 1; see data.val_fraction and data.test_fraction)")
            }
        case .mqar:
            task = try Dataset.makeTask(spec); markov = nil
            description = "mqar(vocab=\(vocab), seq_len=\(L), pairs=\(d.numPairs))"; metric = .accuracy
        case .selectiveCopy:
            task = try Dataset.makeTask(spec); markov = nil
            description = "selective-copy(vocab=\(vocab), seq_len=\(L), tokens=\(d.numTokens))"; metric = .accuracy
        case .induction:
            task = try Dataset.makeTask(spec); markov = nil
            description = "induction(vocab=\(vocab), seq_len=\(L))"; metric = .accuracy
        case .markov:
            task = nil; markov = MarkovTask(vocab: vocab, seed: seed)
            description = "markov(vocab=\(vocab), entropy rate \(String(format: "%.4f", markov!.entropyRate)) nats)"; metric = .none
        }
    }

    /// Files of the default corpus: the English fortunes (regular files without .dat/.u8), sorted.
    public static func corpusFiles(_ dir: String) -> [String] {
        let fm = FileManager.default
        guard let names = try? fm.contentsOfDirectory(atPath: dir) else { return [] }
        return names.sorted().filter { n in
            guard !n.hasSuffix(".dat"), !n.hasSuffix(".u8"), !n.hasPrefix(".") else { return false }
            var isDir: ObjCBool = false
            let p = (dir as NSString).appendingPathComponent(n)
            return fm.fileExists(atPath: p, isDirectory: &isDir) && !isDir.boolValue
        }.map { (dir as NSString).appendingPathComponent($0) }
    }

    /// A text file, or every regular file of a folder (sorted), one source each.
    static func readTextSources(_ path: String, file: String) throws -> [Corpus.Source] {
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: path, isDirectory: &isDir) else { throw BMError.invalid("\(file): data.path: no such file or directory: \(path)") }
        let files = isDir.boolValue ? corpusFiles(path) : [path]
        guard !files.isEmpty else { throw BMError.invalid("\(file): data.path: \(path) holds no text files") }
        return try files.map { f in
            guard let d = fm.contents(atPath: f) else { throw BMError.invalid("\(file): data.path: cannot read \(f)") }
            return Corpus.Source(name: f, tokens: d.map(UInt16.init))
        }
    }

    /// A text file read whole, as bytes (`bmlab eval --data`).
    static func readText(_ path: String, file: String) throws -> ([UInt16], String) {
        let out = try readTextSources(path, file: file).flatMap(\.tokens)
        return (out, "text \(path), \(out.count) bytes")
    }

    static func readTokens(_ path: String?, vocab: Int, file: String) throws -> ([UInt16], String) {
        guard let path else { throw BMError.invalid("\(file): data.path is required for kind tokens (a flat uint16 .bin file)") }
        guard let d = FileManager.default.contents(atPath: path) else { throw BMError.invalid("\(file): data.path: cannot read \(path)") }
        guard d.count % 2 == 0 else { throw BMError.invalid("\(file): data.path: \(path) has an odd number of bytes (\(d.count)); expected little-endian uint16 tokens") }
        var out = [UInt16](repeating: 0, count: d.count / 2)
        _ = out.withUnsafeMutableBytes { d.copyBytes(to: $0) }
        for i in out.indices { out[i] = UInt16(littleEndian: out[i]) }
        if let m = out.max(), Int(m) >= vocab {
            throw BMError.invalid("\(file): data.path: \(path) holds token id \(m), outside the vocabulary (vocab_size \(vocab))")
        }
        return (out, "tokens \(path), \(out.count) tokens")
    }

    /// A training batch from the generator `rng` (the data position).
    public func trainBatch(_ rng: inout RNG, B: Int, L: Int, inputs: UnsafeMutablePointer<Int32>, targets: UnsafeMutablePointer<Int32>) {
        if let task { task.batch(&rng, B: B, inputs: inputs, targets: targets); return }
        if let markov { markov.batch(&rng, B: B, L: L, inputs: inputs, targets: targets); return }
        let train = split.train
        for b in 0..<B {
            let start = rng.below(train.count - L)
            Dataset.window(train, start, L: L, inputs: inputs + b * L, targets: targets + b * L)
        }
    }

    /// Tokens of a held-out part (0 for synthetic tasks, which draw fresh examples).
    public func count(_ part: Part) -> Int { part == .validation ? split.validation.count : split.test.count }

    /// Non-overlapping windows of L + 1 tokens a held-out part holds.
    public func windows(_ part: Part, L: Int) -> Int { max(0, (count(part) - 1) / L) }

    /// Batch `index` of an evaluation of `batches` batches: the same at every evaluation.
    /// Text and tokens: B·batches windows evenly spaced over the whole part (window j of
    /// n at slot ⌊j · slots / n⌋); with n ≥ slots every window is scored (wrapping past
    /// the end, the repeats ignored by the loss, so each window counts once). Synthetic
    /// tasks: examples from a fixed generator (test draws from another).
    public func evalBatch(_ index: Int, of batches: Int, part: Part = .validation, B: Int, L: Int,
                          inputs: UnsafeMutablePointer<Int32>, targets: UnsafeMutablePointer<Int32>) {
        if task != nil || markov != nil {
            let salt: UInt64 = part == .validation ? 0x5EED_E7A1 : 0x7E57_5EED_0000
            var rng = RNG(seed: seed ^ salt &+ UInt64(index) &* 0x9E37_79B9)
            if let task { task.batch(&rng, B: B, inputs: inputs, targets: targets) }
            else { markov!.batch(&rng, B: B, L: L, inputs: inputs, targets: targets) }
            return
        }
        let data = part == .validation ? split.validation : split.test
        let slots = max(1, windows(part, L: L)), n = max(1, batches * B)
        for b in 0..<B {
            let j = index * B + b
            let w = n >= slots ? j % slots : Int((Double(j) * Double(slots) / Double(n)).rounded(.down))
            Dataset.window(data, w * L, L: L, inputs: inputs + b * L, targets: targets + b * L)
            // more windows asked for than the split holds: each is scored once, the rest of
            // the last batch is ignored by the loss (target −1)
            if n >= slots && j >= slots { (targets + b * L).update(repeating: -1, count: L) }
        }
    }

    /// Batches that score every window of a part once (rounded up; the last batch's extra
    /// rows are ignored).
    public func batchesCovering(_ part: Part, B: Int, L: Int) -> Int { max(1, (windows(part, L: L) + B - 1) / B) }

    static func window(_ tokens: [UInt16], _ start: Int, L: Int, inputs: UnsafeMutablePointer<Int32>, targets: UnsafeMutablePointer<Int32>) {
        tokens.withUnsafeBufferPointer { t in
            for i in 0..<L {
                inputs[i] = Int32(t[start + i])
                targets[i] = Int32(t[start + i + 1])
            }
        }
    }

    /// Unigram entropy of the training split in nats (the loss of the best
    /// context-free model), for judging text runs; nil for synthetic data.
    public var unigramEntropy: Double? {
        guard task == nil, markov == nil, !split.train.isEmpty else { return nil }
        var counts = [Int](repeating: 0, count: vocab)
        for t in split.train { counts[Int(t)] += 1 }
        let n = Double(split.train.count)
        return counts.reduce(0.0) { $1 > 0 ? $0 - Double($1) / n * log(Double($1) / n) : $0 }
    }
}

/// Consecutive windows of a text or token file from its start, in order, with
/// no sampling (`bmlab eval --data FILE`), so any other tool can reproduce it.
public struct SequentialFile {
    public let tokens: [UInt16]
    public let description: String
    public init(path: String, kind: DataSpec.Kind, vocab: Int) throws {
        (tokens, description) = kind == .tokens ? try Dataset.readTokens(path, vocab: vocab, file: "--data")
                                                : try Dataset.readText(path, file: "--data")
        // a text file is bytes: every one must be a token the model knows, or the
        // embedding would be read out of bounds (a model trained on a token file or a
        // synthetic task has its own, often smaller, vocabulary)
        if kind == .text, let top = tokens.max(), Int(top) >= vocab {
            throw BMError.invalid("--data \(path): a text file is read as bytes (0–255) and holds byte \(top), but the model's vocabulary has \(vocab) tokens: give a token file (.bin, little-endian uint16 ids below \(vocab)) or a model trained on text")
        }
    }
    /// A text file encoded by a tokenizer (every id must be below the model's vocabulary).
    public init(path: String, tokenizer: ByteLevelBPE, vocab: Int) throws {
        guard let data = FileManager.default.contents(atPath: path) else { throw BMError.invalid("--data \(path): cannot read") }
        guard let text = String(data: data, encoding: .utf8) else { throw BMError.invalid("--data \(path): not UTF-8 text") }
        let ids = try tokenizer.encode(text)
        if let top = ids.max(), Int(top) >= vocab || top > Int32(UInt16.max) {
            throw BMError.invalid("--data \(path): \(tokenizer.path) gives token \(top), but the model's vocabulary has \(vocab) tokens: a tokenizer of another model?")
        }
        tokens = ids.map { UInt16($0) }
        description = "\(path): \(data.count) bytes → \(ids.count) tokens (\(tokenizer.path))"
    }
    /// Number of full batches of B windows of L (+1 target) tokens.
    public func batches(B: Int, L: Int) -> Int { max(0, (tokens.count - 1) / L) / B }
    public func batch(_ index: Int, B: Int, L: Int, inputs: UnsafeMutablePointer<Int32>, targets: UnsafeMutablePointer<Int32>) {
        for b in 0..<B {
            let start = (index * B + b) * L
            for i in 0..<L { inputs[b * L + i] = Int32(tokens[start + i]); targets[b * L + i] = Int32(tokens[start + i + 1]) }
        }
    }
}
