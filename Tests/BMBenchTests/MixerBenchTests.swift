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
}
