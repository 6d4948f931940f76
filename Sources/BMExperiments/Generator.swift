import Foundation
import BMCore
import BMData
import BMLayers
import BMMixers
import BMSpec

/// Autoregressive generation: the model runs the prompt (`LanguageModel.prefill`:
/// every block in parallel) and then one token at a time (`LanguageModel.step`: Mamba
/// layers recurrently with constant state, attention from its KV cache, MoE with
/// evaluation routing); the generator only keeps the state and samples.
public final class Generator {
    public let model: LanguageModel
    let state: LanguageModel.GenerationState
    let maxLength: Int
    private var position = 0

    /// How the one-token products read the weights: fp32, or a bf16 copy (half the
    /// bytes a token reads) that this generator makes when it starts and owns: another
    /// generator or a trainer of the same model keeps reading fp32.
    public let weights: WeightFormat

    public init(model: LanguageModel, maxLength: Int, weights: WeightFormat = .fp32) throws {
        self.model = model
        self.maxLength = maxLength
        self.weights = weights
        // the state that grows with the length (KV caches), against the machine, before it is allocated
        let (floats, overflow) = model.blocks.reduce((0, false)) { acc, b in
            let (n, o) = acc.0.addingReportingOverflow(b.mixer.stateFloats(batch: 1, maxLength: maxLength))
            return (n, acc.1 || o)
        }
        let available = Machine.availableMemoryBytes
        if overflow || Double(floats) * 4 > Double(available) {
            throw BMError.invalid("generating \(maxLength) positions needs \(overflow ? "more than 2^63 floats" : MemoryEstimate.format(Double(floats) * 4)) of KV cache (the attention layers'), but \(MemoryEstimate.format(Double(available))) is available; ask for fewer tokens (--max-tokens)")
        }
        state = try model.makeGenerationState(maxLength: maxLength, weights: weights)
    }

    /// Bytes held by all layers' generation states (grows with the context only for attention).
    public var stateBytes: Int { state.bytes }

    /// Bytes of the bf16 weight copy (0 for fp32).
    public var weightCopyBytes: Int { state.bf16?.bytes ?? 0 }

    /// Prompt positions per prefill pass (see `LanguageModel.prefillChunk`).
    public var prefillChunk: Int {
        get { model.prefillChunk }
        set { model.prefillChunk = newValue }
    }

    /// Runs the prompt; returns the logits [V] for the next token.
    public func prefill(_ prompt: [Int32]) -> UnsafePointer<Float> {
        precondition(!prompt.isEmpty && prompt.count <= maxLength)
        position = prompt.count
        return model.prefill(prompt, state: state)
    }

    /// Feeds one token; returns the logits [V] for the next one.
    public func step(_ t: Int32) -> UnsafePointer<Float> {
        position += 1
        return model.step(t, state: state)
    }

    /// Runs `prompt`, then samples `maxTokens` tokens one at a time, calling `onToken` with each.
    public func generate(_ prompt: [Int32], maxTokens: Int, temperature: Double, topK: Int, rng: inout RNG,
                         onToken: (Int32) -> Void) {
        var logits = prefill(prompt)
        for _ in 0..<maxTokens {
            let t = Generator.sample(logits, vocab: model.vocab, temperature: temperature, topK: topK, rng: &rng)
            onToken(t)
            logits = step(t)
        }
    }

    /// True for a model trained on bytes (text data): prompts and outputs are text.
    /// Models trained on token files or synthetic tasks read and write token ids.
    public static func isByteLevel(_ spec: ExperimentSpec) -> Bool { spec.data.kind == .text && spec.vocabSize == 256 }

    /// The prompt as token ids: the UTF-8 bytes of `text` for a byte-level model, or
    /// `ids` ("12 5 7" or "12,5,7", each below the vocabulary) for any other model.
    /// The tokenizer of a run: `explicit` (a tokenizer.json path) when given, else the
    /// run directory's `tokenizer.json` (which `bmlab import` copies in), else nil.
    public static func tokenizer(forCheckpoint checkpoint: String, explicit: String?) throws -> ByteLevelBPE? {
        if let explicit { return try ByteLevelBPE(path: explicit) }
        let beside = (checkpoint as NSString).deletingLastPathComponent
        let path = (beside.isEmpty ? "." : beside) + "/tokenizer.json"
        return FileManager.default.fileExists(atPath: path) ? try ByteLevelBPE(path: path) : nil
    }

    /// With a tokenizer, `text` is encoded by it.
    public static func promptTokens(_ spec: ExperimentSpec, text: String?, ids: String?, tokenizer: ByteLevelBPE? = nil) throws -> [Int32] {
        let V = spec.vocabSize
        if let tokenizer, let t = text, ids == nil {
            guard !t.isEmpty else { throw BMError.invalid("--prompt must not be empty") }
            let enc = try tokenizer.encode(t)
            if let bad = enc.first(where: { Int($0) >= V }) {
                throw BMError.invalid("--prompt: \(tokenizer.path) gives token \(bad), but the model's vocabulary has \(V) tokens: a tokenizer of another model?")
            }
            return enc
        }
        switch (text, ids) {
        case (_?, _?): throw BMError.invalid("give either --prompt (text) or --tokens (token ids), not both")
        case (nil, nil): throw BMError.invalid(isByteLevel(spec) ? "--prompt is required" : "--tokens is required: this model reads token ids (e.g. --tokens \"3 17 42\")")
        case (let t?, nil):
            guard isByteLevel(spec) else {
                throw BMError.invalid("--prompt: this model was trained on token ids (data.kind \(spec.data.kind.rawValue), vocabulary \(V)), not on text; give the prompt as --tokens \"3 17 42\" (ids below \(V))")
            }
            guard !t.isEmpty else { throw BMError.invalid("--prompt must not be empty") }
            return Array(t.utf8).map { Int32($0) }
        case (nil, let list?):
            let words = list.split(whereSeparator: { $0 == " " || $0 == "," }).map(String.init)
            guard !words.isEmpty else { throw BMError.invalid("--tokens must list at least one token id") }
            return try words.map { w in
                guard let v = Int32(w), v >= 0, Int(v) < V else {
                    throw BMError.invalid("--tokens: '\(w)' is not a token id of this model (an integer from 0 to \(V - 1))")
                }
                return v
            }
        }
    }

    /// Samples from logits with temperature (0 = greedy) and top-k (0 = all).
    public static func sample(_ logits: UnsafePointer<Float>, vocab V: Int, temperature: Double, topK: Int, rng: inout RNG) -> Int32 {
        if temperature <= 0 {
            var best = 0
            for v in 1..<V where logits[v] > logits[best] { best = v }
            return Int32(best)
        }
        var idx = Array(0..<V)
        if topK > 0 && topK < V {
            idx.sort { logits[$0] > logits[$1] || (logits[$0] == logits[$1] && $0 < $1) }
            idx = Array(idx.prefix(topK))
        }
        let m = idx.map { Double(logits[$0]) }.max()!
        let w = idx.map { Foundation.exp((Double(logits[$0]) - m) / temperature) }
        var u = rng.uniform() * w.reduce(0, +)
        for (k, wk) in w.enumerated() {
            u -= wk
            if u <= 0 { return Int32(idx[k]) }
        }
        return Int32(idx.last!)
    }
}
