import Foundation
import CBLASShim

/// bf16 copies of parameter slabs, for batch-1 generation (`bmlab generate --weights
/// bf16`). A token of generation reads every weight it uses once, so its speed is the
/// memory bandwidth: reading the weights as bf16 (the upper 16 bits of fp32, rounded to
/// nearest) halves the bytes. The copy is made once, from the fp32 weights, and the
/// one-token products (`matmulXWt` with T = 1) read it whenever their weight lies in a
/// mirrored slab; everything else (training, norms, the conv, the embedding lookup)
/// keeps using fp32. Products are still summed in fp32 (docs/performance.md states the
/// logit error this gives).
public enum BF16Weights {
    final class Mirror: @unchecked Sendable {
        let base: UnsafePointer<Float>, count: Int
        let bits: UnsafeMutablePointer<UInt16>
        init(base: UnsafePointer<Float>, count: Int) {
            self.base = base; self.count = count
            bits = .allocate(capacity: max(count, 1))
            bm_f32_to_bf16(base, bits, count)
        }
        deinit { bits.deallocate() }
    }

    nonisolated(unsafe) private static var mirrors: [Mirror] = []
    private static let lock = NSLock()
    /// Read without the lock on the hot path: set only under it.
    nonisolated(unsafe) private static var any = false

    /// Makes (or remakes, after the weights changed) the bf16 copy of `count` floats at `base`.
    public static func mirror(_ base: UnsafePointer<Float>, count: Int) {
        lock.lock(); defer { lock.unlock() }
        mirrors.removeAll { $0.base == base }
        mirrors.append(Mirror(base: base, count: count))
        any = true
    }

    /// Drops the copy of the slab at `base` (back to fp32 products).
    public static func drop(_ base: UnsafePointer<Float>) {
        lock.lock(); defer { lock.unlock() }
        mirrors.removeAll { $0.base == base }
        any = !mirrors.isEmpty
    }

    /// The bf16 copy of the weights at `w`, when `w` lies in a mirrored slab.
    @inline(__always)
    public static func lookup(_ w: UnsafePointer<Float>) -> UnsafePointer<UInt16>? {
        guard any else { return nil }
        lock.lock(); defer { lock.unlock() }
        for m in mirrors where w >= m.base && w < m.base + m.count { return UnsafePointer(m.bits + (w - m.base)) }
        return nil
    }

    /// Bytes held by the copies.
    public static var bytes: Int {
        lock.lock(); defer { lock.unlock() }
        return mirrors.reduce(0) { $0 + 2 * $1.count }
    }
}

/// How generation reads the weights of its one-token products.
public enum WeightFormat: String, CaseIterable, Sendable, Codable {
    case fp32, bf16
}
