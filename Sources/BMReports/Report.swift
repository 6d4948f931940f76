import Foundation
import BMCore
import BMStorage
import BMPlot
import BMExperiments
import BMSweeps

/// `bmlab report DIR --out notebooks-md/NAME.md`: a markdown report of a run or a
/// sweep that renders on GitHub — title, the command that regenerates it, the
/// spec, the results table, the figures (relative links), the machine facts.
public enum Report {
    public static func write(dir: String, out: String, format: FigureFormat = .png, command: String) throws -> String {
        let set = try RunSet(dir)
        let outDir = (out as NSString).deletingLastPathComponent.isEmpty ? "." : (out as NSString).deletingLastPathComponent
        let base = ((out as NSString).lastPathComponent as NSString).deletingPathExtension
        let figDir = (outDir as NSString).appendingPathComponent("\(base)-figures")
        let figures = try RunFigures.renderAny(dir, outDir: figDir, format: format)
        var md = "# \(set.isSweep ? "Sweep" : "Run") report: \(set.title)\n\n"
        md += "Regenerate this report with:\n\n```sh\n\(command)\n```\n\n"
        if let p = set.sweepProblem { md += "**Note:** \(p).\n\n" }
        // spec
        let fm = FileManager.default
        if set.isSweep, let file = set.sweepFile {
            let overrides = set.sweepOverrides.map(Report.shellQuoted).joined(separator: " ")
            if let text = try? String(contentsOfFile: file, encoding: .utf8) {
                md += "The sweep was run with `bmlab sweep \(file)\(overrides.isEmpty ? "" : " " + overrides) --out \(dir)`"
                md += overrides.isEmpty ? ":\n\n" : " (the overrides apply to every run, over the file below):\n\n"
                md += "```yaml\n\(text.trimmingCharacters(in: .newlines))\n```\n\n"
            }
        } else if let spec = try? String(contentsOfFile: "\(dir)/spec.yaml", encoding: .utf8) {
            md += "## Spec\n\n```yaml\n\(spec.trimmingCharacters(in: .newlines))\n```\n\n"
        }
        // results
        md += "## Results\n\n"
        md += "| run | status | steps | train loss | val loss | metric | tokens/s | parameters | active | training FLOPs |\n"
        md += "|---|---|---|---|---|---|---|---|---|---|\n"
        var notes: [String] = []
        var seedRuns: [SeedTables.Run] = []
        var metricName: String? = nil
        var machines = Set<RunMachine>()      // what the runs record
        var adopted: [String] = []            // where adopted runs ran (result.json's adopted_from)
        for e in set.entries {
            let r = fm.contents(atPath: "\(e.dir)/result.json").flatMap { try? JSON.decoder().decode(RunResult.self, from: $0) }
            if let a = r?.adoptedFrom { adopted.append(a) }
            let m = try summary(e.dir)
            func f(_ v: Double?, _ p: String = "%.4f") -> String { v.map { $0.isNaN ? "–" : String(format: p, $0) } ?? "–" }
            seedRuns.append(SeedTables.Run(name: (e.dir as NSString).lastPathComponent, valLoss: m.valLoss, metric: m.metric,
                                           trainLoss: m.trainLoss, tokensPerSecond: m.tokensPerSecond, imbalance: m.imbalance,
                                           valLossArgmax: m.valLossArgmax, valLossTrain: m.valLossTrain, agreement: m.agreement,
                                           testLoss: m.testLoss, testMetric: m.testMetric, testLossArgmax: m.testLossArgmax,
                                           testLossTrain: m.testLossTrain, cpuSeconds: m.cpuSeconds,
                                           complete: r?.status == "ok"))
            metricName = metricName ?? m.metricName
            machines.insert(m.machine)
            let mark = m.evaluationNote == nil ? "" : " †"
            if let n = m.evaluationNote, !notes.contains(n) { notes.append(n) }
            md += "| \(e.label) | \(r?.status ?? (set.isSweep ? "unfinished" : m.steps > 0 ? "ok" : "?")) | \(m.lastStep.map(String.init) ?? "–") | \(f(m.trainLoss)) | \(f(m.valLoss))\(mark) | \(f(m.metric))\(m.metricName.map { " (\($0))" } ?? "") | \(f(m.tokensPerSecond, "%.0f")) | \(m.total.map(String.init) ?? "–") | \(m.active.map(String.init) ?? "–") | \(f(m.flops, "%.3g")) |\n"
        }
        for n in notes { md += "\n† \(n).\n" }
        if !adopted.isEmpty {
            // relative to the working directory (the notebook's project) where they are inside it
            let cwd = fm.currentDirectoryPath + "/"
            let sources = Set(adopted.map { (($0 as NSString).deletingLastPathComponent as NSString).deletingLastPathComponent }
                .map { $0.hasPrefix(cwd) ? String($0.dropFirst(cwd.count)) : $0 }).sorted()
            md += "\n\(adopted.count) of these runs were adopted (`bmlab sweep --adopt`) from \(sources.map { "`\($0)`" }.joined(separator: ", ")): the same spec, run there.\n"
        }
        md += "\nTrain loss: mean of the last 10 logged steps; val loss and metric: the last evaluation; tokens/s: mean over logged steps.\n\n"
        if set.isSweep {
            md += SeedTables.learningRates(seedRuns, metricName: metricName)
            md += SeedTables.markdown(seedRuns, metricName: metricName, baseline: set.sweep?.baseline)
        }
        // figures
        md += "## Figures\n\n"
        for p in figures {
            let name = ((p as NSString).lastPathComponent as NSString).deletingPathExtension
            md += "![\(name)](\(Notebook.relative(p, to: outDir)))\n\n"
        }
        md += "Each figure's gnuplot script (`.gp`) and data (`.dat`) are beside it: `cd \(Notebook.relative(figDir, to: ".")) && gnuplot NAME.gp`.\n\n"
        // machine
        md += "## Machine\n\n| fact | value |\n|---|---|\n"
        md += "| BlackMambaLab | \(BMLab.version)\(ExperimentRun.gitCommit.map { " (\($0.prefix(10)))" } ?? "") |\n"
        // what the runs recorded in their metrics.h5, not the machine this report is made on
        let ran = machines.filter { $0 != RunMachine() }.sorted()
        if ran.isEmpty {
            md += "| CPU | \(Machine.cpuModel), \(BLAS.availableCores) cores (the runs record none) |\n"
        }
        for (i, m) in ran.enumerated() {
            let which = ran.count > 1 ? " (\(i + 1) of \(ran.count))" : ""
            md += "| CPU\(which) | \(m.cpu ?? "?") |\n"
            md += "| BLAS\(which) | OpenBLAS \(m.blasCore ?? "?") kernels, \(m.threads.map(String.init) ?? "?") thread\(m.threads == 1 ? "" : "s") a run |\n"
        }
        try md.write(toFile: out, atomically: true, encoding: .utf8)
        return out
    }

    /// `s` as one shell word: as it is when it is plain, else in single quotes.
    static func shellQuoted(_ s: String) -> String {
        let plain = !s.isEmpty && s.unicodeScalars.allSatisfy { CharacterSet.alphanumerics.contains($0) || "-_.=/:,+@%".unicodeScalars.contains($0) }
        return plain ? s : "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }

    /// The machine a run recorded in its metrics.h5 (nil: not recorded).
    struct RunMachine: Hashable, Comparable {
        var cpu: String?, blasCore: String?, threads: Int?
        static func < (a: Self, b: Self) -> Bool {
            (a.cpu ?? "", a.blasCore ?? "", a.threads ?? 0) < (b.cpu ?? "", b.blasCore ?? "", b.threads ?? 0)
        }
    }

    struct Summary { var steps = 0; var lastStep: Int?; var machine = RunMachine(); var trainLoss: Double?; var valLoss: Double?; var metric: Double?; var metricName: String?
                     var tokensPerSecond: Double?; var total: Int?; var active: Int?; var flops: Double?
                     var evaluationNote: String?
                     var imbalance: [(layer: String, value: Double)] = []
                     var valLossArgmax: Double?, valLossTrain: Double?, agreement: [Double] = []
                     var testLoss: Double?, testMetric: Double?, testLossArgmax: Double?, testLossTrain: Double?
                     var cpuSeconds: Double? }

    static func summary(_ dir: String) throws -> Summary {
        let f = try H5File(path: "\(dir)/metrics.h5", mode: .readOnly)
        defer { f.close() }
        var s = Summary()
        let loss = (try? f.dataset("train/loss").readDoubles()) ?? []
        s.steps = loss.count
        s.lastStep = (try? f.dataset("train/step").readDoubles())?.last.map { Int($0) }
        s.machine = RunMachine(cpu: try? f.stringAttribute("cpu"), blasCore: try? f.stringAttribute("blas_core"),
                               threads: try? f.intAttribute("blas_threads"))
        s.trainLoss = ExperimentRun.windowMean(loss)
        s.valLoss = (try? f.dataset("eval/loss").readDoubles())?.last
        s.metric = (try? f.dataset("eval/metric").readDoubles())?.last
        if let n = try? f.group("eval").stringAttribute("metric_name"), n != "none" { s.metricName = n } else { s.metric = nil }
        let tps = (try? f.dataset("train/tokens_per_s").readDoubles()) ?? []
        if !tps.isEmpty { s.tokensPerSecond = tps.reduce(0, +) / Double(tps.count) }
        s.total = try? f.intAttribute("parameters_total")
        s.active = try? f.intAttribute("parameters_active")
        s.flops = (try? f.dataset("train/flops").readDoubles())?.last
        s.evaluationNote = try? f.group("eval").stringAttribute("routing_note")   // written by the run from its model
        s.valLossArgmax = (try? f.dataset("eval/loss_argmax").readDoubles())?.last
        s.valLossTrain = (try? f.dataset("eval/loss_train").readDoubles())?.last
        if let a = try? f.dataset("eval/routing_agreement"), a.shape.count == 2, a.shape[0] > 0, let v = try? a.readDoubles() {
            s.agreement = Array(v.suffix(a.shape[1]))
        }
        s.testLoss = (try? f.dataset("test/loss").readDoubles())?.last
        s.testLossArgmax = (try? f.dataset("test/loss_argmax").readDoubles())?.last
        s.testLossTrain = (try? f.dataset("test/loss_train").readDoubles())?.last
        if s.metricName != nil { s.testMetric = (try? f.dataset("test/metric").readDoubles())?.last }
        // training core-seconds: each logged row's tokens at its throughput, times the BLAS threads
        if let tok = try? f.dataset("train/tokens").readDoubles(), tok.count == tps.count, !tok.isEmpty {
            var sec = 0.0, prev = 0.0
            for (t, r) in zip(tok, tps) { if r > 0 { sec += (t - prev) / r }; prev = t }
            s.cpuSeconds = sec * Double(max(1, s.machine.threads ?? 1))
        }
        let layers = ((try? f.group("router").children()) ?? []).sorted { RunFigures.layerIndex($0) < RunFigures.layerIndex($1) }
        for l in layers {
            guard let v = try? f.dataset("router/\(l)/load_max_over_mean").readDoubles(), let m = ExperimentRun.windowMean(v) else { continue }
            s.imbalance.append((l, m))
        }
        return s
    }
}
