import Foundation
import BMCore
import BMLayers
import BMMixers
import BMExperiments

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
        public init(model: String, weights: WeightFormat, context: Int, msPerToken: Double, stateBytes: Int, residentMib: Double) {
            self.model = model; self.weights = weights; self.context = context
            self.msPerToken = msPerToken; self.stateBytes = stateBytes; self.residentMib = residentMib
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
