import Foundation
import BMCore
import BMLayers
import BMStorage
import BMSpec
import BMData

/// The router logits a trained model produces on fixed validation batches: the
/// real input of Sinkhorn routing (`bmlab eval --router-logits`, and
/// `bmlab sinkhorn --checkpoints`, which studies Sinkhorn's convergence on them).
public enum RouterLogits {
    /// One MoE layer's logits over the batches, [T, E] with T = batches · B · L.
    public struct Layer: Sendable {
        public var layer: Int                   // block index i of decoder.layers.{i}
        public var values: [Float]
        public var T: Int, E: Int
        public var name: String { "layer_\(layer)" }

        /// How the layer routes these tokens, from its logits: `load[e]`, the share of
        /// tokens whose largest logit is expert e (the choice of argmax and sigmoid-top1
        /// routing, and of the Sinkhorn routers in evaluation); `loadEntropy`, the entropy
        /// of that load over ln E (1: perfectly even, 0: one expert takes every token);
        /// `routerEntropy`, the mean over tokens of the entropy of softmax(logits), in nats
        /// (ln E: no preference, 0: certain).
        public var summary: (load: [Double], loadEntropy: Double, routerEntropy: Double) {
            var counts = [Double](repeating: 0, count: E)
            var h = 0.0
            values.withUnsafeBufferPointer { v in
                for t in 0..<T {
                    let row = v.baseAddress! + t * E
                    var best = 0
                    var mx = -Double.infinity
                    for e in 0..<E where Double(row[e]) > mx { mx = Double(row[e]); best = e }
                    counts[best] += 1
                    var z = 0.0, zx = 0.0
                    for e in 0..<E { let w = exp(Double(row[e]) - mx); z += w; zx += w * (Double(row[e]) - mx) }
                    h += log(z) - zx / z                    // −Σ p ln p with p = w / z
                }
            }
            let load = counts.map { $0 / Double(max(T, 1)) }
            let ent = -load.reduce(0.0) { $0 + ($1 > 0 ? $1 * log($1) : 0) }
            return (load, E > 1 ? ent / log(Double(E)) : 1, h / Double(max(T, 1)))
        }
    }

    /// Runs the model in evaluation mode over `batches` validation batches and
    /// collects every layer's router logits (layers without a learned router give none).
    public static func compute(model: LanguageModel, batches: Int, B: Int, L: Int,
                               fill: (Int, UnsafeMutablePointer<Int32>, UnsafeMutablePointer<Int32>) -> Void) -> [Layer] {
        let inp = IntBuffer(count: B * L), tgt = IntBuffer(count: B * L)
        var out: [Int: Layer] = [:]
        for i in 0..<batches {
            fill(i, inp.pointer, tgt.pointer)
            _ = model.forward(tokens: inp.pointer, targets: tgt.pointer, B: B, L: L, pass: .eval())
            for (j, block) in model.blocks.enumerated() {
                guard let lg = block.mixer.routerLogits else { continue }
                let E = lg.count / (B * L)
                out[j, default: Layer(layer: j, values: [], T: 0, E: E)].values.append(contentsOf: lg)
                out[j]!.T += B * L
            }
        }
        return out.keys.sorted().map { out[$0]! }
    }

    /// Logits of a checkpoint on `batches` validation batches (evenly spaced) of its own
    /// spec's data; also returns the spec and the step the checkpoint was taken at.
    public static func of(checkpoint path: String, batches: Int = 1) throws -> (spec: ExperimentSpec, step: Int, layers: [Layer]) {
        var none: [String: Dataset] = [:]
        return try of(checkpoint: path, batches: batches, datasets: &none)
    }

    /// `datasets` caches the data by the spec's data section across calls.
    public static func of(checkpoint path: String, batches: Int = 1, datasets: inout [String: Dataset]) throws -> (spec: ExperimentSpec, step: Int, layers: [Layer]) {
        let (s, model, st) = try OpenedCheckpoint.model(path)
        let key = "\(s.data)|\(s.vocabSize)"
        let ds = try datasets[key] ?? Dataset(s)
        datasets[key] = ds
        let layers = compute(model: model, batches: batches, B: s.train.batch, L: s.train.seqLen) { i, inp, tgt in
            ds.evalBatch(i, of: batches, B: s.train.batch, L: s.train.seqLen, inputs: inp, targets: tgt)
        }
        return (s, st.step, layers)
    }

    /// The error for a checkpoint whose model has no learned router.
    public static func noRouter(_ checkpoint: String) -> BMError {
        BMError.invalid("\(checkpoint): the model has no learned router (no moe layer with router logits)")
    }

    /// Writes `router_logits/layer_{i}` datasets [T, E] atomically (the layout
    /// `bmlab sinkhorn --logits` reads), with `checkpoint`, `step` and `batches` attributes.
    public static func write(_ layers: [Layer], to path: String, checkpoint: String, step: Int, batches: Int) throws {
        guard !layers.isEmpty else { throw noRouter(checkpoint) }
        try H5File.createAtomically(path) { f in
            try f.setAttribute("checkpoint", checkpoint)
            try f.setAttribute("step", step)
            try f.setAttribute("batches", batches)
            try f.setAttribute("note", "router logits x·Wrᵀ + b of each MoE layer, evaluation mode, validation batches in order; rows = tokens (batch-major), columns = experts")
            _ = try f.createGroup("router_logits")
            for l in layers {
                try f.write("router_logits/\(l.name)", floats: l.values, shape: [l.T, l.E])
                let s = l.summary, d = try f.dataset("router_logits/\(l.name)")
                try d.setAttribute("load", s.load)
                try d.setAttribute("load_entropy", s.loadEntropy)
                try d.setAttribute("router_entropy", s.routerEntropy)
                d.close()
            }
        }
    }
}
