import Foundation
import BMCore
import BMLayers
import BMSpec
import BMData
import BMExperiments
import BMStorage

/// `bmlab import SRC --out DIR`: a checkpoint of the PyTorch world (a directory with
/// `config.json` and its weights, or a weights file with `config.json` beside it) becomes
/// a run directory — `spec.yaml` (the toolkit model the config describes) and
/// `checkpoint.h5` (its weights under the toolkit's names) — that `eval`, `generate`,
/// `bmlab sinkhorn` and `eval --router-logits` take like a trained run's. Every toolkit
/// parameter must be found with its shape; a source tensor that no parameter takes is
/// an error listing it (nothing is dropped or guessed silently), except a tied head saved
/// a second time, which must equal the embedding.
public enum Importer {
    public struct Report: Sendable {
        public var layout: SourceLayout
        public var specPath: String, checkpointPath: String
        public var parameters: Int, tensors: Int
        public var layers: [String]
        public var notes: [String]
        public var tokenizer: String?
    }

    /// `tokenizer`: a tokenizer.json to copy into the run (default: SRC's own tokenizer.json,
    /// when it has one), which `eval --data` and `generate` then use.
    /// `force`: replace an earlier import in `out` (never a trained run: a directory with
    /// metrics.h5 is refused).
    public static func run(source: String, out: String, name: String? = nil, tokenizer: String? = nil, force: Bool = false) throws -> Report {
        // the config and the weights
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: source, isDirectory: &isDir) else { throw BMError.invalid("\(source): no such file or directory") }
        let dir = isDir.boolValue ? source : (source as NSString).deletingLastPathComponent.isEmpty ? "." : (source as NSString).deletingLastPathComponent
        let configPath = dir + "/config.json"
        guard FileManager.default.fileExists(atPath: configPath) else {
            throw BMError.invalid("\(configPath): missing; bmlab import needs the model's config.json beside its weights")
        }
        let config = try JSONValue.parse(try ReadOnlyFile.contents(configPath, limit: 1 << 24), what: configPath)
        let layout = try SourceLayout.detect(config, file: configPath)
        var m: ImportedModel
        switch layout {
        case .huggingface: m = try .huggingface(config, file: configPath)
        case .mambaSSM: m = try .mambaSSM(config, file: configPath)
        case .zyphra: m = try .zyphra(config, file: configPath)
        }
        guard abs(m.normEps - 1e-5) <= 1e-12 else {
            throw BMError.invalid("\(configPath): norm epsilon \(m.normEps): the toolkit's norms use 1e-5; not imported")
        }
        // a tokenizer to copy in: given, or the source's own; read now, so a bad one stops the import
        let tokPath = tokenizer ?? (FileManager.default.fileExists(atPath: dir + "/tokenizer.json") ? dir + "/tokenizer.json" : nil)
        if let tokPath {
            let tok = try ByteLevelBPE(path: tokPath)
            guard tok.vocabSize <= m.vocab else {
                throw BMError.invalid("\(tokPath): \(tok.vocabSize) tokens, more than the model's vocabulary of \(m.vocab): the tokenizer of another model?")
            }
        }
        let weights = try WeightFiles(path: source)
        // Zyphra's torch.save({"model": state_dict}) reads as model.…
        var names = Set(weights.names)
        let strip = layout == .zyphra && !names.isEmpty && names.allSatisfy { $0.hasPrefix("model.") } ? "model." : ""
        if !strip.isEmpty { names = Set(names.map { String($0.dropFirst(strip.count)) }) }

        // the spec, and the model it builds
        let runName = name ?? ((out as NSString).lastPathComponent.isEmpty ? "imported" : (out as NSString).lastPathComponent)
        let yaml = """
        # Imported by bmlab import from \(source) (layout \(layout.rawValue)); the weights are in checkpoint.h5.
        # The data section is a placeholder (a synthetic task of the model's vocabulary): evaluate with
        # `bmlab eval --checkpoint DIR/checkpoint.h5 --data FILE` (text with the run's tokenizer.json, or a .bin of token ids).
        name: \(JSONValue.quote(runName))
        description: \(JSONValue.quote("imported from \(source) (\(layout.rawValue))"))
        model:
          vocab_size: \(m.vocab)
          d_model: \(m.width)
          final_norm: \(m.finalNorm)
          tied_head: \(m.tiedHead)
          layers:
        \(m.layers.map { "    - " + $0 }.joined(separator: "\n"))
        data: {kind: \(m.vocab <= MarkovLimit.vocab ? "markov" : "induction"), vocab_size: \(min(m.vocab, 65536))}

        """
        let spec = try ExperimentSpec.parse(yaml, file: "\(out)/spec.yaml (made by bmlab import)")
        let model = try ModelBuilder.build(spec)

        // every parameter from its source tensor, shape checked
        var used = Set<String>()
        var missing: [String] = []
        for p in model.params.params {
            let src = m.sourceName(p.name)
            guard names.contains(src) else { missing.append("\(src) (for \(p.name) \(p.shape))"); continue }
            let values = try weights.floats(strip + src, shape: p.shape)
            guard values.allSatisfy(\.isFinite) else { throw BMError.invalid("\(weights.tensor(strip + src)!.file): tensor '\(src)' holds non-finite values") }
            for i in 0..<p.count { p.w[i] = values[i] }
            used.insert(src)
        }
        for (dup, of) in m.duplicates where names.contains(dup) {
            guard try weights.floats(strip + dup) == weights.floats(strip + of) else {
                throw BMError.invalid("\(source): '\(dup)' differs from '\(of)', but the config ties the head to the embedding (tie_word_embeddings / tie_embeddings); not imported")
            }
            used.insert(dup)
        }
        let unknown = names.subtracting(used).sorted()
        if !missing.isEmpty || !unknown.isEmpty {
            var msg = "\(source): the weights do not match the model its config describes (\(layout.rawValue), \(m.layers.count) layers, d_model \(m.width)):"
            if !missing.isEmpty { msg += "\n  missing: " + missing.prefix(12).joined(separator: ", ") + (missing.count > 12 ? " and \(missing.count - 12) more" : "") }
            if !unknown.isEmpty { msg += "\n  not used: " + unknown.prefix(12).joined(separator: ", ") + (unknown.count > 12 ? " and \(unknown.count - 12) more" : "") }
            throw BMError.invalid(msg)
        }

        // the run directory: spec.yaml and checkpoint.h5, each written atomically
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        if FileManager.default.fileExists(atPath: out + "/metrics.h5") {
            throw BMError.invalid("\(out) holds a trained run (metrics.h5); bmlab import writes a new run directory (choose another --out)")
        }
        for f in ["checkpoint.h5", "spec.yaml"] where !force && FileManager.default.fileExists(atPath: out + "/" + f) {
            throw BMError.invalid("\(out)/\(f) exists; bmlab import writes a new run directory (choose another --out, or --force to replace an earlier import)")
        }
        let specPath = out + "/spec.yaml", ckPath = out + "/checkpoint.h5"
        do {
            try AtomicText.write(yaml, to: specPath)
            if let tokPath {
                let text = try String(contentsOfFile: tokPath, encoding: .utf8)
                try AtomicText.write(text, to: out + "/tokenizer.json")
            }
            try Checkpoint.save(to: ckPath, model: model, optimizer: nil,
                                state: .init(step: 0, optimizerStep: 0, dataRNG: [0, 0, 0, 0], specYAML: try spec.resolvedYAML()))
        } catch let e as BMError { throw e } catch { throw BMError.system("\(out): cannot write the run: \(BMError.reason(error))") }
        return Report(layout: layout, specPath: specPath, checkpointPath: ckPath, parameters: model.params.parameterCount,
                      tensors: used.count, layers: m.layers, notes: m.notes, tokenizer: tokPath.map { _ in out + "/tokenizer.json" })
    }
}

/// A text file written atomically (temporary file, fsync, rename).
enum AtomicText {
    static func write(_ text: String, to path: String) throws {
        try AtomicFile.write(to: path) { tmp in try text.write(toFile: tmp, atomically: false, encoding: .utf8) }
    }
}
