import ArgumentParser
import Foundation
import BMCore
import BMBench
import BMMixers
import BMExperiments
import BMStorage
import BMSpec

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "bench", 
        abstract: "Benchmarks (run them from a release build).",
        subcommands: [BenchKernelsCommand.self, BenchMixersCommand.self, BenchMoECommand.self, BenchTrainCommand.self, BenchGenerateCommand.self,
                      BenchCompareCommand.self])

    struct BenchKernelsCommand: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "kernels", abstract: "sgemm, vectorised exp, the selective scan (forward, backward) and the MoE dispatch.")
        @Flag(help: "Print JSON.") var json = false
        @Option(help: "BLAS threads (0 = one per available core).") var threads = 0
        func validate() throws { requireThreads(threads) }

        @OptionGroup var machine: MachineOptions

        func run() throws {
            machine.startBLAS(threads: threads)
            let g1 = KernelBench.sgemmGFLOPS()
            let g2 = KernelBench.sgemmGFLOPS(M: 2048, N: 1024, K: 256)
            let g3 = KernelBench.sgemmGFLOPS(M: 512, N: 512, K: 512, repeats: 10)
            let e = KernelBench.exp()
            var rows: [(String, Double)] = [
                ("sgemm_1024x1024x1024_gflops", g1), ("sgemm_2048x1024x256_gflops", g2),
                ("sgemm_512x512x512_gflops", g3),
                ("exp_vector_ns", e.vector), ("exp_scalar_ns", e.scalar), ("exp_speedup", e.scalar / e.vector),
            ]
            // bench-small shapes: scan of 8 sequences × 256 steps, E 512, N 16; dispatch of 2,048 tokens × 256
            for f in KernelsBench.scan() + KernelsBench.dispatch() {
                rows += [("\(f.name)_ms", f.ms), ("\(f.name)_gelements_per_s", f.elementsPerSecond / 1e9), ("\(f.name)_gb_per_s", f.gbPerSecond)]
            }
            if json {
                struct Out: Encodable { var blasCore = BLAS.coreName, blasThreads = BLAS.threads, kernels = Kernels.forced, scanKernel = SelectiveScan.kernel; var figures: [String: Double] }
                let figures = Dictionary(rows.map { ($0.0, ($0.1 * 1000).rounded() / 1000) }, uniquingKeysWith: { a, _ in a })
                guarded { print(try JSON.text(Out(figures: figures))) }
            } else {
                print("BLAS: \(BLAS.coreName), \(BLAS.threads) threads; scan kernel \(SelectiveScan.kernel)")
                for (k, v) in rows { print(String(format: "%@: %.3f", k, v)) }
            }
        }
    }

    struct BenchMixersCommand: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "mixers", 
            abstract: "Sequence mixers at bench-small shapes: forward+backward tokens/s and generation latency per token.")
        @Flag(help: "Print JSON.") var json = false
        @Option(help: "Contexts for the generation latency (comma-separated).") var contexts = "128,1024,8192"
        @Option(help: "Mixers to measure (comma-separated), each `name` or `name:key=value:…` with the plugin's options.")
        var mixers = "mamba,mamba2,mamba2:scan=recurrent,attention"
        @Option(name: .customLong("generate"), help: "Mixers whose generation latency to measure (same form; the training scan does not change a generated token's step).")
        var generators = "mamba,mamba2,attention"

        @OptionGroup var machine: MachineOptions

        func run() throws {
            machine.startBLAS()
            let names = mixers.split(separator: ",").map(String.init)
            let ctxs = contexts.split(separator: ",").compactMap { Int($0) }
            var train: [MixerBench.TrainFigure] = [], gen: [MixerBench.GenFigure] = []
            guarded {
                let specs = try names.map { try MixerBench.parseMixer($0) }
                for (label, m) in zip(names, specs) {
                    var f = try MixerBench.train(m.name, options: m.options)
                    f.mixer = label
                    train.append(f)
                }
                for label in generators.split(separator: ",").map(String.init) {
                    let m = try MixerBench.parseMixer(label)
                    for c in ctxs {
                        var g = try MixerBench.generate(m.name, context: c, options: m.options)
                        g.mixer = label
                        gen.append(g)
                    }
                }
            }
            if json {
                print(mixersJSON(train: train, gen: gen))
                return
            }
            print("BLAS: \(BLAS.coreName), \(BLAS.threads) threads; d_model 256, batch 8 x 256 tokens")
            for t in train {
                print("train  " + t.mixer.padding(toLength: max(22, t.mixer.count), withPad: " ", startingAt: 0) + String(format: " %9.0f tokens/s  (%.1f ms per forward+backward)", t.tokensPerSecond, t.msPerStep))
                for p in t.phases { print("    " + p.name.padding(toLength: 36, withPad: " ", startingAt: 0) + String(format: "%7.2f ms", p.ms)) }
            }
            for g in gen { print("generate " + g.mixer.padding(toLength: max(20, g.mixer.count), withPad: " ", startingAt: 0) + String(format: " context %6d: %.3f ms/token, state %d bytes", g.context, g.msPerToken, g.stateBytes)) }
        }
    }
}

extension BenchCommand {
    struct BenchTrainCommand: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "train", abstract: "Training throughput of a spec's model (default bench-small): tokens/s, MFU, memory, time per layer kind.")
        @Argument(help: "The spec.") var spec = "Experiments/bench-small.yaml"
        @Argument(help: "Overrides key.path=value.") var overrides: [String] = []
        @Option(help: "Timed steps (after 2 warm-up steps).") var steps = 8
        @Option(help: "BLAS threads (0 = one per core).") var threads = 0
        @Option(help: "Sequence lengths (comma-separated, e.g. 256,1024,4096): the training cost against the context at fixed tokens per step.")
        var seqLens: String?
        @Option(help: "With --seq-lens: tokens per step (default: the spec's batch × seq_len); batch = tokens / seq_len.")
        var tokensPerStep: Int?
        @Option(help: "Rank counts (comma-separated, e.g. 1,2): data-parallel scaling on this machine — N ranks × cores/N threads (mpirun) against 1 process × all cores and 1 × 1.")
        var ranks: String?
        func validate() throws {
            requireThreads(threads); require(steps >= 1, "--steps must be at least 1, got \(steps)")
            if let r = ranks {
                let n = r.split(separator: ",").compactMap { Int($0) }
                require(!n.isEmpty && n.count == r.split(separator: ",").count && n.allSatisfy { $0 >= 1 }, "--ranks must be positive integers separated by commas, got '\(r)'")
            }
        }
        @Flag(help: "Print JSON.") var json = false

        @OptionGroup var machine: MachineOptions

        func run() throws {
            if let ranks {
                guarded {
                    let rows = try ScalingBench.run(bmlab: selfPath(), spec: spec, overrides: overrides, steps: steps,
                                                    ranks: ranks.split(separator: ",").compactMap { Int($0) },
                                                    log: { line in if json { FileHandle.standardError.write(Data((line + "\n").utf8)) } else { print(line) } })
                    if json { print(try JSON.text(rows, pretty: true)); return }
                    print(ScalingBench.table(rows, cpu: "\(Machine.cpuModel), \(Machine.cpuFamilyModel)"), terminator: "")
                }
                return
            }
            // one rank of `bench train --ranks`: the step data-parallel over the ranks mpirun started
            let group = dataParallelGroup()
            machine.startBLAS(threads: threads)
            if group.size > 1 {
                guarded {
                    let r = try TrainBench.run(specPath: spec, overrides: overrides, steps: steps, group: group)
                    if group.isWriter { print(try JSON.text(r)) }
                }
                return
            }
            if let seqLens {
                guarded {
                    let Ls = seqLens.split(separator: ",").compactMap { Int($0) }
                    guard !Ls.isEmpty, Ls.count == seqLens.split(separator: ",").count, Ls.allSatisfy({ $0 > 0 }) else {
                        throw BMError.invalid("--seq-lens must be positive integers, got '\(seqLens)'")
                    }
                    let pts = try TrainBench.lengths(specPath: spec, overrides: overrides, seqLens: Ls, tokensPerStep: tokensPerStep, steps: steps)
                    if json { print(try JSON.text(pts, pretty: true)); return }
                    print("\(spec): training cost against the context; BLAS \(BLAS.coreName) × \(BLAS.threads), scan \(SelectiveScan.kernel); median of \(steps) steps after 1 warm-up")
                    print(" seq_len  batch   tokens/s   ms/step   MFLOP/token   activations measured / estimated")
                    for p in pts {
                        print(String(format: "%8d %6d %10.0f %9.1f %13.1f   %8.0f MiB / %.0f MiB", p.seqLen, p.batch, p.tokensPerSecond, p.msPerStep,
                                     p.flopsPerToken / 1e6, p.activationMib, p.estimatedActivationMib))
                    }
                    if let first = pts.first, let last = pts.last, pts.count > 1 {
                        print(String(format: "tokens/s at %d ÷ at %d: %.2f", last.seqLen, first.seqLen, last.tokensPerSecond / first.tokensPerSecond))
                    }
                }
                return
            }
            guarded {
                let r = try TrainBench.run(specPath: spec, overrides: overrides, steps: steps)
                if json {
                    print(try JSON.text(r))
                    return
                }
                print("\(spec): \(fmtCount(r.parametersTotal)) parameters, \(fmtCount(r.parametersActive)) active, \(String(format: "%.1f", r.flopsPerToken / 1e6)) MFLOP/token; BLAS \(r.blasCore) × \(r.blasThreads), scan \(SelectiveScan.kernel)")
                print(String(format: "training: %.0f tokens/s (median of %d steps, %.1f ms/step); MFU %.1f%% of a %.0f GFLOP/s sgemm peak",
                             r.tokensPerSecond, steps, r.msPerStep, r.mfu * 100, r.sgemmPeakGFLOPS))
                print(String(format: "memory: peak resident %.0f MiB, activations and scratch %.0f MiB", r.peakResidentMib, r.activationMib))
                let tot = r.phases.values.reduce(0, +)
                for n in r.phaseOrder {
                    let ms = r.phases[n]!
                    print("  " + n.padding(toLength: 24, withPad: " ", startingAt: 0) + String(format: "%8.1f ms  %5.1f%%", ms, 100 * ms / tot))
                }
            }
        }
    }

    struct BenchGenerateCommand: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "generate", abstract: "Batch-1 generation latency per token of whole models (bench-small and its transformer) against the context.")
        @Argument(help: "Specs (default: bench-small and transformer).") var specs: [String] = ["Experiments/bench-small.yaml", "Experiments/transformer.yaml"]
        @Option(help: "Contexts (comma-separated).") var contexts = "128,1024,8192,16384"
        @Option(help: "Timed tokens per context.") var tokens = 64
        @Option(help: "Rounds over every spec and context, interleaved; each point is the median of the rounds, with their range.") var rounds = 1
        @Option(help: "Also write bench_generate.json into this directory.") var out: String?
        @Option(help: "Threads of the one-token matrix-vector products (0 = one per core).") var threads = 0
        @Option(help: "Weights of the one-token products: fp32 or bf16.") var weights: WeightFormat = .fp32
        func validate() throws {
            requireThreads(threads); require(tokens >= 1, "--tokens must be at least 1, got \(tokens)")
            require(rounds >= 1, "--rounds must be at least 1, got \(rounds)")
        }
        @Flag(help: "Print JSON.") var json = false

        @OptionGroup var machine: MachineOptions

        func run() throws {
            machine.startGeneration(threads: threads)
            guarded {
                let ctxs = contexts.split(separator: ",").compactMap { Int($0) }
                guard !ctxs.isEmpty, ctxs.allSatisfy({ $0 > 0 }) else { throw BMError.invalid("--contexts must be positive integers, got '\(contexts)'") }
                let all = try GenerateBench.rounds(specPaths: specs, contexts: ctxs, tokens: tokens, weights: weights, rounds: rounds)
                if let out {
                    try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
                    let text = try JSON.text(all, pretty: true)
                    try AtomicFile.write(to: "\(out)/bench_generate.json") { tmp in try text.write(toFile: tmp, atomically: false, encoding: .utf8) }
                }
                if json { print(try JSON.text(all, pretty: true)); return }
                print("batch 1, matrix-vector products \(BLAS.gemvKernel) × \(Parallel.workers) threads, \(weights.rawValue) weights (BLAS \(BLAS.coreName) × 1); median of \(tokens) tokens"
                      + (rounds > 1 ? ", median [min–max] of \(rounds) interleaved rounds" : ""))
                for p in all {
                    let range = p.msMin.map { String(format: " [%.3f–%.3f]", $0, p.msMax!) } ?? ""
                    print("  " + p.model.padding(toLength: 16, withPad: " ", startingAt: 0) + String(format: "context %6d: %7.3f ms/token", p.context, p.msPerToken)
                          + range + String(format: "  state %8.1f MiB  resident %6.0f MiB", Double(p.stateBytes) / 1048576, p.residentMib))
                }
            }
        }
    }

    struct BenchMoECommand: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "moe", abstract: "One MoE layer at bench-small shapes (8 experts × 1024, d 256, 2,048 tokens): tokens/s and where the time goes.")
        @Option(help: "Router.") var router = "sinkhorn-fast"
        @Flag(help: "Print JSON.") var json = false

        @OptionGroup var machine: MachineOptions

        func run() throws {
            machine.startBLAS()
            guarded {
                let (fig, gflops) = try MixerBench.moe(router: router)
                let phases = fig.phases.map { ($0.name, $0.ms / 1e3) }       // seconds per step
                let total = phases.reduce(0) { $0 + $1.1 }
                if json {
                    struct Out: Encodable { var blasCore = BLAS.coreName, blasThreads = BLAS.threads; var router: String, tokensPerS: Double, expertGflops: Double, phasesS: [String: Double] }
                    print(try JSON.text(Out(router: router, tokensPerS: fig.tokensPerSecond, expertGflops: gflops,
                                            phasesS: Dictionary(phases, uniquingKeysWith: { a, b in a + b }))))
                    return
                }
                print("BLAS: \(BLAS.coreName), \(BLAS.threads) threads")
                print(String(format: "moe(%@) forward+backward: %.0f tokens/s (%.1f ms per step), expert matmuls at %.1f GFLOP/s overall",
                             router, fig.tokensPerSecond, fig.msPerStep, gflops))
                for (name, s) in phases { print("  " + name.padding(toLength: 14, withPad: " ", startingAt: 0) + String(format: "%8.2f ms  %5.1f%%", s * 1e3, 100 * s / max(total, 1e-12))) }
            }
        }
    }
}

extension BenchCommand {
    struct BenchCompareCommand: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "compare",
            abstract: "The toolkit against the PyTorch and JAX peers (bench/peers), interleaved, several rounds: medians and ratios.",
            discussion: """
            Training: `bmlab bench train --json` on bench-small, bench/peers/jax_peer.py and \
            torch_peer.py train --arch blackmamba (the same shapes: d 256, 4 Mamba + 4 MoE of \
            8 × 1024, batch 8 × 256). Generation: `bmlab bench generate` against torch_peer.py \
            generate, batch 1. Each measurement is a fresh process; ratios are per round. \
            `make peers` makes the peers' two virtual environments (in ~/.cache/blackmambalab/peers, \
            or $BMLAB_PEERS_ENV); a peer that is not there is skipped with a note.
            """)
        @Option(help: "Rounds (each runs every contender once).") var rounds = 3
        @Option(help: "Timed training steps per measurement.") var steps = 6
        @Option(help: "Threads for every contender (the peers pin 2).") var threads = 2
        @Option(help: "Generation contexts (comma-separated; empty: training only).") var contexts = "128,1024"
        @Option(help: "The peers' programs.") var peers = "bench/peers"
        @Option(help: "Python of the JAX peer (default: make peers' environment).") var jaxPython = "\(CompareBench.peerEnvironment)/jax/bin/python"
        @Option(help: "Python of the PyTorch peer (default: make peers' environment).") var torchPython = "\(CompareBench.peerEnvironment)/torch/bin/python"
        @Option(help: "The toolkit's spec.") var spec = "Experiments/bench-small.yaml"
        @Option(help: "Also write compare.json into this directory.") var out: String?
        @Flag(help: "Print JSON.") var json = false
        func validate() throws {
            require(rounds >= 1, "--rounds must be at least 1, got \(rounds)")
            require(steps >= 1, "--steps must be at least 1, got \(steps)")
            requireThreads(threads)
        }

        func run() throws {
            guarded {
                let dir = peers
                let me = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
                let ctxs = contexts.split(separator: ",").map(String.init)
                guard ctxs.allSatisfy({ Int($0).map { $0 > 0 } ?? false }) else { throw BMError.invalid("--contexts must be positive integers, got '\(contexts)'") }
                _ = try ExperimentSpec.load(path: spec)
                var skipped: [String] = []
                func peer(_ name: String, _ python: String, _ script: String) -> Bool {
                    let fm = FileManager.default
                    if !fm.isExecutableFile(atPath: python) { skipped.append("\(name): no Python at \(python) (make peers sets it up)"); return false }
                    if !fm.fileExists(atPath: "\(dir)/\(script)") { skipped.append("\(name): no \(dir)/\(script) (--peers DIR: the repository's bench/peers)"); return false }
                    return true
                }
                let hasJax = peer("jax", jaxPython, "jax_peer.py"), hasTorch = peer("pytorch", torchPython, "torch_peer.py")
                var train: [CompareBench.Contender] = [
                    .init(name: "bmlab", program: me, arguments: ["bench", "train", spec, "--steps", "\(steps)", "--threads", "\(threads)", "--json"],
                          read: CompareBench.readTokensPerSecond)]
                if hasJax {
                    train.append(.init(name: "jax", program: jaxPython, arguments: ["\(dir)/jax_peer.py", "train", "--arch", "blackmamba", "--steps", "\(steps)", "--warmup", "2", "--threads", "\(threads)"],
                                       read: CompareBench.readTokensPerSecond))
                }
                if hasTorch {
                    train.append(.init(name: "pytorch", program: torchPython, arguments: ["\(dir)/torch_peer.py", "train", "--arch", "blackmamba", "--steps", "\(steps)", "--warmup", "1", "--threads", "\(threads)"],
                                       read: CompareBench.readTokensPerSecond))
                }
                let say: (String) -> Void = { if !json { FileHandle.standardError.write(Data("  \($0)\n".utf8)) } }
                var result = CompareBench.run(train, rounds: rounds, skipped: skipped, progress: say)
                if !ctxs.isEmpty {
                    var gen: [CompareBench.Contender] = [
                        .init(name: "bmlab", program: me, arguments: ["bench", "generate", spec, "--contexts", contexts, "--tokens", "32", "--threads", "\(threads)", "--json"],
                              read: CompareBench.readToolkitGeneration),
                        .init(name: "bmlab-bf16", program: me, arguments: ["bench", "generate", spec, "--contexts", contexts, "--tokens", "32", "--threads", "\(threads)",
                                                                           "--weights", "bf16", "--json"],
                              read: CompareBench.readToolkitGeneration)]
                    if hasTorch {
                        gen.append(.init(name: "pytorch", program: torchPython, arguments: ["\(dir)/torch_peer.py", "generate", "--arch", "blackmamba", "--lengths", contexts, "--threads", "\(threads)"],
                                         read: CompareBench.readPeerGeneration))
                    }
                    let g = CompareBench.run(gen, rounds: rounds, progress: say)
                    result.figures += g.figures; result.ratios += g.ratios; result.failures += g.failures
                }
                if let out {
                    try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
                    let text = try JSON.text(result, pretty: true)
                    try AtomicFile.write(to: "\(out)/compare.json") { tmp in try text.write(toFile: tmp, atomically: false, encoding: .utf8) }
                }
                if json { print(try JSON.text(result, pretty: true)); return }
                print(CompareBench.table(result), terminator: "")
                if !result.failures.isEmpty { throw BMError.invalid("\(result.failures.count) contender(s) failed (above)") }
            }
        }
    }
}

/// `bench mixers --json`: the BLAS facts and every figure (throughput, ms per step,
/// Mamba's phases, generation latency and state), snake_case keys.
func mixersJSON(train: [MixerBench.TrainFigure], gen: [MixerBench.GenFigure]) -> String {
    struct Out: Encodable {
        var blasCore = BLAS.coreName, blasThreads = BLAS.threads
        var train: [MixerBench.TrainFigure], generate: [MixerBench.GenFigure]
    }
    return (try? JSON.text(Out(train: train, generate: gen))) ?? "{}"
}

