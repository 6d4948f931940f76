import Foundation
import BMCore
import BMStorage
import BMPlot
import BMExperiments
import BMSweeps

/// `bmlab robustness DIR… --out notebooks-md/NAME.md`: does a recipe learn in every
/// run? For each sweep directory (a condition: an init scheme, a thread count, a BLAS
/// kernel, …) and each of its runs, the final accuracy, the first evaluation at or above
/// the threshold, the BLAS kernel and threads the run really used (from metrics.h5);
/// a summary per condition; the accuracy curves as figures (one per condition).
public enum Robustness {
    public struct Row: Sendable {
        public var condition: String
        public var run: String
        public var seed: Int
        public var kernel: String
        public var threads: Int
        public var scan: String                // the selective scan's build (metrics.h5 scan_kernel; "?" before it was recorded)
        public var steps: Int                  // the schedule's length (train.steps; the last evaluation in runs from before it was recorded)
        public var final: Double
        public var firstAbove: Int?            // first eval step with metric ≥ threshold
        public var firstEscape: Int?           // first eval step with metric ≥ the escape level (when given)
        public var seconds: Double?
        public var curve: [(Double, Double)]
    }

    /// Reads every finished run of every directory (a sweep's runs without an ok
    /// result.json are still running or failed, and are left out).
    public static func rows(_ dirs: [String], threshold: Double, escape: Double? = nil) throws -> [Row] {
        var out: [Row] = []
        for dir in dirs {
            let set = try RunSet(dir)
            for e in set.entries {
                // a condition: the directory, and the run's axis values other than the seed
                let others = e.label.split(separator: " ").filter { !$0.hasPrefix("seed=") }.joined(separator: " ")
                let condition = (dir as NSString).lastPathComponent + (set.isSweep && !others.isEmpty ? " \(others)" : "")
                let f = try H5File(path: "\(e.dir)/metrics.h5", mode: .readOnly)
                defer { f.close() }
                guard (try? f.group("eval").stringAttribute("metric_name")) == "accuracy" else {
                    throw BMError.invalid("\(e.dir)/metrics.h5: its metric is not accuracy (a synthetic task's runs are needed)")
                }
                let steps = (try? f.dataset("eval/step").readDoubles()) ?? []
                let acc = (try? f.dataset("eval/metric").readDoubles()) ?? []
                let curve = Array(zip(steps, acc))
                let result = FileManager.default.contents(atPath: "\(e.dir)/result.json").flatMap { try? JSON.decoder().decode(RunResult.self, from: $0) }
                if set.isSweep && result?.status != "ok" { continue }
                out.append(Row(condition: condition, run: e.label, seed: (try? f.intAttribute("seed")) ?? 0,
                               kernel: (try? f.stringAttribute("blas_core")) ?? "?", threads: (try? f.intAttribute("blas_threads")) ?? 0,
                               scan: (try? f.stringAttribute("scan_kernel")) ?? "?",
                               steps: (try? f.intAttribute("train_steps")) ?? Int(steps.last ?? 0),
                               final: acc.last ?? .nan, firstAbove: curve.first { $0.1 >= threshold }.map { Int($0.0) },
                               firstEscape: escape.flatMap { e in curve.first { $0.1 >= e }.map { Int($0.0) } },
                               seconds: result?.seconds, curve: curve))
            }
        }
        return out
    }

    /// Writes the report (and its figures beside it); returns how many runs it read and
    /// how many of them ended below the threshold.
    @discardableResult
    /// With `escape` (an accuracy below the threshold, e.g. 0.4 for MQAR's 1/k plateau),
    /// also when each run first reached it ("left the plateau") and how many steps it
    /// then took to reach the threshold. With `within` (a fraction of the schedule, e.g.
    /// 0.6), a run holds the margin when it ends at or above the threshold and its first
    /// evaluation at or above it came no later than that fraction of its steps; `late`
    /// counts the runs that do not.
    public static func write(dirs: [String], out: String, threshold: Double, escape: Double? = nil, within: Double? = nil,
                             command: String, format: FigureFormat = .png) throws -> (runs: Int, below: Int, late: Int) {
        let rows = try rows(dirs, threshold: threshold, escape: escape)
        let holds = { (r: Row) -> Bool in
            r.final >= threshold && (within.map { w in r.firstAbove.map { Double($0) <= w * Double(r.steps) } ?? false } ?? true)
        }
        let late = rows.filter { !holds($0) }.count
        let outDir = (out as NSString).deletingLastPathComponent.isEmpty ? "." : (out as NSString).deletingLastPathComponent
        let base = ((out as NSString).lastPathComponent as NSString).deletingPathExtension
        let figDir = (outDir as NSString).appendingPathComponent("\(base)-figures")
        try FileManager.default.createDirectory(atPath: figDir, withIntermediateDirectories: true)
        let pct = { (x: Double) in x.isNaN ? "–" : String(format: "%.1f %%", 100 * x) }
        let conditions = rows.map(\.condition).reduce(into: [String]()) { if !$0.contains($1) { $0.append($1) } }
        let failed = rows.filter { !($0.final >= threshold) }.count
        var md = "# Learning robustness: \(conditions.joined(separator: ", "))\n\n"
        md += "Regenerate with:\n\n```sh\n\(command)\n```\n\n"
        md += "Threshold: final accuracy ≥ \(pct(threshold)). **\(rows.count - failed) of \(rows.count) runs reach it"
        if let w = within {
            md += "; \(rows.count - late) of \(rows.count) also reached it by \(pct(w)) of their schedule (the margin)"
        }
        md += ".**\n\n"
        let allFirsts = rows.compactMap(\.firstAbove).sorted()
        if !allFirsts.isEmpty {
            md += "Over all runs, the first evaluation at ≥ \(pct(threshold)) came at step \(Robustness.median(allFirsts)) (median) and \(allFirsts.last!) at the latest"
            if let e = escape {
                let esc = rows.compactMap(\.firstEscape).sorted()
                let climb = rows.compactMap { r in r.firstEscape.flatMap { e in r.firstAbove.map { $0 - e } } }.sorted()
                md += "; runs left the plateau (first evaluation ≥ \(pct(e))) at step \(esc.isEmpty ? "–" : Robustness.median(esc)) (median), \(esc.last.map(String.init) ?? "–") at the latest, and from there took \(climb.isEmpty ? "–" : Robustness.median(climb)) steps (median), \(climb.last.map(String.init) ?? "–") at most, to reach \(pct(threshold))"
            }
            md += ".\n\n"
        }
        let escHead = escape.map { " first eval ≥ \(pct($0)): median / latest step |" } ?? ""
        let withinHead = within.map { " runs ≥ \(pct(threshold)) by \(pct($0)) of the schedule |" } ?? ""
        md += "## By condition\n\n| condition | runs | BLAS kernel | scan | threads | final accuracy min / median / max | runs ≥ \(pct(threshold)) |\(withinHead)\(escHead) first eval ≥ \(pct(threshold)): median / latest step (of the runs that reach it) |\n|---|---|---|---|---|---|---|\(within == nil ? "" : "---|")\(escape == nil ? "" : "---|")---|\n"
        for c in conditions {
            let rs = rows.filter { $0.condition == c }
            let finals = rs.map(\.final).sorted()
            let firsts = rs.compactMap(\.firstAbove).sorted()
            let kernels = Array(Set(rs.map(\.kernel))).sorted().joined(separator: ", ")
            let threads = Array(Set(rs.map(\.threads))).sorted().map(String.init).joined(separator: ", ")
            let scans = Array(Set(rs.map(\.scan))).sorted().joined(separator: ", ")
            let withinCell = within == nil ? "" : " \(rs.filter(holds).count) |"
            let escs = rs.compactMap(\.firstEscape).sorted()
            let escCell = escape == nil ? "" : " \(escs.isEmpty ? "–" : "\(Robustness.median(escs)) / \(escs.last!)") |"
            md += "| \(c) | \(rs.count) | \(kernels) | \(scans) | \(threads) | \(pct(finals.first ?? .nan)) / \(pct(finals[finals.count / 2])) / \(pct(finals.last ?? .nan)) | \(rs.filter { $0.final >= threshold }.count) |\(withinCell)\(escCell) \(firsts.isEmpty ? "–" : "\(Robustness.median(firsts)) / \(firsts.last!)") |\n"
        }
        md += "\n## Every run\n\n| condition | run | BLAS kernel | scan | threads | final accuracy |\(escape.map { " first eval ≥ \(pct($0)) (step) |" } ?? "") first eval ≥ \(pct(threshold)) (step) | training time |\n|---|---|---|---|---|---|\(escape == nil ? "" : "---|")---|---|\n"
        for r in rows {
            md += "| \(r.condition) | \(r.run) | \(r.kernel) | \(r.scan) | \(r.threads) | \(pct(r.final))\(r.final >= threshold ? "" : " **below**") |\(escape == nil ? "" : " \(r.firstEscape.map(String.init) ?? "never") |") \(r.firstAbove.map(String.init) ?? "never")\(holds(r) ? "" : within == nil ? "" : " **late**") | \(r.seconds.map { String(format: "%.0f s", $0) } ?? "–") |\n"
        }
        md += "\n## Accuracy over training\n\n"
        for c in conditions {
            let rs = rows.filter { $0.condition == c }
            let fig = Figure(name: "accuracy_" + String(c.map { $0.isLetter || $0.isNumber || $0 == "-" ? $0 : "_" }), title: "Held-out accuracy: \(c)", panels: [
                Panel(title: "\(rs.count) runs", xlabel: "step", ylabel: "accuracy", yRange: 0...1, key: "outside right top",   // never over a curve
                      series: rs.map { Series($0.run, $0.curve) }),
            ], width: 760)
            let path = try Gnuplot.render(fig, in: figDir, format: format)
            md += "![accuracy \(c)](\(Notebook.relative(path, to: outDir)))\n\n"
        }
        md += "Each figure's gnuplot script (`.gp`) and data (`.dat`) are beside it.\n\n"
        md += "## Machine\n\n| fact | value |\n|---|---|\n"
        md += "| BlackMambaLab | \(BMLab.version)\(ExperimentRun.gitCommit.map { " (\($0.prefix(10)))" } ?? "") |\n"
        md += "| CPU | \(Machine.cpuModel) (\(Machine.cpuFamilyModel)), \(BLAS.availableCores) cores, \(BLAS.cpuHasAVX512 ? "AVX-512" : BLAS.cpuHasAVX2 ? "AVX2, no AVX-512" : "no AVX2") |\n"
        md += "| kernels this CPU runs | \(BLAS.runnableCores.joined(separator: ", ")) |\n"
        try md.write(toFile: out, atomically: true, encoding: .utf8)
        return (rows.count, failed, late)
    }

    /// The median of sorted steps, as text: the middle one, or the mean of the two middle ones.
    static func median(_ sorted: [Int]) -> String {
        let n = sorted.count
        if n % 2 == 1 { return String(sorted[n / 2]) }
        let m = Double(sorted[n / 2 - 1] + sorted[n / 2]) / 2
        return m == m.rounded() ? String(Int(m)) : String(format: "%.1f", m)
    }
}
