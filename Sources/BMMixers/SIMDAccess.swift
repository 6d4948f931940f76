import BMCore

// Unaligned 16-float loads and stores for the mixers' hot loops (the scan, Mamba's
// element-wise passes): p[i ..< i + 16] as one F16.

@inline(__always) func ld(_ p: UnsafePointer<Float>, _ i: Int = 0) -> F16 {
    UnsafeRawPointer(p).loadUnaligned(fromByteOffset: 4 * i, as: F16.self)
}
@inline(__always) func ld(_ p: UnsafeMutablePointer<Float>, _ i: Int = 0) -> F16 {
    UnsafeRawPointer(p).loadUnaligned(fromByteOffset: 4 * i, as: F16.self)
}
@inline(__always) func st(_ p: UnsafeMutablePointer<Float>, _ i: Int, _ v: F16) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, toByteOffset: 4 * i, as: F16.self)
}
@inline(__always) func st(_ p: UnsafeMutablePointer<Float>, _ v: F16) { st(p, 0, v) }
