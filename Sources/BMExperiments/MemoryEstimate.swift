import Foundation
import BMCore
import BMLayers
import BMMixers
import BMSpec
import BMData

/// The memory a training run will need, estimated before anything is allocated:
/// parameters (values, gradients and AdamW's two moments: 16 bytes each), and the
/// activations and scratch of one training step at the spec's batch × sequence
/// length (each mixer states its own, `Mixer.activationFloats`; the model adds its
/// residual stream, norms, logits and their gradients). `ExperimentRun` refuses a
/// run whose estimate exceeds what the machine has (exit 2), before creating any
/// file; `bmlab validate` prints it.
public struct MemoryEstimate: Sendable {
    public var parameters: Int                 // scalars in the slab (with alignment padding)
    public var parameterBytes: Double          // values + gradients + AdamW moments
    public var activationBytes: Double
    public var totalBytes: Double { parameterBytes + activationBytes }

    /// Fraction of the available memory a run may plan to use (the rest is for the
    /// data, the code, HDF5 and the allocator's slack).
    public static let usableFraction = 0.9

    public init(_ spec: ExperimentSpec) throws {
        let model = try ModelBuilder.build(spec, allocate: false)
        let B = Double(spec.train.batch), L = spec.train.seqLen
        let D = spec.model.dModel, V = spec.vocabSize
        parameters = model.params.count
        parameterBytes = Double(parameters) * 4 * 4
        // Per sequence (B = 1), then × B in Double: no overflow for any batch, and a
        // slight overestimate for attention, whose [rowBlock, L] score scratch does not grow with B.
        var perSequence = 0
        for b in model.blocks {
            perSequence += b.mixer.activationFloats(B: 1, L: L) + 3 * L * D + 2 * L   // + block's norm out, mixer out, d(norm), stats
        }
        let layers = model.blocks.count
        // residual stream (layers + 1), final norm, logits (at the scored positions only:
        // all L for text, k for MQAR, docs/flops.md; + their gathered rows), two gradient
        // buffers, token ids
        let scored = Int((Double(L) * (try Dataset.scoredFraction(spec))).rounded(.up))
        perSequence += (layers + 1) * L * D + L * D + scored * V + (scored < L ? 2 * scored * D : 0) + 2 * L * D + 2 * L + 2 * L
        activationBytes = Double(perSequence) * B * 4
    }

    /// Throws (exit 2) when the estimate exceeds `usableFraction` of `available` bytes.
    public func check(_ spec: ExperimentSpec, available: Int = Machine.availableMemoryBytes) throws {
        guard available > 0 else { return }                    // unknown: do not guess
        let usable = Double(available) * MemoryEstimate.usableFraction
        guard totalBytes > usable else { return }
        throw BMError.invalid("\(spec.file): this run needs about \(MemoryEstimate.format(totalBytes)) " +
            "(\(summary(spec))) but the machine has \(MemoryEstimate.format(Double(available))) available; " +
            "make model.d_model, model.layers, train.batch or train.seq_len smaller")
    }

    /// "parameters 1.2 GiB with gradients and AdamW moments, activations 3.4 GiB at batch 8 × 256"
    public func summary(_ spec: ExperimentSpec) -> String {
        "parameters \(MemoryEstimate.format(parameterBytes)) with gradients and AdamW moments, " +
        "activations \(MemoryEstimate.format(activationBytes)) at batch \(spec.train.batch) × \(spec.train.seqLen)"
    }

    public static func format(_ bytes: Double) -> String {
        let units = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]
        var v = bytes, i = 0
        while v >= 1024 && i < units.count - 1 { v /= 1024; i += 1 }
        return i == 0 ? "\(Int(v)) bytes" : String(format: v >= 100 ? "%.0f %@" : "%.1f %@", v, units[i])
    }
}
