import Foundation
import BMStorage

/// The run's metrics file (`metrics.h5`, schema in docs/metrics.md): root
/// attributes describing the run, and extendible datasets that grow by one row
/// per logged step. Flushed at every log step, so a killed run leaves a readable
/// file up to the last flush and h5py can read it while the run goes on.
public final class MetricsLog {
    /// 2: `train/step` and `router/…/step` count the steps done, as `eval/step` (version
    /// 1, files without the `metrics_version` attribute, logged the step's 0-based index).
    public static let version = 2
    /// The version a metrics file was written with (1 when it does not say).
    public static func version(of file: H5File) -> Int { (try? file.intAttribute("metrics_version")) ?? 1 }
    public let file: H5File
    private var columns: [String: AppendableDataset] = [:]

    public init(path: String, attributes: [(String, MetricValue)]) throws {
        file = try H5File(path: path, mode: .create)
        for (k, v) in attributes { try v.write(k, to: file) }
    }

    /// Reopens a run's metrics for appending after a resume from step `step`:
    /// drops the rows logged after the checkpoint (rows whose step, the steps done,
    /// exceeds `step`; in a version-1 file, `train/` and `router/` rows whose 0-based
    /// index is `step` or more).
    public init(resuming path: String, step: Int) throws {
        file = try H5File(path: path, mode: .readWrite)
        let indexed = MetricsLog.version(of: file) < 2
        let routerGroups = ((try? file.group("router").children()) ?? []).map { "router/\($0)" }
        for group in ["train", "eval"] + routerGroups {
            guard file.exists("\(group)/step") else { continue }
            let steps = try file.dataset("\(group)/step").readInt64s()
            let keep = steps.prefix { group != "eval" && indexed ? $0 < Int64(step) : $0 <= Int64(step) }.count
            for name in try file.group(group).children() {
                let path = "\(group)/\(name)"
                let c = try file.openAppendable(path)
                if c.rows > keep { try c.truncate(toRows: keep) }
                columns[path] = c
            }
        }
        try file.flush()
    }

    /// Appends one row to `group/name` (created on first use).
    public func append(_ path: String, _ value: Double) throws {
        try column(path, type: .float64, width: nil).append(value)
    }

    public func append(_ path: String, _ value: Int) throws {
        try column(path, type: .int64, width: nil).append(Int64(value))
    }

    public func appendRow(_ path: String, _ row: [Double]) throws {
        try column(path, type: .float64, width: row.count).append(row: row)
    }

    public func appendRow(_ path: String, _ row: [Int]) throws {
        try column(path, type: .int64, width: row.count).append(row: row.map(Int64.init))
    }

    private func column(_ path: String, type: H5ElementType, width: Int?) throws -> AppendableDataset {
        if let c = columns[path] { return c }
        // Uncompressed on purpose: a compressed chunk that grows is rewritten at a
        // new place in the file and its old space reused, so after a SIGKILL the
        // metadata of the last flush could point at overwritten bytes. Fixed-size
        // chunks stay where they are, and the file stays readable up to its last flush.
        let exists = file.exists(path)
        let c = exists ? try file.openAppendable(path)
                       : try file.createAppendable(path, type: type, rowShape: width.map { [$0] } ?? [], compression: nil)
        if !exists {
            let d = MetricsSchema.describe(path)
            try c.setAttribute("units", d.units)
            try c.setAttribute("description", d.description)
        }
        columns[path] = c
        return c
    }

    public func setAttribute(_ key: String, _ v: MetricValue) throws { try v.write(key, to: file) }
    public func flush() throws { try file.flush() }
    public func close() { columns = [:]; file.close() }
    /// Flushes and closes the file, checked: a run's last write to its metrics.
    public func finish() throws { columns = [:]; try file.closeFile() }
}

/// A root attribute value.
public enum MetricValue {
    case string(String), int(Int), double(Double), strings([String]), doubles([Double])
    func write(_ key: String, to file: H5File) throws {
        switch self {
        case .string(let s): try file.setAttribute(key, s)
        case .int(let i): try file.setAttribute(key, i)
        case .doubles(let d): try file.setAttribute(key, d)
        case .double(let d): try file.setAttribute(key, d)
        case .strings(let a): try file.setAttribute(key, a)
        }
    }
}
