import Foundation
import BMCore
import BMLayers
import BMStorage

/// Gradients of the evaluation loss for every parameter (`bmlab eval --grads`),
/// computed as in a training step (training-mode routing, auxiliary losses
/// included, no clipping), averaged over the batches; written under the
/// checkpoint's parameter names.
public enum GradientDump {
    public static func compute(model: LanguageModel, batches: Int, B: Int, L: Int,
                               fill: (Int, UnsafeMutablePointer<Int32>, UnsafeMutablePointer<Int32>) -> Void) -> Double {
        let inp = IntBuffer(count: B * L), tgt = IntBuffer(count: B * L)
        model.params.zeroGrad()
        var loss = 0.0, counted = 0
        let grads = [Float](repeating: 0, count: model.params.count)
        var sum = grads                      // Σ over batches of (scored targets × the batch's mean-loss gradient)
        for i in 0..<batches {
            fill(i, inp.pointer, tgt.pointer)
            model.params.zeroGrad()
            // a training pass that leaves router state alone (a dump, not a step)
            let r = model.forward(tokens: inp.pointer, targets: tgt.pointer, B: B, L: L, pass: .train())
            guard r.counted > 0 else { continue }            // rows past a split's windows: nothing scored
            model.backward(pass: .train())
            loss += r.loss * Double(r.counted); counted += r.counted
            let w = Float(r.counted)
            for j in 0..<model.params.count { sum[j] += w * model.params.grads[j] }
        }
        // the gradient of the mean loss over every scored target (batches weighted by what they scored)
        let s = 1 / Float(max(1, counted))
        for j in 0..<model.params.count { model.params.grads[j] = sum[j] * s }
        return counted > 0 ? loss / Double(counted) : .nan
    }

    /// Computes the gradients and writes them atomically to `path`: one dataset per
    /// parameter under its checkpoint name, attributes `loss`, `checkpoint`, `batches`,
    /// `note`. Returns the mean loss.
    @discardableResult
    public static func write(to path: String, model: LanguageModel, checkpoint: String, batches: Int, B: Int, L: Int,
                             fill: (Int, UnsafeMutablePointer<Int32>, UnsafeMutablePointer<Int32>) -> Void) throws -> Double {
        let loss = compute(model: model, batches: batches, B: B, L: L, fill: fill)
        try H5File.createAtomically(path) { f in
            try f.setAttribute("loss", loss)
            try f.setAttribute("checkpoint", checkpoint)
            try f.setAttribute("batches", batches)
            try f.setAttribute("note", "gradient of the mean loss over the batches, training-mode routing, auxiliary losses included, before clipping")
            for p in model.params.params { try f.write(p.name, floats: UnsafeBufferPointer(p.grads), shape: p.shape) }
        }
        return loss
    }
}
