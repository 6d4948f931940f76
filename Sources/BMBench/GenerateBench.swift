import Foundation
import BMCore
import BMLayers
import BMMixers
import BMExperiments
import BMSpec

/// `bmlab bench generate`: batch-1 generation latency per token of a whole model
/// after a prompt of each context length, and the memory its generation state holds.
public enum GenerateBench {
    public struct Point: Codable, Sendable {
        public var model: String
        public var weights: WeightFormat
        public var context: Int
        public var msPerToken: Double        // median of the timed tokens
        public var stateBytes: Int           // all layers' generation state (conv/SSM states, KV caches)
        public var residentMib: Double       // process resident memory after the tokens
        /// With several rounds: msPerToken is the median of the rounds' medians, these
        /// their smallest and largest, `rounds` how many (nil: one round).
        public var msMin: Double? = nil, msMax: Double? = nil
        public var rounds: Int? = nil
        public init(model: String, weights: WeightFormat, context: Int, msPerToken: Double, stateBytes: Int, residentMib: Double) {
            self.model = model; self.weights = weights; self.context = context
            self.msPerToken = msPerToken; self.stateBytes = stateBytes; self.residentMib = residentMib
        }
    }

    /// Every spec at every context, `rounds` times, the rounds interleaved (round 1 of
    /// every spec, then round 2, …) so a machine's slow minutes fall on every model;
    /// one point per (spec, context): the median of the rounds, with their range.
    public static func rounds(specPaths: [String], contexts: [Int], tokens: Int, weights: WeightFormat, rounds n: Int) throws -> [Point] {
        var all: [[Point]] = []
        for _ in 0..<n {
            var round: [Point] = []
            for s in specPaths { round += try run(specPath: s, contexts: contexts, tokens: tokens, weights: weights) }
            all.append(round)
        }
        return aggregate(all)
    }

    /// One point per position of the rounds' lists: median, min and max of msPerToken,
    /// the smallest resident memory (rounds after the first also hold what the
    /// process kept from the models before; the smallest is closest to this model's own).
    public static func aggregate(_ rounds: [[Point]]) -> [Point] {
        guard let first = rounds.first else { return [] }
        guard rounds.count > 1 else { return first }
        return first.indices.map { i in
            let ms = rounds.map { $0[i].msPerToken }
            var p = first[i]
            p.msPerToken = median(ms); p.msMin = ms.min(); p.msMax = ms.max(); p.rounds = rounds.count
            p.residentMib = rounds.map { $0[i].residentMib }.min()!
            return p
        }
    }

    public static func run(specPath: String, contexts: [Int], tokens: Int = 64, weights: WeightFormat = .fp32) throws -> [Point] {
        let spec = try ExperimentSpec.load(path: specPath)
        let model = try ModelBuilder.build(spec)
        var out: [Point] = []
        var rng = RNG(seed: 5)
        for ctx in contexts {
            let gen = try Generator(model: model, maxLength: ctx + tokens + 1, weights: weights)
            let prompt = (0..<ctx).map { _ in Int32(rng.below(spec.vocabSize)) }
            var logits = gen.prefill(prompt)
            var times: [Double] = []
            for _ in 0..<tokens {
                let tok = Generator.sample(logits, vocab: spec.vocabSize, temperature: 0, topK: 0, rng: &rng)   // greedy
                times.append(seconds { logits = gen.step(tok) })
            }
            out.append(Point(model: spec.name, weights: weights, context: ctx, msPerToken: median(times) * 1e3,
                             stateBytes: gen.stateBytes, residentMib: Double(Machine.currentResidentBytes) / 1048576))
        }
        return out
    }
}
