import Foundation
import CBLASShim

/// A bf16 copy of one parameter slab, for batch-1 generation (`bmlab generate --weights
/// bf16`). A token of generation reads every weight it uses once, so its speed is the
/// memory bandwidth: reading the weights as bf16 (the upper 16 bits of fp32, rounded to
/// nearest) halves the bytes. The copy is made once, from the fp32 weights, by whoever
/// generates with it (a `LanguageModel.GenerationState` made with `weights: .bf16`, so a
/// `Generator`) and travels in that generator's `Pass`; the one-token products
/// (`matmulXWt` with T = 1) read it when their weight lies in the slab. Everything else
/// (training, norms, the conv, the embedding lookup) keeps using fp32, and another
/// generator or trainer on the same model, holding no copy, is not affected. Products are
/// still summed in fp32 (docs/performance.md states the logit error this gives).
public final class BF16Weights: @unchecked Sendable {
    let base: UnsafePointer<Float>, count: Int
    let bits: UnsafeMutablePointer<UInt16>

    /// Copies the `count` floats at `base` (read now: a later change of the weights is not seen).
    public init(_ base: UnsafePointer<Float>, count: Int) {
        self.base = base; self.count = count
        bits = .allocate(capacity: max(count, 1))
        bm_f32_to_bf16(base, bits, count)
    }
    deinit { bits.deallocate() }

    /// The bf16 copy of the weights at `w`, when `w` lies in the copied slab.
    @inline(__always)
    public func lookup(_ w: UnsafePointer<Float>) -> UnsafePointer<UInt16>? {
        w >= base && w < base + count ? UnsafePointer(bits + (w - base)) : nil
    }

    /// Bytes held by the copy.
    public var bytes: Int { 2 * count }
}

/// How generation reads the weights of its one-token products.
public enum WeightFormat: String, CaseIterable, Sendable, Codable {
    case fp32, bf16
}
