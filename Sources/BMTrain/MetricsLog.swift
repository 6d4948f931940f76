import Foundation
import BMStorage

/// The run's metrics file (`metrics.h5`, schema in docs/metrics.md): root
/// attributes describing the run, and extendible datasets that grow by one row
/// per logged step. Flushed at every log step so a killed run leaves a readable
/// file up to the last flush.
public final class MetricsLog {
    public let file: H5File
    private var columns: [String: AppendableDataset] = [:]

    public init(path: String, attributes: [(String, MetricValue)]) throws {
        file = try H5File(path: path, mode: .create)
        for (k, v) in attributes { try v.write(k, to: file) }
    }

    /// Appends one row to `group/name` (created on first use, float64).
    public func append(_ path: String, _ value: Double) throws {
        try column(path, type: .float64).append(value)
    }

    public func append(_ path: String, _ value: Int) throws {
        try column(path, type: .int64).append(Int64(value))
    }

    public func appendRow(_ path: String, _ row: [Double]) throws {
        if let c = columns[path] { try c.append(row: row); return }
        let c = try file.createAppendable(path, type: .float64, rowShape: [row.count])
        columns[path] = c
        try c.append(row: row)
    }

    private func column(_ path: String, type: H5ElementType) throws -> AppendableDataset {
        if let c = columns[path] { return c }
        let c = try file.createAppendable(path, type: type)
        columns[path] = c
        return c
    }

    public func flush() throws { try file.flush() }
    public func close() { file.close() }
}

/// A root attribute value.
public enum MetricValue {
    case string(String), int(Int), double(Double), strings([String])
    func write(_ key: String, to file: H5File) throws {
        switch self {
        case .string(let s): try file.setAttribute(key, s)
        case .int(let i): try file.setAttribute(key, i)
        case .double(let d): try file.setAttribute(key, d)
        case .strings(let a): try file.setAttribute(key, a)
        }
    }
}
