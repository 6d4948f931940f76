import XCTest
@testable import BMCore
@testable import BMLayers
@testable import BMMixers

/// A sequence's scan split over channel blocks (what a batch smaller than the number
/// of workers gets, e.g. one long sequence): the forward is bitwise the unsplit one
/// (channels are independent); the backward differs only in the order the shared B, C
/// gradients are summed; gradients hold.
final class ScanChannelSplitTests: XCTestCase {
    override func setUp() { XCTAssertNoThrow(try BLAS.setup()) }
    override func tearDown() { SSMBlock.channelSplit = nil }

    /// out, then dx and every parameter gradient, for one sequence (width 20: E = 40,
    /// three blocks of 16 channels, the last one partial).
    func run(_ name: String, split: Int) throws -> (forward: [Float], backward: [Float]) {
        SSMBlock.channelSplit = split
        let (m, ps) = try buildMixer(name, [:], width: 20)
        randomizeParameters(ps, seed: 5)
        let B = 1, L = 37, D = 20, n = B * L * D
        var rng = RNG(seed: 31)
        let x = (0..<n).map { _ in rng.normal() }, dy = (0..<n).map { _ in rng.normal() }
        var y = [Float](repeating: 0, count: n), dx = y
        ps.zeroGrad()
        x.withUnsafeBufferPointer { xb in                      // x lives until backward, which reads it
            y.withUnsafeMutableBufferPointer { m.forward(xb.baseAddress!, $0.baseAddress!, B: B, L: L, pass: trainPass) }
            dy.withUnsafeBufferPointer { db in dx.withUnsafeMutableBufferPointer { m.backward(db.baseAddress!, $0.baseAddress!, B: B, L: L, pass: trainPass) } }
        }
        return (y, dx + m.parameters.flatMap { Array(UnsafeBufferPointer(start: $0.g, count: $0.count)) })
    }

    func testSplitGivesTheUnsplitResult() throws {
        for name in ["mamba", "s4d"] {
            let one = try run(name, split: 1)
            for split in [2, 3] {
                let got = try run(name, split: split)
                XCTAssertEqual(got.forward, one.forward, "\(name) split \(split): forward")
                let scale = one.backward.map { abs($0) }.max()!
                let worst = zip(one.backward, got.backward).map { abs($0 - $1) }.max()! / scale
                XCTAssertLessThan(worst, 1e-5, "\(name) split \(split): backward")
            }
        }
    }

    func testGradientsWithTheSplit() throws {
        SSMBlock.channelSplit = 3
        for name in ["mamba", "s4d"] {
            let (m, ps) = try buildMixer(name, [:], width: 20)
            randomizeParameters(ps, seed: 9)
            var checker = GradientChecker()
            checker.maxCoordinates = 20
            let report = checker.check(layer: m, set: ps, B: 1, L: 7, inputScale: 1)
            XCTAssertTrue(report.passed, "\(name): \(report)")
        }
    }

    /// With the automatic choice, a batch of one on this machine's workers is split
    /// (when there is more than one worker), a full batch is not.
    func testAutomaticSplit() throws {
        let (m, _) = try buildMixer("mamba", [:], width: 64)       // E 128: 8 blocks
        let block = try XCTUnwrap(m as? SSMBlock)
        XCTAssertEqual(block.channelParts(B: Parallel.workers), 1)
        XCTAssertEqual(block.channelParts(B: 1), min(8, Parallel.workers))
        let ranges = (0..<3).compactMap { block.channelRange(part: $0, of: 3) }
        XCTAssertEqual(ranges.map(\.count).reduce(0, +), 128)
        XCTAssertTrue(ranges.allSatisfy { $0.lowerBound % 16 == 0 })
    }
}
