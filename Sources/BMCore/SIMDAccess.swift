// Unaligned 16-float loads and stores for the hot loops (the scan, Mamba's and the
// activations' element-wise passes, AdamW, norms): p[i ..< i + 16] as one Vec16.

@inlinable @inline(__always) public func ld(_ p: UnsafePointer<Float>, _ i: Int = 0) -> Vec16 {
    UnsafeRawPointer(p).loadUnaligned(fromByteOffset: 4 * i, as: Vec16.self)
}
@inlinable @inline(__always) public func ld(_ p: UnsafeMutablePointer<Float>, _ i: Int = 0) -> Vec16 {
    UnsafeRawPointer(p).loadUnaligned(fromByteOffset: 4 * i, as: Vec16.self)
}
@inlinable @inline(__always) public func st(_ p: UnsafeMutablePointer<Float>, _ i: Int, _ v: Vec16) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, toByteOffset: 4 * i, as: Vec16.self)
}
@inlinable @inline(__always) public func st(_ p: UnsafeMutablePointer<Float>, _ v: Vec16) { st(p, 0, v) }
