import Foundation
import BMCore
import BMStorage
import BMPlot
import BMExperiments
import BMTrain
import BMSweeps

/// The runs a figure is about: one run directory, or every run of a sweep.
public struct RunSet {
    public struct Entry { public var label: String; public var dir: String }
    public var title: String
    public var entries: [Entry]
    public var isSweep: Bool
    /// The sweep file sweep.h5 names, parsed once (nil: not a sweep, or the file is gone).
    public var sweep: Sweep? = nil
    /// Why the sweep file sweep.h5 names could not be parsed (moved, deleted or edited
    /// into an invalid file since the sweep ran); reports say so instead of silently
    /// leaving out what its `report` section asks for.
    public var sweepProblem: String? = nil
    /// The sweep file and overrides sweep.h5 records (nil: no sweep.h5 to read).
    public var sweepFile: String? = nil
    public var sweepOverrides: [String] = []
    /// The sweep file's `report.cells`.
    public var cells: Sweep.Cells? { sweep?.cells }

    /// DIR with metrics.h5 (a run) or runs/*/metrics.h5 (a sweep).
    public init(_ dir: String) throws {
        let fm = FileManager.default
        if fm.fileExists(atPath: "\(dir)/metrics.h5") {
            title = RunSet.runName("\(dir)/metrics.h5") ?? (dir as NSString).lastPathComponent
            entries = [Entry(label: title, dir: dir)]
            isSweep = false
            return
        }
        let runs = "\(dir)/runs"
        guard let names = try? fm.contentsOfDirectory(atPath: runs).sorted(), !names.isEmpty else {
            throw BMError.invalid("\(dir): neither a run (metrics.h5) nor a sweep (runs/*/metrics.h5)")
        }
        // Order runs as the sweep does when result.json tells the index.
        var e: [(Int, Entry)] = []
        for n in names where !n.hasPrefix(".") && fm.fileExists(atPath: "\(runs)/\(n)/metrics.h5") {
            var idx = Int.max
            if let d = fm.contents(atPath: "\(runs)/\(n)/result.json"), let r = try? JSON.decoder().decode(RunResult.self, from: d) { idx = r.index }
            e.append((idx, Entry(label: RunSet.label(n), dir: "\(runs)/\(n)")))
        }
        guard !e.isEmpty else { throw BMError.invalid("\(dir): the sweep has no run with metrics.h5 yet") }
        entries = e.sorted { ($0.0, $0.1.dir) < ($1.0, $1.1.dir) }.map(\.1)
        // "FILE (N runs of NAME)": the sweep file's name when sweep.h5 records it, the spec's name
        var file: String? = nil
        if let sf = try? H5File(path: "\(dir)/sweep.h5", mode: .readOnly) {
            let path = try? sf.stringAttribute("sweep_file")
            file = path.map { (($0 as NSString).lastPathComponent as NSString).deletingPathExtension }
            sweepFile = path ?? ""
            sweepOverrides = (try? sf.stringArrayAttribute("overrides")) ?? []
            if let path {
                // with the overrides it ran with (a file valid only with them, a name= override)
                do { sweep = try Sweep(path: path, overrides: sweepOverrides) } catch {
                    sweepProblem = "the sweep file sweep.h5 names cannot be used (\(error)): its report settings (baseline, cells) are not applied"
                }
            }
            sf.close()
        }
        // the sweep's own spec name (a run adopted from another sweep keeps the name it ran under)
        let base = sweep?.runs.first?.spec.name ?? RunSet.runName("\(entries[0].dir)/metrics.h5")
        let count = "\(entries.count) run\(entries.count == 1 ? "" : "s")"
        title = file.map { "\($0) (\(count) of \(base ?? "the spec"))" } ?? base.map { "\($0) sweep" } ?? (dir as NSString).lastPathComponent
        isSweep = true
    }

    /// The run's name (the spec's `name`), as metrics.h5 stores it.
    static func runName(_ path: String) -> String? {
        guard let f = try? H5File(path: path, mode: .readOnly) else { return nil }
        defer { f.close() }
        return try? f.stringAttribute("name")
    }

    /// "model.pattern=mamba+moe,train.seed=1" → "pattern=mamba+moe seed=1".
    static func label(_ name: String) -> String {
        SeedTables.shortLabel(name.split(separator: ",").map { part in
            let kv = part.split(separator: "=", maxSplits: 1).map(String.init)
            return kv.count == 2 ? (kv[0], kv[1]) : (String(part), nil)
        })
    }
}

/// Figures of a run or a sweep, from their metrics.h5 files.
public enum RunFigures {
    static func column(_ f: H5File, _ name: String) -> [Double] { (try? f.dataset(name).readDoubles()) ?? [] }

    /// Builds every figure that the data supports.
    public static func figures(_ set: RunSet) throws -> [Figure] {
        var bySteps: [Series] = [], byTokens: [Series] = [], byFlops: [Series] = [], byTime: [Series] = [], val: [Series] = []
        var routerFigures: [Figure] = []
        var entropy: [Series] = [], iters: [Series] = []
        // a sweep's router entropy, one panel per MoE layer: [layer: one series per run (empty: no such layer)]
        var entropyByLayer: [String: [Series]] = [:]
        // validation accuracy of the synthetic tasks (bits per byte is the loss rescaled, not plotted twice)
        var accuracy: [Series] = []
        var heatmapLayers = Set<String>()
        // runs grouped by configuration: for the seed bands and one expert-load heatmap
        // per layer and configuration (its first seed)
        let grouped = SeedTables.groups(set.entries.map { ($0.dir as NSString).lastPathComponent })
        var configOf = [Int](repeating: 0, count: set.entries.count)
        for (ci, g) in grouped.enumerated() { for m in g.members { configOf[m] = ci } }
        var unigram: Double? = nil
        // each run's final numbers: test split when scored, else the last validation
        var finalLoss = [Double](repeating: .nan, count: set.entries.count), finalTest = [Bool](repeating: false, count: set.entries.count)
        var finalVal = [Double](repeating: .nan, count: set.entries.count)
        // and the metric (accuracy of the synthetic tasks): the last validation, the test split
        var finalValMetric = finalVal, finalTestMetric = finalVal, accuracyCount = 0
        var finishedOK = [Bool](repeating: false, count: set.entries.count)
        for (ei, e) in set.entries.enumerated() {
            let f = try H5File(path: "\(e.dir)/metrics.h5", mode: .readOnly)
            defer { f.close() }
            let step = column(f, "train/step"), loss = column(f, "train/loss")
            let tokens = column(f, "train/tokens"), flops = column(f, "train/flops")
            // steps done at each row: `step` itself, or index + 1 in a version-1 file
            let indexed = MetricsLog.version(of: f) < 2
            func stepsDone(_ s: [Double]) -> [Double] { indexed ? s.map { $0 + 1 } : s }
            let done = stepsDone(step)
            unigram = unigram ?? (try? f.doubleAttribute("unigram_entropy_nats"))
            bySteps.append(Series(e.label, zip(done, loss).map { ($0, $1) }))
            byTokens.append(Series(e.label, Array(zip(tokens, loss))))
            byFlops.append(Series(e.label, Array(zip(flops, loss))))
            // training seconds so far: each row's new tokens at that row's throughput
            let tps = column(f, "train/tokens_per_s")
            var t = 0.0, prev = 0.0, seconds: [Double] = []
            for (tok, rate) in zip(tokens, tps) { t += rate > 0 ? (tok - prev) / rate : 0; prev = tok; seconds.append(t) }
            byTime.append(Series(e.label, Array(zip(seconds, loss))))
            val.append(Series(e.label, Array(zip(column(f, "eval/step"), column(f, "eval/loss")))))
            let isAccuracy = (try? f.group("eval").stringAttribute("metric_name")) == "accuracy"
            accuracy.append(Series(e.label, isAccuracy ? Array(zip(column(f, "eval/step"), column(f, "eval/metric"))) : []))
            if let t = column(f, "test/loss").last { finalLoss[ei] = t; finalTest[ei] = true }
            if let v = column(f, "eval/loss").last { finalVal[ei] = v }
            // a run that did not finish (failed, diverged or still running: no ok result.json) has no final value
            let result = FileManager.default.contents(atPath: "\(e.dir)/result.json").flatMap { try? JSON.decoder().decode(RunResult.self, from: $0) }
            if isAccuracy {
                accuracyCount += 1
                finalValMetric[ei] = column(f, "eval/metric").last ?? .nan
                finalTestMetric[ei] = column(f, "test/metric").last ?? .nan
            }
            finishedOK[ei] = result?.status == "ok"
            if set.isSweep && result?.status != "ok" {
                finalVal[ei] = .nan; finalLoss[ei] = .nan; finalTest[ei] = false; finalValMetric[ei] = .nan; finalTestMetric[ei] = .nan
            }
            let layers = ((try? f.group("router").children()) ?? []).sorted { layerIndex($0) < layerIndex($1) }
            for layer in layers {
                let g = "router/\(layer)"
                let rs = stepsDone(column(f, "\(g)/step"))
                let label = set.isSweep ? "\(e.label) \(layer)" : layer
                let h = Array(zip(rs, column(f, "\(g)/entropy")))
                if set.isSweep {
                    entropyByLayer[layer, default: [Series](repeating: Series("", []), count: set.entries.count)][ei] = Series(e.label, h)
                } else {
                    entropy.append(Series(label, h))
                }
                let it = column(f, "\(g)/sinkhorn_iters")
                if it.contains(where: { $0 > 0 }) { iters.append(Series(label, Array(zip(rs, it)))) }
                // expert load heatmap (the first run of each configuration that has this layer)
                let ci = configOf[ei]
                if heatmapLayers.insert("\(ci)|\(layer)").inserted {
                    let ds = try f.dataset("\(g)/load")
                    let E = ds.shape.count == 2 ? ds.shape[1] : 1
                    let flat = try ds.readDoubles()
                    let n = flat.count / max(E, 1)
                    let values = (0..<n).map { i -> [Double] in
                        let row = Array(flat[i * E..<(i + 1) * E])
                        let s = row.reduce(0, +)
                        return row.map { s > 0 ? $0 / s : 0 }
                    }
                    var panel = Panel.heat(title: "share of tokens per expert (1/E = \(String(format: "%.3g", 1 / Double(E))))", xlabel: "step",
                                           ylabel: "expert", x: rs, y: (0..<E).map(Double.init), values: values, label: "share of tokens")
                    panel.yTickStep = 1
                    // the colour scale fitted to this figure's shares (they sit near 1/E), so
                    // an imbalance of a few percent is visible; the scale's ends are on it
                    let lo = values.joined().min() ?? 0, hi = values.joined().max() ?? 1
                    panel.colourRange = lo...max(hi, lo + 1e-9)
                    let name = "expert_load_\(layer)" + (grouped.count > 1 ? "_config\(ci + 1)" : "")
                    routerFigures.append(Figure(name: name, title: "Expert load, \(layer)\(set.isSweep ? " (\(e.label))" : "")", panels: [panel], width: 640))
                }
            }
        }
        // A sweep with seeds: one line per configuration (the mean over its seeds) in a
        // min–max band, one colour each.
        var seeds = ""
        // a configuration's line is the mean of its finished runs (one still going would cut
        // the line where it is); all of its runs while none has finished
        let finishedGroups = grouped.map { g -> (config: [String: String], members: [Int]) in
            let done = g.members.filter { finishedOK[$0] }
            return (g.config, done.isEmpty ? g.members : done)
        }
        let bandGroups = set.isSweep && grouped.contains(where: { $0.members.count > 1 }) ? SeedBands.groups(finishedGroups) : nil
        if let g = bandGroups {
            bySteps = SeedBands.aggregate(bySteps, g); byTokens = SeedBands.aggregate(byTokens, g)
            byFlops = SeedBands.aggregate(byFlops, g); val = SeedBands.aggregate(val, g)
            byTime = SeedBands.aggregateByIndex(byTime, g)
            seeds = " (mean over seeds, band: min–max)"
        }
        // per layer: the runs that have it (a dense configuration has no router), as one
        // line per configuration when there are seeds
        let entropyPanels = entropyByLayer.keys.sorted { layerIndex($0) < layerIndex($1) }.map { layer -> Panel in
            let runs = entropyByLayer[layer]!
            var series: [Series]
            if let g = bandGroups {
                series = SeedBands.aggregate(runs, g.filter { $0.members.allSatisfy { !runs[$0].points.isEmpty } })
            } else {
                series = runs.filter { !$0.points.isEmpty }
            }
            series = series.filter { !$0.points.isEmpty }
            return Panel(title: layer, xlabel: "step", ylabel: "mean router softmax entropy (nats)", key: "bottom left", series: series)
        }
        let accuracyRuns = accuracy
        if let g = bandGroups {
            let full = g.filter { $0.members.allSatisfy { !accuracyRuns[$0].points.isEmpty } }
            accuracy = SeedBands.aggregate(SeedBands.carriedForward(accuracyRuns, full, extend: finishedOK), full)
        }
        accuracy = accuracy.filter { !$0.points.isEmpty }
        // the context-free baseline: a model that only learned token frequencies
        let valSteps = val.flatMap { $0.points.map(\.0) }
        if let u = unigram, let lo = valSteps.min(), let hi = valSteps.max() {
            val.append(Series(String(format: "unigram baseline (%.3f)", u), [(lo, u), (hi, u)]))
        }
        var figs: [Figure] = [
            Figure(name: "loss", title: "Training loss: \(set.title)\(seeds)", panels: [
                Panel(title: "by step", xlabel: "step", ylabel: "loss (nats/token)", key: "top right", series: bySteps),
                with(Panel(title: "by tokens", xlabel: "tokens", ylabel: "loss (nats/token)", key: "top right", series: byTokens)) { $0.engineeringX = true },
                with(Panel(title: "by training FLOPs", xlabel: "training FLOPs", ylabel: "loss (nats/token)", logX: true, key: "top right",
                           series: byFlops)) { $0.engineeringX = true },
                Panel(title: "by training time", xlabel: "seconds of training steps", ylabel: "loss (nats/token)", key: "top right", series: byTime),
            ], width: 1900, height: 440),
            Figure(name: "val_loss", title: "Validation loss: \(set.title)\(seeds)", panels: [
                Panel(title: "", xlabel: "step", ylabel: "validation loss (nats/token)", key: "top right", series: val),
            ], width: 640),
        ]
        if !accuracy.isEmpty {
            var panel = Panel(title: "", xlabel: "step", ylabel: "validation accuracy", key: "bottom right", series: accuracy)
            panel.yRange = 0...1
            figs.append(Figure(name: "val_accuracy", title: "Validation accuracy: \(set.title)\(seeds)", panels: [panel], width: 640))
        }
        if !entropyPanels.isEmpty {
            figs.append(Figure(name: "router_entropy", title: "Router entropy: \(set.title)\(seeds)", panels: entropyPanels,
                               width: max(640, 560 * entropyPanels.count)))
        } else if !entropy.isEmpty {
            figs.append(Figure(name: "router_entropy", title: "Router entropy: \(set.title)", panels: [
                Panel(title: "mean router softmax entropy", xlabel: "step", ylabel: "entropy (nats)", key: "bottom left", series: entropy),
            ], width: 640))
        }
        if !iters.isEmpty {
            var panel = Panel(title: "iterations per routing call", xlabel: "step", ylabel: "iterations", key: "top right", series: iters)
            // one value everywhere (the fast Sinkhorn's single iteration): one line on a readable axis
            let values = Set(iters.flatMap { $0.points.map(\.1) })
            if values.count == 1, let v = values.first, let longest = iters.max(by: { $0.points.count < $1.points.count }) {
                panel.series = [Series("every layer\(set.isSweep ? " and run" : ""): \(fmtCount(v)) iteration\(v == 1 ? "" : "s")", longest.points)]
                panel.yRange = 0...(v + 1)
            }
            figs.append(Figure(name: "sinkhorn_iterations", title: "Sinkhorn iterations: \(set.title)", panels: [panel], width: 640))
        }
        // a learning-rate grid: each arm's final validation loss (accuracy, for the
        // synthetic tasks: what the report's table chooses on) against the rate
        if set.isSweep, let arms = SeedTables.arms(set.entries.map { ($0.dir as NSString).lastPathComponent }) {
            let byAccuracy = accuracyCount == set.entries.count
            let values = byAccuracy ? finalValMetric : finalVal
            let series = arms.map { a in
                Series(SeedTables.label(a.arm), a.rates.compactMap { r -> (Double, Double)? in
                    let v = r.members.map { values[$0] }.filter { !$0.isNaN }
                    return v.isEmpty ? nil : (r.lr, v.reduce(0, +) / Double(v.count))
                })
            }
            let what = byAccuracy ? "accuracy" : "loss"
            var panel = Panel(title: "mean over seeds at each rate", xlabel: "peak learning rate",
                              ylabel: byAccuracy ? "final validation accuracy" : "final validation loss (nats/token)", logX: true, series: series)
            if byAccuracy { panel.yRange = 0...1 }
            figs.append(Figure(name: "lr_sweep", title: "Final validation \(what) against the learning rate: \(set.title)", panels: [panel], width: 640))
        }
        if set.isSweep, grouped.contains(where: { $0.members.count > 1 }) {
            // one split for every run (as the report's tables): test when all scored it, else validation
            let test = finalTest.allSatisfy { $0 }
            figs.append(finalValues(grouped, test ? finalLoss : finalVal, test: test, title: set.title))
        }
        if set.isSweep, let cells = set.cells {
            let isAccuracy = accuracyCount == set.entries.count
            let names = set.entries.map { ($0.dir as NSString).lastPathComponent }
            // accuracy: the highest validation accuracy chooses, the test accuracy is shown;
            // otherwise the lowest validation loss chooses and the test loss is shown. The
            // test split when every finished run scored it, else validation for all.
            let choose = isAccuracy ? finalValMetric.map { -$0 } : finalVal
            let testAll = isAccuracy ? zip(finalValMetric, finalTestMetric).allSatisfy { $0.isNaN || !$1.isNaN }
                                     : zip(finalVal, finalTest).allSatisfy { $0.isNaN || $1 }
            let shown = isAccuracy ? (testAll ? finalTestMetric : finalValMetric) : (testAll ? finalLoss : finalVal)
            figs.append(cellsFigure(names, cells: cells, choose: choose, shown: shown,
                                    ylabel: "\(testAll ? "test" : "final validation") \(isAccuracy ? "accuracy" : "loss (nats/token)")",
                                    accuracy: isAccuracy, title: set.title))
        }
        return figs + routerFigures
    }

    /// The final metric against `cells.x`, one panel per value of `cells.panel`, one colour
    /// per remaining configuration. Each (configuration, x, panel) cell is shown at its
    /// learning rate with the best mean `choose` over seeds (lower is better; validation),
    /// one dot per seed of `shown` and a line through the means. Axes that move with the
    /// panel or x (a zip: the pairs with the sequence length) are left out of the legend.
    static func cellsFigure(_ names: [String], cells: Sweep.Cells, choose: [Double], shown: [Double],
                            ylabel: String, accuracy: Bool, title: String) -> Figure {
        let configs = names.map(SeedTables.configuration)
        func determined(_ k: String, by a: String?) -> Bool {
            guard let a else { return false }
            var f: [String: String] = [:]
            for c in configs { if let old = f[c[a] ?? ""], old != c[k] { return false }; f[c[a] ?? ""] = c[k] ?? "" }
            return true
        }
        let drop = Set(configs.flatMap(\.keys).filter { k in
            k == cells.x || k == cells.panel || SeedTables.lrKeys.contains(k) || determined(k, by: cells.panel) || determined(k, by: cells.x)
        })
        func seriesKey(_ c: [String: String]) -> [String: String] { c.filter { !drop.contains($0.key) } }
        var seriesOrder: [[String: String]] = [], panelOrder: [String] = []
        for c in configs {
            let s = seriesKey(c)
            if !seriesOrder.contains(s) { seriesOrder.append(s) }
            let p = cells.panel.flatMap { c[$0] } ?? ""
            if !panelOrder.contains(p) { panelOrder.append(p) }
        }
        panelOrder.sort { (Double($0) ?? .infinity, $0) < (Double($1) ?? .infinity, $1) }
        let keys = SeedBands.distinguishingKeys(seriesOrder)
        var panels: [Panel] = []
        for p in panelOrder {
            var series: [Series] = []
            for (si, sk) in seriesOrder.enumerated() {
                // each line a little to the side (×1.04 apart on the log axis), so dots of
                // different configurations at one x do not hide each other
                let nudge = pow(1.04, Double(si) - Double(seriesOrder.count - 1) / 2)
                // runs of this line and panel, by x, then by learning rate
                var byX: [Double: [String: [Int]]] = [:]
                for (i, c) in configs.enumerated() where seriesKey(c) == sk && (cells.panel.flatMap { c[$0] } ?? "") == p {
                    guard let x = c[cells.x].flatMap(Double.init) else { continue }
                    // a rate: the peak and the floor of its schedule (both axes of a grid)
                    byX[x, default: [:]][(c["train.optimizer.lr"] ?? "") + "|" + (c["train.schedule.min_lr"] ?? ""), default: []].append(i)
                }
                var dots: [(Double, Double)] = [], means: [(Double, Double)] = []
                for x in byX.keys.sorted() {
                    // ties go to the lowest rate (min keeps the first of equals)
                    func rate(_ k: String) -> (Double, Double) {
                        let p = k.split(separator: "|", omittingEmptySubsequences: false).map { Double($0) ?? 0 }
                        return (p[0], p.count > 1 ? p[1] : 0)
                    }
                    let best = byX[x]!.sorted { rate($0.key) < rate($1.key) }.compactMap { _, members -> (Double, [Int])? in
                        // a rate competes only when every one of its seeds finished: a rate
                        // whose other seeds diverged must not win on the one that survived
                        let v = members.map { choose[$0] }
                        return v.contains { $0.isNaN } ? nil : (v.reduce(0, +) / Double(v.count), members)
                    }.min { $0.0 < $1.0 }
                    guard let members = best?.1 else { continue }
                    let v = members.map { shown[$0] }.filter { !$0.isNaN }
                    guard !v.isEmpty else { continue }
                    dots += v.map { (x * nudge, $0) }
                    means.append((x * nudge, v.reduce(0, +) / Double(v.count)))
                }
                guard !dots.isEmpty else { continue }
                var s = Series(SeedTables.label(sk.filter { keys.contains($0.key) }), dots)
                s.dots = true
                s.line = means
                series.append(s)
            }
            var panel = Panel(title: cells.panel.map { "\(SeedTables.shortLabel([($0, p)]))" } ?? "", xlabel: String(cells.x.split(separator: ".").last ?? Substring(cells.x)),
                              ylabel: ylabel, logX: true, key: "bottom right", series: series)
            if accuracy { panel.yRange = 0...1 }
            // every x of the grid on the axis, with room for the dots at its ends
            let xs = Set(configs.compactMap { $0[cells.x].flatMap(Double.init) }).sorted()
            panel.xTics = xs                       // the grid's values, not the nudged positions
            if let lo = xs.first, let hi = xs.last, lo > 0 { panel.xRange = (lo / 1.3)...(hi * 1.3) } else { panel.logX = false }
            panels.append(panel)
        }
        return Figure(name: "cells", title: "\(accuracy ? "Accuracy" : "Loss") at each cell's best learning rate (chosen on validation), one dot per seed: \(title)",
                      panels: panels, width: max(640, 520 * panels.count))
    }

    /// One dot per seed and the mean with its 95 % t interval per configuration, on an
    /// axis fitted to the values (the final numbers a report's tables compare).
    static func finalValues(_ grouped: [(config: [String: String], members: [Int])], _ values: [Double], test: Bool, title: String) -> Figure {
        var series: [Series] = []
        for (ci, g) in grouped.enumerated() {
            let v = g.members.map { values[$0] }.filter { !$0.isNaN }
            let x = Double(ci + 1), n = Double(v.count)
            var s = Series("\(ci + 1): \(SeedTables.label(g.config))", v.enumerated().map { i, y in (x + (Double(i) - (n - 1) / 2) * 0.07, y) })
            s.dots = true
            let sum = SeedStats.summarize(v)
            if sum.n >= 2 {
                let h = SeedStats.tQuantile(0.975, df: Double(sum.n - 1)) * sum.sd / Double(sum.n).squareRoot()
                s.summary = (x, sum.mean, sum.mean - h, sum.mean + h)
            }
            series.append(s)
        }
        var panel = Panel(title: "one dot per seed; bar: mean and 95 % t interval", xlabel: "configuration",
                          ylabel: "\(test ? "test" : "final validation") loss (nats/token)", series: series)
        panel.xTicLabels = grouped.indices.map { (Double($0 + 1), String($0 + 1)) }
        return Figure(name: "final_loss", title: "Final \(test ? "test" : "validation") loss: \(title)", panels: [panel],
                      width: max(640, 90 * grouped.count + 200), height: 420 + 22 * ((grouped.count + 1) / 2))
    }

    static func fmtCount(_ v: Double) -> String { v == v.rounded() ? String(Int(v)) : String(format: "%.2f", v) }

    static func with(_ p: Panel, _ change: (inout Panel) -> Void) -> Panel { var q = p; change(&q); return q }

    static func layerIndex(_ s: String) -> Int { Int(s.split(separator: "_").last ?? "") ?? 0 }

    /// Renders every figure of a run or sweep into `outDir`; returns their paths.
    public static func render(_ dir: String, outDir: String, format: FigureFormat) throws -> [String] {
        try figures(RunSet(dir)).map { try Gnuplot.render($0, in: outDir, format: format) }
    }

    /// Figures of whatever DIR holds: a run, a sweep, a Sinkhorn study, a generation benchmark.
    public static func renderAny(_ dir: String, outDir: String, format: FigureFormat) throws -> [String] {
        let fm = FileManager.default
        var paths: [String] = []
        if fm.fileExists(atPath: "\(dir)/metrics.h5") || fm.fileExists(atPath: "\(dir)/runs") {
            paths += try render(dir, outDir: outDir, format: format)
        }
        if fm.fileExists(atPath: "\(dir)/sinkhorn.h5") {
            for fig in try StudyFigures.sinkhorn("\(dir)/sinkhorn.h5") { paths.append(try Gnuplot.render(fig, in: outDir, format: format)) }
        }
        if fm.fileExists(atPath: "\(dir)/bench_generate.json") {
            paths.append(try Gnuplot.render(try StudyFigures.generation("\(dir)/bench_generate.json"), in: outDir, format: format))
        }
        if paths.isEmpty { throw BMError.invalid("\(dir): nothing to plot (no metrics.h5, runs/, sinkhorn.h5 or bench_generate.json)") }
        return paths
    }
}
