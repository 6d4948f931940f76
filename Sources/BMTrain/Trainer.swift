import Foundation
import BMCore
import BMLayers

/// Where training batches come from: fills inputs and targets, both [B, L].
public protocol BatchSource {
    mutating func next(inputs: UnsafeMutablePointer<Int32>, targets: UnsafeMutablePointer<Int32>, B: Int, L: Int)
}

public struct TrainSettings: Sendable {
    public var steps: Int
    public var batch: Int
    public var seqLen: Int
    public var schedule: LRSchedule
    public var clip: Double = 1.0
    public var weightDecay: Float = 0.1
    public var beta1: Float = 0.9, beta2: Float = 0.95
    public var logEvery: Int = 1
    public var eps: Float = 1e-8
    /// Learning-rate factor of the SSM dynamics parameters (`ParamGroup.ssm`).
    public var ssmLRScale: Float = 1
    public init(steps: Int, batch: Int, seqLen: Int, schedule: LRSchedule) {
        self.steps = steps; self.batch = batch; self.seqLen = seqLen; self.schedule = schedule
    }
}

/// One training step and the loop around it: forward, backward, clip, AdamW.
public final class Trainer {
    public let model: LanguageModel
    public let settings: TrainSettings
    public let optimizer: AdamW
    public private(set) var step = 0
    public private(set) var lastAuxLoss = 0.0
    let inputs = IntBuffer(), targets = IntBuffer()

    /// Continues from a checkpoint taken after `step` steps.
    public func restore(step: Int) { self.step = step }

    public init(model: LanguageModel, settings: TrainSettings) {
        self.model = model
        self.settings = settings
        optimizer = AdamW(model.params, beta1: settings.beta1, beta2: settings.beta2, eps: settings.eps, weightDecay: settings.weightDecay,
                          ssmLRScale: settings.ssmLRScale)
    }

    public struct StepResult { public var loss: Double; public var gradNorm: Double; public var lr: Double; public var correct: Int; public var counted: Int }

    /// One optimisation step on the next batch of `source`; `routesByArgmax` for the last
    /// `train.argmax_routing_steps` (routing as evaluation and generation do).
    public func trainStep<S: BatchSource>(_ source: inout S, routesByArgmax: Bool = false) throws -> StepResult {
        let B = settings.batch, L = settings.seqLen
        let ip = inputs.ensure(B * L), tp = targets.ensure(B * L)
        source.next(inputs: ip, targets: tp, B: B, L: L)
        model.params.zeroGrad()
        // the trainer's own step: the one pass in which a router may move its balancing bias
        let pass = Pass.train(step: step, routesByArgmax: routesByArgmax, updatesRouterState: true)
        let r = model.forward(tokens: ip, targets: tp, B: B, L: L, pass: pass)
        let loss = r.loss + model.auxiliaryLoss
        lastAuxLoss = model.auxiliaryLoss
        guard loss.isFinite else {
            throw BMError.numerical("training loss is \(loss) at step \(step); training stopped")
        }
        model.backward(pass: pass)
        let norm = model.params.gradNorm()
        guard norm.isFinite else {
            throw BMError.numerical("gradient norm is \(norm) at step \(step); training stopped")
        }
        let lr = settings.schedule.lr(at: step)
        optimizer.step(lr: Float(lr), gradScale: ParameterSet.clipScale(norm: norm, maxNorm: settings.clip))   // clipping
        step += 1
        return StepResult(loss: r.loss, gradNorm: norm, lr: lr, correct: r.correct, counted: r.counted)
    }
}
