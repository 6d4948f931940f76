import Foundation
import BMCore
import BMSpec

/// A sweep: a base spec and `sweep.axes` — dotted keys with lists of values.
/// The runs are the cartesian product of the axes; axes in a `zip` group move
/// together. `train.seed` is an axis like any other.
///
/// ```yaml
/// base: blackmamba-tiny.yaml      # optional: a spec to start from (relative to this file)
/// train: {steps: 200}             # optional: keys merged over the base
/// sweep:
///   axes:
///     model.pattern: [[mamba, moe], [mamba, mlp], [attention, moe]]
///     train.seed: [1, 2]
///   zip:                          # optional: lists of axes that move together
///     - {model.d_model: [64, 128], train.optimizer.lr: [2.0e-3, 1.0e-3]}
/// ```
public struct Sweep {
    public struct Axis: Sendable { public var key: String; public var values: [SpecNode] }
    public struct Run: Sendable {
        public var index: Int
        public var name: String                    // stable, readable: sorted key=value
        public var assignments: [(key: String, value: SpecNode)]
        public var spec: ExperimentSpec
        public func valueText(_ key: String) -> String {
            assignments.first { $0.key == key }.map { Sweep.text($0.value) } ?? ""
        }
    }

    public let file: String
    /// The command line's `key=value` overrides, applied to every run.
    public let overrides: [String]
    public let axes: [String]                      // keys, sorted
    public let runs: [Run]
    /// The most runs one sweep may have: each run is a directory, a spec in memory and
    /// a worker; a grid past this is a mistake more often than a plan.
    public static let maxRuns = 10_000

    /// `report.baseline`: the configuration the report compares the others with — a
    /// value of every axis but `train.seed`, as run names write it (`Sweep.slug`).
    public let baseline: [String: String]?

    /// `report.cells: {x: AXIS, panel: AXIS}`: a figure of the final metric against a
    /// numeric axis, one panel per value of another, one line per remaining configuration,
    /// each cell at its best learning rate (chosen on validation), one dot per seed.
    public struct Cells: Sendable, Equatable { public var x: String; public var panel: String? }
    public let cells: Cells?

    public init(path: String, overrides: [String] = []) throws {
        file = path
        self.overrides = overrides
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw BMError.invalid("\(path): no such sweep file (or not readable)")
        }
        let sweepDir = URL(fileURLWithPath: path).standardizedFileURL.deletingLastPathComponent().path
        var root = try SpecNode.parse(text, file: path).resolvingPaths(against: sweepDir)
        guard case .map(var entries, _) = root else { throw BMError.invalid("\(path): a sweep file must be a mapping") }
        guard let si = entries.firstIndex(where: { $0.key == "sweep" }) else {
            throw BMError.invalid("\(path): no 'sweep' section (sweep: {axes: {key: [values]}})")
        }
        let sweepNode = entries.remove(at: si).value
        let reportNode = entries.firstIndex(where: { $0.key == "report" }).map { entries.remove(at: $0).value }
        // base: another spec file, with this file's sections merged over it
        root = try SpecNode.map(entries, line: 1).applyingBase(file: path)
        for (k, o) in overrides.enumerated() { root = try root.applying(override: o, index: k) }
        root = root.resolvingPaths(against: FileManager.default.currentDirectoryPath)
        // axes and zip groups
        guard case .map(let sw, _) = sweepNode else { throw BMError.invalid("\(path):\(sweepNode.line): sweep must be a mapping with 'axes'") }
        var groups: [[Axis]] = []
        for (k, v) in sw {
            switch k {
            case "axes":
                guard case .map(let ax, _) = v else { throw BMError.invalid("\(path):\(v.line): sweep.axes must map keys to lists of values") }
                for (key, vals) in ax { groups.append([try Sweep.axis(key, vals, file: path)]) }
            case "zip":
                guard case .list(let zs, _) = v else { throw BMError.invalid("\(path):\(v.line): sweep.zip must be a list of mappings") }
                for z in zs {
                    guard case .map(let ax, _) = z else { throw BMError.invalid("\(path):\(z.line): each sweep.zip entry maps keys to lists of values") }
                    let g = try ax.map { try Sweep.axis($0.key, $0.value, file: path) }
                    if Set(g.map(\.values.count)).count > 1 {
                        throw BMError.invalid("\(path):\(z.line): axes in a zip group need lists of the same length (\(g.map { "\($0.key): \($0.values.count)" }.joined(separator: ", ")))")
                    }
                    if !g.isEmpty { groups.append(g) }
                }
            default:
                throw BMError.invalid("\(path):\(v.line): unknown key 'sweep.\(k)'\(didYouMean(k, in: ["axes", "zip"])); valid keys: axes, zip")
            }
        }
        guard !groups.isEmpty else { throw BMError.invalid("\(path): sweep.axes is empty") }
        let keys = groups.flatMap { $0.map(\.key) }
        if Set(keys).count != keys.count { throw BMError.invalid("\(path): an axis appears twice in the sweep") }
        axes = keys.sorted()
        baseline = try Sweep.baseline(reportNode, groups: groups, file: path)
        cells = try Sweep.cells(reportNode, groups: groups, file: path)
        // the grid's size, before it is built (a grid of 10^12 runs is refused, not allocated)
        var size = 1
        for g in groups {
            let (n, overflow) = size.multipliedReportingOverflow(by: g[0].values.count)
            guard !overflow, n <= Sweep.maxRuns else {
                throw BMError.invalid("\(path): sweep.axes make \(overflow ? "more than \(Int.max)" : "\(n)") runs or more; at most \(Sweep.maxRuns) runs a sweep (split it into several sweep files)")
            }
            size = n
        }
        // cartesian product over groups (first group slowest), zip inside groups
        var combos: [[(String, SpecNode)]] = [[]]
        for g in groups {
            var next: [[(String, SpecNode)]] = []
            for c in combos { for i in 0..<g[0].values.count { next.append(c + g.map { ($0.key, $0.values[i]) }) } }
            combos = next
        }
        var out: [Run] = []
        var seen = Set<String>()
        for (i, c) in combos.enumerated() {
            let sorted = c.sorted { $0.0 < $1.0 }
            var node = root
            for (k, v) in sorted {
                node = try node.overriding(k.split(separator: ".").map(String.init), with: v, full: k)
            }
            node = node.resolvingPaths(against: sweepDir)      // an axis of paths, relative to this file
            let name = sorted.map { "\($0.0)=\(Sweep.slug($0.1))" }.joined(separator: ",")
            if seen.contains(name) { throw BMError.invalid("\(path): two runs would both be named '\(name)'") }
            seen.insert(name)
            var spec = try ExperimentSpec(node, source: SpecSource(file: "\(path) [run \(i): \(name)]", overrides: overrides))
            spec.file = "\(path) [run \(i): \(name)]"
            try spec.validate()
            out.append(Run(index: i, name: name, assignments: sorted.map { (key: $0.0, value: $0.1) }, spec: spec))
        }
        runs = out
    }

    /// Reads `report: {baseline: {axis: value, …}}`: every axis but `train.seed`, each
    /// with one of its values.
    static func baseline(_ node: SpecNode?, groups: [[Axis]], file: String) throws -> [String: String]? {
        guard let node else { return nil }
        guard case .map(let e, _) = node else { throw BMError.invalid("\(file):\(node.line): report must be a mapping (report: {baseline: {axis: value}})") }
        var out: [String: String]? = nil
        let axes = groups.flatMap { $0 }
        for (k, v) in e {
            if k == "cells" { continue }
            guard k == "baseline" else { throw BMError.invalid("\(file):\(v.line): unknown key 'report.\(k)'\(didYouMean(k, in: ["baseline", "cells"])); valid keys: baseline, cells") }
            guard case .map(let b, _) = v else { throw BMError.invalid("\(file):\(v.line): report.baseline must map axes to values") }
            var chosen: [String: String] = [:]
            for (key, value) in b {
                let names = axes.map(\.key).filter { $0 != "train.seed" }
                guard let axis = axes.first(where: { $0.key == key }), key != "train.seed" else {
                    throw BMError.invalid("\(file):\(value.line): report.baseline: '\(key)' is not an axis of the sweep\(didYouMean(key, in: names)); axes: \(names.joined(separator: ", "))")
                }
                let slugs = axis.values.map(Sweep.slug)
                guard slugs.contains(Sweep.slug(value)) else {
                    throw BMError.invalid("\(file):\(value.line): report.baseline.\(key): '\(Sweep.text(value))' is not one of the axis' values (\(axis.values.map(Sweep.text).joined(separator: ", ")))")
                }
                chosen[key] = Sweep.slug(value)
            }
            let missing = axes.map(\.key).filter { $0 != "train.seed" && chosen[$0] == nil }
            if !missing.isEmpty { throw BMError.invalid("\(file):\(v.line): report.baseline must give every axis but train.seed; missing: \(missing.joined(separator: ", "))") }
            out = chosen
        }
        return out
    }

    /// Reads `report: {cells: {x: AXIS, panel: AXIS}}`: x an axis whose values are numbers,
    /// panel (optional) another axis; neither train.seed nor the learning rate.
    static func cells(_ node: SpecNode?, groups: [[Axis]], file: String) throws -> Cells? {
        guard let node, case .map(let e, _) = node, let v = e.first(where: { $0.key == "cells" })?.value else { return nil }
        guard case .map(let c, _) = v else { throw BMError.invalid("\(file):\(v.line): report.cells must be a mapping {x: AXIS, panel: AXIS}") }
        let axes = groups.flatMap { $0 }
        let names = axes.map(\.key).filter { $0 != "train.seed" && $0 != "train.optimizer.lr" && $0 != "train.schedule.min_lr" }
        var x: String? = nil, panel: String? = nil
        for (k, value) in c {
            guard k == "x" || k == "panel" else {
                throw BMError.invalid("\(file):\(value.line): unknown key 'report.cells.\(k)'\(didYouMean(k, in: ["x", "panel"])); valid keys: x, panel")
            }
            guard case .scalar(let key, _, _) = value, let axis = axes.first(where: { $0.key == key }), names.contains(key) else {
                throw BMError.invalid("\(file):\(value.line): report.cells.\(k): '\(Sweep.text(value))' is not an axis of the sweep (other than train.seed and the learning rate)\(didYouMean(Sweep.text(value), in: names)); axes: \(names.joined(separator: ", "))")
            }
            if k == "x" {
                guard axis.values.allSatisfy({ Double(Sweep.slug($0)) != nil }) else {
                    throw BMError.invalid("\(file):\(value.line): report.cells.x: the axis \(key) must have numbers as values (got \(axis.values.map(Sweep.text).joined(separator: ", ")))")
                }
                x = key
            } else { panel = key }
        }
        guard let x else { throw BMError.invalid("\(file):\(v.line): report.cells needs x: the axis for the horizontal axis (e.g. x: model.d_model)") }
        if panel == x { throw BMError.invalid("\(file):\(v.line): report.cells: x and panel are the same axis (\(x))") }
        return Cells(x: x, panel: panel)
    }

    /// True when the YAML file has a top-level `sweep` section (a sweep file, not a spec).
    public static func isSweepFile(_ path: String) -> Bool {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8),
              case .map(let e, _)? = try? SpecNode.parse(text, file: path) else { return false }
        return e.contains { $0.key == "sweep" }
    }

    static func axis(_ key: String, _ v: SpecNode, file: String) throws -> Axis {
        guard case .list(let vals, _) = v, !vals.isEmpty else {
            throw BMError.invalid("\(file):\(v.line): sweep axis '\(key)' needs a non-empty list of values")
        }
        return Axis(key: key, values: vals)
    }

    /// Deep merge: mappings merge key by key, anything else is replaced.
    /// A value as compact text: scalars as written, lists [a,b], maps {k:v}.
    public static func text(_ n: SpecNode) -> String {
        switch n {
        case .scalar(let s, _, _): return s
        case .list(let items, _): return "[" + items.map(text).joined(separator: ",") + "]"
        case .map(let e, _): return "{" + e.map { "\($0.key):\(text($0.value))" }.joined(separator: ",") + "}"
        }
    }

    /// Filesystem-friendly form of a value for run names: lists joined with '+'.
    public static func slug(_ n: SpecNode) -> String {
        switch n {
        case .scalar(let s, _, _): return s.replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: " ", with: "_")
        case .list(let items, _): return items.map(slug).joined(separator: "+")
        case .map(let e, _): return e.map { "\($0.key)-\(slug($0.value))" }.joined(separator: "+")
        }
    }
}
