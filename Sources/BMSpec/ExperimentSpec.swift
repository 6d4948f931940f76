import Foundation
import Yams
import BMCore
import BMLayers
import BMMixers

/// The text corpora a spec can name (`data.corpus`; the files are BMData's `Corpus`).
public enum CorpusName: String, Sendable, CaseIterable { case fortunes, english }

/// One model layer: a mixer name, its options as the spec gives them, and the same
/// resolved (defaults filled in, a moe's router resolved, checked against d_model).
public struct LayerSpec: Sendable, Equatable {
    public var mixer: String
    public var options: [String: OptionValue]
    public var resolved: ResolvedOptions
    /// `shared: NAME`: every layer of the group NAME uses the parameters of its first
    /// (same mixer, same options); nil for a layer of its own.
    public var shared: String? = nil
}

// The fields below start at placeholder values (zero, empty, nil, an enum's first case)
// that no run ever sees: `ExperimentSpec.init(_:source:)` sets every one from the spec or
// from its key's default in `SpecKeys.all`, the one table of defaults (which the docs'
// key reference and `bmlab list --keys` print). A default written here as well could
// drift from the table; `SpecDefaultsTests` checks that a minimal spec reads as the
// table says.

public struct ModelSpec: Sendable, Equatable {
    public var vocabSize: Int? = nil           // nil: taken from the data (256 for text)
    public var dModel = 0
    public var layers: [LayerSpec] = []
    public var finalNorm: NormKind = .rmsnorm
    public var tiedHead = false
    public var initStd: Double = 0             // the embedding's std
    public var initScheme: InitScheme = .megatron
}

public struct DataSpec: Sendable, Equatable {
    public enum Kind: String, Sendable, CaseIterable {
        case text, tokens, mqar, selectiveCopy = "selective-copy", induction, markov
        /// Text or a token file: data split into training, validation and test parts
        /// (the synthetic tasks draw fresh examples instead).
        public var isSplit: Bool { self == .text || self == .tokens }
    }
    public var kind: Kind = .text
    public var path: String? = nil             // text / tokens; nil text = `corpus`
    public var corpus: CorpusName = .fortunes  // text without a path
    public var vocabSize: Int? = nil           // tokens files and synthetic tasks
    public var valFraction = 0.0
    public var testFraction = 0.0
    public var split = ""                      // the split rule's name (docs/data.md)
    public var numPairs = 0                    // mqar
    public var numTokens = 0                   // selective-copy
}

public struct TrainSpec: Sendable, Equatable {
    public var steps = 0
    public var tokens: Int? = nil              // alternative to steps
    public var batch = 0
    public var seqLen = 0
    public var lr = 0.0
    public var beta1 = 0.0, beta2 = 0.0, eps = 0.0, weightDecay = 0.0
    public var ssmLRScale = 0.0                // learning-rate factor of A_log, dt_proj, S4D's B
    public var schedule = ""                   // cosine | constant
    public var warmup = 0
    public var minLR: Double? = nil            // nil: lr / 10
    public var clip = 0.0
    public var seed = 0
    public var logEvery = 0
    public var evalEvery = 0
    public var evalBatches = 0
    public var checkpointEvery = 0
    public var keepCheckpoints = false
    /// Stop once a held-out evaluation's accuracy reaches this (synthetic tasks): the run
    /// is then complete, and a resume says so. nil: train every step.
    public var stopAt: Double? = nil
    /// The last N steps route MoE layers by argmax, as evaluation and generation do.
    public var argmaxRoutingSteps = 0
}

/// What an evaluation measures: the routing of MoE layers, and the test split.
public struct EvalSpec: Sendable, Equatable {
    public var routing: EvalRouting = .argmax
    /// Score the test split once, after the last step (a study's final numbers).
    public var test = false
    /// Batches of that test evaluation; 0 = every window of the test split.
    public var testBatches = 0
}

/// An experiment spec (YAML) — see docs/specs.md for every key.
public struct ExperimentSpec: Sendable, Equatable {
    public var name = ""
    public var description = ""
    public var model = ModelSpec()
    public var data = DataSpec()
    public var train = TrainSpec()
    public var eval = EvalSpec()
    public var file = "<spec>"

    // MARK: loading

    /// Reads a spec file, applies `key.path=value` overrides, and validates it
    /// (plugin names and options, shapes) without building anything.
    public static func load(path: String, overrides: [String] = []) throws -> ExperimentSpec {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else { throw BMError.invalid("\(path): no such spec file") }
        guard !isDir.boolValue else {
            let inside = (path as NSString).appendingPathComponent("spec.yaml")
            let hint = FileManager.default.fileExists(atPath: inside) ? " (a run directory? its spec is \(inside))" : ""
            throw BMError.invalid("\(path): is a directory, expected a spec file (YAML)\(hint)")
        }
        guard FileManager.default.isReadableFile(atPath: path) else { throw BMError.invalid("\(path): cannot read the spec (permission denied)") }
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw BMError.invalid("\(path): cannot read the spec (not UTF-8 text)") }
        return try parse(text, file: path, overrides: overrides)
    }

    public static func parse(_ text: String, file: String, overrides: [String] = []) throws -> ExperimentSpec {
        var node = try SpecNode.parse(text, file: file)
        if let dir = specDirectory(file) { node = node.resolvingPaths(against: dir) }
        node = try node.applyingBase(file: file)
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

    /// Reads every key of `SpecKeys.all` from its section; then each section rejects
    /// keys nobody asked for, suggesting the nearest valid one.
    public init(_ node: SpecNode, source src: SpecSource) throws {
        var readers: [String: SpecReader] = ["": try SpecReader(node, source: src, path: "")]
        var order = [""]
        func reader(_ section: String) throws -> String {
            if readers[section] != nil { return section }
            var parts = section.split(separator: ".").map(String.init)
            let leaf = parts.removeLast()
            let parent = try reader(parts.joined(separator: "."))
            readers[section] = try readers[parent]!.sub(leaf)
            order.append(section)
            return section
        }
        for key in SpecKeys.all {
            let section = try reader(key.section)
            guard let read = key.read else { continue }
            try read(&readers[section]!, &self)
        }
        for section in order { try readers[section]!.finish() }
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

    /// Checks what involves several keys (each key and each layer's options were
    /// checked when the spec was read).
    public func validate() throws {
        if data.kind == .text, let v = model.vocabSize, v < 256 {
            throw BMError.invalid("\(file): model.vocab_size is \(v) but text data is byte-level: it needs 256")
        }
        if data.kind == .markov, vocabSize > MarkovLimit.vocab {
            let gb = 8 * Double(vocabSize) * Double(vocabSize) / 1e9
            throw BMError.invalid("\(file): data.vocab_size \(vocabSize) for markov data: its [V, V] transition table and CDF take 8·V² bytes (\(String(format: "%.1f", gb)) GB here); at most \(MarkovLimit.vocab) (a larger vocabulary: a tokens file or another task)")
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
        // steps × batch × seq_len (the tokens a run trains on) must be a number, not an overflow
        let (perStep, o1) = train.batch.multipliedReportingOverflow(by: train.seqLen)
        let (tokens, o2) = perStep.multipliedReportingOverflow(by: train.steps)
        if o1 || o2 || tokens > 1 << 53 {
            throw BMError.invalid("\(file): train.steps (\(train.steps)) × train.batch (\(train.batch)) × train.seq_len (\(train.seqLen)) is more tokens than a run can count (at most 2^53)")
        }
        // the name is the default run directory results/NAME: a plain name, never a path
        if name.isEmpty || name == "." || name == ".." || name.contains("/") || name.contains("\0") {
            throw BMError.invalid("\(file): name '\(name)' must be a plain name (it becomes the run directory results/NAME), not empty and without '/' or '..'")
        }
        if train.stopAt != nil && ![.mqar, .selectiveCopy, .induction].contains(data.kind) {
            throw BMError.invalid("\(file): train.stop_at stops at a held-out accuracy, which only mqar, selective-copy and induction report (data.kind is \(data.kind.rawValue)); remove it or use one of those tasks")
        }
    }

    /// Settings that are valid but do nothing useful; `train` and `validate` print each
    /// as a `bmlab: warning:` line on standard error and go on.
    public var warnings: [String] {
        var w: [String] = []
        if train.schedule == "cosine" && train.warmup >= train.steps {
            w.append("\(file): train.schedule.warmup (\(train.warmup)) is not below train.steps (\(train.steps)): the learning rate never reaches its peak train.optimizer.lr nor decays")
        }
        if train.evalEvery > train.steps {
            w.append("\(file): train.eval_every (\(train.evalEvery)) exceeds train.steps (\(train.steps)): the run is evaluated only at its start and end")
        }
        return w
    }

    /// Resolved options of layer i (defaults filled in).
    public func resolvedOptions(_ i: Int) -> ResolvedOptions { model.layers[i].resolved }

    /// The learning rate at the end of the cosine schedule: `min_lr`, or lr / 10
    /// rounded to 12 significant digits (so the resolved spec says `0.0003`, not
    /// `0.00030000000000000003`, and a run of the resolved spec is the same run).
    public var resolvedMinLR: Double {
        train.minLR ?? Double(String(format: "%.12g", train.lr / 10))!
    }

    // MARK: the resolved spec as YAML (deterministic; stored with every run)

    /// The resolved spec as a YAML tree: every key of `SpecKeys.all` that applies,
    /// with its value (defaults filled in), in the table's order.
    public func resolvedNode() throws -> Node {
        // sections appear where their first key is
        indirect enum Entry { case value(Node), section([(String, Entry)]) }
        func insert(_ path: ArraySlice<String>, _ v: Node, into entries: inout [(String, Entry)]) {
            let head = path.first!
            if path.count == 1 { entries.append((head, .value(v))); return }
            var inner: [(String, Entry)] = []
            let i = entries.firstIndex { $0.0 == head }
            if let i, case .section(let e) = entries[i].1 { inner = e }
            insert(path.dropFirst(), v, into: &inner)
            if let i { entries[i].1 = .section(inner) } else { entries.append((head, .section(inner))) }
        }
        func node(_ entries: [(String, Entry)]) -> Node {
            .mapping(.init(entries.map { k, e in
                switch e { case .value(let v): return (SpecKeys.scalar(k), v); case .section(let s): return (SpecKeys.scalar(k), node(s)) }
            }))
        }
        var root: [(String, Entry)] = []
        for key in SpecKeys.all {
            guard let v = try key.resolved(self) else { continue }
            insert(key.path.split(separator: ".").map(String.init)[...], v, into: &root)
        }
        return node(root)
    }

    public func resolvedYAML() throws -> String {
        "# resolved spec (every default filled in), written by BlackMambaLab \(BMLab.version)\n"
            + (try Yams.serialize(node: resolvedNode(), width: -1))
    }

    /// A data-parallel step cuts `train.batch` into `shards` equal shards; `how` says where
    /// the count comes from (e.g. "2 rank(s)", "--slurm-ranks 3").
    public func checkShards(_ shards: Int, how: String) throws {
        guard train.batch % shards == 0 else {
            throw BMError.invalid("\(file): train.batch \(train.batch) cannot be cut into \(shards) equal shards (\(how)); expected a multiple of \(shards)")
        }
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
            : .cosine(lr: train.lr, warmup: train.warmup, total: train.steps, minLR: resolvedMinLR)
    }
}

import BMTrain
public typealias LRScheduleSpec = LRSchedule

/// Markov data keeps a dense [V, V] table (and its CDF): 8·V² bytes, 134 MB at 4,096.
public enum MarkovLimit { public static let vocab = 4096 }
