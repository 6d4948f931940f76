import Foundation
import BMCore
import BMLayers
import BMMixers
import BMRouting

/// Builds a LanguageModel from a spec: embedding → one pre-norm residual block
/// per `model.layers` entry (mixers from the registry) → final norm → head.
public enum ModelBuilder {
    /// `allocate: false` declares the model without giving its parameters memory
    /// (to count them before deciding whether the machine can hold it).
    public static func build(_ spec: ExperimentSpec, allocate: Bool = true) throws -> LanguageModel {
        let n = spec.model.layers.count
        return try LanguageModel(vocab: spec.vocabSize, width: spec.model.dModel, layers: n,
                                 finalNorm: spec.model.finalNorm, tiedHead: spec.model.tiedHead,
                                 embeddingStd: Float(spec.model.initStd), seed: UInt64(spec.train.seed), allocate: allocate) { ps, prefix, i, step in
            let ctx = MixerContext(params: ps, prefix: prefix, width: spec.model.dModel, layerIndex: i, layerCount: n, step: step,
                                   initScheme: spec.model.initScheme)
            return try MixerRegistry.build(spec.model.layers[i].mixer, resolved: spec.model.layers[i].resolved, in: ctx,
                                           context: "\(spec.file): model.layers[\(i)]")
        }
    }

    public struct Counts: Sendable {
        public var total: Int
        public var active: Int                 // parameters a token uses (inactive experts excluded)
        public var matmulActive: Int           // active matrix-multiply weights, head included
        public var flopsPerToken: Double       // training: 6 × matmulActive (+ attention scores)
    }

    /// Parameter and FLOP counts (docs/performance.md's convention: training FLOPs =
    /// 6 × active matrix-multiply weights per token, head included; attention adds
    /// 6·L·d per layer for its causal score and value products).
    public static func counts(_ model: LanguageModel, seqLen: Int) -> Counts {
        let total = model.params.parameterCount
        var inactive = 0.0, matmul = 0.0, extra = 0.0
        for b in model.blocks {
            let m = b.mixer
            inactive += Double(m.parameters.reduce(0) { $0 + $1.count }) - m.activeParameters
            matmul += m.activeMatmulWeights
            extra += m.extraFlops(seqLen: seqLen)
        }
        matmul += Double(model.vocab * model.width)     // the output head (tied or not)
        return Counts(total: total, active: total - Int(inactive.rounded()), matmulActive: Int(matmul.rounded()),
                      flopsPerToken: 6 * matmul + extra)
    }
}
