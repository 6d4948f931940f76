import CHDF5

/// Numeric element types of datasets. Stored in the machine's native
/// (little-endian) layout.
public enum H5ElementType: Sendable, CaseIterable, CustomStringConvertible {
    case float32, float64, int64, int32, uint16

    /// libhdf5's predefined native type (not to be closed).
    var nativeType: hid_t {
        switch self {
        case .float32: bm_h5t_native_float()
        case .float64: bm_h5t_native_double()
        case .int64: bm_h5t_native_int64()
        case .int32: bm_h5t_native_int32()
        case .uint16: bm_h5t_native_uint16()
        }
    }

    var isInteger: Bool { self != .float32 && self != .float64 }

    public var description: String {
        switch self {
        case .float32: "float32"
        case .float64: "float64"
        case .int64: "int64"
        case .int32: "int32"
        case .uint16: "uint16"
        }
    }

    /// Maps a stored datatype to an element type, or nil when unsupported.
    init?(datatype type: hid_t) {
        let size = H5Tget_size(type)
        switch H5Tget_class(type) {
        case H5T_FLOAT:
            switch size {
            case 4: self = .float32
            case 8: self = .float64
            default: return nil
            }
        case H5T_INTEGER:
            let signed = H5Tget_sign(type) == H5T_SGN_2
            switch (size, signed) {
            case (8, true): self = .int64
            case (4, true): self = .int32
            case (2, false): self = .uint16
            default: return nil
            }
        default:
            return nil
        }
    }
}

/// Human-readable description of a stored datatype for error messages.
func describeDatatype(_ type: hid_t) -> String {
    if let t = H5ElementType(datatype: type) { return t.description }
    let size = H5Tget_size(type)
    switch H5Tget_class(type) {
    case H5T_INTEGER: return "\(H5Tget_sign(type) == H5T_SGN_2 ? "int" : "uint")\(size * 8)"
    case H5T_FLOAT: return "float\(size * 8)"
    case H5T_STRING: return H5Tis_variable_str(type) > 0 ? "variable-length string" : "string(\(size))"
    case H5T_COMPOUND: return "compound"
    case H5T_ARRAY: return "array"
    case H5T_VLEN: return "variable-length sequence"
    case H5T_ENUM: return "enum"
    case H5T_OPAQUE: return "opaque"
    case H5T_REFERENCE: return "reference"
    case H5T_BITFIELD: return "bitfield"
    default: return "unknown type"
    }
}
