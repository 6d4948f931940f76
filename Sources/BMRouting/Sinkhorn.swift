import Foundation
import BMCore

/// Sinkhorn balancing of router logits, as Megatron-LM (vanilla) and BlackMamba
/// (fast) run it (docs/routing.md), in Float32 like the references:
///
///     K = exp(logits / temperature)
///     d0 = ones(T); d1 = ones(E)                        (init: ones)
///                or 1 / (E · Σ_i K_ij)                  (init: column, BlackMamba)
///     while err > tol and iterations < max_iter:
///         d0 = (1/T) / (K·d1 + 1e-8)
///         d1' = (1/E) / (Kᵀ·d0 + 1e-8)
///         err = mean |d1' − d1|                         (tol_mode: d1-absolute, the references)
///             or max_i |T · rowsum_i − 1|               (tol_mode: marginal-relative)
///         d1 = d1'
///     P = diag(d0) · K · diag(d1)                       rows ≈ 1/T, columns ≈ 1/E
///
/// The references have no iteration cap; `maxIter` is one, and reaching it is
/// reported (`converged == false`), never a hang. When a logit / temperature
/// exceeds 80, K is computed from logits shifted by their maximum (P is
/// unchanged by the shift; only the absolute-tolerance test sees a rescaled d1).
public struct SinkhornConfig: Sendable, Equatable {
    public enum Init: String, Sendable, CaseIterable { case ones, column }
    public enum TolMode: String, Sendable, CaseIterable { case d1Absolute = "d1-absolute", marginalRelative = "marginal-relative" }
    public var temperature: Double = 1
    public var initialization: Init = .ones
    public var tol: Double = 1e-4
    public var tolMode: TolMode = .d1Absolute
    public var maxIter: Int = 1000

    public static let vanilla = SinkhornConfig()
    public static let fast = SinkhornConfig(temperature: 0.5, initialization: .column)
    public init(temperature: Double = 1, initialization: Init = .ones, tol: Double = 1e-4, tolMode: TolMode = .d1Absolute, maxIter: Int = 1000) {
        self.temperature = temperature; self.initialization = initialization; self.tol = tol; self.tolMode = tolMode; self.maxIter = maxIter
    }
}

public struct SinkhornResult: Sendable {
    public var iterations = 0
    public var converged = true
    /// max_i |T·Σ_j P_ij − 1| and max_j |E·Σ_i P_ij − 1|: relative marginal errors.
    public var rowError = 0.0, colError = 0.0
    public init() {}
}

/// Reusable Sinkhorn workspace (no allocation per call after the first).
public final class Sinkhorn {
    private let K = FloatBuffer(), d0 = FloatBuffer(), d1 = FloatBuffer(), d1n = FloatBuffer()
    public init() {}

    /// Runs Sinkhorn on logits [T, E]; writes P [T, E] when `P` is given.
    @discardableResult
    public func run(_ logits: UnsafePointer<Float>, T: Int, E: Int, config c: SinkhornConfig,
                    P: UnsafeMutablePointer<Float>? = nil) -> SinkhornResult {
        var res = SinkhornResult()
        guard T > 0, E > 0 else { return res }
        let k = K.ensure(T * E), r = d0.ensure(T), col = d1.ensure(E), coln = d1n.ensure(E)
        let invTemp = Float(1 / c.temperature)
        var maxScaled: Float = -.infinity
        for i in 0..<(T * E) { maxScaled = max(maxScaled, logits[i] * invTemp) }
        let shift: Float = maxScaled > 80 ? maxScaled : 0
        for i in 0..<(T * E) { k[i] = expf(logits[i] * invTemp - shift) }
        for i in 0..<T { r[i] = 1 }
        switch c.initialization {
        case .ones:
            for j in 0..<E { col[j] = 1 }
        case .column:
            for j in 0..<E { col[j] = 0 }
            for i in 0..<T { let row = k + i * E; for j in 0..<E { col[j] += row[j] } }
            for j in 0..<E { col[j] = 1 / (Float(E) * col[j]) }
        }
        let invT = 1 / Float(T), invE = 1 / Float(E), eps: Float = 1e-8
        var err = Double.infinity
        var it = 0
        while err > c.tol {
            if it >= c.maxIter { res.converged = false; break }
            // d0 = (1/T) / (K·d1 + eps)
            for i in 0..<T {
                let row = k + i * E
                var s: Float = 0
                for j in 0..<E { s += row[j] * col[j] }
                r[i] = invT / (s + eps)
            }
            // d1' = (1/E) / (Kᵀ·d0 + eps)
            for j in 0..<E { coln[j] = 0 }
            for i in 0..<T { let row = k + i * E, ri = r[i]; for j in 0..<E { coln[j] += row[j] * ri } }
            for j in 0..<E { coln[j] = invE / (coln[j] + eps) }
            switch c.tolMode {
            case .d1Absolute:
                var s: Float = 0
                for j in 0..<E { s += abs(coln[j] - col[j]) }
                err = Double(s / Float(E))
            case .marginalRelative:
                var worst = 0.0
                for i in 0..<T {
                    let row = k + i * E
                    var s: Float = 0
                    for j in 0..<E { s += row[j] * coln[j] }
                    worst = max(worst, abs(Double(Float(T) * r[i] * s) - 1))
                }
                err = worst
            }
            for j in 0..<E { col[j] = coln[j] }
            it += 1
            if !err.isFinite { res.converged = false; break }
        }
        res.iterations = it
        // Marginal errors of P = diag(d0) K diag(d1).
        var colSum = [Double](repeating: 0, count: E)
        var rowWorst = 0.0
        for i in 0..<T {
            let row = k + i * E
            var s = 0.0
            for j in 0..<E {
                let p = Double(r[i]) * Double(row[j]) * Double(col[j])
                s += p; colSum[j] += p
                P?[i * E + j] = Float(p)
            }
            rowWorst = max(rowWorst, abs(Double(T) * s - 1))
        }
        res.rowError = rowWorst
        res.colError = colSum.map { abs(Double(E) * $0 - 1) }.max() ?? 0
        return res
    }
}
