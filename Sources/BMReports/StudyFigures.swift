import Foundation
import BMCore
import BMStorage
import BMPlot
import BMStudies

/// Figures of the studies, regenerated from their stored numbers.
public enum StudyFigures {
    /// The Sinkhorn convergence figure from a `bmlab sinkhorn` sinkhorn.h5.
    public static func sinkhorn(_ path: String) throws -> Figure {
        let f = try H5File(path: path, mode: .readOnly)
        defer { f.close() }
        let variants = try f.stringArrayAttribute("variant_names"), sources = try f.stringArrayAttribute("source_names")
        let T = try f.dataset("T").readInt64s(), E = try f.dataset("E").readInt64s(), seed = try f.dataset("seed").readInt64s()
        let sigma = try f.dataset("sigma").readDoubles(), it = try f.dataset("iterations").readInt64s()
        let conv = try f.dataset("converged").readInt64s(), re = try f.dataset("row_error").readDoubles()
        let ce = try f.dataset("col_error").readDoubles(), ag = try f.dataset("argmax_agreement").readDoubles()
        let sec = try f.dataset("seconds_per_call").readDoubles()
        let rows = variants.indices.map { i in
            SinkhornStudy.Row(source: sources[i], variant: variants[i], T: Int(T[i]), E: Int(E[i]), sigma: sigma[i], seed: Int(seed[i]),
                              iterations: Int(it[i]), converged: conv[i] != 0, rowError: re[i], colError: ce[i], agreement: ag[i], seconds: sec[i])
        }
        return SinkhornStudy.figure(rows)
    }

    public struct LatencyPoint: Codable, Sendable { public var mixer: String; public var context: Int; public var msPerToken: Double; public var stateBytes: Int }

    /// Generation latency per token against context, one line per mixer.
    public static func latency(_ points: [LatencyPoint]) -> Figure {
        var mixers: [String] = []
        for p in points where !mixers.contains(p.mixer) { mixers.append(p.mixer) }
        let ms = mixers.map { m in Series(m, points.filter { $0.mixer == m }.map { (Double($0.context), $0.msPerToken) }) }
        let mem = mixers.map { m in Series(m, points.filter { $0.mixer == m }.map { (Double($0.context), Double($0.stateBytes) / 1024) }) }
        return Figure(name: "generation_latency", title: "Batch-1 generation, one mixer at d_model 256", panels: [
            Panel(title: "latency per token", xlabel: "context (tokens)", ylabel: "ms per token", logX: true, logY: true, series: ms),
            Panel(title: "generation state", xlabel: "context (tokens)", ylabel: "KiB", logX: true, logY: true, series: mem),
        ])
    }
}
