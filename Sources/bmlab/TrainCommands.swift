import ArgumentParser
import Foundation
import BMCore
import BMLayers
import BMStorage
import BMExperiments
import BMSpec
import BMData
import BMSweeps
import BMDistributed

struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "train", 
        abstract: "Train the model an experiment spec describes; metrics to DIR/metrics.h5, checkpoints to DIR/checkpoint.h5.")
    @Argument(help: "The spec file (YAML), e.g. Experiments/blackmamba-tiny.yaml.") var spec: String
    @Argument(help: "Overrides key.path=value, e.g. train.steps=100 model.d_model=128.") var overrides: [String] = []
    @Option(help: "Output directory (default results/NAME).") var out: String?
    @Flag(help: "Continue from DIR/checkpoint.h5.") var resume = false
    @Option(help: "BLAS threads (0 = one per available core; under mpirun, the cores shared by the ranks of a machine).") var threads = 0
    @Flag(help: "Data-parallel over the ranks mpirun or srun started (Open MPI; automatic when started as one of several ranks). docs/distributed.md.")
    var distributed = false
    @Option(help: "Shards of each step's batch over all ranks (default: one a rank). In one process, N computes what an N-rank run computes, bitwise.")
    var shards: Int?
    @Option(help: "Submit this run to Slurm as one job of N ranks (sbatch + srun --mpi=pmix; DIR/train.sbatch) instead of training here.")
    var slurmRanks: Int?
    @Option(help: "With --slurm-ranks: nodes the ranks may spread over.") var slurmNodes: Int?
    @Option(help: "With --slurm-ranks: the job's time limit.") var slurmTime = "01:00:00"
    @Option(help: "With --slurm-ranks: CPUs (threads) per rank.") var slurmCpus = 1
    @Option(help: "With --slurm-ranks: the partition.") var slurmPartition: String?
    @OptionGroup var machine: MachineOptions

    func validate() throws {
        requireThreads(threads)
        if let n = shards { require(n >= 1, "--shards must be at least 1, got \(n)") }
        if let n = slurmRanks {
            require(n >= 1, "--slurm-ranks must be at least 1, got \(n)")
            require(slurmCpus >= 1, "--slurm-cpus must be at least 1, got \(slurmCpus)")
            require(Slurm.isTimeLimit(slurmTime), "--slurm-time '\(slurmTime)' is not a Slurm time limit; expected MINUTES, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS or UNLIMITED")
            if let m = slurmNodes { require(m >= 1 && m <= n, "--slurm-nodes must be between 1 and --slurm-ranks (\(n)), got \(m)") }
            require(shards == nil, "--shards is for a run in this process; a Slurm run has one shard a rank")
        }
    }

    /// `--slurm-ranks`: the spec and the output directory are checked here, then the job
    /// is written and submitted (the run itself is the same `train` on each rank).
    func submit(_ ranks: Int) throws {
        let s = try ExperimentSpec.load(path: spec, overrides: overrides)
        try s.checkShards(ranks, how: "--slurm-ranks \(ranks)")
        let dir = out ?? "results/\(s.name)"
        try ExperimentRun.checkOutputDirectory(dir)
        if resume { try ExperimentRun.checkResumable(dir) } else { try ExperimentRun.checkHoldsNoRun(dir) }
        var o = Slurm.Options()
        o.ranks = ranks; o.nodes = slurmNodes; o.time = slurmTime; o.cpus = slurmCpus; o.partition = slurmPartition
        let script = try Slurm.writeTrainScript(bmlab: selfPath(), trainArgs: [spec] + overrides + (resume ? ["--resume"] : []), outDir: dir, options: o)
        if let job = try Slurm.submit(script) {
            print("submitted job \(job) (\(ranks) ranks): \(script)")
            print("log: \(dir)/slurm-\(job).out; metrics: \(dir)/metrics.h5")
        } else {
            print("wrote \(script); sbatch is not installed here — submit it where Slurm runs: sbatch \(script)")
        }
    }

    func run() throws {
        if let n = slurmRanks {
            machine.apply()                       // --blas-core / --kernels reach the job through its environment
            guarded { try submit(n) }
            return
        }
        let group = dataParallelGroup(forced: distributed)
        machine.startBLAS(threads: threads > 0 ? threads : rankThreads(group))
        guarded {
            let s = try ExperimentSpec.load(path: spec, overrides: overrides)
            let dir = out ?? "results/\(s.name)"
            if resume { try ExperimentRun.checkResumable(dir) }
            let run = try ExperimentRun(spec: s, outDir: dir, resume: resume, group: group, shards: shards)
            guard group.isWriter else { _ = try run.run(); return }
            warn(s.warnings)                          // after every check: an error stays one line
            if let line = run.dataParallelLine { print(line) }
            if let n = run.notice { print("note: \(n)") }
            let c = run.counts
            print("\(s.name): \(s.model.layers.map(\.mixer).joined(separator: ","))  d_model \(s.model.dModel)  parameters \(fmtCount(c.total)) total, \(fmtCount(c.active)) active  \(String(format: "%.1f", c.flopsPerToken / 1e6)) MFLOP/token")
            print("data: \(run.data.description)")
            print("BLAS: \(BLAS.coreName), \(BLAS.threads) threads; out: \(dir)")
            let sum = try run.run()
            if sum.stepsRun == 0 {
                print(sum.steps < s.train.steps
                      ? "already complete: train.stop_at \(s.train.stopAt ?? .nan) was reached at step \(sum.steps) (of \(s.train.steps)); nothing to do"
                      : "already complete: \(sum.steps) of \(s.train.steps) steps are in the checkpoint; nothing to do")
                print("metrics: \(run.metricsPath)\ncheckpoint: \(run.checkpointPath)")
                return
            }
            var line = String(format: "done: %d steps, train loss %.4f", sum.steps, sum.trainLoss)
            if let e = sum.evalLoss { line += String(format: ", val loss %.4f", e) }
            if let m = sum.evalMetric { line += String(format: ", %@ %.4f", sum.metricName, m) }
            line += String(format: ", %.0f tokens/s, %.1f s", sum.tokensPerSecond, sum.seconds)
            print(line)
            print("metrics: \(run.metricsPath)\ncheckpoint: \(run.checkpointPath)")
        }
    }
}

/// The ranks of this process's run: MPI_COMM_WORLD when started as one of several ranks
/// (or `forced`, --distributed), else one process. A failure to join (no Open MPI) is the
/// usual message and exit 3.
func dataParallelGroup(forced: Bool = false) -> Communicator {
    guard forced || MPICommunicator.launchedAsRank else { return SingleProcess() }
    do { return try MPICommunicator.world() } catch { fail(error) }
}

/// Threads of one rank when --threads is 0: the process's cores shared by the ranks
/// that Open MPI says run on this machine (2 ranks on 2 cores: 1 each).
func rankThreads(_ group: Communicator) -> Int {
    guard group.size > 1 else { return 0 }
    let env = ProcessInfo.processInfo.environment
    if let perTask = env["SLURM_CPUS_PER_TASK"].flatMap(Int.init) { return max(1, perTask) }
    let local = env["OMPI_COMM_WORLD_LOCAL_SIZE"].flatMap(Int.init) ?? env["SLURM_NTASKS_PER_NODE"].flatMap(Int.init) ?? 1
    return max(1, BLAS.availableCores / max(1, local))
}

func fmtCount(_ n: Int) -> String {
    n >= 1_000_000 ? String(format: "%.2fM", Double(n) / 1e6) : n >= 1000 ? String(format: "%.1fk", Double(n) / 1e3) : "\(n)"
}

struct ValidateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "validate", abstract: "Check a spec or a sweep file (keys, types, plugins, options, shapes, data, memory) without training.")
    @Argument(help: "The spec file, or a sweep file (every run is checked).") var spec: String
    @Argument(help: "Overrides key.path=value (or ~key.path to delete a key).") var overrides: [String] = []
    @Flag(help: "Print the resolved spec (every default filled in; for a sweep, of its first run).") var resolved = false

    func run() throws {
        guarded {
            if Sweep.isSweepFile(spec) {
                let sweep = try Sweep(path: spec, overrides: overrides)
                var largest: (MemoryEstimate, ExperimentSpec)? = nil
                for r in sweep.runs {
                    _ = try Dataset(r.spec)
                    let m = try MemoryEstimate(r.spec)
                    try m.check(r.spec)
                    if largest.map({ m.totalBytes > $0.0.totalBytes }) ?? true { largest = (m, r.spec) }
                }
                if resolved, let first = sweep.runs.first { print(try first.spec.resolvedYAML(), terminator: "") }
                if let (m, s) = largest {
                    print("memory: largest run about \(MemoryEstimate.format(m.totalBytes)) (\(m.summary(s))); available \(MemoryEstimate.format(Double(Machine.availableMemoryBytes)))")
                }
                print("\(spec): ok (a sweep of \(sweep.runs.count) runs over \(sweep.axes.joined(separator: ", ")))")
                return
            }
            let s = try ExperimentSpec.load(path: spec, overrides: overrides)
            _ = try Dataset(s)
            let m = try MemoryEstimate(s)
            if resolved { print(try s.resolvedYAML(), terminator: "") }
            print("memory: about \(MemoryEstimate.format(m.totalBytes)) (\(m.summary(s))); available \(MemoryEstimate.format(Double(Machine.availableMemoryBytes)))")
            try m.check(s)
            let c = ModelBuilder.counts(try ModelBuilder.build(s, allocate: false), seqLen: s.train.seqLen, scoredFraction: try Dataset.scoredFraction(s))
            print("parameters: \(fmtCount(c.total)) total, \(fmtCount(c.active)) active; training FLOPs a token: \(ModelBuilder.flopSummary(c))")
            warn(s.warnings)                          // a spec that passes, with its warnings
            print("\(spec): ok (\(s.model.layers.count) layers: \(s.model.layers.map(\.mixer).joined(separator: ", ")))")
        }
    }
}

struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "eval", abstract: "Evaluate a checkpoint: validation data, or a text/token file read in order.")
    @Option(help: "checkpoint.h5 of a run.") var checkpoint: String
    @Option(help: "A text (or .bin token) file read from its start, windows of the spec's seq_len.") var data: String?
    @Option(help: "A tokenizer.json (byte-level BPE) that encodes a --data text file (default: the run directory's tokenizer.json, which bmlab import copies in; none: bytes).") var tokenizer: String?
    @Option(help: "Batches (default: the spec's eval_batches, evenly spaced over the split; with --data, every full batch).") var batches: Int?
    @Option(help: "The held-out split: validation, or test (a study's final numbers only).") var split: Dataset.Part = .validation
    @Flag(help: "Score every window of the split (text and token data).") var all = false
    @Option(help: "MoE routing: argmax (causal, as generation), train (training's assignment over each batch; not causal) or both (default: the spec's eval.routing).") var routing: EvalRouting?
    @Option(help: "Also write the gradient of the loss for every parameter to this HDF5 file.") var grads: String?
    @Option(help: "Also write each MoE layer's router logits on these batches to this HDF5 file (router_logits/layer_{i}, [T, E]; input of bmlab sinkhorn --logits).") var routerLogits: String?
    @Flag(help: "Write --grads / --router-logits over an existing file (never over a run's own checkpoint.h5 or metrics.h5).") var force = false
    @OptionGroup var machine: MachineOptions

    func validate() throws {
        if let b = batches { require(b >= 1, "--batches must be at least 1, got \(b)") }
        require(!(all && batches != nil), "--all and --batches both say how many batches to score; give one")
        require(!(data != nil && (all || split != .validation)), "--data reads its file in order; --split and --all apply to the spec's data")
        if let g = grads, let r = routerLogits { require(g != r, "--grads and --router-logits name the same file \(g)") }
    }

    func run() throws {
        machine.startBLAS()
        guarded {
            // refused before any work: nothing the command did not create is written over
            for (option, path) in [("--grads", grads), ("--router-logits", routerLogits)] {
                if let path { try ExperimentRun.checkNewOutput(path, option: option, force: force, reads: [checkpoint] + (data.map { [$0] } ?? [])) }
            }
            let (s, model, state) = try OpenedCheckpoint.model(checkpoint)
            let step = state.step
            let B = s.train.batch, L = s.train.seqLen
            if let b = batches, b < 1 { throw BMError.invalid("--batches must be at least 1") }
            var fill: (Int, UnsafeMutablePointer<Int32>, UnsafeMutablePointer<Int32>) -> Void
            var n: Int
            var metric: Dataset.Metric
            if let path = data {
                let kind: DataSpec.Kind = path.hasSuffix(".bin") ? .tokens : .text
                let tok = kind == .text ? try Generator.tokenizer(forCheckpoint: checkpoint, explicit: tokenizer) : nil
                let f = try tok.map { try SequentialFile(path: path, tokenizer: $0, vocab: s.vocabSize) }
                    ?? SequentialFile(path: path, kind: kind, vocab: s.vocabSize)
                if tok != nil { print(f.description) }
                let avail = f.batches(B: B, L: L)
                guard avail > 0 else { throw BMError.invalid("--data \(path): \(f.tokens.count) tokens is less than one batch (\(B) × \(L) + 1)") }
                n = min(batches ?? avail, avail)
                fill = { i, inp, tgt in f.batch(i, B: B, L: L, inputs: inp, targets: tgt) }
                metric = kind == .text && tok == nil && Generator.isByteLevel(s) ? .bitsPerByte : .none
            } else {
                let ds = try Dataset(s)
                if all && !ds.isSplit {
                    throw BMError.invalid("--all: the run's data is a synthetic task (\(ds.description)), which draws examples without end; give --batches N")
                }
                let part = split
                if ds.isSplit && ds.windows(part, L: L) == 0 {
                    throw BMError.invalid("--split \(part.rawValue): the run's \(part.rawValue) split holds \(ds.count(part)) tokens, less than one window of \(L) + 1 (data.\(part == .test ? "test" : "val")_fraction in \(checkpoint)'s spec)")
                }
                n = all ? ds.batchesCovering(part, B: B, L: L) : batches ?? s.train.evalBatches
                let count = n
                fill = { i, inp, tgt in ds.evalBatch(i, of: count, part: part, B: B, L: L, inputs: inp, targets: tgt) }
                metric = ds.metric
                if ds.isSplit {
                    print("\(part.rawValue) split: \(ds.count(part)) tokens, \(ds.windows(part, L: L)) windows of \(L)")
                }
            }
            let routed = try Evaluator.evaluate(model: model, batches: n, B: B, L: L, metric: metric, routing: routing ?? s.eval.routing, fill: fill)
            let r = routed.primary
            print(String(format: "loss: %.6f", r.loss))
            if let m = r.metric { print("\(metric.rawValue): \(String(format: "%.6f", m))") }
            print("tokens: \(r.tokens)")
            if metric == .none { print(String(format: "perplexity: %.4f", exp(r.loss))) }     // per token
            for (name, x) in [("argmax", routed.argmax), ("train", routed.train)] where !routed.agreement.isEmpty {
                guard let x else { continue }
                print("loss (\(name) routing): \(String(format: "%.6f", x.loss))" + (x.metric.map { "  \(metric.rawValue) " + String(format: "%.6f", $0) } ?? ""))
            }
            for (layer, a) in routed.agreement { print("routing agreement, layer \(layer): \(String(format: "%.4f", a))") }
            if let out = grads {
                try GradientDump.write(to: out, model: model, checkpoint: checkpoint, batches: n, B: B, L: L, fill: fill)
                print("gradients: \(out)")
            }
            if let out = routerLogits {
                let layers = RouterLogits.compute(model: model, batches: n, B: B, L: L, fill: fill)
                try RouterLogits.write(layers, to: out, checkpoint: checkpoint, step: step, batches: n)
                print("router logits: \(out) (\(layers.map(\.name).joined(separator: ", ")))")
                for l in layers {
                    let s = l.summary
                    print("\(l.name): load " + s.load.map { String(format: "%.3f", $0) }.joined(separator: " ")
                          + String(format: "; load entropy %.3f of the even load; router entropy %.3f nats (ln E = %.3f)", s.loadEntropy, s.routerEntropy, log(Double(l.E))))
                }
            }
        }
    }
}

struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "generate", abstract: "Generate from a checkpoint (Mamba layers recurrently, attention from its KV cache): text for byte-level models, token ids for the others.")
    @Option(help: "checkpoint.h5 of a run.") var checkpoint: String
    @Option(help: "The prompt, as text (byte-level models, or any model with a tokenizer).") var prompt: String?
    @Option(help: "A tokenizer.json (byte-level BPE) for the prompt and the output (default: the run directory's tokenizer.json, which bmlab import copies in).") var tokenizer: String?
    @Option(help: "The prompt as token ids, e.g. \"3 17 42\" (models trained on token files or synthetic tasks).") var tokens: String?
    @Option(help: "Tokens to generate.") var maxTokens = 200
    @Option(help: "Sampling temperature (0 = greedy).") var temperature = 0.8
    @Option(help: "Sample among the K most likely tokens (0 = all).") var topK = 40
    @Option(help: "Random seed.") var seed: UInt64 = 1
    @Option(help: "Weights of the one-token products: fp32, or bf16 (half the bytes per token; fp32 sums).") var weights: WeightFormat = .fp32
    @OptionGroup var machine: MachineOptions

    func validate() throws {
        require(maxTokens >= 1 && maxTokens <= 1 << 40, "--max-tokens must be between 1 and 2^40, got \(maxTokens)")
        require(temperature >= 0 && temperature.isFinite, "--temperature must be 0 (greedy) or positive, got \(temperature)")
        require(topK >= 0, "--top-k must be 0 (all tokens) or positive, got \(topK)")
    }

    func run() throws {
        machine.startGeneration()
        guarded {
            let (s, model, _) = try OpenedCheckpoint.model(checkpoint)
            let tok = try Generator.tokenizer(forCheckpoint: checkpoint, explicit: tokenizer)
            let ids = try Generator.promptTokens(s, text: prompt, ids: tokens, tokenizer: tok)
            let bytes = Generator.isByteLevel(s) || tok != nil
            // what a token writes: its byte for a byte-level model, its bytes through the tokenizer
            let out: (Int32) -> [UInt8] = { t in tok?.bytes(of: t) ?? [UInt8(truncatingIfNeeded: t)] }
            let gen = try Generator(model: model, maxLength: ids.count + maxTokens + 1, weights: weights)
            var rng = RNG(seed: seed)
            var pending: [UInt8] = []
            if bytes { FileHandle.standardOutput.write(Data(ids.flatMap(out))) } else { print(ids.map(String.init).joined(separator: " "), terminator: " |") }
            let t0 = ContinuousClock.now
            gen.generate(ids, maxTokens: maxTokens, temperature: temperature, topK: topK, rng: &rng) { t in
                guard bytes else { print(" \(t)", terminator: ""); return }
                pending += out(t)
                // stream whole UTF-8 characters
                if String(validating: pending, as: UTF8.self) != nil || pending.count >= 4 {
                    FileHandle.standardOutput.write(Data(pending)); pending = []
                }
            }
            if !pending.isEmpty { FileHandle.standardOutput.write(Data(pending)) }
            if !bytes { print("") }
            fflush(nil)
            let secs = (ContinuousClock.now - t0).seconds
            FileHandle.standardError.write(String(format: "\n[%d tokens, %.1f tokens/s]\n", maxTokens, Double(maxTokens) / secs).data(using: .utf8)!)
        }
    }
}
extension Dataset.Part: ExpressibleByArgument {}
