import BMCore

/// Token embedding `weight [V, d]`, optionally reused (tied) as the output head.
public final class Embedding {
    public let vocab: Int, width: Int
    public let weight: Param
    private var tokens: UnsafePointer<Int32>?
    private var headInput: UnsafePointer<Float>?

    public init(_ ps: ParameterSet, _ name: String, vocab: Int, width: Int, std: Float = 0.02) {
        self.vocab = vocab; self.width = width
        weight = ps.declare("\(name).weight", [vocab, width], init: .normal(std: std), decay: false)
    }

    // tokens: [T] → out: [T, d]
    public func forward(tokens: UnsafePointer<Int32>, _ out: UnsafeMutablePointer<Float>, T: Int) {
        self.tokens = tokens
        for t in 0..<T {
            let id = Int(tokens[t])
            precondition(id >= 0 && id < vocab, "token id \(id) outside vocabulary [0, \(vocab))")
            (out + t * width).update(from: weight.w + id * width, count: width)
        }
    }

    // dout: [T, d] → weight.g rows += dout (scatter-add)
    public func backward(_ dout: UnsafePointer<Float>, T: Int) {
        guard let tokens else { preconditionFailure("Embedding.backward before forward") }
        let g = weight.g
        for t in 0..<T {
            axpy(1, dout + t * width, g + Int(tokens[t]) * width, width)
        }
    }

    /// Tied head: logits [T, V] = h [T, d] · Wᵀ (one row read from `bf16` when given: generation).
    public func headForward(_ h: UnsafePointer<Float>, _ logits: UnsafeMutablePointer<Float>, T: Int, bf16: BF16Weights? = nil) {
        headInput = h
        matmulXWt(h, weight.w, logits, T: T, inDim: width, outDim: vocab, bf16: bf16)
    }

    /// dlogits [T, V] → dh [T, d] (overwritten); weight.g += dlogitsᵀ · h.
    public func headBackward(_ dlogits: UnsafePointer<Float>, _ dh: UnsafeMutablePointer<Float>, T: Int) {
        guard let h = headInput else { preconditionFailure("headBackward before headForward") }
        matmulDyTX(dlogits, h, weight.g, T: T, inDim: width, outDim: vocab)
        matmulDyW(dlogits, weight.w, dh, T: T, inDim: width, outDim: vocab)
    }
}
