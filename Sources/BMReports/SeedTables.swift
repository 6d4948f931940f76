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
        /// The last evaluation under each routing, and per MoE layer their agreement (eval.routing: both).
        var valLossArgmax: Double? = nil, valLossTrain: Double? = nil
        var agreement: [Double] = []
        /// The test split, scored once at the end (eval.test).
        var testLoss: Double? = nil, testMetric: Double? = nil, testLossArgmax: Double? = nil, testLossTrain: Double? = nil
        /// Core-seconds of its training steps (tokens ÷ tokens/s × BLAS threads).
        var cpuSeconds: Double? = nil
        /// Finished every step with status ok (result.json); a learning-rate choice reads only these.
        var complete = true
        var seed: String? { name.split(separator: ",").first { $0.hasPrefix("train.seed=") }.map { String($0.dropFirst(11)) } }
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

    // MARK: learning-rate sweeps

    /// The keys a learning-rate grid varies (the cosine's floor is tied to the rate).
    static let lrKeys: Set<String> = ["train.optimizer.lr", "train.schedule.min_lr"]

    /// Runs of a learning-rate sweep grouped by arm (the configuration without the rate
    /// and the seed), each arm's rates in increasing order with their runs; nil when the
    /// runs do not vary train.optimizer.lr.
    static func arms(_ names: [String]) -> [(arm: [String: String], rates: [(lr: Double, members: [Int])])]? {
        var order: [[String: String]] = [], byArm: [[String: String]: [Double: [Int]]] = [:]
        var sawLR = false
        for (i, n) in names.enumerated() {
            var c = configuration(n)
            guard let lr = c["train.optimizer.lr"].flatMap(Double.init) else { continue }
            sawLR = true
            for k in lrKeys { c[k] = nil }
            if byArm[c] == nil { order.append(c) }
            byArm[c, default: [:]][lr, default: []].append(i)
        }
        guard sawLR, byArm.values.contains(where: { $0.count > 1 }) else { return nil }
        return order.map { a in (a, byArm[a]!.keys.sorted().map { ($0, byArm[a]![$0]!) }) }
    }

    /// Each arm's final validation loss (argmax routing for MoE models) — or accuracy, for
    /// the synthetic tasks — at every rate, mean over seeds, and the rate chosen on it: the
    /// lowest loss (highest accuracy), ties to the lower rate, as the `cells` figure
    /// chooses; flagged when it sits at an edge of the grid (the grid should then be widened).
    static func learningRates(_ runs: [Run], metricName: String? = nil) -> String {
        guard let arms = arms(runs.map(\.name)) else { return "" }
        let accuracy = metricName == "accuracy"
        let rates = Array(Set(arms.flatMap { $0.rates.map(\.lr) })).sorted()
        var md = "## Learning rate, chosen on the validation split\n\n"
        md += accuracy ? "Final validation accuracy (the last evaluation) at each peak learning rate, mean "
                       : "Final validation loss (the last evaluation; MoE layers routed by argmax) at each peak learning rate, mean "
        md += "over the seeds at that rate (n in brackets when more than one); **bold**: the \(accuracy ? "highest" : "lowest"), the arm's chosen rate (ties: the lower rate); "
        md += "‡: the chosen rate is at an edge of the grid (widen it); –: no run at that rate finished (failed, diverged or "
        md += "still running). The test split is not used for this choice.\n\n"
        md += "| arm |" + rates.map { " lr \(String(format: "%g", $0)) |" }.joined() + " chosen |\n|---|" + rates.map { _ in "---|" }.joined() + "---|\n"
        for (arm, rs) in arms {
            var means: [Double: (Double, Int)] = [:]
            for (lr, members) in rs {
                let v = members.filter { runs[$0].complete }.compactMap { accuracy ? runs[$0].metric : runs[$0].valLoss }.filter { !$0.isNaN }
                if !v.isEmpty { means[lr] = (v.reduce(0, +) / Double(v.count), v.count) }
            }
            // in increasing rate, so that min keeps the lower rate of a tie
            let best = means.sorted { $0.key < $1.key }.min { (accuracy ? -$0.value.0 : $0.value.0) < (accuracy ? -$1.value.0 : $1.value.0) }?.key
            md += "| \(label(arm)) |"
            for lr in rates {
                guard let (m, n) = means[lr] else { md += " – |"; continue }
                let cell = String(format: "%.4f", m) + (n > 1 ? " (\(n))" : "")
                md += lr == best ? " **\(cell)** |" : " \(cell) |"
            }
            let edge = best.map { $0 == rs.first?.lr || $0 == rs.last?.lr } ?? false
            md += " \(best.map { String(format: "%g", $0) + (edge ? " ‡" : "") } ?? "–") |\n"
        }
        return md + "\n"
    }

    static func markdown(_ allRuns: [Run], metricName: String?, baseline: [String: String]?) -> String {
        // only runs that finished every step: a run still going (or failed) would enter a
        // mean, a pair and a test with the loss of some earlier step
        let runs = allRuns.filter(\.complete)
        let grouped = groups(runs.map(\.name))
        let order = grouped.map(\.config)
        let groups = Dictionary(uniqueKeysWithValues: grouped.map { ($0.config, $0.members.map { runs[$0] }) })
        guard groups.values.contains(where: { $0.count > 1 }) else { return "" }
        func col(_ rs: [Run], _ k: KeyPath<Run, Double?>) -> [Double] { rs.compactMap { $0[keyPath: k] }.filter { !$0.isNaN } }
        let hasMetric = metricName != nil && runs.contains { $0.metric.map { !$0.isNaN } ?? false }
        var md = "## Configurations (seeds aggregated)\n\n"
        if runs.count < allRuns.count {
            md += "**\(allRuns.count - runs.count) of \(allRuns.count) runs have not finished (running, failed or diverged) and are left out of "
            md += "every table below**: the aggregates are over the \(runs.count) finished runs.\n\n"
        }
        let bounded = metricName == "accuracy"
        md += "Mean ± sample standard deviation over the seeds of each configuration (n runs)"
        md += bounded ? "; accuracy: mean and a 95 % percentile bootstrap interval over the seeds, which stays within [0, 1].\n\n" : ".\n\n"
        md += "| configuration | n | val loss |" + (hasMetric ? " \(metricName!)\(bounded ? " [95 % interval]" : "") |" : "") + " train loss | tokens/s |\n"
        md += "|---|---|---|" + (hasMetric ? "---|" : "") + "---|---|\n"
        for c in order {
            let rs = groups[c]!
            md += "| \(label(c)) | \(rs.count) | \(SeedStats.format(SeedStats.summarize(col(rs, \.valLoss)))) |"
            if hasMetric {
                let m = col(rs, \.metric)
                if bounded, let ci = PairedStats.bootstrapMean(m) {
                    md += String(format: " %.4f [%.4f, %.4f] |", m.reduce(0, +) / Double(m.count), ci.low, ci.high)
                } else {
                    md += " \(SeedStats.format(SeedStats.summarize(m))) |"
                }
            }
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
        md += routingTable(order: order, groups: groups)
        guard let baseline, let base = groups[baseline] else { return md + footer(runs) }
        md += comparisons(order: order, groups: groups, baseline: baseline, base: base, metricName: hasMetric ? metricName : nil)
        return md + footer(runs)
    }

    /// The value a comparison reads: the test split's when every run scored it (a
    /// study's final numbers), else the last validation evaluation.
    static func headline(_ runs: [Run]) -> (loss: KeyPath<Run, Double?>, metric: KeyPath<Run, Double?>, split: String) {
        let loss: KeyPath<Run, Double?>, metric: KeyPath<Run, Double?>
        if runs.allSatisfy({ $0.testLoss != nil }) {
            loss = \Run.testLoss; metric = \Run.testMetric
            return (loss, metric, "test")
        }
        loss = \Run.valLoss; metric = \Run.metric
        return (loss, metric, "validation")
    }

    /// Each configuration against the baseline, runs paired by seed (the same seed
    /// gives the same data order in every configuration): mean paired difference, its
    /// 95 % paired-t interval, the paired-t p-value and the exact sign-flip p-value, and
    /// Holm's correction over every comparison of the table. Configurations whose seeds
    /// do not pair with the baseline's fall back to Welch's unpaired interval.
    static func comparisons(order: [[String: String]], groups: [[String: String]: [Run]], baseline: [String: String],
                            base: [Run], metricName: String?) -> String {
        let all = order.flatMap { groups[$0]! }
        let h = headline(all)
        var rows: [(label: String, n: Int, what: String, paired: PairedStats.Paired?, signFlip: Double?, welch: SeedStats.Difference?,
                    bootstrap: (low: Double, high: Double)?)] = []
        func pairs(_ rs: [Run], _ k: KeyPath<Run, Double?>) -> ([Double], [Double])? {
            var a: [Double] = [], b: [Double] = []
            for r in rs {
                guard let s = r.seed, let x = r[keyPath: k], !x.isNaN,
                      let y = base.first(where: { $0.seed == s })?[keyPath: k], !y.isNaN else { continue }
                a.append(y); b.append(x)
            }
            return a.count >= 2 ? (a, b) : nil
        }
        func col(_ rs: [Run], _ k: KeyPath<Run, Double?>) -> [Double] { rs.compactMap { $0[keyPath: k] }.filter { !$0.isNaN } }
        for c in order where c != baseline {
            let rs = groups[c]!
            // bits per byte is the loss ÷ ln 2: the same comparison, not a second one for Holm
            let metricRow = metricName.flatMap { $0 == "bits_per_byte" ? nil : [("\(h.split) \($0)", h.metric, $0 == "accuracy")] } ?? []
            for (what, k, bounded) in [("\(h.split) loss", h.loss, false)] + metricRow {
                if let (a, b) = pairs(rs, k) {
                    rows.append((label(c), a.count, what, PairedStats.pairedT(a, b), PairedStats.signFlip(a, b), nil,
                                 bounded ? PairedStats.pairedBootstrap(a, b) : nil))
                } else {
                    rows.append((label(c), rs.count, what, nil, nil, SeedStats.welch(col(base, k), col(rs, k)), nil))
                }
            }
        }
        let holm = PairedStats.holm(rows.map { $0.paired?.pValue ?? .nan })
        var md = "\n## Against the baseline (\(label(baseline))), \(h.split) split\n\n"
        md += "Runs paired by seed (same seed, same data order). Δ = configuration − baseline, mean over the pairs, with a "
        md += "95 % paired-t interval (accuracy: a paired percentile bootstrap over seeds, which stays within the metric's range); p: "
        md += "two-sided paired t; sign-flip: the exact permutation p over the 2ⁿ sign assignments (≥ 2/2ⁿ: 0.0625 at n = 5); "
        md += "Holm: the p-value adjusted by Holm's step-down correction over the \(rows.filter { $0.paired != nil }.count) paired comparisons of this table "
        md += "(family-wise error 0.05); ✱: survives it. Rows marked Welch could not be paired (unequal seeds): unpaired interval, no test.\n\n"
        md += "| configuration | n | Δ | 95 % interval | p (paired t) | sign-flip | Holm | |\n|---|---|---|---|---|---|---|---|\n"
        for (i, r) in rows.enumerated() {
            if let p = r.paired {
                let (lo, hi) = r.bootstrap ?? (p.low, p.high)
                md += "| \(r.label) (\(r.what)) | \(r.n) | \(String(format: "%+.4f", p.meanDifference)) | [\(String(format: "%+.4f", lo)), \(String(format: "%+.4f", hi))] | "
                md += "\(PairedStats.formatP(p.pValue)) | \(r.signFlip.map(PairedStats.formatP) ?? "–") | \(PairedStats.formatP(holm[i].adjusted)) | \(holm[i].survives ? "✱" : "") |\n"
            } else if let w = r.welch {
                md += "| \(r.label) (\(r.what)) | \(r.n) | \(String(format: "%+.4f", w.difference)) | [\(String(format: "%+.4f", w.low)), \(String(format: "%+.4f", w.high))] Welch | – | – | – | |\n"
            } else {
                md += "| \(r.label) (\(r.what)) | \(r.n) | – | – | – | – | – | |\n"
            }
        }
        let survived = rows.indices.filter { holm[$0].survives }.map { "\(rows[$0].label) (\(rows[$0].what))" }
        md += "\nSurvive Holm's correction: \(survived.isEmpty ? "none" : survived.joined(separator: "; ")).\n"
        return md
    }

    /// Validation loss under each evaluation routing, the mismatch's cost (argmax − train,
    /// paired within each run) and the routings' agreement per MoE layer.
    static func routingTable(order: [[String: String]], groups: [[String: String]: [Run]]) -> String {
        func has(_ v: Double?) -> Bool { v.map { !$0.isNaN } ?? false }
        guard order.contains(where: { groups[$0]!.contains { has($0.valLossArgmax) && has($0.valLossTrain) } }) else { return "" }
        let all = order.flatMap { groups[$0]! }
        let useTest = all.allSatisfy { has($0.testLossArgmax) && has($0.testLossTrain) }
        let ka: KeyPath<Run, Double?> = useTest ? \Run.testLossArgmax : \Run.valLossArgmax
        let kt: KeyPath<Run, Double?> = useTest ? \Run.testLossTrain : \Run.valLossTrain
        let layers = all.map(\.agreement.count).max() ?? 0
        var md = "\n## Evaluation routing (\(useTest ? "test" : "validation") split)\n\n"
        md += "Loss with the MoE layers routed by argmax (causal, as generation) and as in training (for the Sinkhorn routers: "
        md += "balanced over each evaluated batch; not causal), mean ± sd over seeds; cost = argmax − train, paired within "
        md += "each run, with its 95 % t interval over the seeds; agreement: share of the training routing's choices the "
        md += "argmax makes too, per MoE layer (mean over seeds).\n\n"
        md += "| configuration | n | loss (argmax) | loss (train) | cost of the mismatch | 95 % interval |"
        md += (0..<layers).map { " agreement L\($0 + 1) |" }.joined() + "\n|---|---|---|---|---|---|" + (0..<layers).map { _ in "---|" }.joined() + "\n"
        for c in order {
            let rs = groups[c]!.filter { has($0[keyPath: ka]) && has($0[keyPath: kt]) }
            guard !rs.isEmpty else { continue }
            let a = rs.map { $0[keyPath: ka]! }, t = rs.map { $0[keyPath: kt]! }
            let cost = PairedStats.pairedT(t, a)
            md += "| \(label(c)) | \(rs.count) | \(SeedStats.format(SeedStats.summarize(a))) | \(SeedStats.format(SeedStats.summarize(t))) | "
            md += cost.map { String(format: "%+.4f | [%+.4f, %+.4f] |", $0.meanDifference, $0.low, $0.high) }
                ?? String(format: "%+.4f | – |", zip(a, t).map { $0 - $1 }.reduce(0, +) / Double(rs.count))
            for l in 0..<layers {
                let v = rs.compactMap { $0.agreement.count > l ? $0.agreement[l] : nil }
                md += " \(v.isEmpty ? "–" : String(format: "%.3f", v.reduce(0, +) / Double(v.count))) |"
            }
            md += "\n"
        }
        return md
    }

    /// What every table above rests on: runs, seeds, the statistics, the compute.
    static func footer(_ runs: [Run]) -> String {
        let cpu = runs.compactMap(\.cpuSeconds).reduce(0, +)
        var md = "\nRuns: \(runs.count)"
        if cpu > 0 { md += String(format: "; training steps took %.2f CPU-hours (core-seconds of the steps ÷ 3600; evaluation not counted)", cpu / 3600) }
        return md + ".\n\n"
    }
}
