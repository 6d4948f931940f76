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
    public struct Variant: Sendable { public var name: String; public var config: SinkhornConfig }
    public var tokens = [1024, 4096]
    public var experts = [8, 16]
    public var sigmas = [0.25, 0.5, 1.0, 2.0, 4.0]
    public var seeds = 2
    public var variants: [Variant] = [Variant(name: "sinkhorn", config: .vanilla), Variant(name: "sinkhorn-fast", config: .fast)]
    public init() {}

    public struct Row: Sendable {
        public var source: String, variant: String
        public var T: Int, E: Int, sigma: Double, seed: Int
        public var iterations: Int, converged: Bool
        public var rowError: Double, colError: Double
        public var agreement: Double           // fraction of tokens whose expert matches the converged reference
        public var seconds: Double             // median wall time per call
        public init(source: String, variant: String, T: Int, E: Int, sigma: Double, seed: Int, iterations: Int, converged: Bool,
                    rowError: Double, colError: Double, agreement: Double, seconds: Double) {
            self.source = source; self.variant = variant; self.T = T; self.E = E; self.sigma = sigma; self.seed = seed
            self.iterations = iterations; self.converged = converged; self.rowError = rowError; self.colError = colError
            self.agreement = agreement; self.seconds = seconds
        }
    }

    /// Runs the grid (and `logits` cases) and returns one row per (case, variant).
    public func run(logits extra: [(name: String, values: [Float], T: Int, E: Int)] = [],
                    progress: ((String) -> Void)? = nil) -> [Row] {
        var rows: [Row] = []
        let sk = Sinkhorn()
        func study(_ source: String, _ lg: [Float], T: Int, E: Int, sigma: Double, seed: Int) {
            let ref = SinkhornStudy.convergedArgmax(lg, T: T, E: E)
            for v in variants {
                var P = [Float](repeating: 0, count: T * E)
                var res = SinkhornResult()
                var times: [Double] = []
                for _ in 0..<3 {
                    let t0 = ContinuousClock.now
                    res = P.withUnsafeMutableBufferPointer { sk.run(lg, T: T, E: E, config: v.config, P: $0.baseAddress!) }
                    times.append((ContinuousClock.now - t0).seconds)
                }
                var agree = 0
                for t in 0..<T {
                    var best = 0
                    for e in 1..<E where P[t * E + e] > P[t * E + best] { best = e }
                    if best == ref[t] { agree += 1 }
                }
                rows.append(Row(source: source, variant: v.name, T: T, E: E, sigma: sigma, seed: seed,
                                iterations: res.iterations, converged: res.converged, rowError: res.rowError,
                                colError: res.colError, agreement: Double(agree) / Double(T),
                                seconds: times.sorted()[1]))
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
        for x in extra { study(x.name, x.values, T: x.T, E: x.E, sigma: .nan, seed: 0) }
        return rows
    }

    /// argmax per token of the Sinkhorn solution run to convergence in Double
    /// precision (max relative marginal error ≤ 1e-10, both rows and columns).
    public static func convergedArgmax(_ lg: [Float], T: Int, E: Int) -> [Int] {
        var mx = -Double.infinity
        for v in lg { mx = max(mx, Double(v)) }
        let K = lg.map { Foundation.exp(Double($0) - mx) }
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
        return (0..<T).map { i in
            var best = 0
            for j in 1..<E where K[i * E + j] * c[j] > K[i * E + best] * c[best] { best = j }
            return best
        }
    }

    // MARK: output

    public static func table(_ rows: [Row]) -> String {
        func pad(_ x: String, _ n: Int) -> String { x.count >= n ? x : x + String(repeating: " ", count: n - x.count) }
        func lpad(_ x: String, _ n: Int) -> String { x.count >= n ? x : String(repeating: " ", count: n - x.count) + x }
        var s = pad("source", 10) + pad("variant", 15) + lpad("T", 6) + lpad("E", 5) + lpad("sigma", 7) + lpad("iters", 7)
            + lpad("row_err", 11) + lpad("col_err", 11) + lpad("agree", 10) + lpad("ms/call", 10) + "\n"
        // mean over seeds
        var groups: [String: [Row]] = [:]
        var order: [String] = []
        for r in rows {
            let key = "\(r.source)|\(r.variant)|\(r.T)|\(r.E)|\(r.sigma)"
            if groups[key] == nil { order.append(key) }
            groups[key, default: []].append(r)
        }
        for key in order {
            let g = groups[key]!, r = g[0]
            let n = Double(g.count)
            let it = g.map { Double($0.iterations) }.reduce(0, +) / n
            let re = g.map(\.rowError).reduce(0, +) / n, ce = g.map(\.colError).reduce(0, +) / n
            let ag = g.map(\.agreement).reduce(0, +) / n, ms = g.map(\.seconds).reduce(0, +) / n * 1e3
            s += pad(r.source, 10) + pad(r.variant, 15) + lpad("\(r.T)", 6) + lpad("\(r.E)", 5)
                + lpad(r.sigma.isNaN ? "-" : String(format: "%.2f", r.sigma), 7) + lpad(String(format: "%.1f", it), 7)
                + lpad(String(format: "%.2e", re), 11) + lpad(String(format: "%.2e", ce), 11)
                + lpad(String(format: "%.2f%%", ag * 100), 10) + lpad(String(format: "%.3f", ms), 10)
                + (g.allSatisfy(\.converged) ? "" : "  (hit max_iter)") + "\n"
        }
        return s
    }

    /// Writes DIR/sinkhorn.h5 (one extendible column per quantity, rows = (case, variant, seed)).
    public static func writeHDF5(_ rows: [Row], to path: String, attributes: [String: String]) throws {
        try AtomicFile.write(to: path) { tmp in
            let f = try H5File(path: tmp, mode: .create)
            defer { f.close() }
            for k in attributes.keys.sorted() { try f.setAttribute(k, attributes[k]!) }
            try f.setAttribute("reference", "Double-precision Sinkhorn to max relative marginal error 1e-10")
            try f.setAttribute("variant_names", rows.map(\.variant))
            try f.setAttribute("source_names", rows.map(\.source))
            try f.write("T", ints: rows.map { Int64($0.T) }, shape: [rows.count])
            try f.write("E", ints: rows.map { Int64($0.E) }, shape: [rows.count])
            try f.write("sigma", doubles: rows.map(\.sigma), shape: [rows.count])
            try f.write("seed", ints: rows.map { Int64($0.seed) }, shape: [rows.count])
            try f.write("iterations", ints: rows.map { Int64($0.iterations) }, shape: [rows.count])
            try f.write("converged", ints: rows.map { $0.converged ? 1 : 0 }, shape: [rows.count])
            try f.write("row_error", doubles: rows.map(\.rowError), shape: [rows.count])
            try f.write("col_error", doubles: rows.map(\.colError), shape: [rows.count])
            try f.write("argmax_agreement", doubles: rows.map(\.agreement), shape: [rows.count])
            try f.write("seconds_per_call", doubles: rows.map(\.seconds), shape: [rows.count])
        }
    }

    /// Iterations, the row-marginal error and argmax agreement against σ: one line per
    /// variant and (T, E) setting, each point the mean over the seeds (said in the title).
    public static func figure(_ rows: [Row]) -> Figure {
        let gauss = rows.filter { $0.source == "gaussian" }
        var keys: [(String, Int, Int)] = []
        for r in gauss where !keys.contains(where: { $0 == (r.variant, r.T, r.E) }) { keys.append((r.variant, r.T, r.E)) }
        let seeds = Set(gauss.map(\.seed)).count
        func series(_ value: (Row) -> Double) -> [Series] {
            keys.map { (v, T, E) in
                let rs = gauss.filter { $0.variant == v && $0.T == T && $0.E == E }
                var sigmas: [Double] = []
                for r in rs where !sigmas.contains(r.sigma) { sigmas.append(r.sigma) }
                return Series("\(v) T=\(T) E=\(E)", sigmas.sorted().map { s in
                    let g = rs.filter { $0.sigma == s }
                    return (s, g.map(value).reduce(0, +) / Double(g.count))
                })
            }
        }
        return Figure(name: "sinkhorn_convergence",
                      title: "Sinkhorn convergence, Gaussian logits: every (T, E) setting, each point the mean of \(seeds) seed\(seeds == 1 ? "" : "s")",
                      panels: [
            Panel(title: "iterations to tolerance", xlabel: "logit scale sigma", ylabel: "iterations", logX: true,
                  series: series { Double($0.iterations) }),
            Panel(title: "row-marginal error after routing", xlabel: "logit scale sigma", ylabel: "max relative row error", logX: true, logY: true,
                  series: series { max($0.rowError, 1e-12) }),
            Panel(title: "argmax agreement with converged Sinkhorn", xlabel: "logit scale sigma", ylabel: "agreement (%)", logX: true,
                  key: "bottom left", series: series { $0.agreement * 100 }),
        ], height: 460)
    }
}
