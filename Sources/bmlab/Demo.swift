import ArgumentParser
import Foundation
import BMCore
import BMTrain

struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train the small default model end to end and write its metrics to HDF5.")

    @Option(help: "Output directory.") var out = "results/demo"
    @Option(help: "Training steps.") var steps = 300
    @Option(help: "Random seed.") var seed: UInt64 = 1

    func run() throws {
        startBLAS()
        guarded {
            var demo = DenseDemo()
            demo.steps = steps
            demo.seed = seed
            print("BLAS: \(BLAS.coreName) kernels, \(BLAS.threads) threads")
            let outcome = try demo.run(outDir: out)
            let last = outcome.losses.suffix(10).reduce(0, +) / Double(min(10, outcome.losses.count))
            print(String(format: "first loss %.4f, final loss (mean of last 10) %.4f, task entropy rate %.4f nats",
                         outcome.losses.first ?? .nan, last, outcome.entropyRate))
            print("metrics: \(outcome.metricsPath)")
        }
    }
}
