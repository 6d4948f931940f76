import Foundation
import BMCore
import BMLayers
import BMMixers

/// One model layer: a mixer name and its options (defaults not yet filled in).
public struct LayerSpec: Sendable, Equatable {
    public var mixer: String
    public var options: [String: OptionValue]
}

public struct ModelSpec: Sendable, Equatable {
    public var vocabSize: Int?                 // nil: taken from the data (256 for text)
    public var dModel = 128
    public var layers: [LayerSpec] = []
    public var finalNorm: NormKind = .layernorm
    public var tiedHead = true
    public var initStd: Double = 0.02          // the embedding's std
    public var initScheme: InitScheme = .megatron
}

public struct DataSpec: Sendable, Equatable {
    public enum Kind: String, Sendable, CaseIterable { case text, tokens, mqar, selectiveCopy = "selective-copy", induction, markov }
    public var kind: Kind = .text
    public var path: String? = nil             // text / tokens; nil text = the fortunes corpus
    public var vocabSize: Int? = nil           // tokens files and synthetic tasks
    public var valFraction = 0.1
    public var numPairs = 4                    // mqar
    public var numTokens = 16                  // selective-copy
}

public struct TrainSpec: Sendable, Equatable {
    public var steps = 200
    public var tokens: Int? = nil              // alternative to steps
    public var batch = 8
    public var seqLen = 128
    public var lr = 3e-3
    public var beta1 = 0.9, beta2 = 0.95, eps = 1e-8, weightDecay = 0.1
    public var ssmLRScale = 1.0                // learning-rate factor of A_log, dt_proj, S4D's B
    public var schedule = "cosine"             // cosine | constant
    public var warmup = 20
    public var minLR: Double? = nil            // default lr / 10
    public var clip = 1.0
    public var seed = 1
    public var logEvery = 10
    public var evalEvery = 100
    public var evalBatches = 8
    public var checkpointEvery = 100
}

/// An experiment spec (YAML) — see docs/specs.md for every key.
public struct ExperimentSpec: Sendable, Equatable {
    public var name = "experiment"
    public var description = ""
    public var model = ModelSpec()
    public var data = DataSpec()
    public var train = TrainSpec()
    public var file = "<spec>"

    public static let defaultCorpusDir = "/usr/share/games/fortunes"

    // MARK: loading

    /// Reads a spec file, applies `key.path=value` overrides, and validates it
    /// (plugin names and options, shapes) without building anything.
    public static func load(path: String, overrides: [String] = []) throws -> ExperimentSpec {
        guard FileManager.default.fileExists(atPath: path) else { throw BMError.invalid("\(path): no such spec file") }
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw BMError.invalid("\(path): cannot read the spec (not UTF-8 text?)") }
        return try parse(text, file: path, overrides: overrides)
    }

    public static func parse(_ text: String, file: String, overrides: [String] = []) throws -> ExperimentSpec {
        var node = try SpecNode.parse(text, file: file)
        if let dir = specDirectory(file) { node = node.resolvingPaths(against: dir) }
        for (k, o) in overrides.enumerated() { node = try node.applying(override: o, index: k) }
        node = node.resolvingPaths(against: FileManager.default.currentDirectoryPath)
        var spec = try ExperimentSpec(node, source: SpecSource(file: file, overrides: overrides))
        spec.file = file
        try spec.validate()
        return spec
    }

    /// The folder of a spec file that exists (nil for a spec that is not a file,
    /// e.g. the one stored in a checkpoint, whose paths are already absolute).
    static func specDirectory(_ file: String) -> String? {
        guard FileManager.default.fileExists(atPath: file) else { return nil }
        let abs = URL(fileURLWithPath: file).standardizedFileURL
        return abs.deletingLastPathComponent().path
    }

    init(_ node: SpecNode, source src: SpecSource) throws {
        var root = try SpecReader(node, source: src, path: "")
        name = try root.string("name", "experiment")!
        description = try root.string("description", "")!
        var m = try root.sub("model")
        model.vocabSize = try m.int("vocab_size", nil, min: 2, max: 1 << 20)
        model.dModel = try m.int("d_model", 128, min: 1, max: 1 << 20)
        model.finalNorm = NormKind(rawValue: try m.choice("final_norm", "layernorm", NormKind.allCases.map(\.rawValue)))!
        model.tiedHead = try m.bool("tied_head", true)
        model.initStd = try m.double("init_std", 0.02, min: 0)
        model.initScheme = InitScheme(rawValue: try m.choice("init", InitScheme.megatron.rawValue, InitScheme.allCases.map(\.rawValue)))!
        // per-kind defaults: model.defaults.{mixer}: {options}
        var defaults: [String: [String: OptionValue]] = [:]
        if let dn = m.raw("defaults") {
            guard case .map(let entries, _) = dn else { throw m.fail(dn, "defaults", "a mapping from mixer names to options") }
            for (k, v) in entries {
                guard MixerRegistry.names.contains(k) else {
                    throw BMError.invalid("\(src.at(v)): model.defaults: unknown mixer '\(k)'\(didYouMean(k, in: MixerRegistry.names)); available: \(MixerRegistry.names.joined(separator: ", "))")
                }
                guard case .table(let t) = try v.optionValue(at: "model.defaults.\(k)", source: src) else {
                    throw m.fail(v, "defaults.\(k)", "a mapping of options")
                }
                defaults[k] = t
            }
        }
        let layersNode = m.raw("layers"), patternNode = m.raw("pattern")
        let repeatCount = try m.int("repeat", 1, min: 1)
        let list: SpecNode
        var expanded: [SpecNode] = []
        switch (layersNode, patternNode) {
        case (let l?, nil):
            list = l
            guard case .list(let items, _) = l else { throw m.fail(l, "layers", "a list of mixers, e.g. [mamba, moe]") }
            expanded = items
        case (nil, let p?):
            list = p
            guard case .list(let items, _) = p else { throw m.fail(p, "pattern", "a list of mixers, e.g. [mamba, moe]") }
            for _ in 0..<repeatCount { expanded += items }
        case (_?, _?):
            throw BMError.invalid("\(src.at(m.line)): model: give either 'layers' or 'pattern' (with 'repeat'), not both")
        case (nil, nil):
            throw BMError.invalid("\(src.at(m.line)): model: 'layers' (or 'pattern' with 'repeat') is required, e.g. layers: [mamba, moe]")
        }
        if expanded.isEmpty { throw BMError.invalid("\(src.at(list)): model.layers must not be empty") }
        for (i, item) in expanded.enumerated() {
            let where_ = "model.layers[\(i)]"
            var name: String, opts: [String: OptionValue] = [:]
            switch item {
            case .scalar(let s, _, _): name = s
            case .map(let entries, _):
                guard let mn = entries.first(where: { $0.key == "mixer" }), case .scalar(let s, _, _) = mn.value else {
                    throw BMError.invalid("\(src.at(item)): \(where_) needs 'mixer: NAME' (one of \(MixerRegistry.names.joined(separator: ", ")))")
                }
                name = s
                for (k, v) in entries where k != "mixer" { opts[k] = try v.optionValue(at: "\(where_).\(k)", source: src) }
            case .list:
                throw BMError.invalid("\(src.at(item)): \(where_) must be a mixer name or a mapping with 'mixer'")
            }
            guard MixerRegistry.names.contains(name) else {
                throw BMError.invalid("\(src.at(item)): \(where_): unknown mixer '\(name)'\(didYouMean(name, in: MixerRegistry.names)); available: \(MixerRegistry.names.joined(separator: ", "))")
            }
            var merged = defaults[name] ?? [:]
            for (k, v) in opts { merged[k] = v }
            model.layers.append(LayerSpec(mixer: name, options: merged))
        }
        try m.finish()

        var d = try root.sub("data")
        let kindName = try d.choice("kind", "text", DataSpec.Kind.allCases.map(\.rawValue))
        data.kind = DataSpec.Kind(rawValue: kindName)!
        data.path = try d.string("path", nil)
        data.vocabSize = try d.int("vocab_size", nil, min: 2, max: 65536)
        data.valFraction = try d.double("val_fraction", 0.1, min: 0.001, max: 0.5)
        data.numPairs = try d.int("num_pairs", 4, min: 1)
        data.numTokens = try d.int("num_tokens", 16, min: 1)
        try d.finish()

        var t = try root.sub("train")
        train.steps = try t.int("steps", 200, min: 1)
        train.tokens = try t.int("tokens", nil, min: 1)
        train.batch = try t.int("batch", 8, min: 1, max: 1 << 24)
        train.seqLen = try t.int("seq_len", 128, min: 1, max: 1 << 24)
        var o = try t.sub("optimizer")
        _ = try o.choice("name", "adamw", ["adamw"])
        train.lr = try o.double("lr", 3e-3, min: 0)
        train.beta1 = try o.double("beta1", 0.9, min: 0, max: 0.999999)
        train.beta2 = try o.double("beta2", 0.95, min: 0, max: 0.999999)
        train.eps = try o.double("eps", 1e-8, min: 0)
        train.weightDecay = try o.double("weight_decay", 0.1, min: 0)
        train.ssmLRScale = try o.double("ssm_lr_scale", 1.0, min: 0, max: 10)
        try o.finish()
        var s = try t.sub("schedule")
        train.schedule = try s.choice("name", "cosine", ["cosine", "constant"])
        train.warmup = try s.int("warmup", 20, min: 0)
        let minLR = try s.double("min_lr", -1, min: -1)
        train.minLR = minLR >= 0 ? minLR : nil
        try s.finish()
        train.clip = try t.double("clip", 1.0, min: 0)
        train.seed = try t.int("seed", 1, min: 0)
        train.logEvery = try t.int("log_every", 10, min: 1)
        train.evalEvery = try t.int("eval_every", 100, min: 1)
        train.evalBatches = try t.int("eval_batches", 8, min: 1)
        train.checkpointEvery = try t.int("checkpoint_every", 100, min: 1)
        try t.finish()
        try root.finish()
        if let tok = train.tokens { train.steps = max(1, (tok + train.batch * train.seqLen - 1) / (train.batch * train.seqLen)) }
    }

    /// Vocabulary size the model uses: the spec's, or the data's.
    public var vocabSize: Int {
        if let v = model.vocabSize { return v }
        switch data.kind {
        case .text: return 256
        case .tokens, .mqar, .selectiveCopy, .induction, .markov: return data.vocabSize ?? 256
        }
    }

    /// Checks plugin names, options and shapes without building the model.
    public func validate() throws {
        for (i, l) in model.layers.enumerated() {
            let e = try MixerRegistry.entry(l.mixer, context: "\(file): model.layers[\(i)]")
            let ctx = "\(file): model.layers[\(i)]: mixer '\(l.mixer)'"
            let r = try e.options.resolve(l.options, context: ctx)
            try e.validate(r, model.dModel, ctx)
        }
        if data.kind == .text, let v = model.vocabSize, v < 256 {
            throw BMError.invalid("\(file): model.vocab_size is \(v) but text data is byte-level: it needs 256")
        }
        if data.kind == .tokens && data.vocabSize == nil && model.vocabSize == nil {
            throw BMError.invalid("\(file): data.vocab_size is required for a tokens file (the largest token id + 1, e.g. 50304 for GPT-2)")
        }
        if data.kind == .tokens || data.kind == .text, let p = data.path, p.isEmpty {
            throw BMError.invalid("\(file): data.path is empty")
        }
        if let v = model.vocabSize, let dv = data.vocabSize, dv > v {
            throw BMError.invalid("\(file): data.vocab_size (\(dv)) exceeds model.vocab_size (\(v))")
        }
    }

    /// Resolved options of layer i (defaults filled in).
    public func resolvedOptions(_ i: Int) throws -> ResolvedOptions {
        let l = model.layers[i]
        return try MixerRegistry.entry(l.mixer, context: file).options.resolve(l.options, context: "\(file): model.layers[\(i)]")
    }

    // MARK: the resolved spec as YAML (deterministic; stored with every run)

    public func resolvedYAML() throws -> String {
        var y = "# resolved spec (every default filled in), written by BlackMambaLab \(BMLab.version)\n"
        y += "name: \(q(name))\n"
        if !description.isEmpty { y += "description: \(q(description))\n" }
        y += "model:\n  vocab_size: \(vocabSize)\n  d_model: \(model.dModel)\n  layers:\n"
        for i in model.layers.indices {
            let r = try resolvedOptions(i)
            y += "    - {mixer: \(model.layers[i].mixer)" + r.values.keys.sorted().map { ", \($0): \(yamlValue(r.values[$0]!))" }.joined() + "}\n"
        }
        y += "  final_norm: \(model.finalNorm.rawValue)\n  tied_head: \(model.tiedHead)\n  init: \(model.initScheme.rawValue)\n  init_std: \(model.initStd)\n"
        y += "data:\n  kind: \(data.kind.rawValue)\n"
        if let p = data.path { y += "  path: \(q(p))\n" }
        if data.kind == .text && data.path == nil { y += "  path: \(q(ExperimentSpec.defaultCorpusDir))  # the fortunes corpus\n" }
        y += "  vocab_size: \(vocabSize)\n  val_fraction: \(data.valFraction)\n"
        if data.kind == .mqar { y += "  num_pairs: \(data.numPairs)\n" }
        if data.kind == .selectiveCopy { y += "  num_tokens: \(data.numTokens)\n" }
        y += "train:\n  steps: \(train.steps)\n  batch: \(train.batch)\n  seq_len: \(train.seqLen)\n"
        y += "  optimizer: {name: adamw, lr: \(train.lr), beta1: \(train.beta1), beta2: \(train.beta2), eps: \(train.eps), weight_decay: \(train.weightDecay), ssm_lr_scale: \(train.ssmLRScale)}\n"
        y += "  schedule: {name: \(train.schedule), warmup: \(train.warmup), min_lr: \(train.minLR ?? train.lr / 10)}\n"
        y += "  clip: \(train.clip)\n  seed: \(train.seed)\n  log_every: \(train.logEvery)\n  eval_every: \(train.evalEvery)\n"
        y += "  eval_batches: \(train.evalBatches)\n  checkpoint_every: \(train.checkpointEvery)\n"
        return y
    }

    func yamlValue(_ v: OptionValue) -> String {
        switch v {
        case .string(let s): return q(s)
        case .table(let t): return "{" + t.keys.sorted().map { "\($0): \(yamlValue(t[$0]!))" }.joined(separator: ", ") + "}"
        default: return v.description
        }
    }

    func q(_ s: String) -> String {
        let plain = s.range(of: "^[A-Za-z_][A-Za-z0-9_./-]*$", options: .regularExpression) != nil
            && !["true", "false", "yes", "no", "on", "off", "null"].contains(s.lowercased())
        return plain ? s : "\"" + s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
    }

    /// The training loop's settings (optimizer, clipping, schedule) as the spec says.
    public var trainSettings: TrainSettings {
        var t = TrainSettings(steps: train.steps, batch: train.batch, seqLen: train.seqLen, schedule: schedule)
        t.clip = train.clip
        t.weightDecay = Float(train.weightDecay)
        t.beta1 = Float(train.beta1); t.beta2 = Float(train.beta2); t.eps = Float(train.eps)
        t.ssmLRScale = Float(train.ssmLRScale)
        t.logEvery = train.logEvery
        return t
    }

    public var schedule: LRScheduleSpec {
        train.schedule == "constant" ? .constant(lr: train.lr)
            : .cosine(lr: train.lr, warmup: train.warmup, total: train.steps, minLR: train.minLR ?? train.lr / 10)
    }
}

import BMTrain
public typealias LRScheduleSpec = LRSchedule
