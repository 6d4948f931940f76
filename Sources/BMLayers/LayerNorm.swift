import BMCore

/// y = (x − mean) / sqrt(var + eps) · w + b. PyTorch names `weight [d]`, `bias [d]`.
public final class LayerNorm: SequenceLayer {
    public let width: Int
    public let eps: Float
    public let weight: Param, bias: Param
    private var x: UnsafePointer<Float>?
    private let stats = FloatBuffer()     // [T, 2]: mean, rstd

    public init(_ ps: ParameterSet, _ name: String, width: Int, eps: Float = 1e-5) {
        self.width = width; self.eps = eps
        weight = ps.declare("\(name).weight", [width], init: .ones, decay: false)
        bias = ps.declare("\(name).bias", [width], init: .zeros, decay: false)
    }
    public var inWidth: Int { width }
    public var outWidth: Int { width }
    public var parameters: [Param] { [weight, bias] }

    // x: [T, d] → y: [T, d]
    public func forward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, B: Int, L: Int, pass: Pass) {
        let T = B * L, d = width
        self.x = x
        let st = stats.ensure(2 * T), w = weight.w, b = bias.w
        for t in 0..<T {
            let xr = x + t * d, yr = y + t * d
            var m: Float = 0
            for i in 0..<d { m += xr[i] }
            m /= Float(d)
            var v: Float = 0
            for i in 0..<d { let c = xr[i] - m; v += c * c }
            let s = 1 / (v / Float(d) + eps).squareRoot()
            st[2 * t] = m; st[2 * t + 1] = s
            for i in 0..<d { yr[i] = (xr[i] - m) * s * w[i] + b[i] }
        }
    }

    // x̂ = (x−m)·s; dx̂ = dy⊙w; dx = s·(dx̂ − mean(dx̂) − x̂·mean(dx̂⊙x̂))
    public func backward(_ dy: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>, B: Int, L: Int, pass: Pass) {
        guard let x else { preconditionFailure("LayerNorm.backward before forward") }
        let T = B * L, d = width
        let st = stats.pointer, w = weight.w, gw = weight.g, gb = bias.g
        for t in 0..<T {
            let xr = x + t * d, dyr = dy + t * d, dxr = dx + t * d
            let m = st[2 * t], s = st[2 * t + 1]
            var mean1: Float = 0, mean2: Float = 0
            for i in 0..<d {
                let xh = (xr[i] - m) * s
                let g = dyr[i] * w[i]
                mean1 += g; mean2 += g * xh
                gw[i] += dyr[i] * xh
                gb[i] += dyr[i]
            }
            mean1 /= Float(d); mean2 /= Float(d)
            for i in 0..<d {
                let xh = (xr[i] - m) * s
                dxr[i] = s * (dyr[i] * w[i] - mean1 - xh * mean2)
            }
        }
    }
}
