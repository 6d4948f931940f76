import BMPlot

/// Curves of a sweep's runs, one per configuration: the mean over the runs that differ
/// only in `train.seed`, with their min–max as a band.
enum SeedBands {
    struct Group { var label: String; var members: [Int] }   // indices into the runs

    /// The configurations `SeedTables.groups` found, labelled with their n.
    /// Labels name only the axes needed to tell the configurations apart (an axis that
    /// moves with another in a zip group, such as an MLP width set per pattern, is left
    /// out of the legend; the report's tables give every axis).
    static func groups(_ grouped: [(config: [String: String], members: [Int])]) -> [Group] {
        let keys = distinguishingKeys(grouped.map(\.config))
        return grouped.map { g in
            Group(label: "\(SeedTables.label(g.config.filter { keys.contains($0.key) })) (n=\(g.members.count))", members: g.members)
        }
    }

    /// The smallest set found by dropping axes one at a time (in key order) while the
    /// configurations stay distinct.
    static func distinguishingKeys(_ configs: [[String: String]]) -> Set<String> {
        var keys = Set(configs.flatMap(\.keys))
        func distinct(_ ks: Set<String>) -> Bool {
            Set(configs.map { c in ks.sorted().map { "\($0)=\(c[$0] ?? "")" }.joined(separator: ",") }).count == configs.count
        }
        for k in keys.sorted() where distinct(keys.subtracting([k])) { keys.remove(k) }
        return keys
    }

    /// The same, matching points by position rather than by x (wall time differs between
    /// seeds): x and y are both averaged, the band is y's min–max.
    static func aggregateByIndex(_ series: [Series], _ groups: [Group]) -> [Series] {
        groups.map { g in
            let runs = g.members.map { series[$0].points }
            let n = runs.map(\.count).min() ?? 0
            var points: [(Double, Double)] = [], band: [(Double, Double)] = []
            for i in 0..<n {
                let xs = runs.map { $0[i].0 }, ys = runs.map { $0[i].1 }
                points.append((xs.reduce(0, +) / Double(xs.count), ys.reduce(0, +) / Double(ys.count)))
                band.append((ys.min()!, ys.max()!))
            }
            return Series(g.label, points, band: band)
        }
    }

    /// Each `extend` member's curve carried to the last x of its group at its last value:
    /// a run that stopped early (`train.stop_at`) keeps the accuracy it stopped at, so a
    /// group's mean line does not end where its fastest seed stopped.
    static func carriedForward(_ series: [Series], _ groups: [Group], extend: [Bool]) -> [Series] {
        var out = series
        for g in groups {
            let xs = Set(g.members.flatMap { series[$0].points.map(\.0) }).sorted()
            for m in g.members where extend[m] {
                guard let last = series[m].points.last else { continue }
                out[m].points += xs.filter { $0 > last.0 }.map { ($0, last.1) }
            }
        }
        return out
    }

    /// One series per group: at each x that every member has, the mean y and the (min, max).
    static func aggregate(_ series: [Series], _ groups: [Group]) -> [Series] {
        groups.map { g in
            let runs = g.members.map { series[$0].points }
            guard let first = runs.first else { return Series(g.label, []) }
            let byX = runs.map { Dictionary($0, uniquingKeysWith: { a, _ in a }) }
            var points: [(Double, Double)] = [], band: [(Double, Double)] = []
            for (x, _) in first {
                let ys = byX.compactMap { $0[x] }
                guard ys.count == runs.count else { continue }
                points.append((x, ys.reduce(0, +) / Double(ys.count)))
                band.append((ys.min()!, ys.max()!))
            }
            return Series(g.label, points, band: band)
        }
    }
}
