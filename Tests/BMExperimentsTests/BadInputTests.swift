import XCTest
import BMTestSupport
import Foundation
@testable import BMCore
@testable import BMExperiments
@testable import BMSpec

/// The bad-input suite: what a user types wrong, table-driven, through the real
/// command line. Every case asserts the exit code (2 for a refusal, 64 for a command
/// line that does not parse), that the message names what is wrong, that no signal
/// ended the process, that no file that existed before the command changed (SHA-256
/// of every file of the scratch folder before and after), and that no process of the
/// command is left running. Add a case where a user found a new way in; the
/// sections follow docs (README "Nothing lost").
final class BadInputTests: XCTestCase {
    struct Case {
        var section: String
        var args: [String]
        var status: Int32 = 2
        var mentions: [String] = []
        /// Files the command is there to write (a notebook its outputs)
        var writes: [String] = []
    }

    /// The spec every case starts from: RunTests' tiny spec (every kind of layer), 4 steps.
    static let good = tinySpec.replacingOccurrences(of: "steps: 12", with: "steps: 4") + "\n"

    /// Files the cases name, written into the scratch folder.
    static func files() -> [String: Data] {
        func t(_ s: String) -> Data { Data(s.utf8) }
        func u16(_ v: [UInt16]) -> Data { v.withUnsafeBytes { Data($0) } }
        let mamba = "model: {d_model: 16, layers: [mamba]}\n"
        return [
            "good.yaml": t(good),
            "empty.yaml": Data(),
            "garbage.yaml": Data((0..<1024).map { UInt8(truncatingIfNeeded: $0 * 131 + 7) }),
            "tabs.yaml": t("name: x\nmodel:\n\td_model: 16\n"),
            "unclosed.yaml": t("name: x\nmodel: {d_model: 16\n"),
            "list.yaml": t("- a\n- b\n"),
            "dupkey.yaml": t("name: x\nname: y\n" + mamba),
            "nested.yaml": t("name: x\nmodel: " + String(repeating: "[", count: 5000) + String(repeating: "]", count: 5000) + "\n"),
            "huge.yaml": t("name: x\n" + String(repeating: "# padding\n", count: 120_000) + mamba),
            "badname.yaml": t("name: ../../escape\n" + mamba),
            "absname.yaml": t("name: /tmp/escape\n" + mamba),
            "unknown-section.yaml": t(mamba + "trian: {steps: 3}\n"),
            "unknown-key.yaml": t(mamba + "train: {stpes: 3}\n"),
            "key-type.yaml": t(mamba + "train: {steps: many}\n"),
            "key-range.yaml": t(mamba + "train: {batch: 0}\n"),
            "key-list.yaml": t(mamba + "train: [steps, 3]\n"),
            "unknown-mixer.yaml": t("model: {d_model: 16, layers: [mambaa]}\n"),
            "unknown-router.yaml": t("model: {d_model: 16, layers: [moe], defaults: {moe: {router: {name: sinkorn}}}}\n"),
            "unknown-option.yaml": t("model: {d_model: 16, layers: [{mixer: mamba, d_stat: 4}]}\n"),
            "option-range.yaml": t("model: {d_model: 16, layers: [{mixer: mamba, d_state: -4}]}\n"),
            "option-type.yaml": t("model: {d_model: 16, layers: [{mixer: moe, experts: lots}]}\n"),
            "router-option.yaml": t("model: {d_model: 16, layers: [moe], defaults: {moe: {router: {name: sinkhorn, iters: -1}}}}\n"),
            "no-layers.yaml": t("model: {d_model: 16}\n"),
            "empty-layers.yaml": t("model: {d_model: 16, layers: []}\n"),
            "layers-and-pattern.yaml": t("model: {d_model: 16, layers: [mamba], pattern: [mamba], repeat: 2}\n"),
            "heads.yaml": t("model: {d_model: 16, layers: [{mixer: attention, heads: 3}]}\n"),
            "repeat.yaml": t("model: {d_model: 16, pattern: [mamba], repeat: 100000000}\n"),
            "too-big.yaml": t("model: {d_model: 65536, layers: [mamba, mamba, mamba, mamba]}\ntrain: {batch: 4096, seq_len: 4096}\n"),
            "steps-overflow.yaml": t(mamba + "train: {steps: 9223372036854775000, batch: 1024}\n"),
            "missing-corpus.yaml": t(mamba + "data: {kind: text, path: /nonexistent/corpus.txt}\n"),
            "empty-corpus.yaml": t(mamba + "data: {kind: text, path: emptytext.txt}\n"),
            "odd-tokens.yaml": t(mamba + "data: {kind: tokens, path: odd.bin, vocab_size: 100}\n"),
            "big-ids.yaml": t(mamba + "data: {kind: tokens, path: bigid.bin, vocab_size: 100}\n"),
            "vocab-mismatch.yaml": t("model: {d_model: 16, layers: [mamba], vocab_size: 64}\ndata: {kind: tokens, path: tok.bin, vocab_size: 100}\n"),
            "no-path-tokens.yaml": t(mamba + "data: {kind: tokens, vocab_size: 100}\n"),
            "emptytext.txt": Data(),
            "text.txt": t(String(repeating: "hello world. ", count: 500)),
            "odd.bin": Data([1, 2, 3]),
            "bigid.bin": u16(Array(repeating: 5000, count: 4000)),
            "tok.bin": u16((0..<4000).map { UInt16($0 % 30) }),
            "garbage.h5": Data((0..<5000).map { UInt8(truncatingIfNeeded: $0 &* 2654435761 >> 7) }),
            "nb-self.md": t("# nb\n\n```bmlab\nnotebook nb-self.md\n```\n"),
            "sweep-ok.yaml": t("base: good.yaml\nsweep:\n  axes:\n    train.seed: [1, 2]\n"),
            "sweep-unknown-axis.yaml": t("base: good.yaml\nsweep:\n  axes:\n    train.seedd: [1, 2]\n"),
            "sweep-no-axes.yaml": t("base: good.yaml\nsweep: {}\n"),
            "sweep-no-base.yaml": t("base: nosuch.yaml\nsweep:\n  axes:\n    train.seed: [1, 2]\n"),
            "sweep-empty-values.yaml": t("base: good.yaml\nsweep:\n  axes:\n    train.seed: []\n"),
            "sweep-bad-value.yaml": t("base: good.yaml\nsweep:\n  axes:\n    train.batch: [4, -1]\n"),
            "sweep-huge.yaml": t("base: good.yaml\nsweep:\n  axes:\n    train.seed: [" + (1...1000).map(String.init).joined(separator: ", ") + "]\n    train.batch: [" + (1...1000).map(String.init).joined(separator: ", ") + "]\n"),
            "sweep-zip.yaml": t("base: good.yaml\nsweep:\n  axes:\n    train.seed: [1]\n  zip:\n    - {train.batch: [2, 4], train.seq_len: [16]}\n"),
            "sweep-baseline.yaml": t("base: good.yaml\nsweep:\n  axes:\n    train.seed: [1, 2]\n    train.batch: [2, 4]\nreport:\n  baseline: {train.batch: 3}\n"),
        ]
    }

    /// The cases, by section.
    static func cases() -> [Case] {
        var c: [Case] = []
        func add(_ section: String, _ args: [String], _ status: Int32 = 2, _ mentions: [String] = [], writes: [String] = []) {
            c.append(Case(section: section, args: args, status: status, mentions: mentions, writes: writes))
        }
        // spec keys, as overrides: wrong type, out of range, not finite, unknown choice —
        // generated from the key table, so a new key is covered the day it is added
        for k in SpecKeys.all {
            var values: [String] = []
            if k.type == "int" { values = ["abc", "1.5", "99999999999999999999999"] + (k.range.isEmpty ? [] : ["-7"]) }
            else if k.type == "number" { values = ["abc", "nan", "inf"] + (k.range.isEmpty ? [] : ["-1"]) }
            else if k.type == "bool" { values = ["maybe", "2"] }
            else if k.type.contains("|") || k.type == "adamw" { values = ["nosuch"] }
            else if k.path == "train.optimizer.name" || k.path == "train.schedule.name" { values = ["nosuch"] }
            for v in values { add("spec keys (overrides)", ["validate", "good.yaml", "\(k.path)=\(v)"], 2, [k.path, v]) }
        }
        let s = "spec files"
        add(s, ["validate", "nosuch.yaml"], 2, ["nosuch.yaml", "no such spec file"])
        add(s, ["validate", "adir"], 2, ["adir", "is a directory"])
        add(s, ["train", "run"], 2, ["run", "is a directory", "run/spec.yaml"])
        add(s, ["validate", "empty.yaml"], 2, ["empty.yaml", "layers"])
        add(s, ["validate", "garbage.yaml"], 2, ["garbage.yaml", "UTF-8"])
        add(s, ["validate", "tabs.yaml"], 2, ["tabs.yaml", "not valid YAML"])
        add(s, ["validate", "unclosed.yaml"], 2, ["unclosed.yaml", "not valid YAML"])
        add(s, ["validate", "list.yaml"], 2, ["list.yaml", "mapping"])
        add(s, ["validate", "dupkey.yaml"], 2, ["dupkey.yaml", "'name' appears twice"])
        add(s, ["validate", "nested.yaml"], 2, ["nested.yaml", "nest"])
        add(s, ["validate", "huge.yaml"], 2, ["huge.yaml", "1024 KiB"])
        add(s, ["validate", "badname.yaml"], 2, ["badname.yaml", "name"])
        add(s, ["validate", "absname.yaml"], 2, ["absname.yaml", "name"])
        add(s, ["validate", "unknown-section.yaml"], 2, ["unknown-section.yaml", "trian", "train"])
        add(s, ["validate", "unknown-key.yaml"], 2, ["unknown-key.yaml", "stpes", "steps"])
        add(s, ["validate", "key-type.yaml"], 2, ["key-type.yaml", "train.steps", "many"])
        add(s, ["validate", "key-range.yaml"], 2, ["key-range.yaml", "train.batch"])
        add(s, ["validate", "key-list.yaml"], 2, ["key-list.yaml", "train"])
        add(s, ["validate", "good.yaml", "nokey"], 2, ["nokey", "key.path=value"])
        add(s, ["validate", "good.yaml", "=3"], 2, ["=3", "empty key"])
        add(s, ["validate", "good.yaml", "model.nosuch=3"], 2, ["model.nosuch"])
        add(s, ["validate", "good.yaml", "model.d_model.x=3"], 2, ["model.d_model"])
        add(s, ["validate", "good.yaml", "model.layers=[mamba"], 2, ["model.layers"])
        add(s, ["validate", "good.yaml", "model.layers=[]"], 2, ["model.layers"])
        add(s, ["validate", "good.yaml", "train.steps=9223372036854775807"], 2, ["train"])
        add(s, ["validate", "good.yaml", "name=a/b"], 2, ["name"])
        add(s, ["validate", "good.yaml", "name=.."], 2, ["name"])

        let p = "spec: plugins and shapes"
        add(p, ["validate", "unknown-mixer.yaml"], 2, ["mambaa", "did you mean 'mamba'"])
        add(p, ["validate", "unknown-router.yaml"], 2, ["sinkorn", "did you mean 'sinkhorn'"])
        add(p, ["validate", "unknown-option.yaml"], 2, ["d_stat", "d_state"])
        add(p, ["validate", "option-range.yaml"], 2, ["d_state", "-4"])
        add(p, ["validate", "option-type.yaml"], 2, ["experts", "lots"])
        add(p, ["validate", "router-option.yaml"], 2, ["sinkhorn"])
        add(p, ["validate", "no-layers.yaml"], 2, ["layers"])
        add(p, ["validate", "empty-layers.yaml"], 2, ["model.layers", "empty"])
        add(p, ["validate", "layers-and-pattern.yaml"], 2, ["pattern"])
        add(p, ["validate", "heads.yaml"], 2, ["heads (3) must divide d_model (16)"])
        add(p, ["validate", "repeat.yaml"], 2, ["repeat"])
        add(p, ["validate", "too-big.yaml"], 2, ["too-big.yaml", "needs about"])
        add(p, ["validate", "steps-overflow.yaml"], 2, ["steps-overflow.yaml"])
        add(p, ["validate", "good.yaml", "model.layers=[nosuch]"], 2, ["nosuch"])
        add(p, ["validate", "good.yaml", "model.defaults.moe.experts=0"], 2, ["experts"])
        add(p, ["validate", "good.yaml", "model.defaults.moe.router.name=topkk"], 2, ["topkk", "topk"])
        add(p, ["validate", "good.yaml", "model.defaults.mamba.d_state=100000"], 2, ["d_state"])
        add(p, ["validate", "good.yaml", "model.defaults.attention.heads=5"], 2, ["heads"])
        add(p, ["validate", "good.yaml", "model.defaults.nosuch.x=1"], 2, ["nosuch"])

        let d = "data"
        add(d, ["validate", "missing-corpus.yaml"], 2, ["/nonexistent/corpus.txt"])
        add(d, ["validate", "empty-corpus.yaml"], 2, ["emptytext.txt", "0 tokens"])
        add(d, ["validate", "odd-tokens.yaml"], 2, ["odd.bin", "odd number of bytes"])
        add(d, ["validate", "big-ids.yaml"], 2, ["bigid.bin", "5000", "vocab_size 100"])
        add(d, ["validate", "vocab-mismatch.yaml"], 2, ["vocab_size"])
        add(d, ["validate", "no-path-tokens.yaml"], 2, ["data.path"])
        add(d, ["validate", "good.yaml", "data.kind=tokens", "data.path=text.txt", "data.vocab_size=100"], 2, ["text.txt", "outside the vocabulary"])
        add(d, ["validate", "good.yaml", "data.num_pairs=100"], 2, ["good.yaml", "data.num_pairs (100)", "data.vocab_size 32"])
        add(d, ["validate", "good.yaml", "data.num_pairs=5"], 2, ["good.yaml", "train.seq_len (16)", "data.num_pairs"])

        let l = "command line"
        add(l, ["nosuch"], 64, ["unknown command 'nosuch'"])
        add(l, ["trian"], 64, ["did you mean 'train'"])
        add(l, ["valdate", "good.yaml"], 64, ["did you mean 'validate'"])
        add(l, ["train"], 64, ["<spec>"])
        add(l, ["eval"], 64, ["--checkpoint"])
        add(l, ["generate"], 64, ["--checkpoint"])
        add(l, ["sweep"], 64, ["<file>"])
        add(l, ["plot"], 64, ["<dir>"])
        add(l, ["report"], 64, ["<dir>"])
        add(l, ["robustness"], 64, ["<dirs>"])
        add(l, ["notebook"], 64, ["<file>"])
        add(l, ["validate"], 64, ["<spec>"])
        add(l, ["list", "--nosuch"], 64, ["--nosuch"])
        add(l, ["doctor", "--nosuch"], 64, ["--nosuch"])
        add(l, ["bench", "nosuch"], 64, ["nosuch"])
        add(l, ["train", "good.yaml", "--threads", "-1"], 2, ["--threads", "-1"])
        add(l, ["train", "good.yaml", "--shards", "0"], 2, ["--shards", "0"])
        add(l, ["train", "good.yaml", "train.batch=4", "--shards", "3"], 2, ["train.batch 4", "3 equal shards"])
        add(l, ["train", "good.yaml", "--slurm-ranks", "0"], 2, ["--slurm-ranks", "0"])
        add(l, ["train", "good.yaml", "--slurm-ranks", "2", "--slurm-nodes", "3"], 2, ["--slurm-nodes", "3"])
        add(l, ["train", "good.yaml", "--slurm-ranks", "2", "--slurm-time", "soon"], 2, ["--slurm-time", "soon"])
        add(l, ["train", "good.yaml", "train.batch=4", "--slurm-ranks", "3"], 2, ["train.batch 4", "--slurm-ranks 3"])
        add(l, ["train", "good.yaml", "--threads", "abc"], 64, ["abc", "--threads"])
        add(l, ["train", "good.yaml", "--blas-core", "Foo"], 2, ["--blas-core=Foo"])
        add(l, ["train", "good.yaml", "--blas-core", "SkylakeXX"], 2, ["SkylakeXX"])
        add(l, ["train", "good.yaml", "--kernels", "avx999"], 2, ["--kernels=avx999", "avx512"])
        add(l, ["train", "good.yaml", "--kernels", ""], 2, ["--kernels"])
        add(l, ["eval", "--checkpoint", "run/checkpoint.h5", "--kernels", "sse"], 2, ["--kernels=sse"])
        add(l, ["doctor", "--blas-core", "Foo"], 2, ["Foo"])
        add(l, ["bench", "train", "good.yaml", "--threads", "-2"], 2, ["--threads", "-2"])
        add(l, ["train", "good.yaml", "--resume", "--out", "nosuchdir"], 2, ["--resume", "nosuchdir", "does not exist"])
        add(l, ["train", "good.yaml", "--resume", "--out", "adir"], 2, ["--resume", "adir", "holds no run"])
        add(l, ["train", "good.yaml", "--resume", "--out", "good.yaml"], 2, ["good.yaml", "file"])
        add(l, ["train", "good.yaml", "--out", "good.yaml"], 2, ["--out good.yaml", "not a directory"])
        add(l, ["train", "good.yaml", "--out", "run"], 2, ["run", "already holds a run", "--resume"])
        add(l, ["train", "good.yaml", "train.steps=8", "--out", "run", "--resume"], 2, ["run", "train.steps"])

        let k = "checkpoints"
        add(k, ["eval", "--checkpoint", "nosuch.h5"], 2, ["nosuch.h5", "no such checkpoint"])
        add(k, ["eval", "--checkpoint", "garbage.h5"], 2, ["garbage.h5", "not a BlackMambaLab checkpoint"])
        add(k, ["eval", "--checkpoint", "adir"], 2, ["adir", "directory"])
        add(k, ["eval", "--checkpoint", "run/metrics.h5"], 2, ["run/metrics.h5", "not a BlackMambaLab checkpoint"])
        add(k, ["eval", "--checkpoint", "good.yaml"], 2, ["good.yaml", "not a BlackMambaLab checkpoint"])
        add(k, ["eval", "--checkpoint", "empty.yaml"], 2, ["empty.yaml"])
        add(k, ["eval", "--checkpoint", "truncated.h5"], 2, ["truncated.h5", "damaged"])
        add(k, ["eval", "--checkpoint", "flipped.h5"], 2, ["flipped.h5", "damaged"])
        add(k, ["generate", "--checkpoint", "truncated.h5", "--tokens", "1 2"], 2, ["truncated.h5", "damaged"])
        add(k, ["generate", "--checkpoint", "garbage.h5", "--tokens", "1 2"], 2, ["garbage.h5"])
        add(k, ["generate", "--checkpoint", "nosuch.h5", "--tokens", "1 2"], 2, ["nosuch.h5"])
        add(k, ["sinkhorn", "--checkpoints", "nosuchdir"], 2, ["nosuchdir"])
        add(k, ["sinkhorn", "--logits", "nosuch.h5"], 2, ["nosuch.h5"])
        add(k, ["sinkhorn", "--logits", "garbage.h5"], 2, ["garbage.h5"])
        add(k, ["sinkhorn", "--logits", "good.yaml"], 2, ["good.yaml"])

        let e = "eval: data and outputs"
        add(e, ["eval", "--checkpoint", "run/checkpoint.h5", "--batches", "0"], 2, ["--batches", "0"])
        add(e, ["eval", "--checkpoint", "run/checkpoint.h5", "--batches", "-3"], 2, ["--batches", "-3"])
        add(e, ["eval", "--checkpoint", "run/checkpoint.h5", "--all"], 2, ["--all", "synthetic task"])
        add(e, ["eval", "--checkpoint", "run/checkpoint.h5", "--all", "--batches", "2"], 2, ["--all and --batches"])
        add(e, ["eval", "--checkpoint", "run/checkpoint.h5", "--data", "text.txt", "--split", "test"], 2, ["--data reads its file in order"])
        add(e, ["eval", "--checkpoint", "run/checkpoint.h5", "--routing", "sometimes"], 64, ["--routing", "sometimes"])
        add(e, ["eval", "--checkpoint", "run/checkpoint.h5", "--data", "nosuch.txt"], 2, ["nosuch.txt"])
        add(e, ["eval", "--checkpoint", "run/checkpoint.h5", "--data", "adir"], 2, ["adir"])
        add(e, ["eval", "--checkpoint", "run/checkpoint.h5", "--data", "emptytext.txt"], 2, ["emptytext.txt", "less than one batch"])
        add(e, ["eval", "--checkpoint", "run/checkpoint.h5", "--data", "text.txt"], 2, ["text.txt", "vocabulary has 32"])
        add(e, ["eval", "--checkpoint", "run/checkpoint.h5", "--data", "bigid.bin"], 2, ["bigid.bin", "5000"])
        add(e, ["eval", "--checkpoint", "run/checkpoint.h5", "--data", "odd.bin"], 2, ["odd.bin", "odd number of bytes"])
        add(e, ["eval", "--checkpoint", "run/checkpoint.h5", "--grads", "run/checkpoint.h5"], 2, ["--grads", "reads"])
        add(e, ["eval", "--checkpoint", "run/checkpoint.h5", "--grads", "run/metrics.h5"], 2, ["--grads", "run's own metrics.h5"])
        add(e, ["eval", "--checkpoint", "run/checkpoint.h5", "--router-logits", "run/checkpoint.h5"], 2, ["--router-logits"])
        add(e, ["eval", "--checkpoint", "run/checkpoint.h5", "--grads", "good.yaml"], 2, ["--grads good.yaml exists", "--force"])
        add(e, ["eval", "--checkpoint", "run/checkpoint.h5", "--router-logits", "run/spec.yaml"], 2, ["run/spec.yaml", "--force"])
        add(e, ["eval", "--checkpoint", "run/checkpoint.h5", "--grads", "x.h5", "--router-logits", "x.h5"], 2, ["same file x.h5"])
        add(e, ["eval", "--checkpoint", "run/checkpoint.h5", "--grads", "nosuchdir/x.h5"], 2, ["nosuchdir/x.h5", "does not exist"])
        add(e, ["eval", "--checkpoint", "run/checkpoint.h5", "--grads", "adir"], 2, ["adir", "directory"])
        add(e, ["eval", "--checkpoint", "run/checkpoint.h5", "--data", "text.txt", "--grads", "text.txt"], 2, ["text.txt", "reads"])

        let g = "generate"
        let ck = ["generate", "--checkpoint", "run/checkpoint.h5"]
        add(g, ck, 2, ["--tokens is required"])
        add(g, ck + ["--prompt", "hi"], 2, ["--prompt", "token ids", "--tokens"])
        add(g, ck + ["--tokens", "1 abc"], 2, ["'abc'", "0 to 31"])
        add(g, ck + ["--tokens", "1 999"], 2, ["'999'", "0 to 31"])
        add(g, ck + ["--tokens", "-1"], 2, ["'-1'"])
        add(g, ck + ["--tokens", ""], 2, ["--tokens", "at least one"])
        add(g, ck + ["--tokens", "1 2", "--max-tokens", "-5"], 2, ["--max-tokens", "-5"])
        add(g, ck + ["--tokens", "1 2", "--max-tokens", "0"], 2, ["--max-tokens", "0"])
        add(g, ck + ["--tokens", "1 2", "--max-tokens", "1000000000000000"], 2, ["--max-tokens"])
        add(g, ck + ["--tokens", "1 2", "--temperature", "-1"], 2, ["--temperature", "-1"])
        add(g, ck + ["--tokens", "1 2", "--temperature", "nan"], 2, ["--temperature", "nan"])
        add(g, ck + ["--tokens", "1 2", "--top-k", "-2"], 2, ["--top-k", "-2"])
        add(g, ck + ["--tokens", "1 2", "--weights", "fp8"], 64, ["fp8"])
        add(g, ck + ["--tokens", "1 2", "--seed", "abc"], 64, ["abc"])

        let w = "sweep"
        add(w, ["sweep", "nosuch.yaml"], 2, ["nosuch.yaml"])
        add(w, ["sweep", "good.yaml"], 2, ["good.yaml", "no 'sweep' section"])
        add(w, ["sweep", "sweep-unknown-axis.yaml"], 2, ["train.seedd", "seed"])
        add(w, ["sweep", "sweep-no-axes.yaml"], 2, ["sweep.axes is empty"])
        add(w, ["sweep", "sweep-no-base.yaml"], 2, ["nosuch.yaml"])
        add(w, ["sweep", "sweep-empty-values.yaml"], 2, ["train.seed", "non-empty"])
        add(w, ["sweep", "sweep-bad-value.yaml"], 2, ["train.batch"])
        add(w, ["sweep", "sweep-huge.yaml"], 2, ["at most 10000 runs"])
        add(w, ["sweep", "sweep-zip.yaml"], 2, ["zip"])
        add(w, ["sweep", "sweep-baseline.yaml"], 2, ["baseline", "train.batch"])
        add(w, ["validate", "sweep-unknown-axis.yaml"], 2, ["train.seedd"])
        add(w, ["validate", "sweep-huge.yaml"], 2, ["at most 10000 runs"])
        add(w, ["sweep", "sweep-ok.yaml", "--workers", "0"], 2, ["--workers", "0"])
        add(w, ["sweep", "sweep-ok.yaml", "--workers", "-2"], 2, ["--workers", "-2"])
        add(w, ["sweep", "sweep-ok.yaml", "--run-index", "5"], 2, ["--run-index 5", "2 runs"])
        add(w, ["sweep", "sweep-ok.yaml", "--run-index", "-1"], 2, ["--run-index", "-1"])
        add(w, ["sweep", "sweep-ok.yaml", "--run-index", "0", "--threads", "-3"], 2, ["--threads", "-3"])
        add(w, ["sweep", "sweep-ok.yaml", "--collect", "--out", "nosuchdir"], 2, ["--collect", "nosuchdir"])
        add(w, ["sweep", "sweep-ok.yaml", "--out", "good.yaml"], 2, ["--out good.yaml", "not a directory"])
        add(w, ["sweep", "sweep-ok.yaml", "train.seedd=3"], 2, ["train.seedd"])
        add(w, ["sweep", "sweep-ok.yaml", "train.batch=0"], 2, ["train.batch"])
        add(w, ["sweep", "sweep-ok.yaml", "--slurm", "--time", "forever"], 2, ["--time", "forever"])
        add(w, ["sweep", "sweep-ok.yaml", "--slurm", "--cpus", "0"], 2, ["--cpus"])
        add(w, ["sweep", "sweep-ok.yaml", "--ranks", "0"], 2, ["--ranks", "0"])
        add(w, ["sweep", "sweep-ok.yaml", "--slurm", "--ranks", "2", "--nodes", "3"], 2, ["--nodes", "3"])

        let r = "plots, reports, notebooks"
        add(r, ["plot", "nosuchdir"], 2, ["nosuchdir", "nothing to plot"])
        add(r, ["plot", "adir"], 2, ["adir", "nothing to plot"])
        add(r, ["plot", "good.yaml"], 2, ["good.yaml"])
        add(r, ["plot", "run", "--format", "bmp"], 2, ["--format", "bmp"])
        add(r, ["plot", "run", "--out", "good.yaml"], 2, ["--out good.yaml", "not a directory"])
        add(r, ["report", "nosuchdir", "--out", "r.md"], 2, ["nosuchdir"])
        add(r, ["report", "adir", "--out", "r.md"], 2, ["adir"])
        add(r, ["report", "run", "--out", "good.yaml"], 2, ["--out good.yaml", "--force"])
        add(r, ["report", "run", "--out", "adir"], 2, ["adir", "directory"])
        add(r, ["report", "run", "--out", "r.md", "--format", "gif"], 2, ["--format", "gif"])
        add(r, ["robustness", "nosuchdir", "--out", "r.md"], 2, ["nosuchdir"])
        add(r, ["robustness", "adir", "--out", "r.md"], 2, ["adir"])
        add(r, ["robustness", "run", "--out", "good.yaml"], 2, ["--out good.yaml", "--force"])
        add(r, ["robustness", "run", "--out", "r.md", "--escape", "2"], 2, ["--escape"])
        add(r, ["robustness", "run", "--out", "r.md", "--threshold", "-0.5"], 2, ["--threshold", "-0.5"])
        add(r, ["robustness", "run", "--out", "r.md", "--within", "3"], 2, ["--within"])
        add(r, ["notebook", "nosuch.md"], 2, ["nosuch.md"])
        add(r, ["notebook", "adir"], 2, ["adir"])
        add(r, ["notebook", "garbage.yaml"], 2, ["garbage.yaml"])
        add(r, ["notebook", "nb-self.md"], 4, ["notebook commands failed"], writes: ["nb-self.md"])   // a notebook records its outputs in itself
        add(r, ["notebook", "nb-self.md", "--blocks", "2"], 2, ["nb-self.md: --blocks 2: no such block", "has 1 ```bmlab blocks"])
        add(r, ["notebook", "nb-self.md", "--blocks", "0"], 2, ["nb-self.md: --blocks 0: no such block"])
        add(r, ["notebook", "nb-self.md", "--blocks", "1,x"], 2, ["--blocks", "expected block numbers", "'1,x'"])
        add(r, ["notebook", "nb-self.md", "--blocks", ""], 2, ["--blocks", "expected block numbers"])
        add(r, ["sinkhorn", "--variant", "nosuch"], 2, ["nosuch", "sinkhorn"])
        add(r, ["sinkhorn", "--out", "good.yaml"], 2, ["--out good.yaml", "not a directory"])
        add(r, ["sinkhorn", "--seeds", "0"], 2, ["--seeds"])
        add(r, ["sinkhorn", "--format", "jpg"], 2, ["--format", "jpg"])

        let b = "bench"
        add(b, ["bench", "train", "nosuch.yaml"], 2, ["nosuch.yaml"])
        add(b, ["bench", "train", "good.yaml", "--seq-lens", "0"], 2, ["--seq-lens", "0"])
        add(b, ["bench", "train", "good.yaml", "--seq-lens", "a,b"], 2, ["--seq-lens", "a,b"])
        add(b, ["bench", "train", "unknown-mixer.yaml"], 2, ["mambaa"])
        add(b, ["bench", "generate", "nosuch.yaml"], 2, ["nosuch.yaml"])
        add(b, ["bench", "moe", "--router", "nosuch"], 2, ["nosuch"])
        return c
    }

    /// path → SHA-256 of every file below `dir`.
    static func snapshot(_ dir: String) -> [String: String] {
        var out: [String: String] = [:]
        let e = FileManager.default.enumerator(atPath: dir)
        while let rel = e?.nextObject() as? String {
            var isDir: ObjCBool = false
            let p = dir + "/" + rel
            guard FileManager.default.fileExists(atPath: p, isDirectory: &isDir), !isDir.boolValue else { continue }
            let d = (try? Data(contentsOf: URL(fileURLWithPath: p))) ?? Data()
            out[rel] = d.withUnsafeBytes { SHA256.hex($0) }
        }
        return out
    }

    /// Processes working in `dir` or naming it (a worker or child left behind).
    static func processesNaming(_ dir: String) -> [String] {
        let me = getpid()
        let real = URL(fileURLWithPath: dir).resolvingSymlinksInPath().path
        return ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { pid in
            guard let n = Int32(pid), n != me, let d = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return nil }
            let cmd = String(decoding: d.map { $0 == 0 ? 32 : $0 }, as: UTF8.self)
            let cwd = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/cwd")) ?? ""
            return (cwd.hasPrefix(real) || cmd.contains(dir)) ? "\(pid): \(cmd)" : nil
        }
    }

    func testEveryBadInputIsRefusedCleanly() throws {
        try BMLabProcess.require()
        let dir = try tempDir(self)
        for (name, data) in Self.files() { try data.write(to: URL(fileURLWithPath: dir + "/" + name)) }
        try FileManager.default.createDirectory(atPath: dir + "/adir", withIntermediateDirectories: true)
        // a real run, and damaged copies of its checkpoint
        let trained = try BMLabProcess.run(["train", "good.yaml", "--out", "run", "--threads", "1"], in: dir)
        XCTAssertEqual(trained.status, 0, trained.err)
        let ck = try Data(contentsOf: URL(fileURLWithPath: dir + "/run/checkpoint.h5"))
        try ck.prefix(ck.count / 2).write(to: URL(fileURLWithPath: dir + "/truncated.h5"))
        var flipped = [UInt8](ck); for i in stride(from: ck.count / 3, to: ck.count / 3 + 64, by: 1) { flipped[i] ^= 0x5A }
        try Data(flipped).write(to: URL(fileURLWithPath: dir + "/flipped.h5"))

        let cases = Self.cases()
        XCTAssertGreaterThanOrEqual(cases.count, 200)
        var bySection: [String: Int] = [:]
        for c in cases {
            bySection[c.section, default: 0] += 1
            let what = "[\(c.section)] bmlab \(c.args.joined(separator: " "))"
            let before = Self.snapshot(dir)
            let r = try BMLabProcess.run(c.args, environment: ["BMLAB_THREADS": "1"], in: dir)
            XCTAssertFalse(r.signaled, "\(what): ended by a signal\n\(r.err)")
            XCTAssertEqual(r.status, c.status, "\(what): exit status\n\(r.err)")
            let lines = r.err.split(separator: "\n").filter { !$0.isEmpty }
            let message = lines.last(where: { $0.hasPrefix("bmlab: error: ") || $0.hasPrefix("Error: ") }).map(String.init) ?? ""
            XCTAssertFalse(message.isEmpty, "\(what): no error line\n\(r.err)")
            for m in c.mentions { XCTAssertTrue(message.contains(m), "\(what): '\(m)' not in: \(message)") }
            for bad in ["NSCocoaErrorDomain", "HDF5-DIAG", "Fatal error", "precondition", "Backtrac"] {
                XCTAssertFalse(r.err.contains(bad), "\(what): \(bad) in\n\(r.err)")
            }
            // nothing that existed changed; what the command created is removed again
            let after = Self.snapshot(dir)
            for (path, hash) in before where after[path] != hash && !c.writes.contains(path) {
                XCTFail("\(what): \(path) was \(after[path] == nil ? "removed" : "changed")")
            }
            for path in after.keys where before[path] == nil { try? FileManager.default.removeItem(atPath: dir + "/" + path) }
            for path in c.writes { try? Self.files()[path]?.write(to: URL(fileURLWithPath: dir + "/" + path)) }
            for name in ["nosuchdir", "r-figures", "results"] { try? FileManager.default.removeItem(atPath: dir + "/" + name) }
            XCTAssertEqual(Self.processesNaming(dir), [], "\(what): left running")
        }
        print("bad-input cases by section: " + bySection.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ") + "; \(cases.count) in all")
    }
}
