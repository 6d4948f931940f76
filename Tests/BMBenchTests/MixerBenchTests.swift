import XCTest
@testable import BMCore
@testable import BMRouting
@testable import BMBench

/// `bmlab bench moe --router R` runs for every registered router (the hash router
/// reads token ids, which a benchmark batch must supply), at a small size.
final class MixerBenchTests: XCTestCase {
    override func setUp() { XCTAssertNoThrow(try BLAS.setup()) }

    func testMoEBenchRunsForEveryRouter() throws {
        for r in RouterRegistry.names {
            // (no assertion on the speed: it is a benchmark's to measure, and tokens over a
            // positive time is positive whatever the code does)
            let (fig, _) = try MixerBench.moe(router: r, width: 16, experts: 4, ffn: 16, B: 2, L: 8, warmup: 0, steps: 1)
            XCTAssertTrue(fig.phases.contains { $0.name.contains("router") }, r)
        }
    }

    /// `--mixers mamba2:scan=recurrent:chunk=128`: the plugin's name and typed options;
    /// a malformed pair is a clear error naming it.
    func testMixerWithOptions() throws {
        let m = try MixerBench.parseMixer("mamba2:scan=recurrent:chunk=128:dt_max=0.2")
        XCTAssertEqual(m.name, "mamba2")
        XCTAssertEqual(m.options["scan"], .string("recurrent"))
        XCTAssertEqual(m.options["chunk"], .int(128))
        XCTAssertEqual(m.options["dt_max"], .double(0.2))
        XCTAssertEqual(try MixerBench.parseMixer("mamba").options, [:])
        XCTAssertThrowsError(try MixerBench.parseMixer("mamba2:chunk")) { XCTAssertTrue("\($0)".contains("'chunk' is not key=value"), "\($0)") }
        XCTAssertThrowsError(try MixerBench.parseMixer(":chunk=3"))
        // the options reach the plugin: a chunk of 0 is refused by mamba2's own check
        XCTAssertThrowsError(try MixerBench.train("mamba2", width: 16, B: 1, L: 4, warmup: 0, steps: 1, options: ["chunk": .int(0)]))
    }
}
