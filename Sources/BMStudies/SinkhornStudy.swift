import Foundation
import BMCore
import BMRouting
import BMStorage
import BMPlot

/// `bmlab sinkhorn`: how the two Sinkhorn variants converge, over a grid of
/// tokens T, experts E and logit scale σ (Gaussian logits, seeded) — and on real
/// router logits when given. For each case and variant: iterations, final row
/// and column marginal errors, agreement of the chosen experts (argmax of P)
/// with a fully converged reference (Double precision, marginal error ≤ 1e-10),
/// and the wall time per call.
public struct SinkhornStudy {
    /// A routing rule studied: Sinkhorn with a configuration, or (config nil) the
    /// argmax of the logits with no balancing at all, what evaluation routes by.
    public struct Variant: Sendable {
        public var name: String; public var config: SinkhornConfig?
        public init(name: String, config: SinkhornConfig?) { self.name = name; self.config = config }
    }
    /// A variant from its command-line form: `argmax`, or a Sinkhorn router's name
    /// with options as `key=value` words, e.g. "sinkhorn-fast tol_mode=marginal-relative
    /// tol=0.01" (the options and their checks are the router's, `bmlab list`).
    public static func variant(_ text: String) throws -> Variant {
        let words = text.split(separator: " ").map(String.init)
        guard let name = words.first else { throw BMError.invalid("--variant: empty; give argmax, sinkhorn or sinkhorn-fast [key=value …]") }
        if name == "argmax" {
            guard words.count == 1 else { throw BMError.invalid("--variant '\(text)': argmax takes no options") }
            return Variant(name: text, config: nil)
        }
        let sinkhorns = ["sinkhorn", "sinkhorn-fast"]
        guard sinkhorns.contains(name) else {
            throw BMError.invalid("--variant '\(text)': '\(name)' is not a Sinkhorn router\(didYouMean(name, in: sinkhorns + ["argmax"])); the study runs argmax, sinkhorn or sinkhorn-fast")
        }
        var table: [String: OptionValue] = ["name": .string(name)]
        for w in words.dropFirst() {
            let kv = w.split(separator: "=", maxSplits: 1).map(String.init)
            guard kv.count == 2, !kv[0].isEmpty else { throw BMError.invalid("--variant '\(text)': '\(w)' is not key=value") }
            guard kv[0] != "name" else { throw BMError.invalid("--variant '\(text)': the router is the first word, not an option") }
            if let i = Int(kv[1]) { table[kv[0]] = .int(i) }
            else if let d = Double(kv[1]) { table[kv[0]] = .double(d) }
            else { table[kv[0]] = .string(kv[1]) }
        }
        guard case .table(var resolved) = try RouterRegistry.resolve(.table(table), context: "--variant '\(text)'") else {
            throw BMError.invalid("--variant '\(text)': not a router table")
        }
        resolved["name"] = nil
        return Variant(name: text, config: SinkhornRouter.config(ResolvedOptions(resolved)))
    }

    public var tokens = [1024, 4096]
    public var experts = [8, 16]
    public var sigmas = [0.25, 0.5, 1.0, 2.0, 4.0]
    public var seeds = 2
    public var variants: [Variant] = [Variant(name: "sinkhorn", config: .vanilla), Variant(name: "sinkhorn-fast", config: .fast)]
    public init() {}

    /// Real router logits [T, E]: one MoE layer of one checkpoint.
    public struct Case: Sendable {
        public var source: String                 // where the logits came from (a file, a run)
        public var config: String                 // the run's configuration (its sweep values but the seed)
        public var seed: Int, step: Int, layer: Int
        public var values: [Float]
        public var T: Int, E: Int
        public init(source: String, config: String, seed: Int, step: Int, layer: Int, values: [Float], T: Int, E: Int) {
            self.source = source; self.config = config; self.seed = seed; self.step = step; self.layer = layer
            self.values = values; self.T = T; self.E = E
        }
    }

    public struct Row: Sendable {
        public var source: String, variant: String
        public var config = "", step = -1, layer = -1      // real logits only
        public var T: Int, E: Int, sigma: Double, seed: Int
        public var iterations: Int, converged: Bool
        public var rowError: Double, colError: Double      // NaN for the argmax variant (no plan)
        public var agreement: Double           // fraction of tokens whose expert matches the converged reference
        public var agreementT1 = Double.nan    // … the converged reference at temperature 1 (vanilla's target)
        public var maxLoad = Double.nan        // tokens of the busiest expert ÷ (T / E), from the chosen experts
        public var seconds: Double             // median wall time per call
        public init(source: String, variant: String, T: Int, E: Int, sigma: Double, seed: Int, iterations: Int, converged: Bool,
                    rowError: Double, colError: Double, agreement: Double, seconds: Double) {
            self.source = source; self.variant = variant; self.T = T; self.E = E; self.sigma = sigma; self.seed = seed
            self.iterations = iterations; self.converged = converged; self.rowError = rowError; self.colError = colError
            self.agreement = agreement; self.seconds = seconds
        }
    }

    /// Runs the grid (and the real `cases`) and returns one row per (case, variant).
    /// A variant's agreement is measured against Sinkhorn run to convergence at the
    /// variant's own temperature (what it approximates; the argmax variant's: 1), and
    /// against the converged plan at temperature 1 (vanilla Sinkhorn's target).
    public func run(cases: [Case] = [], progress: ((String) -> Void)? = nil) -> [Row] {
        var rows: [Row] = []
        let sk = Sinkhorn()
        func study(_ source: String, _ lg: [Float], T: Int, E: Int, sigma: Double, seed: Int, real: Case? = nil) {
            // the converged reference at temperature 1 and at each variant's (nil: none, agreement NaN)
            let temperatures = Set([1.0] + variants.map { $0.config?.temperature ?? 1 })
            let refs = Dictionary(uniqueKeysWithValues: temperatures.map { ($0, SinkhornStudy.convergedArgmax(lg, T: T, E: E, temperature: $0)) })
            var P = [Float](repeating: 0, count: T * E)
            for v in variants {
                let ref = refs[v.config?.temperature ?? 1]!, ref1 = refs[1]!
                var res = SinkhornResult()
                var times: [Double] = []
                for _ in 0..<3 {
                    let t0 = ContinuousClock.now
                    if let c = v.config {
                        res = P.withUnsafeMutableBufferPointer { sk.run(lg, T: T, E: E, config: c, P: $0.baseAddress!) }
                    } else {
                        P = lg
                        res = SinkhornResult(); res.iterations = 0; res.rowError = .nan; res.colError = .nan
                    }
                    times.append((ContinuousClock.now - t0).seconds)
                }
                var agree = 0, agree1 = 0
                var load = [Int](repeating: 0, count: E)
                for t in 0..<T {
                    var best = 0
                    for e in 1..<E where P[t * E + e] > P[t * E + best] { best = e }
                    if best == ref?[t] { agree += 1 }
                    if best == ref1?[t] { agree1 += 1 }
                    load[best] += 1
                }
                var row = Row(source: source, variant: v.name, T: T, E: E, sigma: sigma, seed: seed,
                              iterations: res.iterations, converged: res.converged, rowError: res.rowError,
                              colError: res.colError, agreement: ref == nil ? .nan : Double(agree) / Double(T),
                              seconds: times.sorted()[1])
                row.maxLoad = Double(load.max()!) * Double(E) / Double(T)
                row.agreementT1 = ref1 == nil ? .nan : Double(agree1) / Double(T)
                if let c = real { row.config = c.config; row.step = c.step; row.layer = c.layer }
                rows.append(row)
            }
        }
        for T in tokens {
            for E in experts {
                for sigma in sigmas {
                    for seed in 0..<seeds {
                        var rng = RNG(seed: UInt64(seed) &* 7919 &+ UInt64(T * 31 + E))
                        let lg = (0..<T * E).map { _ in rng.normal() * Float(sigma) }
                        study("gaussian", lg, T: T, E: E, sigma: sigma, seed: seed)
                    }
                    progress?("T=\(T) E=\(E) sigma=\(sigma)")
                }
            }
        }
        for (i, c) in cases.enumerated() {
            // σ of real logits: their standard deviation over tokens and experts, the scale to
            // compare with the Gaussian grid's
            let n = Double(c.values.count), mean = c.values.reduce(0.0) { $0 + Double($1) } / n
            let sd = (c.values.reduce(0.0) { $0 + (Double($1) - mean) * (Double($1) - mean) } / n).squareRoot()
            study(c.source, c.values, T: c.T, E: c.E, sigma: sd, seed: c.seed, real: c)
            progress?("real logits \(i + 1)/\(cases.count)")
        }
        return rows
    }

    /// argmax per token of the Sinkhorn solution of K = exp(logits / temperature) run
    /// to convergence in Double precision (max relative marginal error ≤ 1e-10, both
    /// rows and columns).
    /// nil when it cannot be computed (a column with no mass left in Double precision).
    public static func convergedArgmax(_ lg: [Float], T: Int, E: Int, temperature: Double = 1) -> [Int]? {
        // each row shifted by its own maximum: the plan is unchanged by scaling a row,
        // and every row keeps an entry of 1 whatever the temperature
        var K = [Double](repeating: 0, count: T * E)
        for i in 0..<T {
            var mx = -Double.infinity
            for j in 0..<E { mx = max(mx, Double(lg[i * E + j])) }
            for j in 0..<E { K[i * E + j] = Foundation.exp((Double(lg[i * E + j]) - mx) / temperature) }
        }
        var r = [Double](repeating: 1, count: T), c = [Double](repeating: 1, count: E)
        for _ in 0..<100_000 {
            for i in 0..<T { var s = 0.0; for j in 0..<E { s += K[i * E + j] * c[j] }; r[i] = 1 / (Double(T) * s) }
            var cs = [Double](repeating: 0, count: E)
            for i in 0..<T { for j in 0..<E { cs[j] += K[i * E + j] * r[i] } }
            for j in 0..<E { c[j] = 1 / (Double(E) * cs[j]) }
            var worst = 0.0
            for i in 0..<T { var s = 0.0; for j in 0..<E { s += K[i * E + j] * c[j] }; worst = max(worst, abs(Double(T) * r[i] * s - 1)) }
            if worst <= 1e-10 { break }
        }
        guard c.allSatisfy(\.isFinite), r.allSatisfy(\.isFinite) else { return nil }
        return (0..<T).map { i in
            var best = 0
            for j in 1..<E where K[i * E + j] * c[j] > K[i * E + best] * c[best] { best = j }
            return best
        }
    }

    // MARK: output

    /// One line per (source, configuration, variant, T, E, σ, step), each value the
    /// mean over its seeds (and, for real logits, over the MoE layers): n says how many.
    /// The σ of real logits is their standard deviation (mean over the cases).
    public static func table(_ rows: [Row]) -> String {
        func pad(_ x: String, _ n: Int) -> String { x.count >= n ? x : x + String(repeating: " ", count: n - x.count) }
        func lpad(_ x: String, _ n: Int) -> String { x.count >= n ? x : String(repeating: " ", count: n - x.count) + x }
        func sci(_ x: Double) -> String { x.isNaN ? "-" : String(format: "%.2e", x) }
        let real = rows.contains { $0.step >= 0 }
        let srcWidth = max(10, (rows.map(\.source.count).max() ?? 0) + 2)
        let cfgWidth = real ? max(8, (rows.map(\.config.count).max() ?? 0) + 2) : 0
        let varWidth = max(15, (rows.map(\.variant.count).max() ?? 0) + 2)
        var s = pad("source", srcWidth) + (real ? pad("config", cfgWidth) + lpad("step", 6) + " " : "") + pad("variant", varWidth)
            + lpad("T", 6) + lpad("E", 5) + lpad("sigma", 7) + lpad("n", 4) + lpad("iters", 8)
            + lpad("row_err", 11) + lpad("col_err", 11) + lpad("agree", 10) + lpad("agree@1", 10) + lpad("max load", 10) + lpad("ms/call", 10) + "\n"
        var groups: [String: [Row]] = [:]
        var order: [String] = []
        for r in rows {
            let key = "\(r.source)|\(r.config)|\(r.step)|\(r.variant)|\(r.T)|\(r.E)|\(r.step >= 0 ? "" : "\(r.sigma)")"
            if groups[key] == nil { order.append(key) }
            groups[key, default: []].append(r)
        }
        for key in order {
            let g = groups[key]!, r = g[0]
            func mean(_ f: (Row) -> Double) -> Double { g.map(f).reduce(0, +) / Double(g.count) }
            s += pad(r.source, srcWidth) + (real ? pad(r.config, cfgWidth) + lpad(r.step >= 0 ? "\(r.step)" : "-", 6) + " " : "")
                + pad(r.variant, varWidth) + lpad("\(r.T)", 6) + lpad("\(r.E)", 5)
                + lpad(r.sigma.isNaN ? "-" : String(format: "%.2f", mean(\.sigma)), 7) + lpad("\(g.count)", 4)
                + lpad(String(format: "%.1f", mean { Double($0.iterations) }), 8)
                + lpad(sci(mean(\.rowError)), 11) + lpad(sci(mean(\.colError)), 11)
                + lpad(String(format: "%.2f%%", mean(\.agreement) * 100), 10) + lpad(String(format: "%.2f%%", mean(\.agreementT1) * 100), 10)
                + lpad(String(format: "%.2f", mean(\.maxLoad)), 10)
                + lpad(String(format: "%.3f", mean(\.seconds) * 1e3), 10)
                + (g.allSatisfy(\.converged) ? "" : "  (hit max_iter)") + "\n"
        }
        return s
    }

    /// Writes DIR/sinkhorn.h5 (one column per quantity, rows = (case, variant, seed)).
    public static func writeHDF5(_ rows: [Row], to path: String, attributes: [String: String]) throws {
        try H5File.createAtomically(path) { f in
            for k in attributes.keys.sorted() { try f.setAttribute(k, attributes[k]!) }
            try f.setAttribute("reference", "Sinkhorn of exp(logits / the variant's temperature) in Double precision to max relative marginal error 1e-10 (the argmax variant: temperature 1)")
            try f.setAttribute("variant_names", rows.map(\.variant))
            try f.setAttribute("source_names", rows.map(\.source))
            try f.setAttribute("config_names", rows.map(\.config))
            try f.write("T", ints: rows.map { Int64($0.T) }, shape: [rows.count])
            try f.write("E", ints: rows.map { Int64($0.E) }, shape: [rows.count])
            try f.write("sigma", doubles: rows.map(\.sigma), shape: [rows.count])
            try f.write("seed", ints: rows.map { Int64($0.seed) }, shape: [rows.count])
            try f.write("step", ints: rows.map { Int64($0.step) }, shape: [rows.count])
            try f.write("layer", ints: rows.map { Int64($0.layer) }, shape: [rows.count])
            try f.write("iterations", ints: rows.map { Int64($0.iterations) }, shape: [rows.count])
            try f.write("converged", ints: rows.map { $0.converged ? 1 : 0 }, shape: [rows.count])
            try f.write("row_error", doubles: rows.map(\.rowError), shape: [rows.count])
            try f.write("col_error", doubles: rows.map(\.colError), shape: [rows.count])
            try f.write("argmax_agreement", doubles: rows.map(\.agreement), shape: [rows.count])
            try f.write("argmax_agreement_t1", doubles: rows.map(\.agreementT1), shape: [rows.count])
            try f.write("max_load", doubles: rows.map(\.maxLoad), shape: [rows.count])
            try f.write("seconds_per_call", doubles: rows.map(\.seconds), shape: [rows.count])
        }
    }

    /// Reads back what `writeHDF5` wrote (files from before `step`, `layer`,
    /// `max_load` and `config_names` read as synthetic rows without a load).
    public static func readHDF5(_ path: String) throws -> [Row] {
        let f = try H5File(path: path, mode: .readOnly)
        defer { f.close() }
        let variants = try f.stringArrayAttribute("variant_names"), sources = try f.stringArrayAttribute("source_names")
        let n = variants.count
        let configs = f.hasAttribute("config_names") ? try f.stringArrayAttribute("config_names") : [String](repeating: "", count: n)
        let T = try f.dataset("T").readInt64s(), E = try f.dataset("E").readInt64s(), seed = try f.dataset("seed").readInt64s()
        let sigma = try f.dataset("sigma").readDoubles(), it = try f.dataset("iterations").readInt64s()
        let conv = try f.dataset("converged").readInt64s(), re = try f.dataset("row_error").readDoubles()
        let ce = try f.dataset("col_error").readDoubles(), ag = try f.dataset("argmax_agreement").readDoubles()
        let sec = try f.dataset("seconds_per_call").readDoubles()
        let step = f.exists("step") ? try f.dataset("step").readInt64s() : [Int64](repeating: -1, count: n)
        let layer = f.exists("layer") ? try f.dataset("layer").readInt64s() : [Int64](repeating: -1, count: n)
        let load = f.exists("max_load") ? try f.dataset("max_load").readDoubles() : [Double](repeating: .nan, count: n)
        let ag1 = f.exists("argmax_agreement_t1") ? try f.dataset("argmax_agreement_t1").readDoubles() : [Double](repeating: .nan, count: n)
        let lengths: [Int] = [sources.count, configs.count, T.count, E.count, seed.count, sigma.count, it.count, conv.count, re.count, ce.count,
                       ag.count, sec.count, step.count, layer.count, load.count, ag1.count]
        guard lengths.allSatisfy({ $0 == n }) else {
            throw BMError.invalid("\(path): the study's columns have different lengths (\(Set(lengths).sorted()); \(n) variant names); it is not a file bmlab sinkhorn wrote")
        }
        return (0..<n).map { i in
            var r = Row(source: sources[i], variant: variants[i], T: Int(T[i]), E: Int(E[i]), sigma: sigma[i], seed: Int(seed[i]),
                        iterations: Int(it[i]), converged: conv[i] != 0, rowError: re[i], colError: ce[i], agreement: ag[i], seconds: sec[i])
            r.config = configs[i]; r.step = Int(step[i]); r.layer = Int(layer[i]); r.maxLoad = load[i]; r.agreementT1 = ag1[i]
            return r
        }
    }

    /// The study's figures: the Gaussian grid (when there is one) and one figure
    /// of the real logits per run configuration.
    public static func figures(_ rows: [Row]) -> [Figure] {
        var out: [Figure] = []
        if rows.contains(where: { $0.source == "gaussian" }) { out.append(figure(rows)) }
        var configs: [String] = []
        for r in rows where r.step >= 0 && !configs.contains(r.config) { configs.append(r.config) }
        for c in configs { out.append(realFigure(rows.filter { $0.step >= 0 && $0.config == c }, config: c)) }
        return out
    }

    /// Iterations, the row-marginal error, argmax agreement and the busiest expert's
    /// load against σ: one line per variant and (T, E) setting, each point the mean
    /// over the seeds (said in the title).
    public static func figure(_ rows: [Row]) -> Figure {
        let gauss = rows.filter { $0.source == "gaussian" }
        var keys: [(String, Int, Int)] = []
        for r in gauss where !keys.contains(where: { $0 == (r.variant, r.T, r.E) }) { keys.append((r.variant, r.T, r.E)) }
        let seeds = Set(gauss.map(\.seed)).count
        func series(_ value: (Row) -> Double) -> [Series] {
            keys.compactMap { (v, T, E) in
                let rs = gauss.filter { $0.variant == v && $0.T == T && $0.E == E }
                var sigmas: [Double] = []
                for r in rs where !sigmas.contains(r.sigma) { sigmas.append(r.sigma) }
                let pts = sigmas.sorted().map { s in
                    let g = rs.filter { $0.sigma == s }
                    return (s, g.map(value).reduce(0, +) / Double(g.count))
                }.filter { $0.1.isFinite }
                return pts.isEmpty ? nil : Series("\(v) T=\(T) E=\(E)", pts)
            }
        }
        return Figure(name: "sinkhorn_convergence",
                      title: "Sinkhorn convergence, Gaussian logits: every (T, E) setting, each point the mean of \(seeds) seed\(seeds == 1 ? "" : "s")",
                      panels: [
            Panel(title: "iterations to tolerance", xlabel: "logit scale sigma", ylabel: "iterations", logX: true, logY: true,
                  key: "below", series: series { $0.iterations > 0 ? Double($0.iterations) : .nan }),
            Panel(title: "row-marginal error after routing", xlabel: "logit scale sigma", ylabel: "max relative row error", logX: true, logY: true,
                  key: "below", series: series { max($0.rowError, 1e-12) }),
            Panel(title: "argmax agreement with converged Sinkhorn", xlabel: "logit scale sigma", ylabel: "agreement (%)", logX: true,
                  key: "below", series: series { $0.agreement * 100 }),
            Panel(title: "busiest expert's load", xlabel: "logit scale sigma", ylabel: "tokens / (T/E)", logX: true,
                  key: "below", series: series { $0.maxLoad }),
        ], height: 400 + 18 * keys.count)
    }

    /// Real router logits of one run configuration against the training step: one
    /// line per variant, each point the mean over seeds and MoE layers.
    public static func realFigure(_ rows: [Row], config: String) -> Figure {
        var variants: [String] = []
        for r in rows where !variants.contains(r.variant) { variants.append(r.variant) }
        let n = rows.filter { $0.variant == rows.first?.variant && $0.step == rows.first?.step }.count
        func series(_ value: (Row) -> Double) -> [Series] {
            variants.compactMap { v in
                let rs = rows.filter { $0.variant == v }
                let steps = Array(Set(rs.map(\.step))).sorted()
                let pts = steps.map { st in
                    let g = rs.filter { $0.step == st }
                    return (Double(st), g.map(value).reduce(0, +) / Double(g.count))
                }.filter { $0.1.isFinite }
                return pts.isEmpty ? nil : Series(v, pts)
            }
        }
        let slug = config.map { $0.isLetter || $0.isNumber || $0 == "-" ? $0 : "_" }
        return Figure(name: "sinkhorn_real_" + String(slug),
                      title: "Sinkhorn on real router logits of \(config) runs, each point the mean of \(n) (seed, layer) cases",
                      panels: [
            Panel(title: "iterations to tolerance", xlabel: "training step", ylabel: "iterations", logY: true, key: "below",
                  series: series { $0.iterations > 0 ? Double($0.iterations) : .nan }),
            Panel(title: "row-marginal error after routing", xlabel: "training step", ylabel: "max relative row error", logY: true,
                  key: "below", series: series { max($0.rowError, 1e-12) }),
            Panel(title: "argmax agreement with converged Sinkhorn", xlabel: "training step", ylabel: "agreement (%)",
                  key: "below", series: series { $0.agreement * 100 }),
            Panel(title: "busiest expert's load", xlabel: "training step", ylabel: "tokens / (T/E)",
                  key: "below", series: series { $0.maxLoad }),
        ], height: 400 + 18 * variants.count)
    }
}
