import XCTest
import Yams
@testable import BMCore
@testable import BMExperiments
@testable import BMSpec

/// The key table (`SpecKeys.all`) is the one place a spec key is declared: the
/// reader, the resolved spec and the reference in docs/specs.md follow it.
final class SpecKeysTests: XCTestCase {
    let base = """
    name: t
    model:
      layers: [mamba, moe]
      d_model: 16
      defaults: {moe: {experts: 4, ffn: 32}}
    data: {kind: mqar, vocab_size: 32}
    train: {steps: 5, batch: 2, seq_len: 16}
    """

    func resolvedLeaves(_ s: ExperimentSpec) throws -> [String: String] {
        Dictionary(SpecDiff.flatten(try s.resolvedNode()), uniquingKeysWith: { a, _ in a })
    }

    /// For every key the reader reads and the resolved spec writes, a value other
    /// than its default, given as an override, comes back at the same path of the
    /// resolved spec: reader and writer agree key by key.
    func testEveryKeyIsReadAndWrittenAtItsPath() throws {
        let defaults = try resolvedLeaves(try ExperimentSpec.parse(base, file: "x.yaml"))
        var checked = 0
        for key in SpecKeys.all where key.read != nil {
            guard let old = defaults[key.path] else { continue }     // not written (train.tokens) or not for this data kind
            let new: String
            switch key.type {
            case "int": new = String(Int(old)! + 1)
            case "number": new = SpecKeys.number(Double(old)! == 0 ? 0.5 : Double(old)! / 2)
            case "bool": new = old == "true" ? "false" : "true"
            case "string": new = old + "x"
            default:
                let choices = key.type.components(separatedBy: " | ")
                guard let other = choices.first(where: { $0 != old }) else { continue }   // a constant
                if key.path == "data.kind" { continue }                                  // changes which keys apply
                new = other
            }
            let s = try ExperimentSpec.parse(base, file: "x.yaml", overrides: ["\(key.path)=\(new)"])
            let got = try resolvedLeaves(s)
            XCTAssertEqual(got[key.path].map { SpecDiff.same($0, new) }, true, "\(key.path): set \(new), resolved \(got[key.path] ?? "absent")")
            checked += 1
        }
        XCTAssertGreaterThan(checked, 25)
    }

    /// A spec that gives only its layers reads, key by key, as the table's defaults say:
    /// the table is the one source of defaults (the spec structs' initial values are
    /// placeholders the reader overwrites). Keys whose default is a rule rather than a
    /// value ("from the data", "lr / 10", "never", "—") are left out; for mqar and
    /// selective-copy keys a spec of that kind is read.
    func testAMinimalSpecReadsAsTheTableDefaults() throws {
        var checked = 0
        for kind in ["text", "mqar", "selective-copy"] {
            let minimal = "model:\n  layers: [mamba]\n" + (kind == "text" ? "" : "data: {kind: \(kind), vocab_size: 32}\n")
            let got = try resolvedLeaves(try ExperimentSpec.parse(minimal, file: "minimal.yaml"))
            for key in SpecKeys.all where key.read != nil {
                if key.path == "data.kind" || key.path == "data.vocab_size" { continue }   // set by the spec above
                guard let value = got[key.path] else { continue }                         // not written for this kind
                let d = key.defaultText
                if d.hasPrefix("from") || d.hasPrefix("—") || d.hasPrefix("(") || d.contains(" ") || d == "never" { continue }
                let wanted = d == "\"\"" ? "" : d
                XCTAssertTrue(SpecDiff.same(value, wanted), "\(kind): \(key.path) reads as \(value) but the table's default is \(d)")
                checked += 1
            }
        }
        XCTAssertGreaterThan(checked, 60)
    }

    /// Every key the resolved spec writes is a key of the table (or a layer's option).
    func testResolvedSpecWritesOnlyDeclaredKeys() throws {
        let paths = Set(SpecKeys.all.map(\.path))
        for (p, _) in try resolvedLeaves(try ExperimentSpec.parse(base, file: "x.yaml")) where !p.hasPrefix("model.layers[") {
            XCTAssertTrue(paths.contains(p), p)
        }
    }

    /// docs/specs.md's key reference is `bmlab list --keys --markdown` (regenerate: `make docs`).
    func testDocsReferenceIsCurrent() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let doc = try String(contentsOf: root.appendingPathComponent("docs/specs.md"), encoding: .utf8)
        guard let a = doc.range(of: SpecKeys.docsBegin), let b = doc.range(of: SpecKeys.docsEnd) else {
            return XCTFail("docs/specs.md lacks the generated key reference markers")
        }
        XCTAssertEqual(String(doc[a.upperBound..<b.lowerBound]), "\n" + SpecKeys.markdown(), "docs/specs.md is stale: run `make docs`")
    }

    /// A run stored by the previous writer (flow-style optimizer, `1e-08`, a router
    /// without its options, min_lr 0.00030000000000000003) means the same spec.
    func testSpecDiffComparesValuesNotText() throws {
        let old = """
        # resolved spec (every default filled in), written by BlackMambaLab 0.1.0
        name: t
        model:
          vocab_size: 32
          d_model: 16
          layers:
            - {mixer: mamba, chunk: 16, d_conv: 4, d_state: 16, dt_max: 0.1, dt_min: 0.001, dt_rank: auto, expand: 2, gate: true, skip_d: true}
            - {mixer: moe, activation: swiglu, capacity_factor: 0.0, drop_policy: probs, experts: 4, ffn: 32, router: {name: sinkhorn-fast}, router_bias: true}
          final_norm: layernorm
          tied_head: true
          init: megatron
          init_std: 0.02
        data:
          kind: mqar
          vocab_size: 32
          val_fraction: 0.1
          num_pairs: 4
        train:
          steps: 5
          batch: 2
          seq_len: 16
          optimizer: {name: adamw, lr: 0.003, beta1: 0.9, beta2: 0.95, eps: 1e-08, weight_decay: 0.1, ssm_lr_scale: 1.0}
          schedule: {name: cosine, warmup: 20, min_lr: 0.00030000000000000003}
          clip: 1.0
          seed: 1
          log_every: 10
          eval_every: 100
          eval_batches: 8
          checkpoint_every: 100
        """
        let now = try ExperimentSpec.parse(base, file: "x.yaml")
        XCTAssertNil(try SpecDiff.firstDifference(stored: old, now: now))
        let changed = try ExperimentSpec.parse(base, file: "x.yaml", overrides: ["model.defaults.moe.router={name: sinkhorn-fast, tol: 0.01}"])
        XCTAssertEqual(try SpecDiff.firstDifference(stored: old, now: changed),
                       "model.layers[1].router.tol is 0.0001 in the stored spec but 0.01 now")
        let steps = try ExperimentSpec.parse(base, file: "x.yaml", overrides: ["train.steps=6"])
        XCTAssertEqual(try SpecDiff.firstDifference(stored: old, now: steps), "train.steps is 5 in the stored spec but 6 now")
        // a stored spec this version cannot read as a spec is compared as a tree
        let alien = old.replacingOccurrences(of: "mixer: mamba", with: "mixer: retired-mixer")
        XCTAssertEqual(try SpecDiff.firstDifference(stored: alien, now: now),
                       "model.layers[0].mixer is retired-mixer in the stored spec but mamba now")
    }

    /// The router is resolved when the spec is read and kept in the layer: the
    /// model is built from those options, not from the spec's text again.
    func testRouterOptionsAreResolvedOnceIntoTheLayer() throws {
        let s = try ExperimentSpec.parse(base, file: "x.yaml", overrides: ["model.defaults.moe.router={name: topk, k: 3}"])
        guard case .table(let r) = s.model.layers[1].resolved.values["router"]! else { return XCTFail("router not a table") }
        XCTAssertEqual(r["name"], .string("topk"))
        XCTAssertEqual(r["k"], .int(3))
        XCTAssertEqual(r["aux_loss"], .double(0.01))
        XCTAssertThrowsError(try ExperimentSpec.parse(base, file: "x.yaml", overrides: ["model.defaults.moe.router={name: topk, k: 5}"])) {
            XCTAssertTrue("\($0)".contains("x.yaml: model.layers[1]") && "\($0)".contains("k (5) exceeds the number of experts (4)"), "\($0)")
        }
    }
}
