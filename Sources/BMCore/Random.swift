import Foundation

/// A seeded generator (xoshiro256** seeded through SplitMix64). Same seed ⇒
/// bitwise the same numbers on every machine: only integer arithmetic and
/// correctly rounded Float/Double operations are used (no libm in `uniform`;
/// `normal` uses `log`, `sqrt`, `cos` from glibc, which are deterministic on a
/// given machine and toolchain).
public struct RNG: RandomNumberGenerator, Sendable {
    public private(set) var state: (UInt64, UInt64, UInt64, UInt64)

    public init(seed: UInt64) {
        var s = seed
        func splitmix(_ s: inout UInt64) -> UInt64 {
            s &+= 0x9E37_79B9_7F4A_7C15
            var z = s
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        state = (splitmix(&s), splitmix(&s), splitmix(&s), splitmix(&s))
    }

    public init(state: [UInt64]) {
        precondition(state.count == 4)
        self.state = (state[0], state[1], state[2], state[3])
    }

    public var stateArray: [UInt64] { [state.0, state.1, state.2, state.3] }

    /// A new, independent stream derived from this seed and a label (per layer, per worker).
    public func fork(_ label: UInt64) -> RNG {
        RNG(seed: state.0 ^ (label &* 0xD6E8_FEB8_6659_FD93) ^ state.3)
    }

    @inline(__always)
    public mutating func next() -> UInt64 {
        let r = ((state.1 &* 5) << 7 | (state.1 &* 5) >> 57) &* 9
        let t = state.1 << 17
        state.2 ^= state.0
        state.3 ^= state.1
        state.1 ^= state.2
        state.0 ^= state.3
        state.2 ^= t
        state.3 = (state.3 << 45) | (state.3 >> 19)
        return r
    }

    /// Uniform in [0, 1) with 24 random bits.
    @inline(__always)
    public mutating func uniformFloat() -> Float { Float(next() >> 40) * (1.0 / 16_777_216.0) }

    /// Uniform in [0, 1) with 53 random bits.
    @inline(__always)
    public mutating func uniform() -> Double { Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0) }

    public mutating func uniform(_ lo: Float, _ hi: Float) -> Float { lo + (hi - lo) * uniformFloat() }

    /// Integer in [0, n).
    @inline(__always)
    public mutating func below(_ n: Int) -> Int {
        precondition(n > 0)
        return Int(truncatingIfNeeded: next().multipliedFullWidth(by: UInt64(n)).high)
    }

    /// Standard normal (Box–Muller, one value per call).
    public mutating func normal() -> Float {
        var u1 = uniform()
        if u1 < 1e-300 { u1 = 1e-300 }
        let u2 = uniform()
        return Float(sqrt(-2 * log(u1)) * cos(2 * Double.pi * u2))
    }

    public mutating func fillNormal(_ p: UnsafeMutablePointer<Float>, _ n: Int, std: Float, mean: Float = 0) {
        for i in 0..<n { p[i] = mean + std * normal() }
    }

    public mutating func fillUniform(_ p: UnsafeMutablePointer<Float>, _ n: Int, _ lo: Float, _ hi: Float) {
        for i in 0..<n { p[i] = uniform(lo, hi) }
    }

    public mutating func shuffle<T>(_ a: inout [T]) {
        if a.count < 2 { return }
        for i in stride(from: a.count - 1, to: 0, by: -1) { a.swapAt(i, below(i + 1)) }
    }
}
