import BMCore

/// Element types of the PyTorch world's files, with the safetensors names (`F32`, `BF16`,
/// …); the toolkit reads the float ones into Float (F64 rounded, F16 and BF16 widened
/// exactly).
public enum TensorDType: String, Sendable, CaseIterable {
    case BOOL, U8, I8, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64, C64
    case F8_E5M2, F8_E4M3, F8_E8M0, F8_E4M3FNUZ, F8_E5M2FNUZ
    case F4, F6_E2M3, F6_E3M2

    /// Bits per element (safetensors `Dtype::bitsize`).
    public var bits: Int {
        switch self {
        case .F4: return 4
        case .F6_E2M3, .F6_E3M2: return 6
        case .BOOL, .U8, .I8, .F8_E5M2, .F8_E4M3, .F8_E8M0, .F8_E4M3FNUZ, .F8_E5M2FNUZ: return 8
        case .I16, .U16, .F16, .BF16: return 16
        case .I32, .U32, .F32: return 32
        case .F64, .I64, .U64, .C64: return 64
        }
    }

    /// Types read into Float.
    public var isReadableFloat: Bool { [.F32, .F16, .BF16, .F64].contains(self) }

    /// Widens `count` elements of this type at `src` (little-endian, maybe unaligned) into `dst`.
    func widen(_ src: UnsafeRawPointer, count: Int, into dst: UnsafeMutablePointer<Float>) {
        switch self {
        case .F32: for i in 0..<count { dst[i] = Float(bitPattern: src.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self).littleEndian) }
        case .BF16: for i in 0..<count { dst[i] = Float(bitPattern: UInt32(src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self).littleEndian) << 16) }
        case .F16: for i in 0..<count { dst[i] = halfToFloat(src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self).littleEndian) }
        case .F64: for i in 0..<count { dst[i] = Float(Double(bitPattern: src.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self).littleEndian)) }
        default: preconditionFailure("widen: \(self) is not a float type")
        }
    }
}

/// IEEE half → float, exactly (subnormals, infinities and NaNs included).
@inline(__always) func halfToFloat(_ h: UInt16) -> Float {
    let sign = UInt32(h & 0x8000) << 16, exp = Int(h >> 10) & 0x1F, man = UInt32(h & 0x3FF)
    if exp == 0x1F { return Float(bitPattern: sign | 0x7F80_0000 | (man << 13)) }
    if exp == 0 {
        if man == 0 { return Float(bitPattern: sign) }
        // subnormal: man · 2^−24
        let v = Float(man) * Float(sign: .plus, exponent: -24, significand: 1)
        return sign != 0 ? -v : v
    }
    return Float(bitPattern: sign | UInt32(exp - 15 + 127) << 23 | (man << 13))
}
