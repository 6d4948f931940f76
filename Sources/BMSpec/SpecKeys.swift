import Foundation
import Yams
import BMCore
import BMLayers
import BMMixers
import BMStorage

/// One key of an experiment spec, declared once: its dotted path, type, default,
/// range and one-line doc, how it is read into an `ExperimentSpec` and what the
/// resolved spec says for it. The reader (`ExperimentSpec.init`), the resolved-spec
/// writer (`resolvedYAML`, Yams' emitter), `bmlab validate --resolved` and the key
/// reference in docs/specs.md (`bmlab list --keys`) all walk `SpecKeys.all`.
///
/// To add a key: a field in `ModelSpec` / `DataSpec` / `TrainSpec`, and one line in
/// `SpecKeys.all` (then `make docs` regenerates the reference; a test checks it).
public struct SpecKey {
    public let path: String          // "train.optimizer.lr"
    public let type: String          // for the reference: "int", "number", "a | b", …
    public let defaultText: String   // for the reference
    public let range: String         // for the reference ("" when any value of the type goes)
    public let doc: String
    /// Reads the key from the mapping it lives in; nil for keys another key reads
    /// (`model.pattern`, `repeat` and `defaults` are read with `model.layers`).
    let read: ((inout SpecReader, inout ExperimentSpec) throws -> Void)?
    /// The key's value in the resolved spec; nil leaves it out (e.g. `train.tokens`,
    /// which the resolved spec gives as `train.steps`).
    let resolved: (ExperimentSpec) throws -> Node?

    public var section: String { path.split(separator: ".").dropLast().joined(separator: ".") }
    public var name: String { String(path.split(separator: ".").last!) }
}

public enum SpecKeys {
    /// Every key, in the order of the resolved spec and of the reference.
    public static var all: [SpecKey] {
        [
            .string("name", \.name, "experiment", "the run's name (default output directory results/NAME)"),
            .string("description", \.description, "", "free text, kept with the run", omitEmpty: true),

            .int("model.vocab_size", \.model.vocabSize, nil, defaultText: "from the data (256 for text)", min: 2, max: 1 << 20,
                 "vocabulary size of the embedding and the head", resolved: { .int($0.vocabSize) }),
            .int("model.d_model", \.model.dModel, 128, min: 1, max: 1 << 20, "residual stream width"),
            SpecKey(path: "model.layers", type: "list of mixers", defaultText: "(required, or pattern)", range: "`bmlab list`",
                    doc: "one block per entry: a mixer name or `{mixer: NAME, option: value, …}`",
                    read: { r, s in s.model.layers = try LayerReading.read(&r, width: s.model.dModel) },
                    resolved: { s in LayerReading.resolvedNode(s.model.layers) }),
            SpecKey(path: "model.pattern", type: "list of mixers", defaultText: "—", range: "",
                    doc: "instead of `layers`: a list repeated `repeat` times", read: nil, resolved: { _ in nil }),
            SpecKey(path: "model.repeat", type: "int", defaultText: "1", range: "1–4096 (and at most 4096 layers)",
                    doc: "how many times `pattern` is repeated", read: nil, resolved: { _ in nil }),
            SpecKey(path: "model.defaults", type: "mapping", defaultText: "{}", range: "mixer names",
                    doc: "options for every layer of a mixer, e.g. `moe: {experts: 8}`; a layer's own options win",
                    read: nil, resolved: { _ in nil }),
            .choice("model.final_norm", \.model.finalNorm, .layernorm, "norm before the head"),
            .bool("model.tied_head", \.model.tiedHead, true, "the head shares the embedding matrix"),
            .choice("model.init", \.model.initScheme, .megatron, "how projections are initialised (docs/init.md)"),
            .double("model.init_std", \.model.initStd, 0.02, min: 0, "the embedding's init std (and megatron's projections')"),

            .choice("data.kind", \.data.kind, .text, "the training data (docs/synthetic-tasks.md for the tasks)"),
            .string("data.path", \.data.path, nil, defaultText: "— (text: data.corpus)",
                    "text: a file or folder (each file a source of the split); tokens: a flat little-endian uint16 .bin file (nanoGPT); relative to the spec's folder",
                    resolved: { s in s.data.path.map(SpecKeys.scalar) }),
            .choice("data.corpus", \.data.corpus, .fortunes,
                    "text without a path: fortunes (2.8 MB, Debian's fortunes) or english (47 MB: fortunes, the King James Bible, the GCIDE dictionary; docs/data.md)"),
            .int("data.vocab_size", \.data.vocabSize, nil, defaultText: "256", min: 2, max: 65536,
                 "tokens files and synthetic tasks: the largest token id + 1 (markov: at most 4096, its [V, V] table)", resolved: { .int($0.vocabSize) }),
            .double("data.val_fraction", \.data.valFraction, 0.1, min: 0.001, max: 0.5,
                    "text and tokens: the share of every source file held out for validation, in blocks spread along the file (docs/data.md)"),
            .double("data.test_fraction", \.data.testFraction, 0.05, min: 0, max: 0.5,
                    "text and tokens: the share of every source file held out as the test split (final numbers only; 0: none, then eval.test must be false)"),
            .choice("data.split", \.data.split, "blocks", ["blocks"],
                    "the split rule (docs/data.md), recorded with every run: a run written under another rule (an older version's tail split) is never resumed or reused under this one"),
            .int("data.num_pairs", \.data.numPairs, 4, min: 1, "mqar: key-value pairs per sequence",
                 when: { $0.data.kind == .mqar }),
            .int("data.num_tokens", \.data.numTokens, 16, min: 1, "selective-copy: tokens to copy",
                 when: { $0.data.kind == .selectiveCopy }),

            .int("train.steps", \.train.steps, 200, min: 1, "optimizer steps"),
            .int("train.tokens", \.train.tokens, nil, defaultText: "—", min: 1,
                 "instead of steps: steps = ⌈tokens / (batch · seq_len)⌉", resolved: { _ in nil }),
            .int("train.batch", \.train.batch, 8, min: 1, max: 1 << 24, "sequences per step"),
            .int("train.seq_len", \.train.seqLen, 128, min: 1, max: 1 << 24, "tokens per sequence"),
            .constant("train.optimizer.name", "adamw", "the optimizer (AdamW, decoupled weight decay)"),
            .double("train.optimizer.lr", \.train.lr, 3e-3, min: 0, "peak learning rate"),
            .double("train.optimizer.beta1", \.train.beta1, 0.9, min: 0, max: 0.999999, "AdamW β₁"),
            .double("train.optimizer.beta2", \.train.beta2, 0.95, min: 0, max: 0.999999, "AdamW β₂"),
            .double("train.optimizer.eps", \.train.eps, 1e-8, min: 0, "AdamW ε"),
            .double("train.optimizer.weight_decay", \.train.weightDecay, 0.1, min: 0, "decoupled weight decay (projection matrices only; not the embedding, norms, biases, A_log, D)"),
            .double("train.optimizer.ssm_lr_scale", \.train.ssmLRScale, 1.0, min: 0, max: 10,
                    "learning-rate factor of the SSM dynamics: A_log, dt_proj, S4D's B, Mamba-2's dt_bias"),
            .choice("train.schedule.name", \.train.schedule, "cosine", ["cosine", "constant"],
                    "cosine: linear warm-up then cosine decay to min_lr; constant: lr throughout"),
            .int("train.schedule.warmup", \.train.warmup, 20, min: 0, "warm-up steps (cosine)"),
            .double("train.schedule.min_lr", \.train.minLR, nil, defaultText: "lr / 10", min: 0,
                    "the learning rate at the last step (cosine)", resolved: { .double($0.resolvedMinLR) }),
            .double("train.clip", \.train.clip, 1.0, min: 0, "global gradient-norm clipping (0 = off)"),
            .int("train.seed", \.train.seed, 1, min: 0, "initialisation and data order"),
            .int("train.log_every", \.train.logEvery, 10, min: 1, "steps between metrics rows"),
            .int("train.eval_every", \.train.evalEvery, 100, min: 1, "steps between validation evaluations"),
            .int("train.eval_batches", \.train.evalBatches, 8, min: 1, "batches per evaluation"),
            .int("train.checkpoint_every", \.train.checkpointEvery, 100, min: 1, "steps between checkpoints"),
            .int("train.argmax_routing_steps", \.train.argmaxRoutingSteps, 0, min: 0,
                 "the last N steps route MoE layers by the argmax of their logits (as evaluation and generation do): a fine-tuning phase that removes the train/eval routing mismatch of the Sinkhorn routers"),
            .bool("train.keep_checkpoints", \.train.keepCheckpoints, false,
                  "also keep the weights at every checkpoint, and the initial ones, as checkpoints/step-NNNNNN.h5 (for analyses over training)"),
            .double("train.stop_at", \.train.stopAt, nil, defaultText: "never", min: 0, max: 1,
                    "synthetic tasks: stop once a held-out evaluation's accuracy reaches this value (the schedule stays the one of train.steps; the run is then complete)",
                    resolved: { s in s.train.stopAt.map { .double($0) } }),

            .choice("eval.routing", \.eval.routing, .both,
                    "MoE layers in evaluation: argmax (causal, as generation), train (training's assignment over the batch; not causal) or both, stored side by side with their agreement (docs/routing.md)"),
            .bool("eval.test", \.eval.test, false, "after the last step, score the test split (test/… in metrics.h5): a study's final numbers"),
            .int("eval.test_batches", \.eval.testBatches, 0, min: 0, "batches of that test evaluation, evenly spaced over the split (0 = every window)"),
        ]
    }

    // MARK: the key reference (docs/specs.md, `bmlab list --keys`)

    /// A markdown table of every key.
    public static func markdown() -> String {
        var out = "| key | type | default | range | what |\n|---|---|---|---|---|\n"
        func cell(_ t: String) -> String { t.replacingOccurrences(of: "|", with: "\\|") }
        for k in all {
            out += "| `\(k.path)` | \(cell(k.type)) | \(cell(k.defaultText)) | \(cell(k.range)) | \(cell(k.doc)) |\n"
        }
        return out
    }

    /// The markers around the generated reference in docs/specs.md.
    public static let docsBegin = "<!-- spec keys: generated by `bmlab list --keys --into docs/specs.md`; do not edit by hand -->"
    public static let docsEnd = "<!-- end of spec keys -->"

    /// Replaces the text between the markers of `path` with `markdown()` (atomically).
    public static func updateReference(in path: String) throws {
        guard let doc = try? String(contentsOfFile: path, encoding: .utf8) else { throw BMError.invalid("\(path): cannot read it") }
        guard let a = doc.range(of: docsBegin), let b = doc.range(of: docsEnd), a.upperBound <= b.lowerBound else {
            throw BMError.invalid("\(path): no generated key reference in it (the lines '\(docsBegin)' and '\(docsEnd)' mark where it goes)")
        }
        let text = String(doc[..<a.upperBound]) + "\n" + markdown() + String(doc[b.lowerBound...])
        try AtomicFile.write(to: path) { tmp in try text.write(toFile: tmp, atomically: false, encoding: .utf8) }
    }

    /// The same as plain text, for a terminal.
    public static func text() -> String {
        let width = all.map(\.path.count).max() ?? 0
        return all.map { k in
            let pad = k.path.padding(toLength: width, withPad: " ", startingAt: 0)
            return "  \(pad)  \(k.type) = \(k.defaultText)\(k.range.isEmpty ? "" : " (\(k.range))") — \(k.doc)"
        }.joined(separator: "\n") + "\n"
    }

    // MARK: scalars for the resolved spec

    /// A string scalar, double-quoted when YAML would read it as something else.
    static func scalar(_ s: String) -> Node {
        let plain = s.range(of: "^[A-Za-z_/][A-Za-z0-9_./-]*$", options: .regularExpression) != nil
            && !["true", "false", "yes", "no", "on", "off", "null", "y", "n"].contains(s.lowercased())
        return .scalar(.init(s, .implicit, plain ? .plain : .doubleQuoted))
    }

    /// A number as YAML 1.1 reads a float (with a dot: `1.0e-08`, not `1e-08`), in
    /// the shortest form that reads back as the same Double.
    static func number(_ d: Double) -> String {
        var t = "\(d)"
        if let e = t.firstIndex(where: { $0 == "e" || $0 == "E" }), !t[..<e].contains(".") { t.insert(contentsOf: ".0", at: e) }
        return t
    }

    static func node(_ v: OptionValue) -> Node {
        switch v {
        case .int(let i): return .scalar(.init(String(i)))
        case .double(let d): return .scalar(.init(number(d)))
        case .bool(let b): return .scalar(.init(b ? "true" : "false"))
        case .string(let s): return scalar(s)
        case .table(let t):
            // a nested plugin: its name first, then its options in name order
            let keys = t.keys.sorted { ($0 == "name" ? "" : $0) < ($1 == "name" ? "" : $1) }
            return .mapping(.init(keys.map { (scalar($0), node(t[$0]!)) }, .implicit, .flow))
        }
    }
}

// MARK: - key constructors (one per value type)

extension SpecKey {
    static func leaf(_ path: String) -> String { String(path.split(separator: ".").last!) }

    static func rangeText<T: Comparable>(_ min: T?, _ max: T?, _ show: (T) -> String) -> String {
        switch (min, max) {
        case let (a?, b?): return "\(show(a))–\(show(b))"
        case let (a?, nil): return "≥ \(show(a))"
        case let (nil, b?): return "≤ \(show(b))"
        default: return ""
        }
    }

    static func showInt(_ i: Int) -> String {
        i >= 1024 && i & (i - 1) == 0 ? "2^\(i.trailingZeroBitCount)" : String(i)
    }

    static func int(_ path: String, _ kp: WritableKeyPath<ExperimentSpec, Int>, _ d: Int, min: Int? = nil, max: Int? = nil,
                    _ doc: String, when: ((ExperimentSpec) -> Bool)? = nil) -> SpecKey {
        let name = leaf(path)
        return SpecKey(path: path, type: "int", defaultText: String(d), range: rangeText(min, max, showInt), doc: doc,
                       read: { r, s in s[keyPath: kp] = try r.int(name, d, min: min, max: max) },
                       resolved: { s in when.map { $0(s) } ?? true ? .scalar(.init(String(s[keyPath: kp]))) : nil })
    }

    static func int(_ path: String, _ kp: WritableKeyPath<ExperimentSpec, Int?>, _ d: Int?, defaultText: String,
                    min: Int? = nil, max: Int? = nil, _ doc: String, resolved: @escaping (ExperimentSpec) -> OptionValue?) -> SpecKey {
        let name = leaf(path)
        return SpecKey(path: path, type: "int", defaultText: defaultText, range: rangeText(min, max, showInt), doc: doc,
                       read: { r, s in s[keyPath: kp] = try r.int(name, d, min: min, max: max) },
                       resolved: { s in resolved(s).map(SpecKeys.node) })
    }

    static func double(_ path: String, _ kp: WritableKeyPath<ExperimentSpec, Double>, _ d: Double,
                       min: Double? = nil, max: Double? = nil, _ doc: String) -> SpecKey {
        let name = leaf(path)
        return SpecKey(path: path, type: "number", defaultText: SpecKeys.number(d), range: rangeText(min, max, SpecKeys.number), doc: doc,
                       read: { r, s in s[keyPath: kp] = try r.double(name, d, min: min, max: max) },
                       resolved: { s in .scalar(.init(SpecKeys.number(s[keyPath: kp]))) })
    }

    static func double(_ path: String, _ kp: WritableKeyPath<ExperimentSpec, Double?>, _ d: Double?, defaultText: String,
                       min: Double? = nil, max: Double? = nil, _ doc: String,
                       resolved: @escaping (ExperimentSpec) -> OptionValue?) -> SpecKey {
        let name = leaf(path)
        return SpecKey(path: path, type: "number", defaultText: defaultText, range: rangeText(min, max, SpecKeys.number), doc: doc,
                       read: { r, s in s[keyPath: kp] = try r.double(name, d, min: min, max: max) },
                       resolved: { s in resolved(s).map(SpecKeys.node) })
    }

    static func bool(_ path: String, _ kp: WritableKeyPath<ExperimentSpec, Bool>, _ d: Bool, _ doc: String) -> SpecKey {
        let name = leaf(path)
        return SpecKey(path: path, type: "bool", defaultText: String(d), range: "", doc: doc,
                       read: { r, s in s[keyPath: kp] = try r.bool(name, d) },
                       resolved: { s in .scalar(.init(s[keyPath: kp] ? "true" : "false")) })
    }

    static func string(_ path: String, _ kp: WritableKeyPath<ExperimentSpec, String>, _ d: String, _ doc: String,
                       omitEmpty: Bool = false) -> SpecKey {
        let name = leaf(path)
        return SpecKey(path: path, type: "string", defaultText: d.isEmpty ? "\"\"" : d, range: "", doc: doc,
                       read: { r, s in s[keyPath: kp] = try r.string(name, d)! },
                       resolved: { s in omitEmpty && s[keyPath: kp].isEmpty ? nil : SpecKeys.scalar(s[keyPath: kp]) })
    }

    static func string(_ path: String, _ kp: WritableKeyPath<ExperimentSpec, String?>, _ d: String?, defaultText: String,
                       _ doc: String, resolved: @escaping (ExperimentSpec) -> Node?) -> SpecKey {
        let name = leaf(path)
        return SpecKey(path: path, type: "string", defaultText: defaultText, range: "", doc: doc,
                       read: { r, s in s[keyPath: kp] = try r.string(name, d) }, resolved: resolved)
    }

    static func choice(_ path: String, _ kp: WritableKeyPath<ExperimentSpec, String>, _ d: String, _ choices: [String],
                       _ doc: String) -> SpecKey {
        let name = leaf(path)
        return SpecKey(path: path, type: choices.joined(separator: " | "), defaultText: d, range: "", doc: doc,
                       read: { r, s in s[keyPath: kp] = try r.choice(name, d, choices) },
                       resolved: { s in SpecKeys.scalar(s[keyPath: kp]) })
    }

    static func choice<E: RawRepresentable & CaseIterable>(_ path: String, _ kp: WritableKeyPath<ExperimentSpec, E>, _ d: E,
                                                           _ doc: String) -> SpecKey where E.RawValue == String {
        let name = leaf(path), choices = E.allCases.map(\.rawValue)
        return SpecKey(path: path, type: choices.joined(separator: " | "), defaultText: d.rawValue, range: "", doc: doc,
                       read: { r, s in s[keyPath: kp] = E(rawValue: try r.choice(name, d.rawValue, choices))! },
                       resolved: { s in SpecKeys.scalar(s[keyPath: kp].rawValue) })
    }

    /// A key with one valid value today (kept so a spec can name it, as `optimizer.name`).
    static func constant(_ path: String, _ value: String, _ doc: String) -> SpecKey {
        let name = leaf(path)
        return SpecKey(path: path, type: value, defaultText: value, range: "", doc: doc,
                       read: { r, _ in _ = try r.choice(name, value, [value]) },
                       resolved: { _ in SpecKeys.scalar(value) })
    }
}
