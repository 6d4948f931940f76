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
    @Option(help: "A tokenizer.json to copy into the run, for eval --data on text and generate (default: SRC's own, if it has one).") var tokenizer: String?
    @Flag(help: "Replace an earlier import in DIR (never a trained run).") var force = false

    func run() throws {
        guarded {
            let r = try Importer.run(source: source, out: out, name: name, tokenizer: tokenizer, force: force)
            let kinds = Dictionary(grouping: r.layers) { l in l.split(separator: ",").first.map { String($0.dropFirst("{mixer: ".count)) } ?? l }
            print("\(source): \(r.layout.rawValue), \(r.layers.count) layers (\(kinds.keys.sorted().map { "\(kinds[$0]!.count) \($0)" }.joined(separator: ", "))), \(r.parameters) parameters from \(r.tensors) tensors")
            for n in r.notes { print("note: \(n)") }
            print("spec: \(r.specPath)\ncheckpoint: \(r.checkpointPath)")
            if let t = r.tokenizer { print("tokenizer: \(t)") }
        }
    }
}

extension Exporter.Format: ExpressibleByArgument {}

struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Export a run's weights for PyTorch: --format hf (MambaForCausalLM.from_pretrained reads it) or safetensors (the toolkit's names).")
    @Argument(help: "The run's checkpoint.h5, or its directory.") var checkpoint: String
    @Option(help: "hf (a Mamba-only model, for transformers) or safetensors (any model, the toolkit's names and its spec).") var format: Exporter.Format = .hf
    @Option(help: "The directory to write.") var out: String

    func run() throws {
        guarded {
            var isDir: ObjCBool = false
            let ck = FileManager.default.fileExists(atPath: checkpoint, isDirectory: &isDir) && isDir.boolValue ? checkpoint + "/checkpoint.h5" : checkpoint
            let r = try Exporter.run(checkpoint: ck, format: format, out: out)
            print("\(ck): \(r.parameters) parameters in \(r.tensors) tensors")
            for f in r.files { print("wrote \(f)") }
        }
    }
}
