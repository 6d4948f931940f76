import XCTest
@testable import BMReports

/// Seed aggregation on made-up runs with known answers.
final class SeedStatsTests: XCTestCase {
    /// Configuration labels keep keys short but tell apart keys that share a last part.
    func testLabelsShortenKeysUnambiguously() {
        XCTAssertEqual(RunSet.label("model.pattern=mamba+moe,train.seed=1"), "pattern=mamba+moe seed=1")
        XCTAssertEqual(SeedTables.label(["model.defaults.mlp.ffn": "256", "model.defaults.moe.ffn": "389", "model.pattern": "mamba+moe"]),
                       "mlp.ffn=256 moe.ffn=389 pattern=mamba+moe")
        XCTAssertEqual(RunSet.label("a.x.k=1,b.x.k=2,c.k=3"), "a.x.k=1 b.x.k=2 c.k=3")
        XCTAssertEqual(RunSet.label("plain"), "plain")
        XCTAssertEqual(SeedTables.label([:]), "all runs")
        // legends: only the axes that tell configurations apart (zip partners dropped)
        let zipped: [[String: String]] = [["model.defaults.mlp.ffn": "256", "model.pattern": "mamba+moe"],
                                          ["model.defaults.mlp.ffn": "256", "model.pattern": "mamba+mlp"],
                                          ["model.defaults.mlp.ffn": "389", "model.pattern": "attention+mlp"]]
        XCTAssertEqual(SeedBands.distinguishingKeys(zipped), ["model.pattern"])
        XCTAssertEqual(SeedBands.groups(zipped.enumerated().map { ($0.element, [$0.offset]) }).map(\.label),
                       ["pattern=mamba+moe (n=1)", "pattern=mamba+mlp (n=1)", "pattern=attention+mlp (n=1)"])
        let grid: [[String: String]] = [["a": "1", "b": "x"], ["a": "1", "b": "y"], ["a": "2", "b": "x"], ["a": "2", "b": "y"]]
        XCTAssertEqual(SeedBands.distinguishingKeys(grid), ["a", "b"])        // a real grid keeps both axes
        XCTAssertEqual(SeedBands.groups([([:], [0, 1])]).map(\.label), ["all runs (n=2)"])
    }

    func testSummary() {
        let s = SeedStats.summarize([1, 2, 3])
        XCTAssertEqual(s.n, 3)
        XCTAssertEqual(s.mean, 2)
        XCTAssertEqual(s.sd, 1, accuracy: 1e-15)
        let t = SeedStats.summarize([2.5, .nan])                 // a run without an evaluation is left out
        XCTAssertEqual(t.n, 1); XCTAssertEqual(t.mean, 2.5); XCTAssertTrue(t.sd.isNaN)
        XCTAssertEqual(SeedStats.format(s, 2), "2.00 ± 1.00")
        XCTAssertEqual(SeedStats.format(t, 2), "2.50")
    }

    /// Student's t quantiles: the 97.5 % points of the usual table, and fractional
    /// degrees of freedom against a numerical integration of the density (Simpson).
    func testTQuantiles() {
        for (df, want) in [(1.0, 12.7062), (2, 4.3027), (3, 3.1824), (5, 2.5706), (10, 2.2281), (30, 2.0423), (1e7, 1.9600)] {
            XCTAssertEqual(SeedStats.tQuantile(0.975, df: df), want, accuracy: 1e-4, "df \(df)")
        }
        for (df, want) in [(50.0 / 17, 3.218759), (2.5, 3.574655), (7.3, 2.345067)] {
            XCTAssertEqual(SeedStats.tQuantile(0.975, df: df), want, accuracy: 1e-5, "df \(df)")
        }
        XCTAssertEqual(SeedStats.tQuantile(0.025, df: 4), -SeedStats.tQuantile(0.975, df: 4))
        XCTAssertEqual(SeedStats.tQuantile(0.95, df: 4), 2.1318, accuracy: 1e-4)
    }

    /// Welch: a = [1, 2, 3], b = [2, 4, 6]: difference 2, variance of the difference
    /// 1/3 + 4/3 = 5/3, df = (5/3)² / ((1/3)²/2 + (4/3)²/2) = 50/17; half-width
    /// t(0.975, 50/17) · √(5/3) = 3.218759 · 1.290994 = 4.155398.
    func testWelchInterval() throws {
        let d = try XCTUnwrap(SeedStats.welch([1, 2, 3], [2, 4, 6]))
        XCTAssertEqual(d.difference, 2)
        XCTAssertEqual(d.df, 50.0 / 17, accuracy: 1e-12)
        XCTAssertEqual(d.low, 2 - 4.155398, accuracy: 1e-5)
        XCTAssertEqual(d.high, 2 + 4.155398, accuracy: 1e-5)
        XCTAssertFalse(d.excludesZero)                             // 3 seeds cannot tell these apart
        let clear = try XCTUnwrap(SeedStats.welch([1.00, 1.01, 0.99], [1.20, 1.21, 1.19]))
        XCTAssertTrue(clear.excludesZero)
        XCTAssertNil(SeedStats.welch([1], [2, 3]))                   // one seed: no interval
    }
}
