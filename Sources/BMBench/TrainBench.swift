import Foundation
import BMCore
import BMLayers
import BMTrain
import BMExperiments

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
    }

    public static func run(specPath: String, overrides: [String] = [], warmup: Int = 2, steps: Int = 8) throws -> Result {
        let spec = try ExperimentSpec.load(path: specPath, overrides: overrides)
        let data = try Dataset(spec)
        let model = try ModelBuilder.build(spec)
        let counts = ModelBuilder.counts(model, seqLen: spec.train.seqLen)
        var settings = spec.trainSettings               // betas, eps, weight decay as the spec says
        settings.steps = warmup + steps
        let trainer = Trainer(model: model, settings: settings)
        var src = DatasetSource(data: data, rng: RNG(seed: 1))
        let rssModel = Machine.currentResidentBytes
        var times: [Double] = []
        for i in 0..<(warmup + steps) {
            if i == warmup { model.timer.enabled = true; model.timer.reset() }
            let s = try seconds { _ = try trainer.trainStep(&src) }
            if i >= warmup { times.append(s) }
        }
        let rssAfter = Machine.peakResidentBytes
        let med = median(times)
        let total = times.reduce(0, +)
        var phases: [String: Double] = [:]
        var order: [String] = []
        for (n, s) in zip(model.timer.names, model.timer.seconds) { phases[n] = s / Double(steps) * 1e3; order.append(n) }
        phases["optimizer and clipping"] = (total - model.timer.total) / Double(steps) * 1e3
        order.append("optimizer and clipping")
        let peak = KernelBench.sgemmGFLOPS()
        let tps = Double(spec.train.batch * spec.train.seqLen) / med
        return Result(spec: specPath, tokensPerSecond: tps, msPerStep: med * 1e3, flopsPerToken: counts.flopsPerToken,
                      sgemmPeakGFLOPS: peak, mfu: tps * counts.flopsPerToken / (peak * 1e9),
                      peakResidentMib: Double(rssAfter) / 1048576, activationMib: Double(max(0, rssAfter - rssModel)) / 1048576,
                      parametersTotal: counts.total, parametersActive: counts.active, phases: phases, phaseOrder: order,
                      blasCore: BLAS.coreName, blasThreads: BLAS.threads)
    }
}
