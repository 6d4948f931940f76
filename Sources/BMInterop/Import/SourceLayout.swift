import Foundation
import BMCore

/// The checkpoint layouts `bmlab import` reads (docs/weights.md, "Layouts"): what their
/// `config.json` says, the toolkit spec that builds the same model, and the name of
/// every toolkit parameter in the source's state dict.
public enum SourceLayout: String, Sendable {
    /// Hugging Face `MambaForCausalLM` (`model_type: mamba`).
    case huggingface = "hf-mamba"
    /// state-spaces `mamba_ssm` `MambaLMHeadModel` (`d_model`, `n_layer`, `ssm_cfg`).
    case mambaSSM = "mamba_ssm"
    /// Zyphra's BlackMamba (`num_layers`, `mamba_moe_layers`).
    case zyphra = "zyphra-blackmamba"

    /// The layout a config describes, or an error saying what was found.
    static func detect(_ c: JSONValue, file: String) throws -> SourceLayout {
        if c["mamba_moe_layers"] != nil || (c["num_layers"] != nil && c["expansion_factor"] != nil) { return .zyphra }
        if c["model_type"]?.stringValue == "mamba" || (c["hidden_size"] != nil && c["state_size"] != nil && c["num_hidden_layers"] != nil) { return .huggingface }
        if c["d_model"] != nil && c["n_layer"] != nil { return .mambaSSM }
        if let t = c["model_type"]?.stringValue {
            throw BMError.invalid("\(file): model_type '\(t)' is not a layout bmlab import reads (hf-mamba: model_type mamba; mamba_ssm: d_model and n_layer; Zyphra BlackMamba: num_layers and mamba_moe_layers)")
        }
        throw BMError.invalid("\(file): not a config of a layout bmlab import reads (expected hf-mamba's model_type: mamba, mamba_ssm's d_model and n_layer, or Zyphra BlackMamba's num_layers and mamba_moe_layers)")
    }
}

/// What a config resolves to: the model's shape and the spec's layer list.
struct ImportedModel {
    var layout: SourceLayout
    var vocab: Int, width: Int
    /// YAML flow mappings, one per layer (`{mixer: mamba, d_state: 16, …}`).
    var layers: [String]
    var finalNorm: String             // rmsnorm | layernorm
    var tiedHead: Bool
    var normEps: Double
    /// Maps a toolkit parameter name to the source's.
    var sourceName: (String) -> String
    /// Source tensors that carry no parameter of their own (a tied head saved twice): name → the tensor it must equal.
    var duplicates: [String: String] = [:]
    /// Config keys the toolkit has no use for but that change nothing it computes (reported).
    var notes: [String] = []
}

/// Typed reads of config keys, each error naming the file and the key.
struct ConfigReader {
    let c: JSONValue, file: String
    func int(_ k: String, _ d: Int? = nil) throws -> Int {
        guard let v = c[k] else { if let d { return d }; throw BMError.invalid("\(file): missing '\(k)' (an integer)") }
        guard let i = v.intValue else { throw BMError.invalid("\(file): '\(k)' is \(v.kindDescription), expected an integer") }
        return i
    }
    /// An optional key: absent or null gives `d`; a value of another type is an error.
    private func optional<T>(_ k: String, _ d: T, _ get: (JSONValue) -> T?, _ expected: String) throws -> T {
        guard let v = c[k], v != .null else { return d }
        guard let x = get(v) else { throw BMError.invalid("\(file): '\(k)' is \(v.kindDescription), expected \(expected)") }
        return x
    }
    func double(_ k: String, _ d: Double) throws -> Double { try optional(k, d, \.doubleValue, "a number") }
    func bool(_ k: String, _ d: Bool) throws -> Bool { try optional(k, d, \.boolValue, "true or false") }
    func string(_ k: String, _ d: String) throws -> String { try optional(k, d, \.stringValue, "a string") }
    /// `auto` (or absent) → ⌈D/16⌉, else an integer.
    func rank(_ k: String, width: Int) throws -> Int {
        guard let v = c[k], v != .null, v != .string("auto") else { return (width + 15) / 16 }
        guard let i = v.intValue, i >= 1 else { throw BMError.invalid("\(file): '\(k)' is \(v.kindDescription), expected 'auto' or a positive integer") }
        return i
    }
    func refuse(_ what: String) -> BMError { .invalid("\(file): \(what)") }
}

extension ImportedModel {
    /// Hugging Face `MambaForCausalLM` (transformers' `configuration_mamba.py` defaults).
    static func huggingface(_ c: JSONValue, file: String) throws -> ImportedModel {
        let r = ConfigReader(c: c, file: file)
        let D = try r.int("hidden_size", 768), N = try r.int("state_size", 16), n = try r.int("num_hidden_layers", 32)
        let V = try r.int("vocab_size", 50280), K = try r.int("conv_kernel", 4)
        let expand = try r.double("expand", 2)
        guard expand == expand.rounded(), expand >= 1 else { throw r.refuse("'expand' is \(expand); the toolkit's mamba takes an integer expansion") }
        if try r.bool("use_bias", false) { throw r.refuse("use_bias: true (biases on in_proj and out_proj): the toolkit's mamba has none; not imported") }
        if !(try r.bool("use_conv_bias", true)) { throw r.refuse("use_conv_bias: false: the toolkit's mamba always has a conv bias; not imported") }
        let act = try r.string("hidden_act", "silu")
        guard act == "silu" else { throw r.refuse("hidden_act '\(act)': the toolkit's mamba applies SiLU after the conv; not imported") }
        let rank = try r.rank("time_step_rank", width: D)
        let layer = "{mixer: mamba, d_state: \(N), d_conv: \(K), expand: \(Int(expand)), dt_rank: \(rank)}"
        var m = ImportedModel(layout: .huggingface, vocab: V, width: D, layers: Array(repeating: layer, count: n),
                              finalNorm: "rmsnorm", tiedHead: try r.bool("tie_word_embeddings", true),
                              normEps: try r.double("layer_norm_epsilon", 1e-5), sourceName: hfName)
        if m.tiedHead { m.duplicates["lm_head.weight"] = "backbone.embeddings.weight" }
        return m
    }

    /// HF's names: `backbone.embeddings.weight`, `backbone.layers.{i}.…`, `backbone.norm_f.weight`, `lm_head.weight`.
    static func hfName(_ t: String) -> String {
        if t == "embedding.word_embeddings.weight" { return "backbone.embeddings.weight" }
        if t == "decoder.final_layernorm.weight" { return "backbone.norm_f.weight" }
        if t == "output_layer.weight" { return "lm_head.weight" }
        if t.hasPrefix("decoder.layers.") { return "backbone.layers." + t.dropFirst("decoder.layers.".count) }
        return t
    }

    /// state-spaces `MambaLMHeadModel` (`mamba_ssm/models/config_mamba.py`): Mamba-1 layers
    /// only, RMSNorm, vocabulary padded to `pad_vocab_size_multiple`.
    static func mambaSSM(_ c: JSONValue, file: String) throws -> ImportedModel {
        let r = ConfigReader(c: c, file: file)
        let D = try r.int("d_model"), n = try r.int("n_layer")
        let pad = max(1, try r.int("pad_vocab_size_multiple", 8))
        let v0 = try r.int("vocab_size", 50277)
        let V = (v0 + pad - 1) / pad * pad
        if try r.int("d_intermediate", 0) != 0 { throw r.refuse("d_intermediate \(try r.int("d_intermediate")): MLP blocks after the mixers are not imported") }
        if let a = c["attn_layer_idx"]?.arrayValue, !a.isEmpty { throw r.refuse("attn_layer_idx \(c["attn_layer_idx"]!.text): attention layers of mamba_ssm are not imported") }
        if !(try r.bool("rms_norm", true)) { throw r.refuse("rms_norm: false (LayerNorm blocks): not imported") }
        var N = 16, K = 4, expand = 2, rank = (D + 15) / 16
        if let s = c["ssm_cfg"], s != .null {
            guard s.objectMembers != nil else { throw r.refuse("'ssm_cfg' is \(s.kindDescription), expected an object") }
            let sr = ConfigReader(c: s, file: file + " (ssm_cfg)")
            let kind = try sr.string("layer", "Mamba1")
            guard kind == "Mamba1" else { throw r.refuse("ssm_cfg.layer '\(kind)': only Mamba1 layers are imported") }
            N = try sr.int("d_state", 16); K = try sr.int("d_conv", 4); expand = try sr.int("expand", 2)
            rank = try sr.rank("dt_rank", width: D)
            if try sr.bool("bias", false) { throw r.refuse("ssm_cfg.bias: true (in_proj/out_proj biases): not imported") }
            if !(try sr.bool("conv_bias", true)) { throw r.refuse("ssm_cfg.conv_bias: false: not imported") }
        }
        let layer = "{mixer: mamba, d_state: \(N), d_conv: \(K), expand: \(expand), dt_rank: \(rank)}"
        var m = ImportedModel(layout: .mambaSSM, vocab: V, width: D, layers: Array(repeating: layer, count: n),
                              finalNorm: "rmsnorm", tiedHead: try r.bool("tie_embeddings", true), normEps: 1e-5,
                              sourceName: { t in t == "embedding.word_embeddings.weight" ? "backbone.embedding.weight" : hfName(t) })
        if m.tiedHead { m.duplicates["lm_head.weight"] = "backbone.embedding.weight" }
        if V != v0 { m.notes.append("vocab_size \(v0) padded to \(V) (pad_vocab_size_multiple \(pad)), as mamba_ssm does") }
        return m
    }

    /// Zyphra's BlackMamba (`mamba_model.py` `from_pretrained`, `mamba_block.py`
    /// `create_block`): `"r"` a Mamba block, an entry starting with a digit other than 1
    /// a MoE of `int(last character)` experts, `"1…"` a dense MLP; the parallel `"rN"`
    /// blocks are refused. The MoE routes as the released code computes: the expert of
    /// the largest sigmoid of the logits, its output scaled by that sigmoid
    /// (`sigmoid-top1`), and its experts are GELU(erf)-gated (`activation: geglu`), the
    /// released code's `F.gelu` (docs/weights.md). Per-block RMSNorm, final LayerNorm with
    /// bias, tied head.
    static func zyphra(_ c: JSONValue, file: String) throws -> ImportedModel {
        let r = ConfigReader(c: c, file: file)
        let n = try r.int("num_layers"), D = try r.int("hidden_size"), N = try r.int("state_size", 16)
        let K = try r.int("conv_dimension", 4), V = try r.int("vocab_size"), expand = try r.int("expansion_factor", 2)
        let F = try r.int("ffn_hidden_size", 4 * D)
        if try r.bool("add_bias_linear", false) { throw r.refuse("add_bias_linear: true (biases on every projection): the toolkit's layers have none; not imported") }
        if !(try r.bool("swiglu", true)) { throw r.refuse("swiglu: false (ungated expert MLPs): the toolkit's experts are gated; not imported") }
        guard let kinds = c["mamba_moe_layers"]?.arrayValue, kinds.count == n else {
            throw r.refuse("'mamba_moe_layers' must be a list of \(n) strings (num_layers), one per block")
        }
        let rank = (D + 15) / 16
        var layers: [String] = []
        for (i, k) in kinds.enumerated() {
            guard let s = k.stringValue, let last = s.last else { throw r.refuse("mamba_moe_layers[\(i)] is \(k.kindDescription), expected a string such as \"r\" or \"8\"") }
            if s == "r" {
                layers.append("{mixer: mamba, d_state: \(N), d_conv: \(K), expand: \(expand), dt_rank: \(rank)}")
            } else if s.hasPrefix("r") {
                throw r.refuse("mamba_moe_layers[\(i)] '\(s)': a parallel Mamba + MLP block, which the toolkit does not build; not imported")
            } else if s.hasPrefix("1") {
                layers.append("{mixer: mlp, ffn: \(F), activation: geglu}")
            } else if let e = Int(String(last)), e >= 2 {
                layers.append("{mixer: moe, experts: \(e), ffn: \(F), activation: geglu, router: {name: sigmoid-top1}, router_bias: true}")
            } else {
                throw r.refuse("mamba_moe_layers[\(i)] '\(s)': expected \"r\" (Mamba), a digit string (MoE of that many experts) or \"1\" (MLP)")
            }
        }
        var m = ImportedModel(layout: .zyphra, vocab: V, width: D, layers: layers, finalNorm: "layernorm", tiedHead: true,
                              normEps: try r.double("layernorm_epsilon", 1e-5), sourceName: { $0 })
        m.notes.append("experts use GELU(erf)·up (activation: geglu) as Zyphra's released code computes; routing is sigmoid-top1 as it runs (Sinkhorn is defined there but never called)")
        return m
    }
}
