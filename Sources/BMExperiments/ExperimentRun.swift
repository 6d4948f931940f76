import Foundation
import BMCore
import BMLayers
import BMMixers
import BMRouting
import BMStorage
import BMTrain
import BMSpec
import BMData

/// Training batches from a Dataset; its generator state is the data position.
public struct DatasetSource: BatchSource {
    public let data: Dataset
    public var rng: RNG
    public init(data: Dataset, rng: RNG) { self.data = data; self.rng = rng }
    public mutating func next(inputs: UnsafeMutablePointer<Int32>, targets: UnsafeMutablePointer<Int32>, B: Int, L: Int) {
        data.trainBatch(&rng, B: B, L: L, inputs: inputs, targets: targets)
    }
}

/// `bmlab train`: a spec → data, model, optimiser → the training loop with
/// metrics (DIR/metrics.h5), evaluation, router statistics and atomic
/// checkpoints (DIR/checkpoint.h5); resumable, deterministic.
///
/// Everything that can be wrong with the input (spec, data files, output
/// directory, checkpoint) is checked in `init`, before anything is written.
public final class ExperimentRun {
    public let spec: ExperimentSpec
    public let outDir: String
    public let data: Dataset
    public let model: LanguageModel
    public let trainer: Trainer
    public let counts: ModelBuilder.Counts
    let resumeState: Checkpoint.State?
    let specYAML: String
    var source: DatasetSource
    public var printProgress = true
    /// The ranks of a data-parallel run (docs/distributed.md); rank 0 alone writes the
    /// run's files and prints its progress.
    public let group: Communicator
    /// For tests: stop (as if killed) after this many steps in this process.
    public var stopAfter: Int? = nil

    public var metricsPath: String { (outDir as NSString).appendingPathComponent("metrics.h5") }
    /// What a run writes in its directory (a run started over removes them).
    public static let runFiles = ["metrics.h5", "spec.yaml", "checkpoint.h5", "checkpoints"]

    public var checkpointPath: String { (outDir as NSString).appendingPathComponent("checkpoint.h5") }
    /// With `train.keep_checkpoints`: DIR/checkpoints/step-NNNNNN.h5, one per checkpoint and step 0.
    public func keptCheckpointPath(step: Int) -> String {
        (outDir as NSString).appendingPathComponent(String(format: "checkpoints/step-%06d.h5", step))
    }

    /// Memory the run was estimated to need (checked against the machine before anything was allocated).
    public let memory: MemoryEstimate
    /// Set when `--resume` found no checkpoint and the run starts over (said to the user).
    public private(set) var notice: String?
    /// This process's hold on the run directory (RunLock): from the checks in `init`
    /// until `run` returns (or the run is dropped unrun).
    var lock: RunLock?
    private var startOver = false

    /// `group`: the ranks of a data-parallel run; `shards`: shards of each step's batch
    /// over all ranks (nil: one a rank; more than the ranks: several a rank, the way
    /// `--shards` computes in one process what a run on that many ranks computes).
    public init(spec: ExperimentSpec, outDir: String, resume: Bool, group: Communicator = SingleProcess(), shards: Int? = nil) throws {
        self.spec = spec
        self.outDir = outDir
        self.group = group
        let shards = shards ?? group.size
        guard shards >= 1, shards % group.size == 0 else {
            throw BMError.invalid("--shards \(shards): must be a multiple of the \(group.size) ranks")
        }
        try spec.checkShards(shards, how: "\(group.size) rank(s)")
        specYAML = try spec.resolvedYAML()
        // 1. Can the machine hold it? (before any allocation or file)
        memory = try MemoryEstimate(spec)
        try memory.check(spec)
        // 2. What is in the output directory, and may we use it?
        let fm = FileManager.default
        let ck = (outDir as NSString).appendingPathComponent("checkpoint.h5")
        let mt = (outDir as NSString).appendingPathComponent("metrics.h5")
        var isDir: ObjCBool = false
        if fm.fileExists(atPath: outDir, isDirectory: &isDir), !isDir.boolValue {
            throw BMError.invalid("--out \(outDir) is a file, not a directory")
        }
        var stored: OpenedCheckpoint? = nil             // verified (hashed) once, read twice
        defer { stored?.close() }
        if resume && fm.fileExists(atPath: ck) {
            guard fm.fileExists(atPath: mt) else { throw BMError.invalid("\(outDir): checkpoint.h5 without metrics.h5; cannot resume this run") }
            stored = try OpenedCheckpoint(ck)
            if let diff = try SpecDiff.firstDifference(stored: try stored!.specYAML(), now: spec) {
                throw BMError.invalid("\(outDir) holds a run of a different spec (\(diff)); resume it with the same spec, or choose another --out")
            }
        } else if resume {
            if fm.fileExists(atPath: mt) || fm.fileExists(atPath: (outDir as NSString).appendingPathComponent("spec.yaml")) {
                startOver = true
                notice = "\(outDir) has no checkpoint yet (the run stopped before its first one): starting it over"
            }
        } else {
            try ExperimentRun.checkHoldsNoRun(outDir)
        }
        data = try Dataset(spec)
        if group.isWriter {
            try ExperimentRun.checkWritable(outDir)     // the last check: it creates the directory
            lock = try RunLock(directory: outDir)       // one process writes into a run
        }
        // 3. Model, optimiser.
        model = try ModelBuilder.build(spec)
        counts = ModelBuilder.counts(model, seqLen: spec.train.seqLen, scoredFraction: try Dataset.scoredFraction(spec))
        trainer = Trainer(model: model, settings: spec.trainSettings, group: group, shards: shards)
        source = DatasetSource(data: data, rng: RNG(seed: UInt64(spec.train.seed) &+ 0xDA7A))
        if let stored {
            let st = try stored.load(into: model, optimizer: trainer.optimizer)
            trainer.restore(step: st.step)
            source.rng = RNG(state: st.dataRNG)
            resumeState = st
        } else {
            resumeState = nil
        }
        // every rank has read its files (checkpoint, data) before rank 0 writes: a rank whose
        // start-up failed has ended the job (bmlab's `fail` aborts every rank)
        if group.size > 1 {
            group.setContext("the start of the run (another rank is still reading the data or the checkpoint)")
            try group.barrier()
        }
        if let old = lock?.takenOverFrom {
            notice = (notice.map { $0 + "; " } ?? "") + "\(outDir) was last written by \(old), which ended without releasing it; taking the run over"
        }
    }

    /// A run starting without --resume: `dir` must not hold one already.
    public static func checkHoldsNoRun(_ dir: String) throws {
        let fm = FileManager.default
        func has(_ f: String) -> Bool { fm.fileExists(atPath: (dir as NSString).appendingPathComponent(f)) }
        if has("metrics.h5") || has("checkpoint.h5")
            || !((try? fm.contentsOfDirectory(atPath: (dir as NSString).appendingPathComponent("checkpoints"))) ?? []).isEmpty {
            throw BMError.invalid("\(dir) already holds a run (metrics.h5 / checkpoint.h5 / checkpoints/); pass --resume to continue it, or choose another --out")
        }
    }

    /// A file a command is asked to write besides a run (`eval --grads`,
    /// `--router-logits`): never a run's own checkpoint.h5 or metrics.h5, nor a file
    /// the command reads (`reads`), and never an existing file unless `force`.
    public static func checkNewOutput(_ path: String, option: String, force: Bool, reads: [String] = []) throws {
        let url = URL(fileURLWithPath: path).standardizedFileURL.resolvingSymlinksInPath()
        if reads.contains(where: { URL(fileURLWithPath: $0).standardizedFileURL.resolvingSymlinksInPath() == url }) {
            throw BMError.invalid("\(option) \(path) is a file this command reads; choose another path")
        }
        let dir = url.deletingLastPathComponent().path
        let own = ["checkpoint.h5", "metrics.h5"]
        if own.contains(url.lastPathComponent),
           (own + ["spec.yaml"]).contains(where: { $0 != url.lastPathComponent && FileManager.default.fileExists(atPath: dir + "/" + $0) }) {
            throw BMError.invalid("\(option) \(path) is a run's own \(url.lastPathComponent); choose another path")
        }
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue {
            throw BMError.invalid("\(option) \(path) is a directory; give a file path")
        }
        if FileManager.default.fileExists(atPath: path) && !force {
            throw BMError.invalid("\(option) \(path) exists; pass --force to write over it, or choose another path")
        }
        if !FileManager.default.fileExists(atPath: dir, isDirectory: &isDir) || !isDir.boolValue {
            throw BMError.invalid("\(option) \(path): the folder \((path as NSString).deletingLastPathComponent.isEmpty ? "." : (path as NSString).deletingLastPathComponent) does not exist")
        }
    }

    /// A report's `--out`: a new file, or one this toolkit wrote before (its first line
    /// is `firstLine`'s kind of title), which is regenerated; any other existing file
    /// is written over only with `--force`.
    public static func checkReportOutput(_ path: String, option: String = "--out", force: Bool, titles: [String]) throws {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else { return }
        if isDir.boolValue { throw BMError.invalid("\(option) \(path) is a directory; give the report's file name, e.g. \(path)/report.md") }
        if force { return }
        let head = (try? FileHandle(forReadingFrom: URL(fileURLWithPath: path)).read(upToCount: 256)).flatMap { $0 }.map { String(decoding: $0, as: UTF8.self) } ?? ""
        guard titles.contains(where: { head.hasPrefix($0) }) else {
            throw BMError.invalid("\(option) \(path) exists and is not a report this command wrote; pass --force to write over it, or choose another path")
        }
    }

    /// An output directory (`--out` of sweep, sinkhorn, plot): a directory or a path
    /// that does not exist yet, never an existing file.
    public static func checkOutputDirectory(_ path: String, option: String = "--out") throws {
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDir), !isDir.boolValue {
            throw BMError.invalid("\(option) \(path) is a file, not a directory")
        }
    }

    /// `bmlab train --resume`: `dir` must hold a run (its spec.yaml, metrics.h5 or
    /// checkpoint.h5); a missing or empty directory is an error, not a fresh start.
    /// (Sweep workers resume every run and start the ones that have not begun.)
    public static func checkResumable(_ dir: String) throws {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDir) else {
            throw BMError.invalid("--resume: \(dir) does not exist, so there is no run to resume; leave out --resume to start one there")
        }
        guard isDir.boolValue else { throw BMError.invalid("--resume: \(dir) is a file, not a run directory") }
        let files = ["spec.yaml", "metrics.h5", "checkpoint.h5"]
        guard files.contains(where: { FileManager.default.fileExists(atPath: (dir as NSString).appendingPathComponent($0)) }) else {
            throw BMError.invalid("--resume: \(dir) holds no run (none of \(files.joined(separator: ", "))); leave out --resume to start one there")
        }
    }

    /// Makes sure `dir` (created if missing, with its parents) takes new files: a
    /// clear error now rather than a raw one after the start-up header.
    static func checkWritable(_ dir: String) throws {
        let fm = FileManager.default
        // mkdir -p with POSIX calls, so the error is the system's own reason
        var path = dir.hasPrefix("/") ? "" : "."
        for part in dir.split(separator: "/") {
            path += "/" + part
            if mkdir(path, 0o755) != 0 && errno != EEXIST {
                throw BMError.invalid("--out \(dir): cannot create the directory \(path) (\(String(cString: strerror(errno))))")
            }
        }
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: dir, isDirectory: &isDir), isDir.boolValue else {
            throw BMError.invalid("--out \(dir): cannot create the directory (a file of that name is in the way)")
        }
        let probe = (dir as NSString).appendingPathComponent(".bmlab-write-test-\(getpid())")
        guard fm.createFile(atPath: probe, contents: Data()) else {
            throw BMError.invalid("--out \(dir): cannot write there (\(String(cString: strerror(errno))))")
        }
        try? fm.removeItem(atPath: probe)
    }

    public struct Summary: Sendable {
        public var steps: Int
        public var stepsRun: Int              // by this call (0: a resumed run that was already complete)
        /// Mean of the last `trainLossWindow` logged training losses: what every table
        /// calls "train loss" (reports, sweep.h5, the command line).
        public var trainLoss: Double
        public var evalLoss: Double?
        public var evalMetric: Double?
        public var metricName: String
        public var tokensPerSecond: Double
        public var seconds: Double
        public var counts: ModelBuilder.Counts
    }

    // MARK: the loop

    /// The run's directory and files before its first step: a start over clears the old
    /// run's files; spec.yaml is (re)written; metrics.h5 is created with the run's
    /// attributes and what its evaluations are (metric, routing, MoE layers, split
    /// sizes), or reopened at the step a resume continues from.
    private func openRun() throws -> MetricsLog {
        let fm = FileManager.default
        if startOver {
            for f in ExperimentRun.runFiles { try? fm.removeItem(atPath: (outDir as NSString).appendingPathComponent(f)) }
            startOver = false
        }
        try fm.createDirectory(atPath: outDir, withIntermediateDirectories: true)
        try AtomicFile.write(to: (outDir as NSString).appendingPathComponent("spec.yaml")) { tmp in
            try ((dataParallelLine.map { "# \($0)\n" } ?? "") + specYAML).write(toFile: tmp, atomically: false, encoding: .utf8)
        }
        if let st = resumeState {
            let m = try MetricsLog(resuming: metricsPath, step: st.step)
            do { try setDistributedAttributes(m) } catch { m.close(); throw error }
            return m
        }
        let metrics = try MetricsLog(path: metricsPath, attributes: rootAttributes())
        do {
            try setDistributedAttributes(metrics)
            let eval = try metrics.file.createGroup("eval")
            try eval.setAttribute("metric_name", data.metric.rawValue)
            let notes = model.blocks.compactMap(\.mixer.evaluationNote).reduce(into: [String]()) { if !$0.contains($1) { $0.append($1) } }
            if !notes.isEmpty { try eval.setAttribute("routing_note", notes.joined(separator: "; ")) }
            try eval.setAttribute("routing", spec.eval.routing.rawValue)
            let moeLayers = model.blocks.indices.filter { model.blocks[$0].mixer is MoE }
            if !moeLayers.isEmpty { try eval.setAttribute("moe_layers", moeLayers.map { Int($0) }) }
            if data.isSplit {
                let L = spec.train.seqLen
                try eval.setAttribute("split_tokens", data.count(.validation))
                try eval.setAttribute("split_windows", data.windows(.validation, L: L))
                try eval.setAttribute("test_split_tokens", data.count(.test))
                try eval.setAttribute("train_split_tokens", data.split.train.count)
            }
        } catch {
            metrics.close()
            throw error
        }
        return metrics
    }

    /// Rows of the global batch each rank computes.
    public var rankBatch: Int { spec.train.batch / group.size }

    /// How a data-parallel run runs (nil for one shard): printed by `train` and the first
    /// line of its spec.yaml (a comment: not part of the spec, a run resumes on another
    /// number of ranks).
    public var dataParallelLine: String? {
        trainer.shards == 1 ? nil : "data-parallel: \(group.size) rank(s), \(trainer.shards) shard(s) of \(spec.train.batch / trainer.shards) rows; \(rankBatch) of the \(spec.train.batch) rows of a step on each rank"
    }

    /// metrics.h5's root attributes world_size, shards and rank_batch (rewritten by a
    /// resume, which may run on another number of ranks).
    func setDistributedAttributes(_ m: MetricsLog) throws {
        try m.file.setAttribute("world_size", group.size)
        try m.file.setAttribute("shards", trainer.shards)
        try m.file.setAttribute("rank_batch", rankBatch)
    }

    /// Every rank's parameters hash to the same value (at the start and at each checkpoint
    /// of a data-parallel run): a silent divergence stops the run.
    func checkRanksAgree(_ when: String) throws {
        guard group.size > 1 else { return }
        group.setContext("the parameter check \(when)")
        guard try group.allEqual(model.params.valuesHash()) else {
            throw BMError.numerical("the ranks' parameters differ \(when) (ranks given different specs or seeds, or one diverged: another library or CPU path); stopping")
        }
    }

    public func run() throws -> Summary {
        defer { lock = nil }                            // the run is over: another process may take it
        let fm = FileManager.default
        let metrics: MetricsLog? = group.isWriter ? try openRun() : nil
        defer { metrics?.close() }
        try checkRanksAgree("at the start (step \(trainer.step))")
        let S = spec.train.steps, B = spec.train.batch, L = spec.train.seqLen
        let tokensPerStep = B * L
        let progress = printProgress && group.isWriter ? ProgressLine(total: S, logEvery: spec.train.logEvery) : nil
        // Throughput over the steps since the previous row, from the steps' own
        // durations (evaluation, checkpoints and logging are not counted).
        var windowSteps = 0, windowTime = 0.0
        var recent = try metrics.map { try Self.loggedLosses($0) } ?? []            // a resumed run continues its window
        var lastEval: (Double, Double?)? = nil
        var lastEvalStep = trainer.step                          // the step lastEval was measured at
        var totalTime = 0.0
        var tokensPerSecond = 0.0
        let startStep = trainer.step
        var checkpointStep: Int? = resumeState.map(\.step)   // the step of checkpoint.h5 on disk
        // the run's checkpoint (with the optimizer state, to resume), and with
        // keep_checkpoints a copy of the weights per step (for analyses; written first,
        // so a run resumed from checkpoint.h5 never lacks the kept file of its step)
        func checkpoint(kept: Bool, run: Bool) throws {
            let st = Checkpoint.State(step: trainer.step, optimizerStep: trainer.optimizer.t, dataRNG: source.rng.stateArray, specYAML: specYAML)
            if kept && spec.train.keepCheckpoints && group.isWriter {
                try fm.createDirectory(atPath: (outDir as NSString).appendingPathComponent("checkpoints"), withIntermediateDirectories: true)
                let path = keptCheckpointPath(step: trainer.step)
                if !fm.fileExists(atPath: path) { try Checkpoint.save(to: path, model: model, optimizer: nil, state: st) }
            }
            if run {
                if group.isWriter {
                    do { try Checkpoint.save(to: checkpointPath, model: model, optimizer: trainer.optimizer, state: st) } catch {
                        throw BMError.invalid("cannot write the checkpoint of step \(trainer.step) (\(BMError.reason(error)))")
                    }
                }
                checkpointStep = trainer.step
                try checkRanksAgree("at the checkpoint of step \(trainer.step)")
            }
        }
        // what a failure leaves behind, for its message
        func keptNote() -> String {
            guard let k = checkpointStep else {
                return "no checkpoint was written yet (the first comes at step \(min(spec.train.checkpointEvery, S))): nothing to resume"
            }
            return "\(checkpointPath) of step \(k) is kept and metrics.h5 holds the rows up to its last successful flush; `bmlab train \((outDir as NSString).appendingPathComponent("spec.yaml")) --out \(outDir) --resume` continues from it"
        }
        if startStep == 0 { lastEval = try evaluate(metrics, step: 0); lastEvalStep = 0 }
        try checkpoint(kept: true, run: false)                  // step 0, or the step resumed from
        // a run resumed from the step where train.stop_at ended it is complete
        var stopped = false
        if startStep > 0, let m = metrics, let e = try Self.evaluation(m, at: startStep) {
            lastEval = e
            stopped = Self.reachedStop(spec.train.stopAt, e.1)
        }
        if group.size > 1 { stopped = try group.sum([stopped ? 1 : 0])[0] > 0 }   // rank 0 read it
        do {
            while trainer.step < S && !stopped {
                if let stop = stopAfter, trainer.step - startStep >= stop { break }
                let t0 = ContinuousClock.now
                let r = try trainer.trainStep(&source, routesByArgmax: trainer.step >= S - spec.train.argmaxRoutingSteps)
                let stepTime = (ContinuousClock.now - t0).seconds
                totalTime += stepTime
                let done = trainer.step
                windowSteps += 1; windowTime += stepTime
                if done % spec.train.logEvery == 0 || done == S {
                    tokensPerSecond = Double(windowSteps * tokensPerStep) / max(windowTime, 1e-9)
                    if let metrics { try logTrainingRow(metrics, step: done, loss: r.loss, lr: r.lr, gradNorm: r.gradNorm, tokensPerSecond: tokensPerSecond) }
                    recent.append(r.loss)
                    if recent.count > Self.trainLossWindow { recent.removeFirst() }
                    windowSteps = 0; windowTime = 0
                }
                let evaluated = done % spec.train.evalEvery == 0 || done == S
                if evaluated { lastEval = try evaluate(metrics, step: done); lastEvalStep = done }
                // train.stop_at: the held-out accuracy reached the target; the run ends here,
                // complete (its last evaluation says so, which is how a resume knows)
                let reached = evaluated && Self.reachedStop(spec.train.stopAt, lastEval?.1 ?? nil)
                if done % spec.train.checkpointEvery == 0 || done == S || reached { try checkpoint(kept: true, run: true) }
                progress?.update(step: done - 1, loss: r.loss, tokensPerSecond: tokensPerSecond,
                                 extra: lastEval.map { e in
                                     // labelled with its step: between evaluations it is not this step's
                                     "val@\(lastEvalStep) " + String(format: "%.4f", e.0)
                                         + (e.1.map { String(format: "  %@ %.4f", data.metric.rawValue, $0) } ?? "")
                                 } ?? "")
                if reached {
                    if printProgress && group.isWriter { print("stopped at step \(done): \(data.metric.rawValue) \(String(format: "%.4f", lastEval?.1 ?? .nan)) ≥ train.stop_at \(spec.train.stopAt!)") }
                    break
                }
            }
        } catch {
            try? metrics?.flush()
            throw failure(from: error, keptNote: keptNote())
        }
        // eval.test: the test split once, when the run is complete (not again on a resume)
        var tested = metrics?.file.exists("test/loss") ?? false
        if group.size > 1 { tested = try group.sum([tested ? 1 : 0])[0] > 0 }   // rank 0 read it
        if spec.eval.test && (trainer.step == S || stopped || Self.reachedStop(spec.train.stopAt, lastEval?.1 ?? nil)) && !tested {
            try evaluateTest(metrics, step: trainer.step)
        }
        do { try metrics?.finish() } catch {                     // the last rows reach the disk, checked
            throw BMError.invalid("\(BMError.reason(error)); training finished at step \(trainer.step) and \(checkpointPath) of that step is kept, but metrics.h5 may lack its last rows")
        }
        let ran = trainer.step - startStep
        return Summary(steps: trainer.step, stepsRun: ran, trainLoss: Self.windowMean(recent) ?? .nan, evalLoss: lastEval?.0, evalMetric: lastEval?.1 ?? nil,
                       metricName: data.metric.rawValue,
                       tokensPerSecond: ran > 0 ? Double(ran * tokensPerStep) / max(totalTime, 1e-9) : 0,
                       seconds: totalTime, counts: counts)
    }

    /// A training row of metrics.h5 (every `log_every` steps and the last): step, tokens,
    /// loss, learning rate, gradient norm, throughput, FLOPs so far, the aux loss and each
    /// MoE layer's router statistics; flushed, so a kill loses at most the rows since.
    private func logTrainingRow(_ metrics: MetricsLog, step done: Int, loss: Double, lr: Double, gradNorm: Double,
                                tokensPerSecond: Double) throws {
        let tokensPerStep = spec.train.batch * spec.train.seqLen
        try metrics.append("train/step", done)               // steps done, as eval/step
        try metrics.append("train/tokens", done * tokensPerStep)
        try metrics.append("train/loss", loss)
        try metrics.append("train/lr", lr)
        try metrics.append("train/grad_norm", gradNorm)
        try metrics.append("train/tokens_per_s", tokensPerSecond)
        try metrics.append("train/flops", Double(done * tokensPerStep) * counts.flopsPerToken)
        try metrics.append("train/aux_loss", trainer.lastAuxLoss)
        try logRouters(metrics, step: done)
        try metrics.flush()
    }

    /// What a failed step throws: the error, of its kind (an interruption as it is), with
    /// what the run leaves behind and how to resume it.
    private func failure(from error: Error, keptNote: String) -> Error {
        guard let e = error as? BMError else {
            return BMError.invalid("\(BMError.reason(error)); training stopped at step \(trainer.step); \(keptNote)")
        }
        if case .interrupted = e { return e }
        switch e {
        case .numerical: return BMError.numerical("\(e.description); \(keptNote)")
        case .system: return BMError.system("\(e.description); \(keptNote)")
        default: return BMError.invalid("\(e.description); \(keptNote)")
        }
    }

    /// The evaluation logged at `step` (loss, metric), if one was.
    static func evaluation(_ metrics: MetricsLog, at step: Int) throws -> (Double, Double?)? {
        guard metrics.file.exists("eval/step") else { return nil }
        let steps = try metrics.file.dataset("eval/step").readDoubles()
        guard let i = steps.lastIndex(of: Double(step)) else { return nil }
        let loss = try metrics.file.dataset("eval/loss").readDoubles()[i]
        let m = try metrics.file.dataset("eval/metric").readDoubles()[i]
        return (loss, m.isNaN ? nil : m)
    }

    /// Whether an evaluation's metric reaches `train.stop_at`.
    static func reachedStop(_ stopAt: Double?, _ metric: Double?) -> Bool {
        guard let stopAt, let metric else { return false }
        return metric >= stopAt
    }

    /// Validation loss (and bits per byte or accuracy) over `eval_batches` batches evenly
    /// spaced over the validation split, under `eval.routing` (eval/… in metrics.h5).
    func evaluate(_ metrics: MetricsLog?, step: Int) throws -> (Double, Double?) {
        let B = spec.train.batch, L = spec.train.seqLen, n = spec.train.evalBatches
        group.setContext("the evaluation at step \(step)")
        let r = try Evaluator.evaluate(model: model, batches: n, B: B, L: L, metric: data.metric, routing: spec.eval.routing, group: group) {
            i, inp, tgt in data.evalBatch(i, of: n, B: B, L: L, inputs: inp, targets: tgt)
        }
        guard let metrics else { return (r.primary.loss, r.primary.metric) }
        try log(r, to: metrics, group: "eval", step: step)
        try metrics.flush()
        return (r.primary.loss, r.primary.metric)
    }

    /// The test split, once, after the last step (`eval.test`): a study's final numbers.
    func evaluateTest(_ metrics: MetricsLog?, step: Int) throws {
        let B = spec.train.batch, L = spec.train.seqLen
        let n = spec.eval.testBatches > 0 ? spec.eval.testBatches
              : data.isSplit ? data.batchesCovering(.test, B: B, L: L) : 8 * spec.train.evalBatches
        group.setContext("the test evaluation")
        let r = try Evaluator.evaluate(model: model, batches: n, B: B, L: L, metric: data.metric, routing: spec.eval.routing, group: group) {
            i, inp, tgt in data.evalBatch(i, of: n, part: .test, B: B, L: L, inputs: inp, targets: tgt)
        }
        guard let metrics else { return }
        try log(r, to: metrics, group: "test", step: step)
        try metrics.flush()
        if printProgress {
            print("test (\(r.primary.tokens) tokens): loss \(String(format: "%.4f", r.primary.loss))"
                  + (r.primary.metric.map { "  \(data.metric.rawValue) " + String(format: "%.4f", $0) } ?? ""))
        }
    }

    /// One evaluation's rows: GROUP/loss and /metric under the primary routing (argmax
    /// unless eval.routing is train), /tokens scored, and for models with MoE layers
    /// /loss_argmax, /loss_train (and their metrics) and /routing_agreement [MoE layers].
    func log(_ r: Evaluator.Routed, to metrics: MetricsLog, group g: String, step: Int) throws {
        try metrics.append("\(g)/step", step)
        try metrics.append("\(g)/loss", r.primary.loss)
        try metrics.append("\(g)/metric", r.primary.metric ?? .nan)
        try metrics.append("\(g)/tokens", r.primary.tokens)
        guard !r.agreement.isEmpty else { return }
        try metrics.append("\(g)/loss_argmax", r.argmax?.loss ?? .nan)
        try metrics.append("\(g)/loss_train", r.train?.loss ?? .nan)
        try metrics.append("\(g)/metric_argmax", r.argmax?.metric ?? .nan)
        try metrics.append("\(g)/metric_train", r.train?.metric ?? .nan)
        try metrics.appendRow("\(g)/routing_agreement", r.agreement.map(\.value))
    }

    /// Logged training losses a "train loss" averages.
    public static let trainLossWindow = 10

    /// The mean of the last `trainLossWindow` values of a logged series (what a "train
    /// loss", or an end-of-training router statistic, means); nil for none.
    public static func windowMean(_ values: [Double]) -> Double? {
        let tail = values.suffix(trainLossWindow)
        return tail.isEmpty ? nil : tail.reduce(0, +) / Double(tail.count)
    }

    /// The last `trainLossWindow` losses already in the file (a resumed run's).
    static func loggedLosses(_ metrics: MetricsLog) throws -> [Double] {
        guard metrics.file.exists("train/loss") else { return [] }
        return Array(try metrics.file.dataset("train/loss").readDoubles().suffix(trainLossWindow))
    }

    /// router/layer_{i}/…: the statistics each layer reports for its last forward
    /// (`Mixer.statistics`; MoE layers report their router's).
    func logRouters(_ metrics: MetricsLog, step: Int) throws {
        for (i, b) in model.blocks.enumerated() {
            // a sharded step's: over the whole batch (Trainer.lastStatistics)
            let stats = trainer.lastStatistics?[i] ?? b.mixer.statistics
            guard !stats.isEmpty else { continue }
            let g = "router/layer_\(i)"
            try metrics.append("\(g)/step", step)
            for (name, s) in stats {
                switch s {
                case .value(let v): try metrics.append("\(g)/\(name)", v)
                case .count(let n): try metrics.append("\(g)/\(name)", n)
                case .row(let r): try metrics.appendRow("\(g)/\(name)", r)
                case .counts(let r): try metrics.appendRow("\(g)/\(name)", r)
                }
            }
        }
    }

    func rootAttributes() -> [(String, MetricValue)] {
        var a: [(String, MetricValue)] = [
            ("name", .string(spec.name)),
            ("metrics_version", .int(MetricsLog.version)),
            ("spec", .string(specYAML)),
            ("spec_file", .string(spec.file)),
            ("seed", .int(spec.train.seed)),
            ("train_steps", .int(spec.train.steps)),
            ("toolkit_version", .string(BMLab.version)),
            ("blas_core", .string(BLAS.coreName)),
            ("blas_threads", .int(BLAS.threads)),
            ("kernels", .string(Kernels.forced)),
            ("cpu", .string("\(Machine.cpuModel), \(Machine.cpuFamilyModel)")),
            ("scan_kernel", .string(SelectiveScan.kernel)),
            ("gemv_kernel", .string(BLAS.gemvKernel)),
            ("start_time", .string(ISO8601DateFormatter().string(from: Date()))),
            ("parameters_total", .int(counts.total)),
            ("parameters_active", .int(counts.active)),
            ("flops_per_token", .double(counts.flopsPerToken)),
            ("flops_per_token_matmul", .double(counts.weightProductFlops)),
            ("flop_terms", .strings(counts.flopTerms.map(\.name))),
            ("flop_term_values", .doubles(counts.flopTerms.map(\.flops))),
            ("data", .string(data.description)),
            ("layers", .strings(spec.model.layers.map(\.mixer))),
        ]
        if let c = ExperimentRun.gitCommit { a.append(("git_commit", .string(c))) }
        if let u = data.unigramEntropy { a.append(("unigram_entropy_nats", .double(u))) }
        return a
    }

    /// The commit of the working directory's git checkout, when there is one.
    public static var gitCommit: String? {
        Machine.firstLine(of: "git", ["rev-parse", "HEAD"]).flatMap { $0.count == 40 ? $0 : nil }
    }
}

/// Evaluation over fixed batches: mean loss, and bits per byte or accuracy.
public enum Evaluator {
    public struct Result: Sendable { public var loss: Double; public var metric: Double?; public var tokens: Int }

    /// An evaluation under `eval.routing`: the primary result (argmax, or train when that
    /// is the only routing asked for), each routing's result, and per MoE layer the share
    /// of (token, expert) choices the two routings share. Models without MoE layers are
    /// evaluated once (both routings are the same model) and have no agreement.
    public struct Routed: Sendable {
        public var primary: Result
        public var argmax: Result?, train: Result?
        public var agreement: [(layer: Int, value: Double)] = []
    }

    /// In a data-parallel run (`group` of several ranks) rank r evaluates the batches
    /// i ≡ r (mod ranks) and the sums are reduced, so every rank gets the whole result.
    public static func evaluate(model: LanguageModel, batches: Int, B: Int, L: Int, metric: Dataset.Metric, routing: EvalRouting,
                                group: Communicator = SingleProcess(),
                                fill: (Int, UnsafeMutablePointer<Int32>, UnsafeMutablePointer<Int32>) -> Void) throws -> Routed {
        let moes = model.blocks.enumerated().compactMap { i, b in (b.mixer as? MoE).map { (i, $0) } }
        guard !moes.isEmpty else {
            let r = try evaluate(model: model, batches: batches, B: B, L: L, metric: metric, pass: .eval(), group: group, fill: fill)
            return Routed(primary: r, argmax: nil, train: nil)
        }
        let passes: [EvalRouting] = routing == .both ? [.argmax, .train] : [routing]
        var out = [EvalRouting: Result]()
        var agreement: [(Int, Double)] = []
        for (k, p) in passes.enumerated() {
            // agreement: measured in the pass routed as in training when both run
            let measure = k == passes.count - 1
            for (_, m) in moes { m.resetAgreement() }
            out[p] = try evaluate(model: model, batches: batches, B: B, L: L, metric: metric,
                                  pass: .eval(routing: p, measureAgreement: measure), group: group, fill: fill)
            if measure {
                let counts = try group.sum(moes.flatMap { _, m in [Double(m.agreement.shared), Double(m.agreement.total)] })
                agreement = moes.enumerated().map { k, lm in (lm.0, counts[2 * k + 1] > 0 ? counts[2 * k] / counts[2 * k + 1] : .nan) }
            }
        }
        let primary = routing == .train ? out[.train]! : out[.argmax]!
        return Routed(primary: primary, argmax: out[.argmax], train: out[.train], agreement: agreement)
    }

    public static func evaluate(model: LanguageModel, batches: Int, B: Int, L: Int, metric: Dataset.Metric, pass: Pass,
                                group: Communicator = SingleProcess(),
                                fill: (Int, UnsafeMutablePointer<Int32>, UnsafeMutablePointer<Int32>) -> Void) throws -> Result {
        let inp = IntBuffer(count: B * L), tgt = IntBuffer(count: B * L)
        // one slot per batch, zero where another rank scored it (adding zeros is exact),
        // then summed in batch order: the bits of one process, on any number of ranks
        var slots = [Double](repeating: 0, count: 3 * batches)
        for i in stride(from: group.rank, to: batches, by: group.size) {
            fill(i, inp.pointer, tgt.pointer)
            let r = model.forward(tokens: inp.pointer, targets: tgt.pointer, B: B, L: L, pass: pass)
            slots[3 * i] = r.loss * Double(r.counted); slots[3 * i + 1] = Double(r.counted); slots[3 * i + 2] = Double(r.correct)
        }
        slots = try group.sum(slots)
        var loss = 0.0, counted = 0, correct = 0
        for i in 0..<batches { loss += slots[3 * i]; counted += Int(slots[3 * i + 1]); correct += Int(slots[3 * i + 2]) }
        let mean = counted > 0 ? loss / Double(counted) : .nan
        let m: Double?
        switch metric {
        case .bitsPerByte: m = mean / log(2.0)
        case .accuracy: m = counted > 0 ? Double(correct) / Double(counted) : .nan
        case .none: m = nil
        }
        return Result(loss: mean, metric: m, tokens: counted)
    }
}
