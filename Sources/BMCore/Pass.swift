/// What one pass through a model is for, handed as an immutable value to every layer's
/// `forward`, `backward`, `prefill` and `step`: no layer reads shared mutable settings, so
/// a layer cannot see another pass's mode, tokens or weight format, and a generator and a
/// trainer (or two generators) using one model in one process cannot change each other's
/// settings. They do share the layers' scratch buffers: calls are made one after another,
/// and none between a training forward and its backward.
///
/// Make one with `Pass.train`, `Pass.eval` or `Pass.generate`; `with(tokens:)` gives the
/// same pass for a batch's token ids (the model sets them before its layers run).
public struct Pass: @unchecked Sendable {
    /// `.train`: cache for backward, training-mode routing; `.eval`: evaluation and generation.
    public let mode: Mode
    /// Token ids of the batch, [B, L] (hash routing reads them); set by the model.
    public let tokens: UnsafePointer<Int32>?
    /// The training step (seeds step-random routing).
    public let step: Int
    /// How MoE layers route in evaluation (`argmax` or `train`; `both` is two passes).
    public let evalRouting: EvalRouting
    /// In evaluation, MoE layers also count how often the other routing picks the same experts.
    public let measureAgreement: Bool
    /// A training step that routes by argmax (`train.argmax_routing_steps`: the last steps
    /// fine-tune the model to the routing it is evaluated and generates with).
    public let trainRoutesByArgmax: Bool
    /// The trainer's step, the only pass in which a router may move its load-balancing
    /// bias (not gradient dumps, gradient checks or evaluations).
    public let updatesRouterState: Bool
    /// A generation pass's bf16 copy of the weights (`--weights bf16`), owned by the
    /// generator that made it: its one-token products read the copy. nil: fp32.
    public let bf16: BF16Weights?

    /// Whether routers make training's assignment in this pass.
    public var routesAsTraining: Bool { mode == .train ? !trainRoutesByArgmax : evalRouting == .train }

    private init(mode: Mode, tokens: UnsafePointer<Int32>? = nil, step: Int = 0, evalRouting: EvalRouting = .argmax,
                 measureAgreement: Bool = false, trainRoutesByArgmax: Bool = false, updatesRouterState: Bool = false,
                 bf16: BF16Weights? = nil) {
        self.mode = mode; self.tokens = tokens; self.step = step; self.evalRouting = evalRouting
        self.measureAgreement = measureAgreement; self.trainRoutesByArgmax = trainRoutesByArgmax
        self.updatesRouterState = updatesRouterState; self.bf16 = bf16
    }

    /// A training pass: step `step`; `routesByArgmax` for the last `argmax_routing_steps`;
    /// `updatesRouterState` only for the trainer's own step.
    public static func train(step: Int = 0, routesByArgmax: Bool = false, updatesRouterState: Bool = false) -> Pass {
        Pass(mode: .train, step: step, trainRoutesByArgmax: routesByArgmax, updatesRouterState: updatesRouterState)
    }

    /// An evaluation pass routing as `routing` says (`argmax` or `train`).
    public static func eval(routing: EvalRouting = .argmax, measureAgreement: Bool = false) -> Pass {
        precondition(routing != .both, "an evaluation pass routes one way; eval.routing both is two passes")
        return Pass(mode: .eval, evalRouting: routing, measureAgreement: measureAgreement)
    }

    /// A generation pass: evaluation mode, each token routed by its own logits (causal),
    /// one-token products reading `bf16` when it is given.
    public static func generate(bf16: BF16Weights? = nil) -> Pass { Pass(mode: .eval, bf16: bf16) }

    /// The same pass over the batch whose token ids are `tokens`.
    public func with(tokens: UnsafePointer<Int32>?) -> Pass {
        Pass(mode: mode, tokens: tokens, step: step, evalRouting: evalRouting, measureAgreement: measureAgreement,
             trainRoutesByArgmax: trainRoutesByArgmax, updatesRouterState: updatesRouterState, bf16: bf16)
    }
}
