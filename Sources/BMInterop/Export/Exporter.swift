import Foundation
import BMCore
import BMLayers
import BMSpec
import BMExperiments

/// `bmlab export RUN --format F --out DIR`: a toolkit checkpoint for the PyTorch world.
///
/// - `hf`: a model of Mamba layers only (the architecture `MambaForCausalLM` has: pre-norm
///   Mamba blocks with RMSNorm, a final RMSNorm, a head tied or not) becomes a directory
///   `transformers`' `MambaForCausalLM.from_pretrained(DIR)` loads: `config.json` and
///   `model.safetensors` with HF's names (a tied head is not saved twice, as
///   `save_pretrained` does). Anything else is refused, naming the layer or setting.
/// - `safetensors`: any model, as `model.safetensors` with the toolkit's documented names
///   (Zyphra's, docs/checkpoints.md) and `config.json` holding the resolved spec, for
///   PyTorch code that builds the model itself (docs/weights.md says which).
public enum Exporter {
    public enum Format: String, Sendable, CaseIterable { case hf, safetensors }

    public struct Report: Sendable { public var files: [String]; public var tensors: Int; public var parameters: Int }

    public static func run(checkpoint: String, format: Format, out: String) throws -> Report {
        let (spec, model, _) = try OpenedCheckpoint.model(checkpoint)
        let fm = FileManager.default
        for f in ["config.json", "model.safetensors"] where fm.fileExists(atPath: out + "/" + f) {
            throw BMError.invalid("\(out)/\(f) exists; bmlab export writes a new directory (choose another --out)")
        }
        let config: JSONValue
        var tensors: [(name: String, shape: [Int], values: [Float])] = []
        switch format {
        case .hf:
            let mamba = try hfShape(spec, checkpoint: checkpoint)
            config = .object([
                ("architectures", .array([.string("MambaForCausalLM")])), ("model_type", .string("mamba")),
                ("vocab_size", num(spec.vocabSize)), ("hidden_size", num(spec.model.dModel)),
                ("state_size", num(mamba.N)), ("num_hidden_layers", num(spec.model.layers.count)),
                ("expand", num(mamba.expand)), ("intermediate_size", num(mamba.expand * spec.model.dModel)),
                ("conv_kernel", num(mamba.K)), ("time_step_rank", num(mamba.R)),
                ("use_bias", .bool(false)), ("use_conv_bias", .bool(true)), ("hidden_act", .string("silu")),
                ("layer_norm_epsilon", .number("1e-05")), ("residual_in_fp32", .bool(true)),
                ("tie_word_embeddings", .bool(spec.model.tiedHead)), ("pad_token_id", num(0)), ("bos_token_id", num(0)),
                ("eos_token_id", num(0)), ("use_cache", .bool(true)), ("torch_dtype", .string("float32")),
            ])
            for p in model.params.params { tensors.append((ImportedModel.hfName(p.name), p.shape, Array(p.values))) }
        case .safetensors:
            config = .object([("format", .string("bmlab")), ("toolkit_version", .string(BMLab.version)),
                              ("spec_yaml", .string(try spec.resolvedYAML()))])
            for p in model.params.params { tensors.append((p.name, p.shape, Array(p.values))) }
        }
        do {
            try fm.createDirectory(atPath: out, withIntermediateDirectories: true)
            try SafeTensorsFile.write(to: out + "/model.safetensors", tensors: tensors, metadata: [("format", "pt")])
            try AtomicText.write(prettyJSON(config) + "\n", to: out + "/config.json")
        } catch let e as BMError { throw e } catch { throw BMError.system("\(out): cannot write: \(BMError.reason(error))") }
        return Report(files: [out + "/config.json", out + "/model.safetensors"], tensors: tensors.count, parameters: model.params.parameterCount)
    }

    static func num(_ i: Int) -> JSONValue { .number(String(i)) }

    /// The one Mamba shape of every layer, or an error naming what `MambaForCausalLM` lacks.
    static func hfShape(_ spec: ExperimentSpec, checkpoint: String) throws -> (N: Int, K: Int, expand: Int, R: Int) {
        func refuse(_ m: String) -> BMError { .invalid("\(checkpoint): --format hf needs a model MambaForCausalLM can hold: \(m); use --format safetensors") }
        guard spec.model.finalNorm == .rmsnorm else { throw refuse("its final norm is \(spec.model.finalNorm.rawValue), MambaForCausalLM's is RMSNorm") }
        var shape: (N: Int, K: Int, expand: Int, R: Int)? = nil
        for (i, l) in spec.model.layers.enumerated() {
            guard l.mixer == "mamba" else { throw refuse("layer \(i) is \(l.mixer), and MambaForCausalLM has Mamba layers only") }
            guard l.shared == nil else { throw refuse("layer \(i) shares its parameters (shared: \(l.shared!))") }
            let o = l.resolved
            guard o.bool("gate"), o.bool("skip_d") else { throw refuse("layer \(i) has gate or skip_d off") }
            let R = o.intOrAuto("dt_rank") ?? (spec.model.dModel + 15) / 16
            let s = (N: o.int("d_state"), K: o.int("d_conv"), expand: o.int("expand"), R: R)
            if let shape, shape != s { throw refuse("layer \(i)'s Mamba options (d_state \(s.N), d_conv \(s.K), expand \(s.expand), dt_rank \(s.R)) differ from layer 0's: one config holds one shape") }
            shape = s
        }
        guard let shape else { throw refuse("it has no layers") }
        return shape
    }

    /// config.json as `save_pretrained` writes it: two-space indents, keys in order.
    static func prettyJSON(_ v: JSONValue, indent: String = "") -> String {
        switch v {
        case .object(let m) where !m.isEmpty:
            let inner = indent + "  "
            return "{\n" + m.map { inner + JSONValue.quote($0.0) + ": " + prettyJSON($0.1, indent: inner) }.joined(separator: ",\n") + "\n" + indent + "}"
        case .array(let a) where !a.isEmpty:
            return "[" + a.map { prettyJSON($0, indent: indent) }.joined(separator: ", ") + "]"
        default: return v.text
        }
    }
}
