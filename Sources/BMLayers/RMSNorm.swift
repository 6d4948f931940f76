import BMCore

/// y = x / rms(x) · w, rms(x) = sqrt(mean(x²) + eps). PyTorch name `weight [d]`.
public final class RMSNorm: SequenceLayer {
    public let width: Int
    public let eps: Float
    public let weight: Param
    private var x: UnsafePointer<Float>?
    private let rstd = FloatBuffer()       // [T]

    public init(_ ps: ParameterSet, _ name: String, width: Int, eps: Float = 1e-5) {
        self.width = width; self.eps = eps
        weight = ps.declare("\(name).weight", [width], init: .ones, decay: false)
    }
    public var inWidth: Int { width }
    public var outWidth: Int { width }
    public var parameters: [Param] { [weight] }

    /// Rows per work item of the parallel loops; fewer rows in all (generation) run inline.
    static let rowBlock = 64

    // x: [T, d] → y: [T, d]
    public func forward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, B: Int, L: Int, pass: Pass) {
        let T = B * L, d = width, eps = self.eps
        self.x = x
        let r = rstd.ensure(T), w = weight.w
        // rows on every core, each row on its own: the same bits as one loop
        Parallel.forEachBlock(T, size: Self.rowBlock) { rows in
            for t in rows {
                let xr = x + t * d, yr = y + t * d
                var ss: Float = 0
                for i in 0..<d { ss += xr[i] * xr[i] }
                let s = 1 / (ss / Float(d) + eps).squareRoot()
                r[t] = s
                for i in 0..<d { yr[i] = xr[i] * s * w[i] }
            }
        }
    }

    // dx = s·(w⊙dy) − s³/d · x · Σ(w⊙dy⊙x);  dw += Σ_t dy ⊙ x · s
    public func backward(_ dy: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>, B: Int, L: Int, pass: Pass) {
        guard let x else { preconditionFailure("RMSNorm.backward before forward") }
        let T = B * L, d = width
        let r = rstd.pointer, w = weight.w, gw = weight.g
        // dx: rows on every core (each row its own dot)
        Parallel.forEachBlock(T, size: Self.rowBlock) { rows in
            for t in rows {
                let xr = x + t * d, dyr = dy + t * d, dxr = dx + t * d
                let s = r[t]
                var dot: Float = 0
                for i in 0..<d { dot += w[i] * dyr[i] * xr[i] }
                let c = s * s * s * dot / Float(d)
                for i in 0..<d { dxr[i] = s * w[i] * dyr[i] - c * xr[i] }
            }
        }
        // dw: blocks of channels on every core, each channel summed over t in order
        Parallel.forEachBlock(d, size: 64) { channels in
            for t in 0..<T {
                let xr = x + t * d, dyr = dy + t * d, s = r[t]
                for i in channels { gw[i] += dyr[i] * xr[i] * s }
            }
        }
    }
}
