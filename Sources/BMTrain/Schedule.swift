import Foundation

/// Learning rate as a function of the step (0-based).
public enum LRSchedule: Sendable, Equatable {
    case constant(lr: Double)
    /// Linear warm-up from 0 to `lr` over `warmup` steps, then cosine decay to `minLR` at `total`.
    case cosine(lr: Double, warmup: Int, total: Int, minLR: Double)

    public func lr(at step: Int) -> Double {
        switch self {
        case .constant(let lr): return lr
        case let .cosine(lr, warmup, total, minLR):
            if step < warmup { return lr * Double(step + 1) / Double(warmup) }
            if step >= total { return minLR }
            let progress = Double(step - warmup) / Double(max(1, total - warmup))
            return minLR + 0.5 * (lr - minLR) * (1 + cos(Double.pi * progress))
        }
    }
}
