import Foundation
import BMCore

/// A seeded synthetic sequence task for first end-to-end runs: token sequences
/// drawn from a random first-order Markov chain whose every row puts most of its
/// mass on a few successors. The best achievable loss is the chain's entropy
/// rate, which `entropyRate` reports, so a run can be judged against it.
public struct MarkovTask: Sendable {
    public let vocab: Int
    public let table: [Float]           // [V, V] transition probabilities, row-major
    private let cdf: [Float]

    public init(vocab: Int, seed: UInt64, successors: Int = 4) {
        self.vocab = vocab
        var rng = RNG(seed: seed ^ 0x4D41_524B_4F56)
        var t = [Float](repeating: 0, count: vocab * vocab)
        for a in 0..<vocab {
            // a few favoured successors with Dirichlet-like random weights, and a floor
            for _ in 0..<successors { t[a * vocab + rng.below(vocab)] += 1 + 4 * rng.uniformFloat() }
            var s: Float = 0
            for b in 0..<vocab { t[a * vocab + b] += 0.01; s += t[a * vocab + b] }
            for b in 0..<vocab { t[a * vocab + b] /= s }
        }
        table = t
        var c = t
        for a in 0..<vocab { var acc: Float = 0; for b in 0..<vocab { acc += t[a * vocab + b]; c[a * vocab + b] = acc } }
        cdf = c
    }

    /// Entropy rate in nats under the stationary distribution (power iteration).
    public var entropyRate: Double {
        var pi = [Double](repeating: 1 / Double(vocab), count: vocab)
        for _ in 0..<200 {
            var n = [Double](repeating: 0, count: vocab)
            for a in 0..<vocab { for b in 0..<vocab { n[b] += pi[a] * Double(table[a * vocab + b]) } }
            pi = n
        }
        var h = 0.0
        for a in 0..<vocab { for b in 0..<vocab { let p = Double(table[a * vocab + b]); if p > 0 { h -= pi[a] * p * log(p) } } }
        return h
    }

    /// Fills inputs and targets [B, L] (targets are inputs shifted by one).
    public func batch(_ rng: inout RNG, B: Int, L: Int, inputs: UnsafeMutablePointer<Int32>, targets: UnsafeMutablePointer<Int32>) {
        for b in 0..<B {
            var s = rng.below(vocab)
            for l in 0...L {
                if l < L { inputs[b * L + l] = Int32(s) }
                if l > 0 { targets[b * L + l - 1] = Int32(s) }
                let u = rng.uniformFloat()
                let row = s * vocab
                var next = vocab - 1
                for k in 0..<vocab where cdf[row + k] > u { next = k; break }
                s = next
            }
        }
    }
}
