import Foundation
import BMCore
import BMLayers
import BMMixers
import BMRouting
import BMSpec

/// Builds a LanguageModel from a spec: embedding → one pre-norm residual block
/// per `model.layers` entry (mixers from the registry) → final norm → head.
public enum ModelBuilder {
    /// `allocate: false` declares the model without giving its parameters memory
    /// (to count them before deciding whether the machine can hold it).
    public static func build(_ spec: ExperimentSpec, allocate: Bool = true) throws -> LanguageModel {
        let n = spec.model.layers.count
        // a shared layer is built on the parameters of the first layer of its group
        var firstOfGroup: [String: Int] = [:]
        for (i, l) in spec.model.layers.enumerated() { if let g = l.shared, firstOfGroup[g] == nil { firstOfGroup[g] = i } }
        return try LanguageModel(vocab: spec.vocabSize, width: spec.model.dModel, layers: n,
                                 finalNorm: spec.model.finalNorm, tiedHead: spec.model.tiedHead,
                                 embeddingStd: Float(spec.model.initStd), seed: UInt64(spec.train.seed), allocate: allocate) { ps, prefix, i in
            let owner = spec.model.layers[i].shared.flatMap { firstOfGroup[$0] } ?? i
            // a shared layer takes the first's names; its own index seeds what it draws (random routing)
            let ctx = MixerContext(params: ps, prefix: owner == i ? prefix : "decoder.layers.\(owner).mixer", width: spec.model.dModel,
                                   layerIndex: i, layerCount: n, initScheme: spec.model.initScheme)
            let build = { try MixerRegistry.build(spec.model.layers[i].mixer, resolved: spec.model.layers[i].resolved, in: ctx,
                                                  context: "\(spec.file): model.layers[\(i)]") }
            let mixer = owner == i ? try build() : try ps.sharing(build)
            if owner != i, let moe = mixer as? MoE, moe.expertBias != nil {
                // every use would move the one bias from its own load, several times a step
                throw BMError.invalid("\(spec.file): model.layers[\(i)] shares an moe layer ('\(spec.model.layers[i].shared!)') whose router keeps a balancing bias (\(moe.routerName)); a shared layer cannot balance its uses with one bias: share it with a router without one (bias_rate 0)")
            }
            return mixer
        }
    }

    public struct Counts: Sendable {
        public var total: Int
        public var active: Int                 // parameters a token uses (inactive experts excluded)
        public var matmulActive: Int           // active matrix-multiply weights, head included
        /// Training FLOPs per token: 6 × matmulActive + every other term (docs/flops.md); with
        /// `scoredFraction` f < 1 the head's products count × f (a term of their own).
        public var flopsPerToken: Double
        /// The terms beyond the weight products, summed over layers by name, in order.
        public var flopTerms: [FlopTerm] = []
        /// The share of positions the loss scores (1 for text). Below 1 the head runs on
        /// those positions only: its weight products are a term of their own ("output head
        /// at scored positions"), not part of 6 × matmulActive.
        public var scoredFraction = 1.0
        /// The weight products' FLOPs a token: 6 × matmulActive, without the head when f < 1.
        public var weightProductFlops = 0.0
    }

    /// "3.07 M = weight products 2.95 M + selective scan 0.05 M + …" (terms above 0.05 % shown; all summed).
    public static func flopSummary(_ c: Counts) -> String {
        func m(_ x: Double) -> String { x >= 1e6 ? String(format: "%.3g M", x / 1e6) : String(format: "%.3g k", x / 1e3) }
        let shown = c.flopTerms.filter { $0.flops >= 5e-4 * c.flopsPerToken }
        return "\(m(c.flopsPerToken)) = weight products \(m(c.weightProductFlops))"
            + shown.map { " + \($0.name) \(m($0.flops))" }.joined()
            + (shown.count < c.flopTerms.count ? " + smaller terms" : "")
    }

    /// Parameter and FLOP counts (docs/flops.md): training FLOPs per token = 6 × active
    /// matrix-multiply weights (head included) + each layer's `flopTerms` (attention
    /// scores, scan, conv, routing, activations) + the norms, residual adds and the
    /// loss's softmax, each forward count × 3. With `scoredFraction` f < 1 (a synthetic
    /// task scoring a few positions) the head and the loss's softmax run on the scored
    /// positions only: per token, 6·V·D·f and 15·V·f.
    public static func counts(_ model: LanguageModel, seqLen: Int, scoredFraction f: Double = 1) -> Counts {
        let total = model.params.parameterCount
        var inactive = 0.0, matmul = 0.0
        var terms: [FlopTerm] = []
        func add(_ t: FlopTerm) {
            if let i = terms.firstIndex(where: { $0.name == t.name }) { terms[i].flops += t.flops } else { terms.append(t) }
        }
        let d = Double(model.width)
        // per element, forward: RMSNorm 5 (square, sum, scale, weight, + rsqrt per row), LayerNorm 8 (+ mean, subtract, bias)
        let finalNormFlops = (model.finalNorm is LayerNorm ? 8 : 5) * d
        var counted = Set<Int>()             // a shared layer's parameters count once (their offsets)
        for b in model.blocks {
            let m = b.mixer
            if let first = m.parameters.first?.offset, counted.insert(first).inserted {
                inactive += Double(m.parameters.reduce(0) { $0 + $1.count }) - m.activeParameters
            }
            // FLOPs: every use of a shared layer computes
            matmul += m.activeMatmulWeights
            m.flopTerms(seqLen: seqLen).forEach(add)
            add(FlopTerm("norms and residual adds", 3 * (5 * d + d)))        // the block's RMSNorm and its residual add
        }
        add(FlopTerm("norms and residual adds", 3 * finalNormFlops))
        add(FlopTerm("loss softmax", 3 * 5 * Double(model.vocab) * f))
        let headWeights = Double(model.vocab * model.width)   // the output head (tied or not)
        var products = 6 * matmul
        if f < 1 { add(FlopTerm("output head at scored positions", 6 * headWeights * f)) } else { products += 6 * headWeights }
        matmul += headWeights
        return Counts(total: total, active: total - Int(inactive.rounded()), matmulActive: Int(matmul.rounded()),
                      flopsPerToken: products + terms.reduce(0) { $0 + $1.flops }, flopTerms: terms, scoredFraction: f, weightProductFlops: products)
    }
}
