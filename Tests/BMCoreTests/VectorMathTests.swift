import XCTest
import Foundation
@testable import BMCore

/// Accuracy of the vectorised functions against Double references over the
/// ranges they are used on (see the error table in VectorMath.swift).
final class VectorMathTests: XCTestCase {
    /// Dense grid plus seeded random points in [lo, hi].
    func points(_ lo: Float, _ hi: Float, _ n: Int = 200_000) -> [Float] {
        var rng = RNG(seed: 1)
        var p = (0..<n).map { lo + (hi - lo) * Float($0) / Float(n - 1) }
        for _ in 0..<n { p.append(rng.uniform(lo, hi)) }
        return p
    }

    func maxRelative(_ x: [Float], _ f: (UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int) -> Void,
                     _ ref: (Double) -> Double, floor: Double = 0) -> (Double, Float) {
        var out = [Float](repeating: 0, count: x.count)
        x.withUnsafeBufferPointer { xb in out.withUnsafeMutableBufferPointer { f(xb.baseAddress!, $0.baseAddress!, x.count) } }
        var worst = 0.0, at: Float = 0
        for i in 0..<x.count {
            let r = ref(Double(x[i]))
            let e = abs(Double(out[i]) - r) / max(abs(r), floor)
            if e > worst { worst = e; at = x[i] }
        }
        return (worst, at)
    }

    func testExpRelativeErrorBelow1e6() {
        // Range used: scan decays exp(δA) ∈ (-∞, 0], softmax/sinkhorn shifted logits, sigmoid.
        let (err, at) = maxRelative(points(-87, 88), { vexp($0, $1, count: $2) }, { Foundation.exp($0) })
        XCTAssertLessThan(err, 1e-6, "worst at x = \(at)")
        XCTAssertLessThan(err, 3e-7, "stated bound 2e-7 (+ margin): worst at x = \(at)")
    }

    func testExpExtremes() {
        XCTAssertEqual(fexp(0), 1)
        XCTAssertLessThan(fexp(-200), 1.2e-38)      // clamped to the smallest normal, no NaN
        XCTAssertGreaterThan(fexp(-200), 0)
        XCTAssertTrue(fexp(100).isFinite)
        XCTAssertEqual(Double(fexp(1)), M_E, accuracy: 1e-6)
    }

    func testLog1pAndSoftplus() {
        let (e1, a1) = maxRelative(points(0, 1), { vlog1p($0, $1, count: $2) }, { Foundation.log1p($0) }, floor: 1e-30)
        XCTAssertLessThan(e1, 1e-6, "log1p worst at \(a1)")
        let sp: (Double) -> Double = { $0 > 20 ? $0 : Foundation.log1p(Foundation.exp($0)) }
        let (e2, a2) = maxRelative(points(-30, 40), { vsoftplus($0, $1, count: $2) }, sp, floor: 1e-30)
        XCTAssertLessThan(e2, 1e-6, "softplus worst at \(a2)")
        XCTAssertEqual(fsoftplus(25), 25)           // PyTorch threshold
    }

    func testSigmoidAndSilu() {
        let sig: (Double) -> Double = { 1 / (1 + Foundation.exp(-$0)) }
        let (e1, a1) = maxRelative(points(-40, 40), { vsigmoid($0, $1, count: $2) }, sig, floor: 1)
        XCTAssertLessThan(e1, 1e-6, "sigmoid absolute error, worst at \(a1)")
        let (e2, a2) = maxRelative(points(-40, 40), { vsilu($0, $1, count: $2) }, { $0 * sig($0) }, floor: 1)
        XCTAssertLessThan(e2, 1e-6, "silu error (relative, absolute below 1), worst at \(a2)")
    }

    func testTailsShorterThanAVector() {
        let x: [Float] = [0.5, -1, 2]
        var out = [Float](repeating: 9, count: 3)
        x.withUnsafeBufferPointer { xb in out.withUnsafeMutableBufferPointer { vexp(xb.baseAddress!, $0.baseAddress!, count: 3) } }
        for i in 0..<3 { XCTAssertEqual(Double(out[i]), Foundation.exp(Double(x[i])), accuracy: 1e-6 * Foundation.exp(Double(x[i]))) }
    }
}
