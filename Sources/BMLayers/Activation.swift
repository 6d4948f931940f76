import Foundation
import BMCore

/// The nonlinearity of a gated MLP: SwiGLU uses SiLU, GeGLU uses GELU (erf form, as PyTorch's default).
public enum GateActivation: String, Sendable, CaseIterable {
    case swiglu, geglu

    /// Forward FLOPs of act(g) · u for one hidden unit (docs/flops.md): SiLU as g·σ(g),
    /// σ being 4 (negate, exp, add, divide) and the product with g 1, then · u: 6;
    /// GELU's tanh form (g³ 2, two scalings 2, a sum 1, tanh 1, +1 1, · g/2 2) 9, · u: 10.
    public var flopsPerUnit: Double { self == .swiglu ? 6 : 10 }

    /// a[i] = act(g[i]) · u[i]   for n elements (g, u, a may be strided views of the same rows)
    @inline(__always)
    func forward(gate g: UnsafePointer<Float>, up u: UnsafePointer<Float>, _ a: UnsafeMutablePointer<Float>, _ n: Int) {
        switch self {
        case .swiglu:
            var i = 0
            while i + 16 <= n {
                st(a, i, vsilu(ld(g, i)) * ld(u, i))
                i += 16
            }
            while i < n { a[i] = fsilu(g[i]) * u[i]; i += 1 }
        case .geglu:
            for i in 0..<n { a[i] = gelu(g[i]) * u[i] }
        }
    }

    /// Given da = ∂L/∂a: dg = da · u · act'(g), du = da · act(g).
    @inline(__always)
    func backward(gate g: UnsafePointer<Float>, up u: UnsafePointer<Float>, da: UnsafePointer<Float>,
                  dgate dg: UnsafeMutablePointer<Float>, dup du: UnsafeMutablePointer<Float>, _ n: Int) {
        switch self {
        case .swiglu:
            var i = 0
            while i + 16 <= n {
                let gv = ld(g, i), uv = ld(u, i), dav = ld(da, i)
                let s = vsigmoid(gv)
                let silu = gv * s
                st(dg, i, dav * uv * siluDerivative(gv, sigmoid: s))
                st(du, i, dav * silu)
                i += 16
            }
            while i < n {
                let s = fsigmoid(g[i])
                dg[i] = da[i] * u[i] * siluDerivative(g[i], sigmoid: s)
                du[i] = da[i] * g[i] * s
                i += 1
            }
        case .geglu:
            for i in 0..<n {
                let x = g[i]
                let cdf = 0.5 * (1 + erf(x * 0.70710678118654752))
                let pdf = 0.39894228040143268 * exp(-0.5 * x * x)
                dg[i] = da[i] * u[i] * (cdf + x * pdf)
                du[i] = da[i] * x * cdf
            }
        }
    }

    @inline(__always) func gelu(_ x: Float) -> Float { 0.5 * x * (1 + erf(x * 0.70710678118654752)) }
}
