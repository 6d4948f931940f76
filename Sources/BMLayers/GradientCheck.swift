import BMCore

/// Finite-difference gradient checker for any layer or model piece.
///
/// The layers compute in Float32, so a finite difference of the loss carries
/// rounding noise. The checker estimates it instead of guessing:
///
///   loss = Σ_i y_i · r_i  (r a random upstream gradient), summed in Double;
///   each y_i carries a relative error of about `noiseUlps`·2⁻²⁴, so the loss
///   carries an absolute error of about ε_L = noiseUlps · 2⁻²⁴ · Σ|y_i r_i|, and
///   the central difference (L(θ+h) − L(θ−h)) / 2h an error of about ε_L / h.
///
/// A coordinate passes when |analytic − numeric| ≤ atol + rtol·max(|a|, |n|)
/// with atol = `noiseFactor` · ε_L / h (rounding; `noiseUlps` = 16 covers the
/// few-ulp error of each output after a handful of dependent float operations)
/// and rtol (truncation: the O(h²) term of a smooth function, ≈ h²·|f'''/6f'|,
/// about 1e-4 relative at h = 1e-2 for inputs and weights of order 0.1–1, so
/// rtol = 1e-2 leaves a wide but still discriminating margin — a gradient 5 %
/// off, a wrong sign or a missing term fails; testCheckerRejectsAWrongGradient
/// shows it). The whole tensor must also agree in relative L2 norm within `rtol`.
public struct GradientChecker {
    public var h: Float = 1e-2
    public var rtol: Double = 1e-2
    public var noiseUlps: Double = 16
    public var noiseFactor: Double = 4
    /// At most this many coordinates per tensor are perturbed (chosen at random, seeded).
    public var maxCoordinates = 24
    public var seed: UInt64 = 7

    public init() {}

    public struct Failure: CustomStringConvertible {
        public let tensor: String, index: Int
        public let analytic: Double, numeric: Double, allowed: Double
        public var description: String {
            "\(tensor)[\(index)]: analytic \(analytic), numeric \(numeric) (allowed difference \(allowed))"
        }
    }

    public struct Report: CustomStringConvertible {
        public var checked: [String: Int] = [:]
        public var failures: [Failure] = []
        public var relativeL2: [String: Double] = [:]
        public var passed: Bool { failures.isEmpty }
        public var description: String {
            if passed { return "gradient check passed: \(checked.sorted { $0.key < $1.key }.map { "\($0.key)×\($0.value)" }.joined(separator: ", "))" }
            return "gradient check FAILED:\n" + failures.prefix(12).map { "  \($0)" }.joined(separator: "\n")
                + "\n  relative L2: " + relativeL2.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ", ")
        }
    }

    /// Checks one piece of computation.
    /// - `input`: the input values (may be empty); perturbed as tensor "input".
    /// - `params`: parameters to check (their slab's gradients are zeroed first).
    /// - `loss(x)`: forward only, returns the loss and Σ|terms| (for the noise estimate).
    /// - `gradient(x, dx)`: forward + backward; writes dx, accumulates parameter grads.
    public func check(input: [Float], params: [Param], set: ParameterSet?,
                      loss: (UnsafePointer<Float>) -> (value: Double, magnitude: Double),
                      gradient: (UnsafePointer<Float>, UnsafeMutablePointer<Float>) -> Void) -> Report {
        var report = Report()
        var x = input
        if x.isEmpty { x = [0] }
        var dx = [Float](repeating: 0, count: x.count)
        set?.zeroGrad()
        x.withUnsafeBufferPointer { xb in dx.withUnsafeMutableBufferPointer { gradient(xb.baseAddress!, $0.baseAddress!) } }
        let analyticParams = params.map { Array($0.grads) }
        var rng = RNG(seed: seed)

        func evaluate(_ xs: [Float]) -> (Double, Double) { xs.withUnsafeBufferPointer { loss($0.baseAddress!) } }

        func checkTensor(_ name: String, count: Int, analytic: (Int) -> Double,
                         perturb: (Int, Float) -> Void, evalNow: () -> (Double, Double)) {
            var idx = Array(0..<count)
            if count > maxCoordinates { rng.shuffle(&idx); idx = Array(idx.prefix(maxCoordinates)) }
            var diff2 = 0.0, norm2 = 0.0
            for i in idx {
                perturb(i, h)
                let (lp, mp) = evalNow()
                perturb(i, -2 * h)
                let (lm, mm) = evalNow()
                perturb(i, h)
                let numeric = (lp - lm) / (2 * Double(h))
                let a = analytic(i)
                let noise = noiseUlps * 5.96e-8 * max(mp, mm) / Double(h)
                let allowed = noiseFactor * noise + rtol * max(abs(a), abs(numeric))
                if abs(a - numeric) > allowed {
                    report.failures.append(Failure(tensor: name, index: i, analytic: a, numeric: numeric, allowed: allowed))
                }
                diff2 += (a - numeric) * (a - numeric)
                norm2 += max(a * a, numeric * numeric)
            }
            report.checked[name] = idx.count
            let rel = norm2 > 0 ? (diff2 / norm2).squareRoot() : 0
            report.relativeL2[name] = rel
        }

        if !input.isEmpty {
            checkTensor("input", count: x.count, analytic: { Double(dx[$0]) },
                        perturb: { i, d in x[i] += d }, evalNow: { evaluate(x) })
        }
        for (k, p) in params.enumerated() {
            let a = analyticParams[k]
            checkTensor(p.name, count: p.count, analytic: { Double(a[$0]) },
                        perturb: { i, d in p.w[i] += d }, evalNow: { evaluate(x) })
        }
        return report
    }

    /// Checks a whole model: the gradient of its loss on `tokens` → `targets` [B, L] with
    /// respect to every parameter (a training pass for the analytic gradient, evaluation
    /// passes for the differences), against central differences.
    public func check(model: LanguageModel, tokens: [Int32], targets: [Int32], B: Int, L: Int) -> Report {
        check(input: [], params: model.params.params, set: model.params, loss: { _ in
            let l = model.forward(tokens: tokens, targets: targets, B: B, L: L, pass: .eval()).loss
            return (l, abs(l) * 4)
        }, gradient: { _, _ in
            model.forward(tokens: tokens, targets: targets, B: B, L: L, pass: .train())
            model.backward(pass: .train())
        })
    }

    /// Checks a SequenceLayer on random input [B, L, inWidth] (scaled by `inputScale`)
    /// with a random upstream gradient, for the input and all its parameters, in a
    /// training pass (`pass`; it never updates router state).
    public func check(layer: SequenceLayer, set: ParameterSet, B: Int, L: Int, inputScale: Float = 1,
                      upstreamSeed: UInt64 = 11, pass: Pass = .train()) -> Report {
        var rng = RNG(seed: upstreamSeed)
        let nIn = B * L * layer.inWidth, nOut = B * L * layer.outWidth
        var input = [Float](repeating: 0, count: nIn)
        for i in 0..<nIn { input[i] = rng.normal() * inputScale }
        var r = [Float](repeating: 0, count: nOut)
        for i in 0..<nOut { r[i] = rng.normal() }
        var y = [Float](repeating: 0, count: nOut)
        return check(input: input, params: layer.parameters, set: set, loss: { x in
            y.withUnsafeMutableBufferPointer { layer.forward(x, $0.baseAddress!, B: B, L: L, pass: pass) }
            var s = 0.0, m = 0.0
            for i in 0..<nOut { let v = Double(y[i]) * Double(r[i]); s += v; m += abs(v) }
            let aux = layer.auxiliaryLoss
            return (s + aux, m + abs(aux))
        }, gradient: { x, dx in
            y.withUnsafeMutableBufferPointer { layer.forward(x, $0.baseAddress!, B: B, L: L, pass: pass) }
            r.withUnsafeBufferPointer { layer.backward($0.baseAddress!, dx, B: B, L: L, pass: pass) }
        })
    }
}
