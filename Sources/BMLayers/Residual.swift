import BMCore

/// Pre-norm residual block: y = x + f(norm(x)). Names: `{prefix}.norm.weight`,
/// `{prefix}.mixer.*` as in the Zyphra/BlackMamba state dict.
public final class ResidualBlock: SequenceLayer {
    public let norm: SequenceLayer
    public let mixer: Mixer
    private let normed = FloatBuffer(), fout = FloatBuffer(), dnormed = FloatBuffer()

    public init(norm: SequenceLayer, mixer: Mixer) {
        precondition(norm.outWidth == mixer.inWidth && mixer.outWidth == norm.inWidth)
        self.norm = norm; self.mixer = mixer
    }
    public var inWidth: Int { norm.inWidth }
    public var outWidth: Int { norm.inWidth }
    public var parameters: [Param] { norm.parameters + mixer.parameters }
    public var auxiliaryLoss: Double { mixer.auxiliaryLoss }

    // x: [B, L, D] → y: [B, L, D]
    public func forward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, B: Int, L: Int, pass: Pass) {
        let n = B * L * inWidth
        let nb = normed.ensure(n), fb = fout.ensure(n)
        norm.forward(x, nb, B: B, L: L, pass: pass)
        mixer.forward(nb, fb, B: B, L: L, pass: pass)
        add(x, fb, y, n)
    }

    // dx = dy + normᵀ(mixerᵀ(dy))
    public func backward(_ dy: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>, B: Int, L: Int, pass: Pass) {
        let n = B * L * inWidth
        let dn = dnormed.ensure(n)
        mixer.backward(dy, dn, B: B, L: L, pass: pass)
        norm.backward(dn, dx, B: B, L: L, pass: pass)
        axpy(1, dy, dx, n)
    }
}
