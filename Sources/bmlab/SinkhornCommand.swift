import ArgumentParser
import Foundation
import BMCore
import BMExperiments
import BMStorage
import BMStudies
import BMPlot
import BMReports

struct SinkhornCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sinkhorn",
        abstract: "Sinkhorn convergence study: vanilla vs BlackMamba's fast Sinkhorn over tokens, experts and logit scale, and on real router logits.",
        discussion: """
        Each variant runs on Gaussian logits (the grid of --tokens, --experts, --sigmas, --seeds) and on \
        real router logits (--logits FILE, or --checkpoints DIR: every checkpoint kept by a run with \
        train.keep_checkpoints, evaluated on its first validation batches). Reported per case: \
        iterations, row and column marginal errors, agreement of the chosen experts with Sinkhorn run \
        to convergence at the variant's temperature, the busiest expert's load, time per call.
        Variants: --variant 'sinkhorn' --variant 'sinkhorn-fast tol_mode=marginal-relative tol=0.01' \
        --variant argmax (no balancing: what evaluation routes by). Default: sinkhorn and sinkhorn-fast.
        """)

    @Option(help: "Output directory for sinkhorn.h5 and the figure.") var out = "results/sinkhorn"
    @Option(help: "Token counts T (comma-separated).") var tokens = "1024,4096"
    @Option(help: "Expert counts E (comma-separated).") var experts = "8,16"
    @Option(help: "Logit scales σ (comma-separated).") var sigmas = "0.25,0.5,1,2,4"
    @Option(help: "Seeds per grid point.") var seeds = 2
    @Option(help: "Also study real router logits: an HDF5 file with [T, E] float datasets.") var logits: String?
    @Option(help: "Datasets in --logits to use (comma-separated; default: every 2-D dataset under router_logits/).") var datasets: String?
    @Option(help: "Also study the router logits of every checkpoints/step-*.h5 below this directory (runs trained with train.keep_checkpoints).") var checkpoints: String?
    @Option(help: "Validation batches per checkpoint for --checkpoints.") var logitBatches = 1
    @Option(name: .customLong("variant"), help: "A variant to run (repeatable): argmax, or sinkhorn / sinkhorn-fast with key=value options.") var variants: [String] = []
    @Flag(inversion: .prefixedNo, help: "Run the Gaussian grid (--no-grid: real logits only).") var grid = true
    @Option(help: "Figure format: png or svg.") var format = "png"

    func validate() throws {
        require(seeds >= 1, "--seeds must be at least 1, got \(seeds)")
        require(logitBatches >= 1, "--logit-batches must be at least 1, got \(logitBatches)")
        require(grid || logits != nil || checkpoints != nil, "--no-grid needs real logits: --logits FILE or --checkpoints DIR")
    }

    func run() throws {
        startBLAS()
        guarded {
            func ints(_ s: String, _ key: String) throws -> [Int] {
                let v = s.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
                guard !v.isEmpty, v.allSatisfy({ ($0 ?? 0) > 0 }) else { throw BMError.invalid("--\(key) must be positive integers separated by commas, got '\(s)'") }
                return v.map { $0! }
            }
            var study = SinkhornStudy()
            study.tokens = try ints(tokens, "tokens")
            study.experts = try ints(experts, "experts")
            let sg = sigmas.split(separator: ",").map { Double($0.trimmingCharacters(in: .whitespaces)) }
            guard !sg.isEmpty, sg.allSatisfy({ ($0 ?? 0) > 0 }) else { throw BMError.invalid("--sigmas must be positive numbers separated by commas, got '\(sigmas)'") }
            study.sigmas = sg.map { $0! }
            guard seeds > 0 else { throw BMError.invalid("--seeds must be at least 1") }
            study.seeds = seeds
            if !grid { study.tokens = [] }
            if !variants.isEmpty { study.variants = try variants.map(SinkhornStudy.variant) }
            guard let fmt = FigureFormat(rawValue: format) else { throw BMError.invalid("--format must be png or svg, got '\(format)'") }
            try ExperimentRun.checkOutputDirectory(out)
            let tty = isatty(2) != 0
            func note(_ s: String) { if tty { FileHandle.standardError.write("\r\u{1B}[K  \(s)".data(using: .utf8)!) } }
            var cases: [SinkhornStudy.Case] = []
            if let path = logits { cases = try loadLogits(path) }
            if let dir = checkpoints { cases += try SinkhornCases.load(under: dir, batches: logitBatches) { note("logits of \($0)") } }
            let rows = study.run(cases: cases, progress: note)
            if tty { FileHandle.standardError.write("\r\u{1B}[K".data(using: .utf8)!) }
            print(SinkhornStudy.table(rows), terminator: "")
            try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
            let h5 = (out as NSString).appendingPathComponent("sinkhorn.h5")
            try SinkhornStudy.writeHDF5(rows, to: h5, attributes: [
                "toolkit_version": BMLab.version, "command": CommandLine.arguments.joined(separator: " "),
                "blas_core": BLAS.coreName, "cpu": Machine.cpuModel,
            ])
            let figs = try SinkhornStudy.figures(rows).map { try Gnuplot.render($0, in: out, format: fmt) }
            print("numbers: \(h5)")
            for f in figs { print("figure:  \(f)") }
        }
    }

    func loadLogits(_ path: String) throws -> [SinkhornStudy.Case] {
        guard FileManager.default.fileExists(atPath: path) else { throw BMError.invalid("--logits: no file at \(path)") }
        let f = try H5File(path: path, mode: .readOnly)
        defer { f.close() }
        var names: [String]
        if let d = datasets { names = d.split(separator: ",").map(String.init) }
        else {
            guard f.exists("router_logits") else { throw BMError.invalid("\(path): no group 'router_logits'; name datasets with --datasets") }
            names = try f.group("router_logits").children().map { "router_logits/\($0)" }
        }
        return try names.map { n in
            let ds = try f.dataset(n)
            guard ds.shape.count == 2, ds.shape[0] >= 1, ds.shape[1] >= 2 else {
                throw BMError.invalid("\(path): dataset '\(n)' has shape \(ds.shape); expected [T, E] with T ≥ 1 tokens and E ≥ 2 experts")
            }
            let step = f.hasAttribute("step") ? try f.intAttribute("step") : 0
            return SinkhornStudy.Case(source: n, config: (path as NSString).lastPathComponent, seed: 0, step: step, layer: -1,
                                      values: try ds.readFloats(), T: ds.shape[0], E: ds.shape[1])
        }
    }
}
