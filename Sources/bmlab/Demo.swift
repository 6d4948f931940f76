import ArgumentParser
import Foundation
import BMCore
import BMExperiments
import BMSpec

struct DemoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "demo", 
        abstract: "Train Experiments/blackmamba-tiny.yaml on the fortunes corpus, evaluate it and generate a sample.")

    @Option(help: "The spec.") var spec = "Experiments/blackmamba-tiny.yaml"
    @Option(help: "Output directory (replaced).") var out = "results/demo"
    @OptionGroup var machine: MachineOptions

    func run() throws {
        machine.startBLAS()
        guarded {
            let s = try ExperimentSpec.load(path: spec)
            // The demo starts over each time.
            for f in ExperimentRun.runFiles { try? FileManager.default.removeItem(atPath: "\(out)/\(f)") }
            let run = try ExperimentRun(spec: s, outDir: out, resume: false)
            print("training \(s.name) (\(s.model.layers.map(\.mixer).joined(separator: ","))), \(fmtCount(run.counts.total)) parameters, on \(run.data.description)")
            let sum = try run.run()
            print("run directory: \(out)")
            if let e = sum.evalLoss {
                print(String(format: "final validation loss: %.4f nats/byte (%.3f bits/byte); unigram baseline %.4f", e, e / log(2.0), run.data.unigramEntropy ?? .nan))
            }
            print(String(format: "training speed: %.0f tokens/s", sum.tokensPerSecond))
            try BLAS.setUpForGeneration()                     // batch-1 generation
            let gen = try Generator(model: run.model, maxLength: 400)
            var rng = RNG(seed: 7)
            let prompt = Array("The ".utf8)
            var out: [UInt8] = prompt
            gen.generate(prompt.map { Int32($0) }, maxTokens: 200, temperature: 0.7, topK: 20, rng: &rng) {
                out.append(UInt8(truncatingIfNeeded: $0))
            }
            print("sample: " + String(decoding: out, as: UTF8.self))
        }
    }
}
