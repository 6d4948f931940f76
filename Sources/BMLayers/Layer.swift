import BMCore

/// Shared, per-step facts that some layers need besides their input
/// (token ids for hash routing, the mode, a step-seeded generator).
public final class StepContext: @unchecked Sendable {
    public var mode: Mode = .train
    /// Token ids of the current batch, [B, L]; set by the model before forward.
    public var tokens: UnsafePointer<Int32>? = nil
    public var step: Int = 0
    /// How MoE layers route in evaluation (`argmax` or `train`; `both` is two passes).
    public var evalRouting: EvalRouting = .argmax
    /// In evaluation, MoE layers also count how often the other routing picks the same experts.
    public var measureAgreement = false
    /// Training steps that route by argmax (`train.argmax_routing_steps`: the last steps
    /// fine-tune the model to the routing it is evaluated and generates with).
    public var trainRoutesByArgmax = false
    /// Set by the trainer around its step's forward: only then may a router move its
    /// load-balancing bias (not in gradient dumps, gradient checks or evaluations).
    public var updatesRouterState = false
    /// Whether routers make training's assignment in this pass.
    public var routesAsTraining: Bool { mode == .train ? !trainRoutesByArgmax : evalRouting == .train }
    public init() {}
}

/// A layer that maps a sequence batch to a sequence batch with an explicit,
/// paired backward pass (llm.c style).
///
/// Contract:
/// - `forward` reads `x: [B, L, inWidth]`, writes `y: [B, L, outWidth]`, and
///   caches what `backward` needs. The caller keeps `x` unchanged until the
///   matching `backward` (layers may keep a pointer to it instead of a copy).
/// - `backward` reads `dy: [B, L, outWidth]`, *overwrites* `dx: [B, L, inWidth]`,
///   and *accumulates* parameter gradients into their `Param.g`.
/// - Layers are causal along L unless documented otherwise.
public protocol SequenceLayer: AnyObject {
    var inWidth: Int { get }
    var outWidth: Int { get }
    /// Every parameter this layer (and its children) declared.
    var parameters: [Param] { get }
    func forward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, B: Int, L: Int)
    func backward(_ dy: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>, B: Int, L: Int)
    /// Extra scalar loss this layer adds (aux / z losses), computed in forward;
    /// its gradient is included by backward. 0 for most layers.
    var auxiliaryLoss: Double { get }
}

extension SequenceLayer {
    public var auxiliaryLoss: Double { 0 }
}
