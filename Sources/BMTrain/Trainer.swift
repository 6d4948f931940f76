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
///
/// Data-parallel (docs/distributed.md): the step's global batch of `settings.batch` rows
/// is cut into `shards` equal shards of consecutive rows; rank r of a `group` of W ranks
/// computes shards r·k ..< (r+1)·k (k = shards / W), each from a zeroed gradient, scales
/// each shard's gradient by its share 1/shards of the positions (the cross-entropy's part
/// weighted within the shard so that it counts per scored target: n_s·shards/N, 1 when
/// every target is scored), adds them (the last shard first), and one allreduce of the
/// slab sums the ranks. Every rank then holds
/// the same gradient and takes the same optimizer step. With W = 1 and k > 1 one process
/// computes what a k-rank run computes (`bmlab train --shards k`); with one shard the step
/// is the single-process step.
public final class Trainer {
    public let model: LanguageModel
    public let settings: TrainSettings
    public let optimizer: AdamW
    public private(set) var step = 0
    public private(set) var lastAuxLoss = 0.0
    /// The ranks of a data-parallel run (one process: `SingleProcess`).
    public let group: Communicator
    /// Shards of the global batch over all ranks (a multiple of the ranks).
    public let shards: Int
    /// Seconds the last step spent in the gradient allreduce (for `bench train --ranks`).
    public private(set) var lastReduceSeconds = 0.0
    /// Each layer's statistics of the last sharded step over the whole batch (shards and
    /// ranks): counts summed, values and rows averaged over the shards (each shard has the
    /// same positions). nil after a single-process step, whose layers report the whole
    /// batch themselves (`Mixer.statistics`).
    public private(set) var lastStatistics: [[(String, LayerStatistic)]]? = nil
    let inputs = IntBuffer(), targets = IntBuffer()
    private let accumulated = FloatBuffer()

    /// Continues from a checkpoint taken after `step` steps.
    public func restore(step: Int) { self.step = step }

    public init(model: LanguageModel, settings: TrainSettings, group: Communicator = SingleProcess(), shards: Int = 1) {
        precondition(shards >= group.size && shards % group.size == 0 && settings.batch % shards == 0,
                     "shards must be a multiple of the ranks and divide the batch (checked by the spec)")
        self.model = model
        self.settings = settings
        self.group = group
        self.shards = shards
        optimizer = AdamW(model.params, beta1: settings.beta1, beta2: settings.beta2, eps: settings.eps, weightDecay: settings.weightDecay,
                          ssmLRScale: settings.ssmLRScale)
    }

    public struct StepResult { public var loss: Double; public var gradNorm: Double; public var lr: Double; public var correct: Int; public var counted: Int }

    /// One optimisation step on the next batch of `source`; `routesByArgmax` for the last
    /// `train.argmax_routing_steps` (routing as evaluation and generation do).
    public func trainStep<S: BatchSource>(_ source: inout S, routesByArgmax: Bool = false) throws -> StepResult {
        let B = settings.batch, L = settings.seqLen
        let ip = inputs.ensure(B * L), tp = targets.ensure(B * L)
        source.next(inputs: ip, targets: tp, B: B, L: L)      // the global batch, on every rank
        if shards > 1 { return try shardedStep(ip, tp, routesByArgmax: routesByArgmax) }
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
        return try finishStep(loss: r.loss, correct: r.correct, counted: r.counted)
    }

    /// Clip, AdamW, next step: the same on every rank (the gradient is).
    private func finishStep(loss: Double, correct: Int, counted: Int) throws -> StepResult {
        let norm = model.params.gradNorm()
        guard norm.isFinite else {
            throw BMError.numerical("gradient norm is \(norm) at step \(step); training stopped")
        }
        let lr = settings.schedule.lr(at: step)
        optimizer.step(lr: Float(lr), gradScale: ParameterSet.clipScale(norm: norm, maxNorm: settings.clip))   // clipping
        step += 1
        return StepResult(loss: loss, gradNorm: norm, lr: lr, correct: correct, counted: counted)
    }

    /// This rank's shards of the global batch (ip, tp: [B, L]), their gradients summed
    /// with the other ranks' (see the type's comment).
    private func shardedStep(_ ip: UnsafeMutablePointer<Int32>, _ tp: UnsafeMutablePointer<Int32>, routesByArgmax: Bool) throws -> StepResult {
        let B = settings.batch, L = settings.seqLen
        let rows = B / shards, perRank = shards / group.size
        let n = model.params.count
        let g = model.params.grads, acc = accumulated.ensure(n)
        // N: the scored tokens of the whole batch, which every rank sees
        var N = 0
        for t in 0..<(B * L) where tp[t] != model.loss.ignoreIndex { N += 1 }
        // no router moves its bias inside a shard: the loads are summed first
        let pass = Pass.train(step: step, routesByArgmax: routesByArgmax, updatesRouterState: false)
        let share = Float(1) / Float(shards)                     // exact for a power of two
        defer { model.lossGradientWeight = 1 }
        var stateLoad: [[Int]?] = model.blocks.map { _ in nil }
        // [Σ n_s·loss_s, Σ n_s, Σ correct, Σ aux_s / shards]
        var totals = [0.0, 0.0, 0.0, 0.0]
        var stats: [Double] = []                                 // every layer's statistics, flattened, summed over shards
        var layout: [[(String, LayerStatistic)]] = []
        let first = group.rank * perRank
        for s in (first..<(first + perRank)).reversed() {       // the last shard first (see below)
            model.params.zeroGrad()
            var scored = 0
            for t in (s * rows * L)..<((s + 1) * rows * L) where tp[t] != model.loss.ignoreIndex { scored += 1 }
            model.lossGradientWeight = N > 0 ? Float(Double(scored * shards) / Double(N)) : 0
            let r = model.forward(tokens: ip + s * rows * L, targets: tp + s * rows * L, B: rows, L: L, pass: pass)
            let aux = model.auxiliaryLoss
            guard (r.loss + aux).isFinite else {
                throw BMError.numerical("training loss is \(r.loss + aux) at step \(step) (rank \(group.rank), shard \(s)); training stopped")
            }
            model.backward(pass: pass)
            totals[0] += r.loss * Double(r.counted); totals[1] += Double(r.counted)
            totals[2] += Double(r.correct); totals[3] += Double(share) * aux
            layout = model.blocks.map(\.mixer.statistics)
            let flat = Self.flatten(layout, valueWeight: Double(share))
            stats = stats.isEmpty ? flat : zip(stats, flat).map { $0 + $1 }
            for (i, b) in model.blocks.enumerated() {
                guard let load = b.mixer.routerStateLoad else { continue }
                stateLoad[i] = stateLoad[i].map { zip($0, load).map { $0 + $1 } } ?? load
            }
            // acc = share·g (+ acc): a separate product and sum, as the allreduce adds
            // the ranks' scaled slabs, so that k shards in one process and k ranks give the
            // same bits (with 2, each element is one addition; with more, Open MPI's
            // basic_linear reduction folds rank k−1 first, as this loop does)
            let isFirst = s == first + perRank - 1
            Parallel.forEachBlock(n, size: ParameterSet.chunkSize) { r in
                for i in r { g[i] *= share }
                if isFirst { (acc + r.lowerBound).update(from: g + r.lowerBound, count: r.count) }
                else { for i in r { acc[i] = g[i] + acc[i] } }
            }
        }
        g.update(from: acc, count: n)
        let t0 = ContinuousClock.now
        if group.size > 1 {
            group.setContext("the gradient allreduce of step \(step)")
            try group.sum(g, count: n)
            let loads = stateLoad.compactMap { $0 }.flatMap { $0 }
            let reduced = try group.sum(totals + loads.map(Double.init) + stats)
            totals = Array(reduced[0..<(4 + loads.count)])
            stats = Array(reduced[(4 + loads.count)...])
            var k = 4
            for i in stateLoad.indices where stateLoad[i] != nil {
                let E = stateLoad[i]!.count
                stateLoad[i] = (k..<(k + E)).map { Int(totals[$0].rounded()) }
                k += E
            }
        }
        lastReduceSeconds = (ContinuousClock.now - t0).seconds
        for (i, b) in model.blocks.enumerated() { if let load = stateLoad[i] { b.mixer.updateRouterState(load: load) } }
        lastAuxLoss = totals[3]
        lastStatistics = Self.unflatten(stats, like: layout)
        let loss = totals[1] > 0 ? totals[0] / totals[1] : 0      // no scored target: 0, as one process reports
        return try finishStep(loss: loss, correct: Int(totals[2]), counted: Int(totals[1]))
    }

    /// Statistics as one vector: counts as they are, values and rows × `valueWeight`.
    static func flatten(_ layers: [[(String, LayerStatistic)]], valueWeight w: Double) -> [Double] {
        layers.flatMap { $0.flatMap { _, s -> [Double] in
            switch s {
            case .value(let v): return [v * w]
            case .count(let c): return [Double(c)]
            case .row(let r): return r.map { $0 * w }
            case .counts(let c): return c.map(Double.init)
            }
        } }
    }

    /// The inverse of `flatten` for statistics shaped like `layout`.
    static func unflatten(_ v: [Double], like layout: [[(String, LayerStatistic)]]) -> [[(String, LayerStatistic)]] {
        var k = 0
        return layout.map { $0.map { name, s -> (String, LayerStatistic) in
            switch s {
            case .value: k += 1; return (name, .value(v[k - 1]))
            case .count: k += 1; return (name, .count(Int(v[k - 1].rounded())))
            case .row(let r): k += r.count; return (name, .row(Array(v[(k - r.count)..<k])))
            case .counts(let c): k += c.count; return (name, .counts(v[(k - c.count)..<k].map { Int($0.rounded()) }))
            }
        } }
    }
}
