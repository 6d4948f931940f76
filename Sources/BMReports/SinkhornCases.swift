import Foundation
import BMCore
import BMExperiments
import BMStudies
import BMData

/// Real router logits for the Sinkhorn study (`bmlab sinkhorn --checkpoints DIR`):
/// every checkpoint a run kept with `train.keep_checkpoints` (DIR/**/checkpoints/
/// step-NNNNNN.h5), evaluated on its own first validation batches; one case per
/// (run, step, MoE layer), labelled by the run's configuration without its seed.
public enum SinkhornCases {
    /// The kept checkpoints under `dir`, sorted by path (run, then step).
    public static func keptCheckpoints(under dir: String) throws -> [String] {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDir), isDir.boolValue else {
            throw BMError.invalid("--checkpoints: no directory at \(dir)")
        }
        let all = FileManager.default.enumerator(atPath: dir)?.compactMap { $0 as? String } ?? []
        let found = all.filter {
            let parts = $0.split(separator: "/")
            return parts.count >= 2 && parts[parts.count - 2] == "checkpoints" && parts.last!.hasPrefix("step-") && parts.last!.hasSuffix(".h5")
        }.sorted().map { (dir as NSString).appendingPathComponent($0) }
        guard !found.isEmpty else {
            throw BMError.invalid("--checkpoints \(dir): no checkpoints/step-*.h5 below it; train with train.keep_checkpoints: true to keep them")
        }
        return found
    }

    /// The cases of every kept checkpoint under `dir`; `progress` gets each path.
    public static func load(under dir: String, batches: Int, progress: ((String) -> Void)? = nil) throws -> [SinkhornStudy.Case] {
        var cases: [SinkhornStudy.Case] = []
        let paths = try keptCheckpoints(under: dir)
        // DIR/…/<run>/checkpoints/step-N.h5; more than one folder of runs below DIR: the
        // label starts with the folder's path relative to DIR
        func runDir(_ p: String) -> String { ((p as NSString).deletingLastPathComponent as NSString).deletingLastPathComponent }
        let roots = Set(paths.map { (runDir($0) as NSString).deletingLastPathComponent })
        var datasets: [String: Dataset] = [:]                  // one per data section: a corpus is read once
        for path in paths {
            progress?(path)
            let (spec, step, layers) = try RouterLogits.of(checkpoint: path, batches: batches, datasets: &datasets)
            guard !layers.isEmpty else { throw RouterLogits.noRouter(path) }
            // <run> is "k=v,…" for a sweep's run: its configuration is those but the seed
            let run = runDir(path), name = (run as NSString).lastPathComponent
            let config = SeedTables.configuration(name)
            var label = config.isEmpty ? (name.contains("=") ? "all runs" : name) : SeedTables.label(config)
            if roots.count > 1 {
                let root = (run as NSString).deletingLastPathComponent
                let rel = root.hasPrefix(dir) ? String(root.dropFirst(dir.count)).trimmingCharacters(in: CharacterSet(charactersIn: "/")) : root
                label = (rel.isEmpty ? "." : rel) + ": " + label
            }
            for l in layers {
                cases.append(.init(source: "real", config: label, seed: spec.train.seed, step: step, layer: l.layer,
                                   values: l.values, T: l.T, E: l.E))
            }
        }
        return cases
    }
}
