import XCTest
@testable import BMCore
@testable import BMLayers
@testable import BMRouting
@testable import BMMixers

/// `Mixer.activationFloats` (the memory check before a run adds them up) against the
/// buffers each registered mixer really holds after a training forward + backward:
/// every FloatBuffer and IntBuffer reachable from the mixer, found by reflection.
final class ActivationEstimateTests: XCTestCase {
    override func setUp() { XCTAssertNoThrow(try BLAS.setup()) }

    /// Floats (and Int32s) held by the buffers reachable from `root` (each object once).
    func heldElements(_ root: Any) -> Int {
        var seen = Set<ObjectIdentifier>()
        func walk(_ x: Any, depth: Int) -> Int {
            if let f = x as? FloatBuffer { return seen.insert(ObjectIdentifier(f)).inserted ? f.capacity : 0 }
            if let i = x as? IntBuffer { return seen.insert(ObjectIdentifier(i)).inserted ? i.capacity : 0 }
            guard depth < 6 else { return 0 }
            let m = Mirror(reflecting: x)
            if m.displayStyle == .class {
                let o = x as AnyObject
                guard seen.insert(ObjectIdentifier(o)).inserted else { return 0 }
                if o is ParameterSet || o is ParameterSlab { return 0 }
            }
            var n = 0
            var mm: Mirror? = m
            while let cur = mm { for c in cur.children { n += walk(c.value, depth: depth + 1) }; mm = cur.superclassMirror }
            return n
        }
        return walk(root, depth: 0)
    }

    func testEstimatesCoverWhatEveryMixerAllocates() throws {
        let B = 3, L = 20, D = 8
        for e in MixerRegistry.entries {
            for v in e.variants {
                let (m, ps) = try buildMixer(e.name, v, width: D)
                (m as? MoE)?.freezeRouting = false
                var rng = RNG(seed: 5)
                let x = FloatBuffer(count: B * L * D), y = FloatBuffer(count: B * L * D)
                let dy = FloatBuffer(count: B * L * D), dx = FloatBuffer(count: B * L * D)
                rng.fillNormal(x.pointer, B * L * D, std: 1)
                rng.fillNormal(dy.pointer, B * L * D, std: 1)
                ps.zeroGrad()
                m.forward(x.pointer, y.pointer, B: B, L: L, pass: trainPass)
                m.backward(dy.pointer, dx.pointer, B: B, L: L, pass: trainPass)
                let held = heldElements(m)
                let estimate = m.activationFloats(B: B, L: L)
                // Upper bound, and not wildly above: within 1.5× plus a few hundred
                // elements of fixed tables (A, conv weights transposed, RoPE).
                XCTAssertGreaterThanOrEqual(Double(estimate) + 512, Double(held), "\(e.name) \(v): estimate \(estimate) < held \(held)")
                XCTAssertLessThanOrEqual(Double(estimate), 1.5 * Double(held) + 512, "\(e.name) \(v): estimate \(estimate) ≫ held \(held)")
            }
        }
    }
}
