import Foundation

/// Statistics over seeds, for reports: a configuration's runs that differ only in
/// `train.seed` give a mean, a sample standard deviation and n; two configurations
/// differ by more than seed noise when Welch's t interval for the difference of their
/// means excludes zero.
public enum SeedStats {
    public struct Summary: Sendable, Equatable {
        public var n: Int
        public var mean: Double
        /// Sample standard deviation (n − 1); NaN for one run.
        public var sd: Double
    }

    /// NaN values (a run with no evaluation) are left out.
    public static func summarize(_ values: [Double]) -> Summary {
        let xs = values.filter { !$0.isNaN }
        let n = xs.count
        guard n > 0 else { return Summary(n: 0, mean: .nan, sd: .nan) }
        let mean = xs.reduce(0, +) / Double(n)
        let sd = n > 1 ? (xs.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(n - 1)).squareRoot() : .nan
        return Summary(n: n, mean: mean, sd: sd)
    }

    /// mean(b) − mean(a) with its Welch interval.
    public struct Difference: Sendable {
        public var difference: Double
        public var low: Double, high: Double
        public var df: Double
        public var level: Double
        public var excludesZero: Bool { low > 0 || high < 0 }
    }

    /// Welch's t interval for mean(b) − mean(a) (unequal variances; degrees of freedom
    /// by Welch–Satterthwaite). Nil unless both have at least two values.
    public static func welch(_ a: [Double], _ b: [Double], level: Double = 0.95) -> Difference? {
        let x = summarize(a), y = summarize(b)
        guard x.n >= 2, y.n >= 2 else { return nil }
        let va = x.sd * x.sd / Double(x.n), vb = y.sd * y.sd / Double(y.n)
        let se = (va + vb).squareRoot()
        let d = y.mean - x.mean
        guard se > 0 else { return Difference(difference: d, low: d, high: d, df: .infinity, level: level) }
        let df = (va + vb) * (va + vb) / (va * va / Double(x.n - 1) + vb * vb / Double(y.n - 1))
        let t = tQuantile((1 + level) / 2, df: df)
        return Difference(difference: d, low: d - t * se, high: d + t * se, df: df, level: level)
    }

    /// The p-quantile of Student's t with `df` (possibly fractional) degrees of freedom.
    public static func tQuantile(_ p: Double, df: Double) -> Double {
        precondition(p > 0 && p < 1 && df > 0)
        if p < 0.5 { return -tQuantile(1 - p, df: df) }
        // CDF(t) = 1 − I_{df/(df+t²)}(df/2, 1/2) / 2; bisect on t ≥ 0
        func cdf(_ t: Double) -> Double { 1 - 0.5 * regularizedBeta(df / (df + t * t), df / 2, 0.5) }
        var lo = 0.0, hi = 1.0
        while cdf(hi) < p { hi *= 2 }
        for _ in 0..<200 {
            let mid = (lo + hi) / 2
            if cdf(mid) < p { lo = mid } else { hi = mid }
            if hi - lo < 1e-12 * max(1, hi) { break }
        }
        return (lo + hi) / 2
    }

    /// I_x(a, b), the regularized incomplete beta function (continued fraction, as in
    /// Numerical Recipes §6.4).
    static func regularizedBeta(_ x: Double, _ a: Double, _ b: Double) -> Double {
        if x <= 0 { return 0 }
        if x >= 1 { return 1 }
        let lnBeta: Double = lgamma(a + b) - lgamma(a) - lgamma(b)
        let lnPowers: Double = a * Foundation.log(x) + b * Foundation.log(1 - x)
        let lnFront = lnBeta + lnPowers
        if x < (a + 1) / (a + b + 2) { return exp(lnFront) * betaFraction(x, a, b) / a }
        return 1 - exp(lnFront) * betaFraction(1 - x, b, a) / b
    }

    private static func betaFraction(_ x: Double, _ a: Double, _ b: Double) -> Double {
        let tiny = 1e-300
        var c = 1.0, d = 1 - (a + b) * x / (a + 1)
        if abs(d) < tiny { d = tiny }
        d = 1 / d
        var h = d
        for m in 1...300 {
            let m = Double(m), m2 = 2 * m
            var aa = m * (b - m) * x / ((a + m2 - 1) * (a + m2))
            d = 1 + aa * d; if abs(d) < tiny { d = tiny }
            c = 1 + aa / c; if abs(c) < tiny { c = tiny }
            d = 1 / d; h *= d * c
            aa = -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1))
            d = 1 + aa * d; if abs(d) < tiny { d = tiny }
            c = 1 + aa / c; if abs(c) < tiny { c = tiny }
            d = 1 / d
            let del = d * c
            h *= del
            if abs(del - 1) < 1e-15 { break }
        }
        return h
    }

    /// "2.351 ± 0.012" (one run: "2.351").
    public static func format(_ s: Summary, _ digits: Int = 4) -> String {
        guard s.n > 0 else { return "–" }
        let m = String(format: "%.\(digits)f", s.mean)
        return s.n > 1 ? m + " ± " + String(format: "%.\(digits)f", s.sd) : m
    }
}
