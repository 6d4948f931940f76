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
        var loss = 0.0
        for i in 0..<batches {
            fill(i, inp.pointer, tgt.pointer)
            let r = model.forward(tokens: inp.pointer, targets: tgt.pointer, B: B, L: L, train: true)
            loss += r.loss
            model.backward()
        }
        let s = 1 / Float(max(1, batches))
        for i in 0..<model.params.count { model.params.grads[i] *= s }
        return loss / Double(max(1, batches))
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
