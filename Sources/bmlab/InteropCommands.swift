import ArgumentParser
import Foundation
import BMCore
import BMInterop

struct ImportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Import a PyTorch-world checkpoint (Hugging Face MambaForCausalLM, mamba_ssm, Zyphra BlackMamba) as a run directory.",
        discussion: """
        SRC is a directory with config.json and its weights (model.safetensors, pytorch_model.bin, or shards with an \
        index), or a weights file with config.json beside it. DIR gets spec.yaml and checkpoint.h5, which eval, \
        generate and sinkhorn take like a trained run's (docs/weights.md).
        """)
    @Argument(help: "The checkpoint directory or weights file.") var source: String
    @Option(help: "The run directory to write.") var out: String
    @Option(help: "The run's name (default: DIR's name).") var name: String?

    func run() throws {
        guarded {
            let r = try Importer.run(source: source, out: out, name: name)
            let kinds = Dictionary(grouping: r.layers) { l in l.split(separator: ",").first.map { String($0.dropFirst("{mixer: ".count)) } ?? l }
            print("\(source): \(r.layout.rawValue), \(r.layers.count) layers (\(kinds.keys.sorted().map { "\(kinds[$0]!.count) \($0)" }.joined(separator: ", "))), \(r.parameters) parameters from \(r.tensors) tensors")
            for n in r.notes { print("note: \(n)") }
            print("spec: \(r.specPath)\ncheckpoint: \(r.checkpointPath)")
        }
    }
}
