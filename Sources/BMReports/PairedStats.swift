import Foundation

/// Comparisons of experimental conditions over seeds. Two configurations run with the
/// same seeds (seed s of A and seed s of B use the same data order) are compared pair
/// by pair: the differences b − a remove the part of the seed noise both share. The unit
/// of replication, and the unit every bootstrap here resamples, is the seed (one run),
/// never the evaluation batch or the example inside a run.
public enum PairedStats {
    /// mean(b − a) over paired runs with its interval and two-sided p-value.
    public struct Paired: Sendable {
        public var n: Int
        public var meanDifference: Double
        public var low: Double, high: Double
        public var pValue: Double
        public var level: Double
        /// The test that gave `pValue` ("paired t").
        public var test: String
    }

    public struct HolmResult: Sendable, Equatable {
        /// Holm-adjusted p-value (NaN for a NaN input).
        public var adjusted: Double
        /// Rejected at the family-wise level alpha.
        public var survives: Bool
    }

    /// b[i] − a[i], leaving out pairs where either run has no value (NaN). Nil when the
    /// two lists differ in length: runs are paired by index, so they must line up.
    static func differences(_ a: [Double], _ b: [Double]) -> [Double]? {
        guard a.count == b.count else { return nil }
        return zip(a, b).filter { !$0.0.isNaN && !$0.1.isNaN }.map { $0.1 - $0.0 }
    }

    /// Student's paired t test (Student 1908): the differences d = b − a of runs paired
    /// by seed, t = mean(d) / (sd(d)/√n) with n − 1 degrees of freedom; the interval is
    /// mean(d) ± t_{(1+level)/2, n−1}·sd(d)/√n and the p-value is two-sided,
    /// p = I_{df/(df+t²)}(df/2, 1/2). Nil with fewer than two complete pairs. When every
    /// difference is the same the interval is that point and p is 0 (nonzero mean) or 1.
    public static func pairedT(_ a: [Double], _ b: [Double], level: Double = 0.95) -> Paired? {
        guard let d = differences(a, b), d.count >= 2 else { return nil }
        let s = SeedStats.summarize(d)
        let n = Double(s.n), df = n - 1
        let se = s.sd / n.squareRoot()
        guard se > 0, !d.allSatisfy({ $0 == d[0] }) else {
            return Paired(n: s.n, meanDifference: s.mean, low: s.mean, high: s.mean,
                          pValue: s.mean != 0 ? 0 : 1, level: level, test: "paired t")
        }
        let t = s.mean / se
        let p = SeedStats.regularizedBeta(df / (df + t * t), df / 2, 0.5)
        let q = SeedStats.tQuantile((1 + level) / 2, df: df)
        return Paired(n: s.n, meanDifference: s.mean, low: s.mean - q * se, high: s.mean + q * se,
                      pValue: min(1, p), level: level, test: "paired t")
    }

    /// Exact two-sided sign-flip (randomization) test of the paired differences (Fisher's
    /// randomization argument): under "no difference" each d = b − a is as likely to have
    /// either sign, so all 2^n sign assignments are enumerated and p is the share whose
    /// |mean| reaches the observed one (less 1e-12 × mean |d|, so ties lost to rounding
    /// still count). No normality is assumed, but with n seeds p can not go below 2/2^n:
    /// n = 5 gives at least 0.0625, so five seeds can never reach p < 0.05.
    /// Nil with no complete pair or more than 20 pairs (the enumeration is exact only).
    public static func signFlip(_ a: [Double], _ b: [Double]) -> Double? {
        guard let d = differences(a, b), !d.isEmpty, d.count <= 20 else { return nil }
        let n = d.count
        let observed = abs(d.reduce(0, +))
        let tolerance = 1e-12 * d.reduce(0) { $0 + abs($1) }
        var hits = 0
        for mask in 0..<(1 << n) {
            var sum = 0.0
            for i in 0..<n { sum += (mask >> i) & 1 == 1 ? -d[i] : d[i] }
            if abs(sum) >= observed - tolerance { hits += 1 }
        }
        return Double(hits) / Double(1 << n)
    }

    /// Paired bootstrap (Koehn 2004, "Statistical significance tests for machine
    /// translation evaluation"): the seeds are resampled with replacement, each drawn seed
    /// bringing both its runs, and the percentile interval (Efron & Tibshirani 1993,
    /// "An Introduction to the Bootstrap") of the mean difference b − a is returned.
    /// Reproducible: the draws come from SplitMix64 started at `seed`. Nil with fewer
    /// than two complete pairs.
    public static func pairedBootstrap(_ a: [Double], _ b: [Double], level: Double = 0.95,
                                       resamples: Int = 10_000, seed: UInt64 = 1) -> (low: Double, high: Double)? {
        guard let d = differences(a, b), d.count >= 2 else { return nil }
        return percentileInterval(d, level: level, resamples: resamples, seed: seed)
    }

    /// Percentile bootstrap interval (Efron & Tibshirani 1993) of the mean over seeds:
    /// the runs (one value per seed, NaN left out) are resampled with replacement.
    /// Every endpoint is an interpolation between two resampled means, and each such mean
    /// lies within the range of the values, so accuracies in [0, 1] give an interval in
    /// [0, 1] by construction; `range`, when given, clamps the ends anyway, which for the
    /// percentile method only guards against last-bit rounding and is otherwise a no-op.
    /// Nil with fewer than two values.
    public static func bootstrapMean(_ x: [Double], level: Double = 0.95, resamples: Int = 10_000, seed: UInt64 = 1,
                                     range: ClosedRange<Double>? = nil) -> (low: Double, high: Double)? {
        let xs = x.filter { !$0.isNaN }
        guard xs.count >= 2 else { return nil }
        var (low, high) = percentileInterval(xs, level: level, resamples: resamples, seed: seed)
        if let r = range {
            low = min(max(low, r.lowerBound), r.upperBound)
            high = min(max(high, r.lowerBound), r.upperBound)
        }
        return (low, high)
    }

    /// The (1 ∓ level)/2 quantiles (linear interpolation between order statistics) of
    /// `resamples` means of `xs` drawn with replacement.
    static func percentileInterval(_ xs: [Double], level: Double, resamples: Int, seed: UInt64) -> (low: Double, high: Double) {
        precondition(level > 0 && level < 1 && resamples > 0)
        var rng = SplitMix64(state: seed)
        let n = xs.count
        var means = [Double](repeating: 0, count: resamples)
        for r in 0..<resamples {
            var sum = 0.0
            for _ in 0..<n { sum += xs[rng.index(below: n)] }
            means[r] = sum / Double(n)
        }
        means.sort()
        func quantile(_ q: Double) -> Double {
            let h = q * Double(resamples - 1), i = Int(h.rounded(.down))
            guard i + 1 < resamples else { return means[resamples - 1] }
            return means[i] + (h - Double(i)) * (means[i + 1] - means[i])
        }
        return (quantile((1 - level) / 2), quantile((1 + level) / 2))
    }

    /// Wilson's score interval for a proportion (Wilson 1927, "Probable inference, the law
    /// of succession, and statistical inference", J. Amer. Statist. Assoc. 22:209–212):
    /// it stays inside [0, 1] and does not collapse at 0 or n successes. The ends are
    /// exactly 0 for no success and exactly 1 when every trial succeeds; no trials give
    /// the uninformative [0, 1].
    public static func wilson(successes: Int, trials: Int, level: Double = 0.95) -> (low: Double, high: Double) {
        precondition(successes >= 0 && successes <= trials && level > 0 && level < 1)
        guard trials > 0 else { return (0, 1) }
        let n = Double(trials), p = Double(successes) / n
        let z = normalQuantile((1 + level) / 2), z2 = z * z
        let denominator = 1 + z2 / n
        let center = (p + z2 / (2 * n)) / denominator
        let half = z / denominator * (p * (1 - p) / n + z2 / (4 * n * n)).squareRoot()
        return (successes == 0 ? 0 : max(0, center - half), successes == trials ? 1 : min(1, center + half))
    }

    /// The p-quantile of the standard normal distribution: Acklam's rational
    /// approximation (relative error below 1.15e-9), refined by one Halley step on
    /// Φ(x) = erfc(−x/√2)/2, which brings it to the precision of Double.
    public static func normalQuantile(_ p: Double) -> Double {
        precondition(p > 0 && p < 1)
        let a = [-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02,
                 1.383577518672690e+02, -3.066479806614716e+01, 2.506628277459239e+00]
        let b = [-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
                 6.680131188771972e+01, -1.328068155288572e+01]
        let c = [-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
                 -2.549732539343734e+00, 4.374664141464968e+00, 2.938163982698783e+00]
        let d = [7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00, 3.754408661907416e+00]
        func tail(_ q: Double) -> Double {
            (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5])
                / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1)
        }
        var x: Double
        if p < 0.02425 {
            x = tail((-2 * Foundation.log(p)).squareRoot())
        } else if p > 1 - 0.02425 {
            x = -tail((-2 * Foundation.log(1 - p)).squareRoot())
        } else {
            let q = p - 0.5, r = q * q
            x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q
                / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)
        }
        let e = 0.5 * erfc(-x / 2.0.squareRoot()) - p
        let u = e * (2 * Double.pi).squareRoot() * exp(x * x / 2)
        x -= u / (1 + x * u / 2)
        return x
    }

    /// Holm's step-down correction for m tests (Holm 1979, "A simple sequentially
    /// rejective multiple test procedure", Scand. J. Statist. 6:65–70): with the p-values
    /// sorted ascending, H(i) is rejected while p(i) ≤ α/(m − i + 1), stopping at the first
    /// that is not. The adjusted p-value is max over j ≤ i of min(1, (m − j + 1)·p(j)).
    /// Results are in input order. A NaN p-value (a comparison that could not be made) is
    /// not rejected, gets a NaN adjusted value and does not count in m.
    public static func holm(_ pValues: [Double], alpha: Double = 0.05) -> [HolmResult] {
        var results = pValues.map { _ in HolmResult(adjusted: .nan, survives: false) }
        let order = pValues.indices.filter { !pValues[$0].isNaN }.sorted { (pValues[$0], $0) < (pValues[$1], $1) }
        let m = order.count
        var running = 0.0, rejecting = true
        for (i, index) in order.enumerated() {
            let p = pValues[index]
            running = max(running, min(1, Double(m - i) * p))
            rejecting = rejecting && p <= alpha / Double(m - i)
            results[index] = HolmResult(adjusted: running, survives: rejecting)
        }
        return results
    }

    /// "< 0.001" below 0.001, otherwise three significant digits ("0.0625", "0.21").
    public static func formatP(_ p: Double) -> String {
        if p.isNaN { return "–" }
        return p < 0.001 ? "< 0.001" : String(format: "%.3g", p)
    }

    /// SplitMix64 (Steele, Lea & Flood 2014): a small generator whose stream depends on
    /// the seed only, so bootstrap intervals are the same on every machine.
    struct SplitMix64 {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        /// Uniform in 0..<n by the high word of a 64×64-bit product (bias below n/2^64).
        mutating func index(below n: Int) -> Int { Int(next().multipliedFullWidth(by: UInt64(n)).high) }
    }
}
