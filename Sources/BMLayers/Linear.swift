import BMCore

/// y = x · Wᵀ + b, PyTorch layout: `weight [out, in]`, `bias [out]`.
public final class Linear: SequenceLayer {
    public let inWidth: Int, outWidth: Int
    public let weight: Param
    public let bias: Param?
    private var x: UnsafePointer<Float>?   // cached input (caller keeps it alive)

    public init(_ ps: ParameterSet, _ name: String, in inDim: Int, out outDim: Int, bias hasBias: Bool = false,
                init initializer: Initializer = .normal(std: 0.02)) {
        inWidth = inDim; outWidth = outDim
        weight = ps.declare("\(name).weight", [outDim, inDim], init: initializer)
        bias = hasBias ? ps.declare("\(name).bias", [outDim], init: .zeros, decay: false) : nil
    }

    public var parameters: [Param] { bias.map { [weight, $0] } ?? [weight] }

    // x: [T, in] → y: [T, out]   (T = B·L)
    public func forward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, B: Int, L: Int, pass: Pass) {
        let T = B * L
        self.x = x
        if let b = bias {
            for t in 0..<T { (y + t * outWidth).update(from: b.w, count: outWidth) }
            matmulXWt(x, weight.w, y, T: T, inDim: inWidth, outDim: outWidth, beta: 1, bf16: pass.bf16)
        } else {
            matmulXWt(x, weight.w, y, T: T, inDim: inWidth, outDim: outWidth, bf16: pass.bf16)
        }
    }

    // dy: [T, out] → dx: [T, in]; dW += dyᵀ·x, db += Σ_t dy
    public func backward(_ dy: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>, B: Int, L: Int, pass: Pass) {
        let T = B * L
        guard let x else { preconditionFailure("Linear.backward before forward") }
        matmulDyTX(dy, x, weight.g, T: T, inDim: inWidth, outDim: outWidth)
        if let b = bias {
            let g = b.g
            for t in 0..<T { let r = dy + t * outWidth; for o in 0..<outWidth { g[o] += r[o] } }
        }
        matmulDyW(dy, weight.w, dx, T: T, inDim: inWidth, outDim: outWidth)
    }
}
