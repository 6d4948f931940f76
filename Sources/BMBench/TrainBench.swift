import Foundation
import BMCore
import BMLayers
import BMTrain
import BMExperiments
import BMSpec
import BMData

/// `bmlab bench train`: median training throughput of a spec's model, its model
/// FLOPs utilisation against an sgemm peak measured in the same run, peak memory,
/// and the time split by layer kind.
public enum TrainBench {
    public struct Result: Codable, Sendable {
        public var spec: String
        public var tokensPerSecond: Double          // median over timed steps
        public var msPerStep: Double
        public var flopsPerToken: Double
        public var sgemmPeakGFLOPS: Double
        public var mfu: Double                      // achieved FLOP/s ÷ sgemm peak
        public var peakResidentMib: Double
        public var activationMib: Double            // resident growth during the first step (activations and scratch)
        public var parametersTotal: Int, parametersActive: Int
        public var phases: [String: Double]         // ms per step
        public var phaseOrder: [String]
        public var blasCore: String, blasThreads: Int
        /// Processes the step was spread over (data-parallel ranks) and the gradient
        /// allreduce's time per step (ms, median over the timed steps; 0 for one rank).
        public var ranks: Int = 1
        public var allreduceMs: Double = 0
    }

    /// One sequence length of `lengths`: the same tokens per step, split as batch × seq_len.
    public struct LengthPoint: Codable, Sendable {
        public var seqLen: Int, batch: Int
        public var tokensPerSecond: Double, msPerStep: Double
        public var activationMib: Double            // measured: peak resident growth over the model's
        public var estimatedActivationMib: Double   // what the memory estimate says (MemoryEstimate)
        public var flopsPerToken: Double             // grows with L only through attention's scores
    }

    /// Training cost against the context: the spec's model at each sequence length, with
    /// `tokensPerStep` tokens a step (default: the spec's batch × seq_len), batch =
    /// tokensPerStep / seq_len (at least 1). Each length's peak memory is measured from
    /// a reset peak (`Machine.resetPeakResident`).
    public static func lengths(specPath: String, overrides: [String] = [], seqLens: [Int], tokensPerStep: Int? = nil,
                               steps: Int = 4) throws -> [LengthPoint] {
        let base = try ExperimentSpec.load(path: specPath, overrides: overrides)
        let tokens = tokensPerStep ?? base.train.batch * base.train.seqLen
        var out: [LengthPoint] = []
        for L in seqLens {
            let B = max(1, tokens / L)
            let o = overrides + ["train.seq_len=\(L)", "train.batch=\(B)"]
            let est = try MemoryEstimate(try ExperimentSpec.load(path: specPath, overrides: o))
            Machine.resetPeakResident()
            let r = try run(specPath: specPath, overrides: o, warmup: 1, steps: steps, measurePeak: false)
            out.append(LengthPoint(seqLen: L, batch: B, tokensPerSecond: r.tokensPerSecond, msPerStep: r.msPerStep,
                                   activationMib: r.activationMib, estimatedActivationMib: est.activationBytes / 1048576,
                                   flopsPerToken: r.flopsPerToken))
        }
        return out
    }

    /// With a `group` of several ranks, the step is data-parallel (each rank a shard of the
    /// batch, one allreduce); the figures are rank 0's, tokens/s counts the whole batch.
    public static func run(specPath: String, overrides: [String] = [], warmup: Int = 2, steps: Int = 8,
                           measurePeak: Bool = true, group: Communicator = SingleProcess()) throws -> Result {
        let spec = try ExperimentSpec.load(path: specPath, overrides: overrides)
        let data = try Dataset(spec)
        let model = try ModelBuilder.build(spec)
        let counts = ModelBuilder.counts(model, seqLen: spec.train.seqLen, scoredFraction: try Dataset.scoredFraction(spec))
        var settings = spec.trainSettings               // betas, eps, weight decay as the spec says
        settings.steps = warmup + steps
        try spec.checkShards(group.size, how: "\(group.size) ranks")
        let trainer = Trainer(model: model, settings: settings, group: group, shards: group.size)
        var src = DatasetSource(data: data, rng: RNG(seed: 1))
        let rssModel = Machine.currentResidentBytes
        var times: [Double] = [], reduce: [Double] = []
        for i in 0..<(warmup + steps) {
            if i == warmup { model.timer.enabled = true; model.timer.reset() }
            let s = try seconds { _ = try trainer.trainStep(&src) }
            if i >= warmup { times.append(s); reduce.append(trainer.lastReduceSeconds) }
        }
        let rssAfter = Machine.peakResidentBytes
        let med = median(times)
        let total = times.reduce(0, +)
        var phases: [String: Double] = [:]
        var order: [String] = []
        for (n, s) in zip(model.timer.names, model.timer.seconds) { phases[n] = s / Double(steps) * 1e3; order.append(n) }
        phases["optimizer and clipping"] = (total - model.timer.total) / Double(steps) * 1e3
        order.append("optimizer and clipping")
        let peak = measurePeak ? KernelBench.sgemmGFLOPS() : .nan
        let tps = Double(spec.train.batch * spec.train.seqLen) / med
        return Result(spec: specPath, tokensPerSecond: tps, msPerStep: med * 1e3, flopsPerToken: counts.flopsPerToken,
                      sgemmPeakGFLOPS: peak, mfu: tps * counts.flopsPerToken / (peak * 1e9 * Double(group.size)),   // each rank's peak
                      peakResidentMib: Double(rssAfter) / 1048576, activationMib: Double(max(0, rssAfter - rssModel)) / 1048576,
                      parametersTotal: counts.total, parametersActive: counts.active, phases: phases, phaseOrder: order,
                      blasCore: BLAS.coreName, blasThreads: BLAS.threads, ranks: group.size, allreduceMs: median(reduce) * 1e3)
    }
}
