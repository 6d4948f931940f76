import Foundation
import BMCore
import BMLayers

/// The first end-to-end run: a tiny dense model
/// (embedding → N × [RMSNorm → gated MLP] → norm → tied head) trained on the
/// seeded Markov-chain task, loss recorded per step in `DIR/metrics.h5`.
public struct DenseDemo: Sendable {
    public var vocab = 64, width = 64, layers = 2, ffn = 128
    public var batch = 16, seqLen = 64, steps = 300
    public var lr = 3e-3
    public var seed: UInt64 = 1
    public init() {}

    public struct Outcome { public var losses: [Double]; public var entropyRate: Double; public var metricsPath: String }

    public func run(outDir: String?, progress: Bool = true) throws -> Outcome {
        let task = MarkovTask(vocab: vocab, seed: seed)
        let model = LanguageModel(vocab: vocab, width: width, layers: layers, finalNorm: .rmsnorm, tiedHead: true, seed: seed) {
            [width, ffn, layers] ps, name, _ in
            GatedMLP(ps, name, d: width, F: ffn, activation: .swiglu, outputStd: 0.02 / Float(2 * layers).squareRoot())
        }
        var settings = TrainSettings(steps: steps, batch: batch, seqLen: seqLen,
                                     schedule: .cosine(lr: lr, warmup: steps / 10, total: steps, minLR: lr / 10))
        settings.logEvery = 1
        let trainer = Trainer(model: model, settings: settings)
        var source = MarkovSource(task: task, seed: seed &+ 1)
        var metrics: MetricsLog?
        var path = ""
        if let outDir {
            try FileManager.default.createDirectory(atPath: outDir, withIntermediateDirectories: true)
            path = (outDir as NSString).appendingPathComponent("metrics.h5")
            metrics = try MetricsLog(path: path, attributes: [
                ("toolkit_version", .string(BMLab.version)),
                ("experiment", .string("dense-demo")),
                ("task", .string("markov(vocab=\(vocab), successors=4)")),
                ("seed", .int(Int(seed))),
                ("blas_core", .string(BLAS.coreName)),
                ("blas_threads", .int(BLAS.threads)),
                ("parameters_total", .int(model.params.parameterCount)),
                ("entropy_rate_nats", .double(task.entropyRate)),
                ("model", .string("vocab=\(vocab) d_model=\(width) layers=\(layers)x[rmsnorm,mlp(swiglu,F=\(ffn))] final_norm=rmsnorm tied_head=true")),
                ("train", .string("steps=\(steps) batch=\(batch) seq_len=\(seqLen) lr=\(lr) schedule=cosine(warmup=\(steps / 10)) adamw(0.9,0.95,wd=0.1) clip=1.0")),
                ("start_time", .string(ISO8601DateFormatter().string(from: Date()))),
            ])
        }
        let line = progress ? ProgressLine(total: steps) : nil
        let losses = try trainer.run(&source, metrics: metrics, progress: line)
        metrics?.close()
        return Outcome(losses: losses, entropyRate: task.entropyRate, metricsPath: path)
    }
}
