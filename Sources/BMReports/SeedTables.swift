import Foundation
import BMExperiments

/// The seed-aggregated tables of a sweep report: one row per configuration (the runs
/// that differ only in `train.seed`) with mean ± sd and n, and, when the sweep names a
/// baseline (`report.baseline`), each configuration's difference from it with a 95 %
/// Welch interval, marked when the interval excludes zero.
enum SeedTables {
    struct Run {
        var name: String                  // the run's directory: "k=v,k=v" (sorted keys)
        var valLoss: Double?, metric: Double?, trainLoss: Double?, tokensPerSecond: Double?
        /// Per MoE layer (router/layer_i): expert load max/mean, mean of the last 10 logged steps.
        var imbalance: [(layer: String, value: Double)] = []
    }

    /// The run's axis values but the seed, as "k=v" in key order.
    static func configuration(_ name: String) -> [String: String] {
        var out: [String: String] = [:]
        for part in name.split(separator: ",") {
            let kv = part.split(separator: "=", maxSplits: 1).map(String.init)
            if kv.count == 2, kv[0] != "train.seed" { out[kv[0]] = kv[1] }
        }
        return out
    }

    /// Runs (by directory name) grouped by configuration, in order of first appearance:
    /// each configuration with the indices of its runs.
    static func groups(_ names: [String]) -> [(config: [String: String], members: [Int])] {
        var order: [[String: String]] = [], members: [[String: String]: [Int]] = [:]
        for (i, n) in names.enumerated() {
            let c = configuration(n)
            if members[c] == nil { order.append(c) }
            members[c, default: []].append(i)
        }
        return order.map { ($0, members[$0]!) }
    }

    static func label(_ c: [String: String]) -> String {
        c.isEmpty ? "all runs" : shortLabel(c.keys.sorted().map { ($0, c[$0]!) })
    }

    /// "k=v" words with each key shortened to its shortest dotted suffix that no other
    /// key shares: model.pattern → pattern, but model.defaults.mlp.ffn and
    /// model.defaults.moe.ffn → mlp.ffn, moe.ffn.
    static func shortLabel(_ pairs: [(key: String, value: String?)]) -> String {
        let parts = pairs.map { $0.key.split(separator: ".").map(String.init) }
        return zip(pairs, parts).map { pair, p in
            var n = 1
            func suffix(_ q: [String], _ n: Int) -> String { q.suffix(n).joined(separator: ".") }
            while n < p.count, parts.contains(where: { $0 != p && suffix($0, n) == suffix(p, n) }) { n += 1 }
            return pair.value.map { "\(suffix(p, n))=\($0)" } ?? pair.key
        }.joined(separator: " ")
    }

    static func markdown(_ runs: [Run], metricName: String?, baseline: [String: String]?) -> String {
        let grouped = groups(runs.map(\.name))
        let order = grouped.map(\.config)
        let groups = Dictionary(uniqueKeysWithValues: grouped.map { ($0.config, $0.members.map { runs[$0] }) })
        guard groups.values.contains(where: { $0.count > 1 }) else { return "" }
        func col(_ rs: [Run], _ k: KeyPath<Run, Double?>) -> [Double] { rs.compactMap { $0[keyPath: k] }.filter { !$0.isNaN } }
        let hasMetric = metricName != nil && runs.contains { $0.metric.map { !$0.isNaN } ?? false }
        var md = "## Configurations (seeds aggregated)\n\n"
        md += "Mean ± sample standard deviation over the seeds of each configuration (n runs).\n\n"
        md += "| configuration | n | val loss |" + (hasMetric ? " \(metricName!) |" : "") + " train loss | tokens/s |\n"
        md += "|---|---|---|" + (hasMetric ? "---|" : "") + "---|---|\n"
        for c in order {
            let rs = groups[c]!
            md += "| \(label(c)) | \(rs.count) | \(SeedStats.format(SeedStats.summarize(col(rs, \.valLoss)))) |"
            if hasMetric { md += " \(SeedStats.format(SeedStats.summarize(col(rs, \.metric)))) |" }
            md += " \(SeedStats.format(SeedStats.summarize(col(rs, \.trainLoss)))) | \(SeedStats.format(SeedStats.summarize(col(rs, \.tokensPerSecond)), 0)) |\n"
        }
        // expert load imbalance per MoE layer at the end of training
        var layers: [String] = []
        for r in runs { for (l, _) in r.imbalance where !layers.contains(l) { layers.append(l) } }
        if !layers.isEmpty {
            md += "\n## Expert load at the end of training, per MoE layer\n\n"
            md += "Tokens of the busiest expert over the mean (1 = balanced; E = all on one expert), mean of the last 10 "
            md += "logged steps of each run, then mean ± sd over the seeds.\n\n"
            md += "| configuration | n |" + layers.map { " \($0) |" }.joined() + "\n|---|---|" + layers.map { _ in "---|" }.joined() + "\n"
            for c in order {
                let rs = groups[c]!
                md += "| \(label(c)) | \(rs.count) |"
                for l in layers {
                    let v = rs.compactMap { r in r.imbalance.first { $0.layer == l }?.value }
                    md += " \(SeedStats.format(SeedStats.summarize(v), 2)) |"
                }
                md += "\n"
            }
        }
        guard let baseline, let base = groups[baseline] else { return md + "\n" }
        md += "\n## Against the baseline (\(label(baseline)))\n\n"
        md += "Difference of means (configuration − baseline) with a 95 % Welch interval (unequal variances, "
        md += "Welch–Satterthwaite degrees of freedom); ✱: the interval excludes zero, a difference larger than seed noise "
        md += "at these n. No interval for a configuration with fewer than 2 seeds.\n\n"
        md += "| configuration | n | Δ val loss | 95 % interval |" + (hasMetric ? " Δ \(metricName!) | 95 % interval |" : "") + "\n"
        md += "|---|---|---|---|" + (hasMetric ? "---|---|" : "") + "\n"
        func cell(_ a: [Double], _ b: [Double]) -> String {
            guard let d = SeedStats.welch(a, b) else {
                let x = SeedStats.summarize(a), y = SeedStats.summarize(b)
                return x.n > 0 && y.n > 0 ? String(format: "%+.4f | –", y.mean - x.mean) : "– | –"
            }
            return String(format: "%+.4f | [%+.4f, %+.4f]%@", d.difference, d.low, d.high, d.excludesZero ? " ✱" : "")
        }
        for c in order where c != baseline {
            let rs = groups[c]!
            md += "| \(label(c)) | \(rs.count) | \(cell(col(base, \.valLoss), col(rs, \.valLoss))) |"
            if hasMetric { md += " \(cell(col(base, \.metric), col(rs, \.metric))) |" }
            md += "\n"
        }
        return md + "\n"
    }
}
