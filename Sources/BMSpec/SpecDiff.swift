import Foundation
import Yams

/// The first difference between the spec a run was started with (its stored resolved
/// spec) and the one asked for now, named by its key path: what a resumed run or a
/// reused sweep run reports when they differ. Values are compared, not text: the
/// stored spec is read again as a spec (so a run stored by an older version, whose
/// resolved spec was written differently or left some defaults out, compares by
/// what it means), and numbers compare as numbers (to 12 significant digits).
public enum SpecDiff {
    /// nil when the specs mean the same; else e.g. "train.steps is 2 in the stored
    /// spec but 4 now".
    public static func firstDifference(stored: String, now: ExperimentSpec) throws -> String? {
        guard let storedTree = tree(stored) else { return "the stored spec is not valid YAML" }
        return firstDifference(storedTree, flatten(try now.resolvedNode()))
    }

    /// A stored spec's leaves: as this version resolves it when it reads as a spec, else
    /// the YAML tree as it is (nil when it is not YAML).
    public static func tree(_ text: String) -> [(String, String)]? {
        if let s = try? ExperimentSpec.parse(text, file: "the stored spec"), let n = try? s.resolvedNode() {
            var leaves = flatten(n)
            // a text or tokens run stored before data.split existed was split by its tail
            // (the last val_fraction of the data): not the data this version would use
            let raw = (try? Yams.compose(yaml: text)).flatMap { $0 }.map { flatten($0) } ?? []
            // (data.test_fraction came with the block split: a stored spec with it used blocks)
            if s.data.kind.isSplit, !raw.contains(where: { $0.0 == "data.split" || $0.0 == "data.test_fraction" }),
               let i = leaves.firstIndex(where: { $0.0 == "data.split" }) {
                leaves[i].1 = "absent (an older version's tail split)"
            }
            return leaves
        }
        return (try? Yams.compose(yaml: text)).flatMap { $0 }.map { flatten($0) }
    }

    /// Keys that change what a run keeps or how it is labelled, not what it computes: a
    /// run may be resumed, or a sweep's finished run reused or adopted by another sweep,
    /// with another value.
    static let ignored: Set<String> = ["train.keep_checkpoints", "name", "description"]

    public static func firstDifference(_ a: [(String, String)], _ b: [(String, String)]) -> String? {
        let av = Dictionary(a, uniquingKeysWith: { x, _ in x }), bv = Dictionary(b, uniquingKeysWith: { x, _ in x })
        var paths = b.map(\.0)
        for (p, _) in a where bv[p] == nil { paths.append(p) }
        for p in paths where !ignored.contains(p) {
            let x = av[p], y = bv[p]
            if let x, let y, same(x, y) { continue }
            return "\(p) is \(x ?? "absent") in the stored spec but \(y ?? "absent") now"
        }
        return nil
    }

    /// Equal strings, or numbers equal to 12 significant digits (`3.0e-4`, `0.0003` and
    /// `0.00030000000000000003`, which an older version wrote for lr / 10): derived
    /// defaults are resolved to 12 digits, and training uses them in Float (7 digits).
    public static func same(_ x: String, _ y: String) -> Bool {
        if x == y { return true }
        if let a = Double(x), let b = Double(y) { return a == b || abs(a - b) <= 1e-12 * max(abs(a), abs(b)) }
        return false
    }

    /// Leaves of a YAML tree with their dotted key paths (list items as `[i]`).
    public static func flatten(_ node: Node, _ path: String = "") -> [(String, String)] {
        switch node {
        case .scalar(let s): return [(path, s.string)]
        case .mapping(let m):
            if m.isEmpty { return [(path, "{}")] }
            return m.flatMap { k, v in flatten(v, path.isEmpty ? (k.string ?? "?") : "\(path).\(k.string ?? "?")") }
        case .sequence(let s):
            if s.isEmpty { return [(path, "[]")] }
            return s.enumerated().flatMap { i, v in flatten(v, "\(path)[\(i)]") }
        }
    }
}
