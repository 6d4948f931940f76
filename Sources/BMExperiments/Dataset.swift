import Foundation
import BMCore
import BMTrain

/// Training and validation data for a spec: a byte-level text corpus, a token
/// file (flat little-endian uint16, as nanoGPT writes), or a synthetic task
/// generated from the seed. Training windows are drawn at random (seeded; the
/// generator's state is the data position saved in checkpoints); validation
/// windows are fixed, so every evaluation sees the same data.
public final class Dataset {
    public enum Metric: String, Sendable { case bitsPerByte = "bits_per_byte", accuracy, none }
    public let kind: DataSpec.Kind
    public let vocab: Int
    public let description: String
    public let metric: Metric
    private var tokens: [UInt16] = []          // text bytes or token ids
    private var trainCount = 0                  // first trainCount tokens are training data
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

    public init(_ spec: ExperimentSpec) throws {
        let d = spec.data
        kind = d.kind
        vocab = spec.vocabSize
        seed = UInt64(spec.train.seed)
        let L = spec.train.seqLen, V = spec.vocabSize
        switch d.kind {
        case .text, .tokens:
            task = nil; markov = nil
            let (data, desc) = d.kind == .text ? try Dataset.readText(d.path, file: spec.file)
                                               : try Dataset.readTokens(d.path, vocab: vocab, file: spec.file)
            tokens = data
            description = desc
            metric = d.kind == .text ? .bitsPerByte : .none
            trainCount = Int(Double(tokens.count) * (1 - d.valFraction))
            let valCount = tokens.count - trainCount
            if trainCount < L + 1 || valCount < L + 1 {
                throw BMError.invalid("\(spec.file): data (\(desc)) has \(tokens.count) tokens: too few for train.seq_len \(L) with val_fraction \(d.valFraction) (each split needs seq_len + 1)")
            }
        case .mqar:
            task = try Dataset.inSpecTerms(spec) { try MQARTask(vocabSize: V, seqLen: L, numPairs: d.numPairs) }; markov = nil
            description = "mqar(vocab=\(vocab), seq_len=\(L), pairs=\(d.numPairs))"; metric = .accuracy
        case .selectiveCopy:
            task = try Dataset.inSpecTerms(spec) { try SelectiveCopyTask(vocabSize: V, seqLen: L, numTokens: d.numTokens) }; markov = nil
            description = "selective-copy(vocab=\(vocab), seq_len=\(L), tokens=\(d.numTokens))"; metric = .accuracy
        case .induction:
            task = try Dataset.inSpecTerms(spec) { try InductionTask(vocabSize: V, seqLen: L) }; markov = nil
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

    static func readText(_ path: String?, file: String) throws -> ([UInt16], String) {
        let fm = FileManager.default
        var files: [String]
        var desc: String
        if let path {
            var isDir: ObjCBool = false
            guard fm.fileExists(atPath: path, isDirectory: &isDir) else { throw BMError.invalid("\(file): data.path: no such file or directory: \(path)") }
            files = isDir.boolValue ? corpusFiles(path) : [path]
            desc = "text \(path)"
        } else {
            files = corpusFiles(ExperimentSpec.defaultCorpusDir)
            guard !files.isEmpty else {
                throw BMError.invalid("\(file): data: the default corpus (\(ExperimentSpec.defaultCorpusDir)) is missing; install Debian's fortunes package (make deps) or set data.path")
            }
            desc = "text: fortunes corpus (\(files.count) files)"
        }
        var out: [UInt16] = []
        for f in files {
            guard let d = fm.contents(atPath: f) else { throw BMError.invalid("\(file): data.path: cannot read \(f)") }
            out.reserveCapacity(out.count + d.count)
            for b in d { out.append(UInt16(b)) }
        }
        return (out, desc + ", \(out.count) bytes")
    }

    static func readTokens(_ path: String?, vocab: Int, file: String) throws -> ([UInt16], String) {
        guard let path else { throw BMError.invalid("\(file): data.path is required for kind tokens (a flat uint16 .bin file)") }
        guard let d = FileManager.default.contents(atPath: path) else { throw BMError.invalid("\(file): data.path: cannot read \(path)") }
        guard d.count % 2 == 0 else { throw BMError.invalid("\(file): data.path: \(path) has an odd number of bytes (\(d.count)); expected little-endian uint16 tokens") }
        var out = [UInt16](repeating: 0, count: d.count / 2)
        out.withUnsafeMutableBytes { d.copyBytes(to: $0) }
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
        for b in 0..<B {
            let start = rng.below(trainCount - L)
            window(start, L: L, inputs: inputs + b * L, targets: targets + b * L)
        }
    }

    /// Validation batch `index` (fixed windows / a fixed generator), the same at every evaluation.
    public func evalBatch(_ index: Int, B: Int, L: Int, inputs: UnsafeMutablePointer<Int32>, targets: UnsafeMutablePointer<Int32>) {
        if task != nil || markov != nil {
            var rng = RNG(seed: seed ^ 0x5EED_E7A1 &+ UInt64(index) &* 0x9E37_79B9)
            if let task { task.batch(&rng, B: B, inputs: inputs, targets: targets) }
            else { markov!.batch(&rng, B: B, L: L, inputs: inputs, targets: targets) }
            return
        }
        // Evenly spaced windows over the validation split (wrapping when there are few).
        let valCount = tokens.count - trainCount
        let slots = max(1, (valCount - 1) / L)
        for b in 0..<B {
            let w = (index * B + b) % slots
            window(trainCount + w * L, L: L, inputs: inputs + b * L, targets: targets + b * L)
        }
    }

    private func window(_ start: Int, L: Int, inputs: UnsafeMutablePointer<Int32>, targets: UnsafeMutablePointer<Int32>) {
        for i in 0..<L {
            inputs[i] = Int32(tokens[start + i])
            targets[i] = Int32(tokens[start + i + 1])
        }
    }

    /// Unigram entropy of the training split in nats (the loss of the best
    /// context-free model), for judging text runs; nil for synthetic data.
    public var unigramEntropy: Double? {
        guard task == nil, markov == nil, trainCount > 0 else { return nil }
        var counts = [Int](repeating: 0, count: vocab)
        for i in 0..<trainCount { counts[Int(tokens[i])] += 1 }
        let n = Double(trainCount)
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
    /// Number of full batches of B windows of L (+1 target) tokens.
    public func batches(B: Int, L: Int) -> Int { max(0, (tokens.count - 1) / L) / B }
    public func batch(_ index: Int, B: Int, L: Int, inputs: UnsafeMutablePointer<Int32>, targets: UnsafeMutablePointer<Int32>) {
        for b in 0..<B {
            let start = (index * B + b) * L
            for i in 0..<L { inputs[b * L + i] = Int32(tokens[start + i]); targets[b * L + i] = Int32(tokens[start + i + 1]) }
        }
    }
}
