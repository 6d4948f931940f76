import Foundation
import BMCore

// Synthetic sequence tasks for ablating sequence mixers without a corpus
// (docs/synthetic-tasks.md states each task). Every task is framed as
// next-token prediction: `targets[t]` is the token a causal model must output
// after reading `inputs[0...t]`, or −1 where the position is ignored in the
// loss and in accuracy. All randomness comes from the caller's `RNG`, so the
// same seed gives bitwise the same examples.

/// A seeded generator of fixed-length (input, target) examples.
public protocol SequenceTask: Sendable {
    var name: String { get }
    var vocabSize: Int { get }
    /// Model input length L.
    var seqLen: Int { get }
    /// Positions of an example that the loss scores (targets not −1): the same in every
    /// example of a task; the head runs on these only (and the FLOP count says so).
    var scoredPerSequence: Int { get }
    /// Fills one example: inputs[0..<L] and targets[0..<L] (targets = the token to
    /// predict at each input position, or −1 = ignored in loss and accuracy).
    func example(_ rng: inout RNG, inputs: UnsafeMutablePointer<Int32>, targets: UnsafeMutablePointer<Int32>)
}

extension SequenceTask {
    /// B examples into row-major [B, L] buffers, in order, from the same rng
    /// (row b is exactly what the b-th of B consecutive `example` calls gives).
    public func batch(_ rng: inout RNG, B: Int, inputs: UnsafeMutablePointer<Int32>, targets: UnsafeMutablePointer<Int32>) {
        for b in 0..<B {
            example(&rng, inputs: inputs + b * seqLen, targets: targets + b * seqLen)
        }
    }
}

/// `count` distinct integers from `lo..<hi`, uniformly, in random order
/// (partial Fisher–Yates: `count` calls to `rng.below`).
@inline(__always)
private func sampleDistinct(_ rng: inout RNG, count: Int, from lo: Int, to hi: Int) -> [Int] {
    var pool = Array(lo..<hi)
    let n = pool.count
    for j in 0..<count { pool.swapAt(j, j + rng.below(n - j)) }
    return Array(pool[0..<count])
}

private func checkVocab(_ task: String, _ vocabSize: Int, min: Int) throws {
    guard vocabSize >= min else {
        throw BMError.invalid("\(task): vocabSize must be at least \(min), got \(vocabSize)")
    }
    guard vocabSize <= Int(Int32.max) else {
        throw BMError.invalid("\(task): vocabSize must fit in Int32, got \(vocabSize)")
    }
}

// MARK: - MQAR

/// Multi-query associative recall (Zoology, Arora et al. 2023), following
/// `zoology/data/multiquery_ar.py` with `random_non_queries = False`.
///
/// With V = vocabSize, L = seqLen, k = numPairs, C = 2k and S = ⌊(L − C)/2⌋:
/// - keys: k distinct tokens from `[1, V/2)`; values: k **distinct** tokens from
///   `[V/2, V)` (drawn without replacement, as in Zoology);
/// - `inputs[0..<C]` = K1 V1 K2 V2 … Kk Vk;
/// - gaps g1…gk: k distinct offsets from `0..<S`, drawn one at a time without
///   replacement with probability ∝ a·(g+1)^(a−1) over the offsets not yet taken
///   (a = powerA; a = 1 is uniform, a = 0.01 strongly favours small gaps);
/// - placement: the query for key j is `inputs[C + 2·gj] = Kj`, and
///   `targets[C + 2·gj] = Vj` (the model outputs the value right after reading
///   the query key). Queries therefore sit at even offsets of the query region,
///   in random order relative to the pairs;
/// - every other input is 0 and every other target −1 (when L − C is odd the
///   last position is always 0 / −1).
///
/// RNG draws per example, in order: k for keys, k for values, k `uniform()` for gaps.
/// Requires V ≥ 4, 1 ≤ k ≤ V/2 − 1, L ≥ 4k (so that S ≥ k), powerA > 0.
public struct MQARTask: SequenceTask {
    public let vocabSize: Int
    public let seqLen: Int
    public let numPairs: Int
    public let powerA: Double
    /// Unnormalised gap weights a·(g+1)^(a−1), g = 0..<S.
    let gapWeights: [Double]

    public var name: String { "mqar" }
    public var scoredPerSequence: Int { numPairs }

    public init(vocabSize: Int, seqLen: Int, numPairs: Int, powerA: Double = 0.01) throws {
        try checkVocab("mqar", vocabSize, min: 4)
        guard numPairs >= 1 else {
            throw BMError.invalid("mqar: numPairs must be at least 1, got \(numPairs)")
        }
        guard numPairs <= vocabSize / 2 - 1 else {
            throw BMError.invalid("mqar: numPairs (\(numPairs)) exceeds the \(vocabSize / 2 - 1) distinct keys in [1, vocabSize/2) for vocabSize \(vocabSize)")
        }
        guard seqLen >= 4 * numPairs else {
            throw BMError.invalid("mqar: seqLen (\(seqLen)) must be at least 4·numPairs = \(4 * numPairs) (2·numPairs key-value tokens plus numPairs queries at even offsets)")
        }
        guard powerA > 0, powerA.isFinite else {
            throw BMError.invalid("mqar: powerA must be a positive finite number, got \(powerA)")
        }
        self.vocabSize = vocabSize
        self.seqLen = seqLen
        self.numPairs = numPairs
        self.powerA = powerA
        let space = (seqLen - 2 * numPairs) / 2
        gapWeights = (0..<space).map { powerA * pow(Double($0 + 1), powerA - 1) }
    }

    public func example(_ rng: inout RNG, inputs: UnsafeMutablePointer<Int32>, targets: UnsafeMutablePointer<Int32>) {
        let k = numPairs, half = vocabSize / 2, context = 2 * k
        for t in 0..<seqLen { inputs[t] = 0; targets[t] = -1 }
        let keys = sampleDistinct(&rng, count: k, from: 1, to: half)
        let values = sampleDistinct(&rng, count: k, from: half, to: vocabSize)
        for j in 0..<k {
            inputs[2 * j] = Int32(keys[j])
            inputs[2 * j + 1] = Int32(values[j])
        }
        // Sequential weighted draws without replacement over the gap offsets.
        var w = gapWeights
        for j in 0..<k {
            var total = 0.0
            for x in w { total += x }
            let u = rng.uniform() * total
            var acc = 0.0, pick = -1
            for g in 0..<w.count where w[g] > 0 {
                acc += w[g]; pick = g
                if u < acc { break }
            }
            w[pick] = 0
            let pos = context + 2 * pick
            inputs[pos] = Int32(keys[j])
            targets[pos] = Int32(values[j])
        }
    }
}

// MARK: - Selective copying

/// Selective copying (Mamba paper, Gu & Dao 2023).
///
/// With V = vocabSize, L = seqLen, M = numTokens and N = L − M:
/// - M data positions: distinct, uniformly drawn from `0..<N`, then sorted;
/// - data tokens: uniform (with replacement) from `[1, V−2]`, written in order
///   at the sorted positions; every other position of `0..<N` is noise token 0;
/// - `inputs[N..<L]` are M marker tokens V−1;
/// - framing: at the i-th marker, `targets[N + i]` = the i-th data token (the model
///   reads marker i and must emit data token i; the data are never fed back as
///   input). All targets in `0..<N` are −1.
///
/// RNG draws per example, in order: M for positions, M for tokens.
/// Requires V ≥ 4 and 1 ≤ M with 2M ≤ L (the M data tokens must fit before the M markers).
public struct SelectiveCopyTask: SequenceTask {
    public let vocabSize: Int
    /// Total length of the model input (data region plus markers).
    public let seqLen: Int
    public let numTokens: Int

    public var name: String { "selective-copy" }
    public var scoredPerSequence: Int { numTokens }

    public init(vocabSize: Int, seqLen: Int, numTokens: Int) throws {
        try checkVocab("selective-copy", vocabSize, min: 4)
        guard numTokens >= 1 else {
            throw BMError.invalid("selective-copy: numTokens must be at least 1, got \(numTokens)")
        }
        guard numTokens < seqLen else {
            throw BMError.invalid("selective-copy: numTokens (\(numTokens)) must be less than seqLen (\(seqLen))")
        }
        guard 2 * numTokens <= seqLen else {
            throw BMError.invalid("selective-copy: numTokens (\(numTokens)) data tokens do not fit in the seqLen − numTokens = \(seqLen - numTokens) slots before the markers; need seqLen ≥ 2·numTokens = \(2 * numTokens)")
        }
        self.vocabSize = vocabSize
        self.seqLen = seqLen
        self.numTokens = numTokens
    }

    public func example(_ rng: inout RNG, inputs: UnsafeMutablePointer<Int32>, targets: UnsafeMutablePointer<Int32>) {
        let m = numTokens, n = seqLen - numTokens
        for t in 0..<seqLen { inputs[t] = 0; targets[t] = -1 }
        let positions = sampleDistinct(&rng, count: m, from: 0, to: n).sorted()
        let marker = Int32(vocabSize - 1)
        for i in 0..<m {
            let token = Int32(1 + rng.below(vocabSize - 2))
            inputs[positions[i]] = token
            inputs[n + i] = marker
            targets[n + i] = token
        }
    }
}

// MARK: - Induction heads

/// Induction heads (as in the Mamba paper's synthetic tasks).
///
/// With V = vocabSize and L = seqLen:
/// - `inputs[0..<L−1]`: uniform random tokens from `[1, V−1)` (never the prefix token);
/// - the copy-prefix token V−1 overwrites `inputs[p]`, p uniform in `0..<L−2`
///   (never one of the last two positions), so `inputs[p+1]` — a random token,
///   at most at L−2 — is the token to remember;
/// - `inputs[L−1]` = V−1 (the prefix again); `targets[L−1]` = `inputs[p+1]`;
///   every other target is −1.
/// The prefix token appears exactly twice.
///
/// RNG draws per example, in order: L−1 for the tokens, then 1 for p.
/// Requires L ≥ 4 and V ≥ 3.
public struct InductionTask: SequenceTask {
    public let vocabSize: Int
    public let seqLen: Int

    public var name: String { "induction" }
    public var scoredPerSequence: Int { 1 }

    public init(vocabSize: Int, seqLen: Int) throws {
        try checkVocab("induction", vocabSize, min: 3)
        guard seqLen >= 4 else {
            throw BMError.invalid("induction: seqLen must be at least 4, got \(seqLen)")
        }
        self.vocabSize = vocabSize
        self.seqLen = seqLen
    }

    public func example(_ rng: inout RNG, inputs: UnsafeMutablePointer<Int32>, targets: UnsafeMutablePointer<Int32>) {
        let prefix = Int32(vocabSize - 1), last = seqLen - 1
        for t in 0..<last {
            inputs[t] = Int32(1 + rng.below(vocabSize - 2))
            targets[t] = -1
        }
        let p = rng.below(seqLen - 2)
        inputs[p] = prefix
        inputs[last] = prefix
        targets[last] = inputs[p + 1]
    }
}
