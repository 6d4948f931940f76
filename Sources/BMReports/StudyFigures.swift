import Foundation
import BMCore
import BMStorage
import BMPlot
import BMStudies
import BMBench

/// Figures of the studies, regenerated from their stored numbers.
public enum StudyFigures {
    /// The Sinkhorn study's figures from a `bmlab sinkhorn` sinkhorn.h5.
    public static func sinkhorn(_ path: String) throws -> [Figure] {
        SinkhornStudy.figures(try SinkhornStudy.readHDF5(path))
    }

    /// `bmlab bench generate --out DIR`'s bench_generate.json: batch-1 latency per
    /// token, the generation state and the process's resident memory against the
    /// context, one line per model (and weight format).
    public static func generation(_ path: String) throws -> Figure {
        let points: [GenerateBench.Point]
        do { points = try JSON.decoder().decode([GenerateBench.Point].self, from: Data(contentsOf: URL(fileURLWithPath: path))) } catch {
            throw BMError.invalid("\(path): not a bench_generate.json of bmlab bench generate --out (\(error))")
        }
        guard !points.isEmpty else { throw BMError.invalid("\(path): no points") }
        var names: [String] = []
        func name(_ p: GenerateBench.Point) -> String { p.weights == .fp32 ? p.model : "\(p.model) \(p.weights.rawValue)" }
        for p in points where !names.contains(name(p)) { names.append(name(p)) }
        func series(_ value: (GenerateBench.Point) -> Double) -> [Series] {
            names.map { n in Series(n, points.filter { name($0) == n }.map { (Double($0.context), value($0)) }) }
        }
        // the latency's range over rounds as a band, when measured in rounds
        let latency = names.map { n -> Series in
            let ps = points.filter { name($0) == n }
            let band = ps.allSatisfy { $0.msMin != nil && $0.msMax != nil } ? ps.map { ($0.msMin!, $0.msMax!) } : nil
            return Series(n, ps.map { (Double($0.context), $0.msPerToken) }, band: band)
        }
        let rounds = points.compactMap(\.rounds).max()
        return Figure(name: "generation_latency", title: "Batch-1 generation against the context (random weights; one process, contexts in order)", panels: [
            Panel(title: rounds.map { "latency per token: median and range of \($0) rounds" } ?? "latency per token", xlabel: "context (tokens)",
                  ylabel: "ms per token", logX: true, logY: true, series: latency),
            Panel(title: "generation state (conv/SSM states, KV caches)", xlabel: "context (tokens)", ylabel: "MiB", logX: true, logY: true,
                  series: series { max(Double($0.stateBytes) / 1_048_576, 1e-3) }),
            Panel(title: "process resident memory", xlabel: "context (tokens)", ylabel: "MiB", logX: true, logY: true, series: series(\.residentMib)),
        ])
    }
}
