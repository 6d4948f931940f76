import XCTest
import BMTestSupport
import Foundation
@testable import BMCore
@testable import BMRouting
@testable import BMStorage
@testable import BMPlot
@testable import BMStudies

final class SinkhornStudyTests: XCTestCase {
    func tempDir() throws -> String {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("bmlab-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: d) }
        return d
    }

    func smallStudy() -> SinkhornStudy {
        var s = SinkhornStudy()
        s.tokens = [512]; s.experts = [8]; s.sigmas = [0.5, 2]; s.seeds = 1
        return s
    }

    func testStudyFindsTheDocumentedBehaviour() {
        let rows = smallStudy().run()
        XCTAssertEqual(rows.count, 4)
        for r in rows where r.variant == "sinkhorn-fast" {
            XCTAssertEqual(r.iterations, 1)
            XCTAssertLessThan(r.colError, 1e-4)          // columns balanced exactly
        }
        for r in rows where r.variant == "sinkhorn" {
            XCTAssertGreaterThan(r.iterations, 1)
            XCTAssertEqual(r.agreement, 1.0, accuracy: 0.005)   // converged to 1e-4 ⇒ the same argmax almost everywhere
        }
        let fastHigh = rows.first { $0.variant == "sinkhorn-fast" && $0.sigma == 2 }!
        XCTAssertLessThan(fastHigh.agreement, 0.99)              // one pass disagrees at large σ
    }

    func testVariantsAreReadAsRouterOptions() throws {
        let v = try SinkhornStudy.variant("sinkhorn-fast tol_mode=marginal-relative tol=0.01")
        XCTAssertEqual(v.name, "sinkhorn-fast tol_mode=marginal-relative tol=0.01")
        XCTAssertEqual(v.config, SinkhornConfig(temperature: 0.5, initialization: .column, tol: 0.01, tolMode: .marginalRelative))
        XCTAssertEqual(try SinkhornStudy.variant("sinkhorn temperature=0.5 init=column").config,
                       SinkhornConfig(temperature: 0.5, initialization: .column))
        XCTAssertEqual(try SinkhornStudy.variant("sinkhorn").config, .vanilla)
        XCTAssertNil(try SinkhornStudy.variant("argmax").config)
        for (bad, says) in [("sinkorn", "did you mean 'sinkhorn'"), ("topk", "not a Sinkhorn router"), ("sinkhorn name=topk", "first word"),
                            ("sinkhorn temprature=0.5", "temperature"), ("sinkhorn tol", "not key=value"),
                            ("sinkhorn init=rows", "ones"), ("argmax tol=1", "no options")] {
            XCTAssertThrowsError(try SinkhornStudy.variant(bad), bad) { XCTAssertTrue("\($0)".contains(says), "\(bad): \($0)") }
        }
    }

    /// argmax (no balancing), Sinkhorn converged at the fast variant's temperature, and
    /// the fast variant: the agreement is against the variant's own temperature, the
    /// load is the busiest expert's share counted from the chosen experts.
    func testArgmaxLoadAndOwnTemperatureReference() throws {
        var s = SinkhornStudy()
        s.tokens = [512]; s.experts = [8]; s.sigmas = [2]; s.seeds = 1
        s.variants = try ["argmax", "sinkhorn temperature=0.5 tol_mode=marginal-relative tol=1e-6 max_iter=100000", "sinkhorn-fast"].map(SinkhornStudy.variant)
        // one real case with a known answer: every token prefers expert 0 by far
        let T = 64, E = 4
        var lg = [Float](repeating: 0, count: T * E)
        for t in 0..<T { lg[t * E] = 5; lg[t * E + 1 + t % 3] = Float(t % 5) * 0.1 }
        let rows = s.run(cases: [.init(source: "real", config: "c", seed: 1, step: 100, layer: 1, values: lg, T: T, E: E)])
        XCTAssertEqual(rows.count, 6)
        let arg = try XCTUnwrap(rows.first { $0.variant == "argmax" && $0.source == "real" })
        XCTAssertEqual(arg.iterations, 0)
        XCTAssertTrue(arg.rowError.isNaN && arg.colError.isNaN)
        XCTAssertEqual(arg.maxLoad, 4.0)                             // all 64 tokens on one of 4 experts: 64 / (64/4)
        XCTAssertEqual(arg.config, "c"); XCTAssertEqual(arg.step, 100); XCTAssertEqual(arg.layer, 1)
        let m = lg.reduce(0.0) { $0 + Double($1) } / Double(lg.count)
        let sd = (lg.reduce(0.0) { $0 + (Double($1) - m) * (Double($1) - m) } / Double(lg.count)).squareRoot()
        XCTAssertEqual(arg.sigma, sd, accuracy: 1e-12)               // a real case's σ: its logits' standard deviation
        let conv = try XCTUnwrap(rows.first { $0.variant.hasPrefix("sinkhorn temperature=0.5") && $0.source == "real" })
        XCTAssertEqual(conv.agreement, 1.0)                          // converged: it is its own reference
        XCTAssertLessThanOrEqual(conv.maxLoad, 1.1)                  // balanced columns: each expert ~T/E
        let gauss = rows.filter { $0.source == "gaussian" }
        let convG = try XCTUnwrap(gauss.first { $0.variant.hasPrefix("sinkhorn temperature=0.5") })
        XCTAssertEqual(convG.agreement, 1.0, accuracy: 0.004)
        for r in rows { XCTAssertGreaterThanOrEqual(r.maxLoad, 1.0); XCTAssertFalse(r.agreementT1.isNaN) }
        for r in rows where r.variant == "argmax" { XCTAssertEqual(r.agreementT1, r.agreement) }   // both against temperature 1
        // the table names the configuration and step of real logits and shows the argmax's missing errors as '-'
        let table = SinkhornStudy.table(rows)
        XCTAssertTrue(table.contains("max load") && table.contains("agree@1"))
        let argLine = try XCTUnwrap(table.split(separator: "\n").first { $0.hasPrefix("real") && $0.contains("argmax") })
        XCTAssertTrue(argLine.contains(" c ") && argLine.contains(" 100 ") && argLine.contains(" - "), String(argLine))
        // figures: the Gaussian grid and one per real configuration
        let figs = SinkhornStudy.figures(rows)
        XCTAssertEqual(figs.map(\.name), ["sinkhorn_convergence", "sinkhorn_real_c"])
        XCTAssertEqual(figs[1].panels[3].series.first { $0.title == "argmax" }?.points.first?.1, 4.0)
        XCTAssertNil(figs[1].panels[1].series.first { $0.title == "argmax" })   // no row error to draw
    }

    /// A tiny temperature or widely spread logits must not turn the reference into zeros:
    /// rows are shifted by their own maximum, and a plan that cannot exist (an expert no
    /// token gives any mass) is reported as no reference, and agreement as NaN.
    func testConvergedReferenceAtExtremeScales() throws {
        let T = 16, E = 4
        var lg = [Float](repeating: 0, count: T * E)
        for t in 0..<T { for e in 0..<E { lg[t * E + e] = Float((t * 7 + e * 3) % 11) * 40 - Float(t) * 30 } }  // rows far apart
        XCTAssertNotNil(SinkhornStudy.convergedArgmax(lg, T: T, E: E, temperature: 1))
        // at temperature 1e-3 every row is one-hot; an expert nobody prefers has no mass
        let oneHot = (0..<T * E).map { i in i % E == 0 ? Float(1) : Float(0) }
        XCTAssertNil(SinkhornStudy.convergedArgmax(oneHot, T: T, E: E, temperature: 1e-3))
        var s = SinkhornStudy()
        s.tokens = []
        s.variants = [try SinkhornStudy.variant("argmax")]
        let rows = s.run(cases: [.init(source: "x", config: "c", seed: 1, step: 0, layer: 1, values: oneHot, T: T, E: E)])
        XCTAssertEqual(rows.count, 1)
        XCTAssertEqual(rows[0].maxLoad, 4.0)
        XCTAssertFalse(rows[0].agreement.isNaN)      // temperature 1: the plan exists
    }

    func testConvergedReferenceBalancesExactly() throws {
        var rng = RNG(seed: 4)
        let T = 64, E = 4
        let lg = (0..<T * E).map { _ in rng.normal() * 3 }
        let ref = try XCTUnwrap(SinkhornStudy.convergedArgmax(lg, T: T, E: E))
        XCTAssertEqual(ref.count, T)
        // A converged Float run with a tight marginal tolerance picks the same experts.
        var P = [Float](repeating: 0, count: T * E)
        _ = P.withUnsafeMutableBufferPointer {
            Sinkhorn().run(lg, T: T, E: E, config: SinkhornConfig(tol: 1e-6, tolMode: .marginalRelative, maxIter: 100_000), P: $0.baseAddress!)
        }
        let arg = (0..<T).map { t in (0..<E).max { P[t * E + $0] < P[t * E + $1] }! }
        XCTAssertEqual(arg, ref)
    }

    func testHDF5AndFigureAreWritten() throws {
        let dir = try tempDir()
        let rows = smallStudy().run()
        let h5 = dir + "/sinkhorn.h5"
        try SinkhornStudy.writeHDF5(rows, to: h5, attributes: ["toolkit_version": BMLab.version])
        let f = try H5File(path: h5, mode: .readOnly)
        XCTAssertEqual(try f.dataset("iterations").readInt64s(), rows.map { Int64($0.iterations) })
        XCTAssertEqual(try f.dataset("argmax_agreement").readDoubles(), rows.map(\.agreement))
        XCTAssertEqual(try f.stringArrayAttribute("variant_names"), rows.map(\.variant))
        f.close()
        let back = try SinkhornStudy.readHDF5(h5)
        XCTAssertEqual(back.map(\.maxLoad), rows.map(\.maxLoad))
        XCTAssertEqual(back.map(\.agreementT1), rows.map(\.agreementT1))
        XCTAssertEqual(back.map(\.step), rows.map(\.step))
        // the figure: every (variant, T, E) setting, the row-marginal error drawn, seeds averaged and said so
        let fig = SinkhornStudy.figure(rows)
        let settings = Set(rows.filter { $0.source == "gaussian" }.map { "\($0.variant) T=\($0.T) E=\($0.E)" })
        XCTAssertEqual(fig.panels.count, 4)
        for p in fig.panels { XCTAssertEqual(Set(p.series.map(\.title)), settings) }
        XCTAssertTrue(fig.panels[1].ylabel.contains("row error"))
        XCTAssertTrue(fig.title.contains("mean of \(Set(rows.map(\.seed)).count) seed"))
        let one = try XCTUnwrap(rows.first { $0.source == "gaussian" })
        let same = rows.filter { $0.source == "gaussian" && $0.variant == one.variant && $0.T == one.T && $0.E == one.E && $0.sigma == one.sigma }
        let point = try XCTUnwrap(fig.panels[1].series.first { $0.title == "\(one.variant) T=\(one.T) E=\(one.E)" }?.points.first { $0.0 == one.sigma })
        XCTAssertEqual(point.1, same.map { max($0.rowError, 1e-12) }.reduce(0, +) / Double(same.count), accuracy: 1e-15)
        try Needs.require(Gnuplot.isAvailable, "gnuplot is not installed")
        let png = try Gnuplot.render(fig, in: dir)
        let bytes = try Data(contentsOf: URL(fileURLWithPath: png))
        XCTAssertGreaterThan(bytes.count, 5000)
        XCTAssertEqual(Array(bytes.prefix(4)), [0x89, 0x50, 0x4E, 0x47])   // PNG signature
        // The saved script regenerates the identical figure.
        try FileManager.default.removeItem(atPath: png)
        try Gnuplot.run(script: "sinkhorn_convergence.gp", in: dir)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: png)), bytes)
    }

    func testGnuplotErrorsAreReported() throws {
        try Needs.require(Gnuplot.isAvailable, "gnuplot is not installed")
        let dir = try tempDir()
        try "plot sin(x) with nonsense\n".write(toFile: dir + "/bad.gp", atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try Gnuplot.run(script: "bad.gp", in: dir)) { e in
            XCTAssertTrue("\(e)".contains("gnuplot failed on"), "\(e)")
            XCTAssertEqual((e as? BMError)?.exitCode, 3)
        }
    }
}
