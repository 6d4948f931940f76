import XCTest
@testable import BMCore

final class RandomTests: XCTestCase {
    func testSameSeedSameBits() {
        var a = RNG(seed: 42), b = RNG(seed: 42), c = RNG(seed: 43)
        let xa = (0..<1000).map { _ in a.normal() }, xb = (0..<1000).map { _ in b.normal() }
        XCTAssertEqual(xa.map(\.bitPattern), xb.map(\.bitPattern))
        XCTAssertNotEqual(xa, (0..<1000).map { _ in c.normal() })
    }

    func testKnownFirstValues() {
        // Pinned so that a change of generator (which would silently change every
        // experiment's data and initialisation) is noticed: xoshiro256** seeded by four
        // splitmix64 outputs of 0, the values of the algorithms' reference definitions
        // (computed independently of this code, with Python integers).
        var r = RNG(seed: 0)
        XCTAssertEqual((0..<3).map { _ in r.next() }, [0x99EC_5F36_CB75_F2B4, 0xBF6E_1F78_4956_452A, 0x1A5F_849D_4933_E6E0])
        XCTAssertEqual(RNG(state: RNG(seed: 5).stateArray).stateArray, RNG(seed: 5).stateArray)
    }

    func testDistributions() {
        var r = RNG(seed: 9)
        let n = 200_000
        var s = 0.0, s2 = 0.0, below = [Int](repeating: 0, count: 10)
        for _ in 0..<n { let x = Double(r.normal()); s += x; s2 += x * x; below[r.below(10)] += 1 }
        XCTAssertEqual(s / Double(n), 0, accuracy: 0.01)
        XCTAssertEqual(s2 / Double(n), 1, accuracy: 0.02)
        for c in below { XCTAssertEqual(Double(c) / Double(n), 0.1, accuracy: 0.005) }
        for _ in 0..<10000 { let u = r.uniformFloat(); XCTAssertTrue(u >= 0 && u < 1) }
    }

    func testNearestName() {
        XCTAssertEqual(nearest("sinkhorn-fst", in: ["sinkhorn", "sinkhorn-fast", "topk"]), "sinkhorn-fast")
        XCTAssertNil(nearest("zzzzzzzz", in: ["mamba", "attention"]))
    }
}
