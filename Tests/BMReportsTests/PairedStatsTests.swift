import XCTest
import Foundation
@testable import BMReports

/// Paired comparisons over seeds, checked against numbers worked out by hand, closed
/// forms and published table values.
final class PairedStatsTests: XCTestCase {
    /// d = b − a = [0.1, 0.3, 0.2, 0.4, 0.1]: mean 0.22, squared deviations sum to 0.068,
    /// sd = √0.017; the p-value is checked against Simpson's rule on the t density with
    /// 4 degrees of freedom, f(x) = 3/8 · (1 + x²/4)^(−5/2).
    func testPairedTAgainstIntegratedDensity() throws {
        let r = try XCTUnwrap(PairedStats.pairedT([1, 2, 3, 4, 5], [1.1, 2.3, 3.2, 4.4, 5.1]))
        XCTAssertEqual(r.n, 5)
        XCTAssertEqual(r.test, "paired t")
        XCTAssertEqual(r.level, 0.95)
        XCTAssertEqual(r.meanDifference, 0.22, accuracy: 1e-12)
        let se = 0.017.squareRoot() / 5.0.squareRoot()
        let t = 0.22 / se                                          // 3.7729…
        XCTAssertEqual(t, 3.7729, accuracy: 1e-4)
        func density(_ x: Double) -> Double { 0.375 * pow(1 + x * x / 4, -2.5) }
        let steps = 2_000, h = t / Double(steps)
        var integral = density(0) + density(t)
        for k in 1..<steps { integral += (k % 2 == 1 ? 4 : 2) * density(Double(k) * h) }
        integral *= h / 3                                          // ∫_0^t f
        let p = 1 - 2 * integral
        XCTAssertEqual(r.pValue, p, accuracy: 1e-9)
        XCTAssertEqual(r.pValue, 0.0196, accuracy: 1e-4)
        let q = SeedStats.tQuantile(0.975, df: 4)
        XCTAssertEqual(q, 2.7764, accuracy: 1e-4)                  // the usual t table
        XCTAssertEqual(r.low, 0.22 - q * se, accuracy: 1e-12)
        XCTAssertEqual(r.high, 0.22 + q * se, accuracy: 1e-12)
        XCTAssertEqual(r.high - r.low, 2 * 2.7764 * se, accuracy: 1e-4)
    }

    /// A pair with a NaN is left out; with df = 1 the t distribution is Cauchy, so
    /// p = 1 − (2/π)·atan(t) in closed form.
    func testPairedTDropsNaNPairsAndEdgeCases() throws {
        let r = try XCTUnwrap(PairedStats.pairedT([1, .nan, 3], [2, 5, 5]))    // d = [1, 2]
        XCTAssertEqual(r.n, 2)
        XCTAssertEqual(r.meanDifference, 1.5)
        XCTAssertEqual(r.pValue, 1 - 2 / Double.pi * atan(3), accuracy: 1e-12)  // t = 1.5 / 0.5 = 3
        XCTAssertEqual(r.high, 1.5 + 12.7062 * 0.5, accuracy: 1e-3)             // t table, df 1
        XCTAssertNil(PairedStats.pairedT([1, 2], [3, .nan]))                    // one pair left
        XCTAssertNil(PairedStats.pairedT([1, 2, 3], [1, 2]))                    // not paired
        let shift = try XCTUnwrap(PairedStats.pairedT([1, 2, 3], [1.5, 2.5, 3.5]))
        XCTAssertEqual(shift.low, 0.5); XCTAssertEqual(shift.high, 0.5); XCTAssertEqual(shift.pValue, 0)
        let same = try XCTUnwrap(PairedStats.pairedT([1, 2, 3], [1, 2, 3]))
        XCTAssertEqual(same.meanDifference, 0); XCTAssertEqual(same.pValue, 1)
    }

    func testSignFlipExact() throws {
        // five seeds all favouring b: only the all-plus and all-minus assignments reach it
        XCTAssertEqual(PairedStats.signFlip([0, 0, 0, 0, 0], [0.3, 0.1, 0.2, 0.5, 0.4]), 2.0 / 32)
        XCTAssertEqual(PairedStats.signFlip([0, 0, 0, 0], [1, -1, 1, -1]), 1.0)
        // d = [3, 1, 1]: sums ±3±1±1 are ±5, ±3, ±3, ±1 → |sum| ≥ 5 in 2 of 8
        XCTAssertEqual(PairedStats.signFlip([0, 0, 0], [3, 1, 1]), 0.25)
        // d = [3, −1, 1]: observed |3| is reached by ±5, ±3, ±3 → 6 of 8
        XCTAssertEqual(PairedStats.signFlip([1, 2, 3], [4, 1, 4]), 0.75)
        XCTAssertEqual(PairedStats.signFlip([0, .nan, 0, 0], [3, 9, 1, 1]), 0.25)  // NaN pair left out
        XCTAssertNil(PairedStats.signFlip([Double](repeating: 0, count: 21), [Double](repeating: 1, count: 21)))
        XCTAssertNil(PairedStats.signFlip([], []))
        // ties lost to rounding still count: in Double some assignments of these tenths
        // fall a last bit short of the observed |0.7|; the same differences ×10 are
        // integers, summed exactly, with 18 of 32 assignments reaching |7|
        XCTAssertEqual(PairedStats.signFlip([0, 0, 0, 0, 0], [1, 2, 3, -6, 7]), 18.0 / 32)
        XCTAssertEqual(PairedStats.signFlip([0, 0, 0, 0, 0], [0.1, 0.2, 0.3, -0.6, 0.7]), 18.0 / 32)
    }

    /// Wilson 95 % intervals: 8/10 is (0.4902, 0.9433) in the textbooks; at 0 successes
    /// the upper end is z²/(n + z²) and the lower end 0, mirrored at n successes.
    func testWilson() {
        let w = PairedStats.wilson(successes: 8, trials: 10)
        XCTAssertEqual(w.low, 0.4902, accuracy: 1e-3)
        XCTAssertEqual(w.high, 0.9433, accuracy: 1e-3)
        let z2 = 1.959963984540054 * 1.959963984540054
        let none = PairedStats.wilson(successes: 0, trials: 10)
        XCTAssertEqual(none.low, 0)
        XCTAssertEqual(none.high, z2 / (10 + z2), accuracy: 1e-12)
        XCTAssertEqual(none.high, 0.2775, accuracy: 1e-4)
        let all = PairedStats.wilson(successes: 10, trials: 10)
        XCTAssertEqual(all.high, 1)
        XCTAssertEqual(all.low, 10 / (10 + z2), accuracy: 1e-12)
        XCTAssertEqual(PairedStats.wilson(successes: 0, trials: 0).low, 0)
        XCTAssertEqual(PairedStats.wilson(successes: 0, trials: 0).high, 1)
    }

    func testNormalQuantile() {
        XCTAssertEqual(PairedStats.normalQuantile(0.975), 1.959963984540054, accuracy: 1e-9)
        XCTAssertEqual(PairedStats.normalQuantile(0.025), -1.959963984540054, accuracy: 1e-9)
        XCTAssertEqual(PairedStats.normalQuantile(0.5), 0)
        XCTAssertEqual(PairedStats.normalQuantile(0.995), 2.5758293035489004, accuracy: 1e-9)
        XCTAssertEqual(PairedStats.normalQuantile(0.8413447460685429), 1, accuracy: 1e-9)  // Φ(1)
        XCTAssertEqual(PairedStats.normalQuantile(0.01), -2.3263478740408408, accuracy: 1e-9)
        // every region of the approximation inverts Φ(x) = erfc(−x/√2)/2
        for p in [1e-12, 1e-6, 0.001, 0.02, 0.03, 0.2, 0.7, 0.97, 0.98, 0.999999] {
            let x = PairedStats.normalQuantile(p)
            XCTAssertEqual(0.5 * erfc(-x / 2.0.squareRoot()), p, accuracy: 1e-12 * max(p, 1e-3), "p \(p)")
        }
    }

    /// Holm on [0.01, 0.04, 0.03, 0.005]: sorted 0.005·4 = 0.02 and 0.01·3 = 0.03 are
    /// rejected, 0.03·2 = 0.06 > 0.05 stops; 0.04·1 stays at the running maximum 0.06.
    func testHolm() {
        let h = PairedStats.holm([0.01, 0.04, 0.03, 0.005], alpha: 0.05)
        XCTAssertEqual(h.map(\.survives), [true, false, false, true])
        for (r, want) in zip(h, [0.03, 0.06, 0.06, 0.02]) { XCTAssertEqual(r.adjusted, want, accuracy: 1e-15) }
        // a NaN is not rejected and not counted: m = 2, so 0.04·1 ≤ 0.05 survives
        // (counting it, m = 3 would give 0.04·2 = 0.08 and reject only the first)
        let n = PairedStats.holm([0.01, .nan, 0.04])
        XCTAssertEqual(n.map(\.survives), [true, false, true])
        XCTAssertEqual(n[0].adjusted, 0.02, accuracy: 1e-15)
        XCTAssertTrue(n[1].adjusted.isNaN)
        XCTAssertEqual(n[2].adjusted, 0.04, accuracy: 1e-15)
        XCTAssertEqual(PairedStats.holm([0.5, 0.9]).map(\.adjusted), [1, 1])       // capped at 1
        XCTAssertEqual(PairedStats.holm([]), [])
    }

    func testBootstrapIntervals() throws {
        // accuracies of single runs are 0 or 1; the percentile interval stays in [0, 1]
        let acc: [Double] = [1, 1, 1, 0, 1, 1, 1, 1, 1, 1]
        let m = try XCTUnwrap(PairedStats.bootstrapMean(acc))
        XCTAssertGreaterThanOrEqual(m.low, 0); XCTAssertLessThanOrEqual(m.high, 1)
        XCTAssertLessThan(m.low, 0.9); XCTAssertEqual(m.high, 1)                   // P(mean = 1) = 0.9¹⁰ ≈ 0.35
        let clamped = try XCTUnwrap(PairedStats.bootstrapMean(acc, range: 0...1))
        XCTAssertEqual(clamped.low, m.low); XCTAssertEqual(clamped.high, m.high)   // the clamp is a no-op here
        let ones = try XCTUnwrap(PairedStats.bootstrapMean([1, 1, 1, .nan]))
        XCTAssertEqual(ones.low, 1); XCTAssertEqual(ones.high, 1)
        XCTAssertNil(PairedStats.bootstrapMean([1, .nan]))

        // paired: the same seed gives the same interval; it holds the mean difference 0.22
        // and lies within the smallest and largest difference
        let a: [Double] = [1, 2, 3, 4, 5], b = [1.1, 2.3, 3.2, 4.4, 5.1]
        let p1 = try XCTUnwrap(PairedStats.pairedBootstrap(a, b, seed: 7))
        let p2 = try XCTUnwrap(PairedStats.pairedBootstrap(a, b, seed: 7))
        XCTAssertEqual(p1.low, p2.low); XCTAssertEqual(p1.high, p2.high)
        XCTAssertLessThan(p1.low, 0.22); XCTAssertGreaterThan(p1.high, 0.22)
        XCTAssertGreaterThanOrEqual(p1.low, 0.1 - 1e-12); XCTAssertLessThanOrEqual(p1.high, 0.4 + 1e-12)
        XCTAssertNil(PairedStats.pairedBootstrap([1], [2]))

        // the generator is SplitMix64: its published first output for seed 0
        var g = PairedStats.SplitMix64(state: 0)
        XCTAssertEqual(g.next(), 0xE220_A839_7B1D_CDAF)
    }

    func testFormatP() {
        XCTAssertEqual(PairedStats.formatP(0.0625), "0.0625")
        XCTAssertEqual(PairedStats.formatP(0.21), "0.21")
        XCTAssertEqual(PairedStats.formatP(0.123456), "0.123")
        XCTAssertEqual(PairedStats.formatP(0.001), "0.001")
        XCTAssertEqual(PairedStats.formatP(0.000999), "< 0.001")
        XCTAssertEqual(PairedStats.formatP(1), "1")
    }
}
