import Foundation
// Vectorised elementary functions on SIMD16<Float> and on buffers.
//
// Scalar `expf` is a libm call (~4.5 ns); the selective scan needs millions of
// exponentials per step, so hot loops use these polynomial versions instead.
// Measured maximum errors (Tests/BMCoreTests/VectorMathTests.swift checks them
// against Double references over the ranges used):
//   vexp     relative error ≤ 2e-7 on [-87, 88]  (Cephes expf polynomial, ~1.5 ulp)
//   vlog1p   absolute error ≤ 2e-7 on [0, ∞) for log1p(y), relative ≤ 3e-7
//   vsigmoid absolute error ≤ 3e-7
//   vsilu    relative error ≤ 4e-7 (absolute near 0)
//   vsoftplus relative error ≤ 4e-7 (threshold 20 as PyTorch: x > 20 ⇒ x)
// Below -87.3 vexp returns ~1.2e-38 (the smallest normal) instead of a denormal
// or 0, and above 88.38 it returns 2.7e38 instead of inf; this is harmless for the
// decays, gates and probabilities it computes (callers shift logits by their max).

/// 16 Float lanes: the vector every hot loop works in (two AVX2 registers, one AVX-512).
public typealias Vec16 = SIMD16<Float>

/// Σ of the 16 lanes as a tree (8 + 4 + 2 + 1 vector adds). `SIMD.sum()` adds the
/// lanes one after another — a chain of 15 dependent scalar adds that was 60 % of
/// the selective scan's time. The order is fixed, so results are deterministic.
@_transparent
public func hsum(_ v: Vec16) -> Float {
    let a = v.lowHalf + v.highHalf
    let b = a.lowHalf + a.highHalf
    let c = b.lowHalf + b.highHalf
    return c[0] + c[1]
}

@_transparent
public func vexp(_ x: Vec16) -> Vec16 {
    // Written for the code generator: `clamped(lowerBound:upperBound:)`,
    // `SIMD16<Int32>(_:rounding:)` and (across modules) `pointwiseMin/Max` are not
    // specialised and made this up to 60× slower; masked `replacing`, FMA through
    // `addingProduct` (vfmadd with -target-cpu haswell) and reading n's bits out of
    // the magic-number sum compile to plain AVX2. `@_transparent` makes other modules
    // inline it into their loops (the scan); `@inline(__always)` does not cross modules.
    // The input is clamped to [-87.34, 88.38] so that n ∈ [-126, 127] and one
    // exponent-bit scale 2^n stays a normal float.
    let lo = Vec16(repeating: -87.33654), hi = Vec16(repeating: 88.37626)
    let xc = x.replacing(with: lo, where: x .< lo).replacing(with: hi, where: x .> hi)
    // n = round(x / ln2) via the 1.5·2^23 trick (round-to-nearest in the FPU).
    let magic = Vec16(repeating: 12582912.0)
    let t = magic.addingProduct(xc, 1.44269504088896341)
    let n = t - magic
    // r = x − n·ln2 in two parts (Cody–Waite), |r| ≤ ln2/2.
    var r = xc.addingProduct(n, -0.693359375)
    r = r.addingProduct(n, 2.12194440e-4)
    // e^r by the Cephes expf polynomial.
    let r2 = r * r
    var p = Vec16(repeating: 1.3981999507e-3).addingProduct(r, 1.9875691500e-4)
    p = Vec16(repeating: 8.3334519073e-3).addingProduct(p, r)
    p = Vec16(repeating: 4.1665795894e-2).addingProduct(p, r)
    p = Vec16(repeating: 1.6666665459e-1).addingProduct(p, r)
    p = Vec16(repeating: 5.0000001201e-1).addingProduct(p, r)
    let y = (r + 1).addingProduct(p, r2)
    let ni = unsafeBitCast(t, to: SIMD16<Int32>.self) &- 0x4B40_0000
    return y * unsafeBitCast((ni &+ 127) &<< 23, to: Vec16.self)
}

/// log(1 + y) for y ≥ 0 (used by softplus, where y = exp(−|x|) ∈ (0, 1]).
@_transparent
public func vlog1p(_ y: Vec16) -> Vec16 {
    let u = 1 + y
    // log(u) by frexp + Cephes logf polynomial, then the log1p correction
    // (y − (u − 1)) / u that recovers the bits lost in 1 + y.
    let bits = unsafeBitCast(u, to: SIMD16<UInt32>.self)
    var e = unsafeBitCast(((bits &>> 23) & 0xff) | 0x4B00_0000, to: Vec16.self) - (8388608.0 + 126)
    var m = unsafeBitCast((bits & 0x807f_ffff) | 0x3f00_0000, to: Vec16.self)   // m ∈ [0.5, 1)
    let small = m .< Vec16(repeating: 0.707106781186547524)
    e.replace(with: e - 1, where: small)
    m.replace(with: m + m - 1, where: small)
    m.replace(with: m - 1, where: .!small)
    let z = m * m
    var p = Vec16(repeating: -1.1514610310e-1).addingProduct(m, 7.0376836292e-2)
    p = Vec16(repeating: 1.1676998740e-1).addingProduct(p, m)
    p = Vec16(repeating: -1.2420140846e-1).addingProduct(p, m)
    p = Vec16(repeating: 1.4249322787e-1).addingProduct(p, m)
    p = Vec16(repeating: -1.6668057665e-1).addingProduct(p, m)
    p = Vec16(repeating: 2.0000714765e-1).addingProduct(p, m)
    p = Vec16(repeating: -2.4999993993e-1).addingProduct(p, m)
    p = Vec16(repeating: 3.3333331174e-1).addingProduct(p, m)
    var r = p * m * z
    r = r - e * 2.12194440e-4
    r = r - 0.5 * z
    var out = m + r + e * 0.693359375
    out = out + (y - (u - 1)) / u
    // log1p(y) for tiny y: y itself is exact to ulp.
    out.replace(with: y, where: y .< Vec16(repeating: 1e-7))
    return out
}

@_transparent
public func vsigmoid(_ x: Vec16) -> Vec16 { 1 / (1 + vexp(-x)) }

@_transparent
public func vsilu(_ x: Vec16) -> Vec16 { x / (1 + vexp(-x)) }

/// softplus(x) = log(1 + eˣ), computed as max(x, 0) + log1p(e^−|x|); x > 20 ⇒ x (PyTorch's threshold).
@_transparent
public func vsoftplus(_ x: Vec16) -> Vec16 {
    let ax = x.replacing(with: -x, where: x .< 0)
    var r = x.replacing(with: 0, where: x .< 0) + vlog1p(vexp(-ax))
    r.replace(with: x, where: x .> 20)
    return r
}

// MARK: - Scalar versions (same formulas, for tails and one-token paths)

@inlinable @inline(__always) public func fexp(_ x: Float) -> Float { vexp(Vec16(repeating: x))[0] }
@inlinable @inline(__always) public func fsigmoid(_ x: Float) -> Float { 1 / (1 + fexp(-x)) }
/// σ(x) with libm's `expf` (exact to rounding): for scalar tails and per-token gates
/// whose bits must not depend on the polynomial (`fsigmoid` is the fast one).
@inlinable @inline(__always) public func sigmoid(_ x: Float) -> Float { 1 / (1 + expf(-x)) }
@inlinable @inline(__always) public func fsilu(_ x: Float) -> Float { x / (1 + fexp(-x)) }

/// SiLU's derivative from s = σ(x): silu'(x) = σ(x)·(1 + x·(1 − σ(x))) (docs/mixers.md).
@inlinable @inline(__always) public func siluDerivative(_ x: Float, sigmoid s: Float) -> Float { s * (1 + x * (1 - s)) }
@inlinable @inline(__always) public func siluDerivative(_ x: Vec16, sigmoid s: Vec16) -> Vec16 { s * (1 + x * (1 - s)) }
/// g · silu'(x) from s = σ(x), multiplied as (g·σ)·(1 + x·(1 − σ)): the SSM block's
/// order (g · siluDerivative rounds differently in the last bit; both are kept so
/// that outputs stay bitwise what they were).
@inlinable @inline(__always) public func siluBackward(_ g: Float, _ x: Float, sigmoid s: Float) -> Float { g * s * (1 + x * (1 - s)) }
@inlinable @inline(__always) public func siluBackward(_ g: Vec16, _ x: Vec16, sigmoid s: Vec16) -> Vec16 { g * s * (1 + x * (1 - s)) }
@inlinable @inline(__always) public func fsoftplus(_ x: Float) -> Float { vsoftplus(Vec16(repeating: x))[0] }

// MARK: - Buffer kernels: out[i] = f(x[i]); tails handled by padding into a SIMD register

@inlinable @inline(__always)
public func mapSIMD(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, _ n: Int, _ f: (Vec16) -> Vec16) {
    var i = 0
    while i + 16 <= n {
        st(out, i, f(ld(x, i)))
        i += 16
    }
    if i < n {
        var v = Vec16()
        for j in 0..<(n - i) { v[j] = x[i + j] }
        let r = f(v)
        for j in 0..<(n - i) { out[i + j] = r[j] }
    }
}

@inlinable public func vexp(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, count n: Int) { mapSIMD(x, out, n, vexp) }
@inlinable public func vsigmoid(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, count n: Int) { mapSIMD(x, out, n, vsigmoid) }
@inlinable public func vsilu(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, count n: Int) { mapSIMD(x, out, n, vsilu) }
@inlinable public func vsoftplus(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, count n: Int) { mapSIMD(x, out, n, vsoftplus) }
@inlinable public func vlog1p(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, count n: Int) { mapSIMD(x, out, n, vlog1p) }

/// Σ x[i]·y[i] accumulated in Double for stability in checks and norms.
public func dotDouble(_ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, _ n: Int) -> Double {
    var s = 0.0
    for i in 0..<n { s += Double(x[i]) * Double(y[i]) }
    return s
}

/// y[i] += a · x[i]
@inlinable @inline(__always)
public func axpy(_ a: Float, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
    for i in 0..<n { y[i] += a * x[i] }
}

/// x[i] *= a
@inlinable @inline(__always)
public func scal(_ a: Float, _ x: UnsafeMutablePointer<Float>, _ n: Int) {
    for i in 0..<n { x[i] *= a }
}

/// out[i] = a[i] + b[i]
@inlinable @inline(__always)
public func add(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, _ n: Int) {
    for i in 0..<n { out[i] = a[i] + b[i] }
}
