import Foundation
import BMCore
import BMStorage

/// A `.safetensors` file (huggingface/safetensors): an 8-byte little-endian header length N,
/// N bytes of JSON `{"__metadata__": {str: str}, NAME: {"dtype", "shape", "data_offsets":
/// [BEGIN, END]}, …}`, then the byte buffer the offsets index (docs/weights.md).
///
/// Opening checks what the reference reader checks, in its order, and a little more: the
/// file holds the 8 bytes; N ≤ 100,000,000 and 8 + N within the file; the header is
/// UTF-8 JSON without duplicate keys, every dtype known; the tensors, sorted by offset,
/// tile the buffer from 0 with no gap and no overlap; each tensor's bytes are exactly
/// Π shape × its element size (products checked for overflow; whole bytes); the buffer
/// ends at the file's end. A file that fails any of them is an error naming the file,
/// the tensor and what was expected, before any tensor is read. The file is read with
/// `pread`, a tensor at a time (never mapped: see `ReadOnlyFile`).
public final class SafeTensorsFile {
    public struct Entry: Sendable, Equatable {
        public let name: String
        public let dtype: TensorDType
        public let shape: [Int]
        /// Byte range in the buffer (relative to 8 + N).
        public let begin: Int, end: Int
        public var count: Int { shape.reduce(1, *) }
    }

    public static let maxHeader = 100_000_000

    public let path: String
    public let metadata: [(String, String)]
    /// Tensors in file order.
    public let entries: [Entry]
    private let byName: [String: Int]
    private let file: ReadOnlyFile
    private let bufferStart: Int

    public init(path: String) throws {
        self.path = path
        let f = try ReadOnlyFile(path: path)
        file = f
        let size = f.size
        func bad(_ m: String) -> BMError { .invalid("\(path): not a valid safetensors file: \(m)") }
        guard size >= 8 else { throw bad("\(size) bytes, shorter than the 8-byte header length") }
        let n64 = try f.read(at: 0, count: 8).withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 0, as: UInt64.self).littleEndian }
        guard n64 <= UInt64(Self.maxHeader) else { throw bad("header length \(n64) bytes exceeds the limit of \(Self.maxHeader)") }
        let n = Int(n64)
        guard 8 + n <= size else { throw bad("header length \(n) runs past the end of the \(size)-byte file") }
        bufferStart = 8 + n
        let header = try JSONValue.parse(try f.read(at: 8, count: n), what: "\(path): safetensors header")
        guard let members = header.objectMembers else { throw bad("the header is \(header.kindDescription), expected an object") }
        var meta: [(String, String)] = []
        var list: [Entry] = []
        for (name, v) in members {
            if name == "__metadata__" {
                guard let m = v.objectMembers else { throw bad("__metadata__ is \(v.kindDescription), expected an object of strings") }
                for (k, s) in m {
                    guard let str = s.stringValue else { throw bad("__metadata__.\(k) is \(s.kindDescription), expected a string") }
                    meta.append((k, str))
                }
                continue
            }
            guard v.objectMembers != nil else { throw bad("tensor '\(name)' is \(v.kindDescription), expected {dtype, shape, data_offsets}") }
            guard let ds = v["dtype"]?.stringValue else { throw bad("tensor '\(name)': missing or non-string 'dtype'") }
            guard let dtype = TensorDType(rawValue: ds) else {
                throw bad("tensor '\(name)': unknown dtype '\(ds)' (known: \(TensorDType.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            guard let sa = v["shape"]?.arrayValue else { throw bad("tensor '\(name)': missing or non-list 'shape'") }
            let shape = try sa.map { s -> Int in
                guard let i = s.intValue, i >= 0, i < 1 << 48 else { throw bad("tensor '\(name)': shape entry \(s.kindDescription), expected an integer in 0 ..< 2^48") }
                return i
            }
            guard let off = v["data_offsets"]?.arrayValue, off.count == 2,
                  let b = off[0].intValue, let e = off[1].intValue, b >= 0, e >= 0 else {
                throw bad("tensor '\(name)': 'data_offsets' must be two non-negative integers [BEGIN, END]")
            }
            for k in v.objectMembers!.map(\.0) where !["dtype", "shape", "data_offsets"].contains(k) {
                throw bad("tensor '\(name)': unknown field '\(k)'")
            }
            list.append(Entry(name: name, dtype: dtype, shape: shape, begin: b, end: e))
        }
        // the tensors tile the buffer: sorted by offset, from 0, each beginning where the last ended
        let sorted = list.sorted { ($0.begin, $0.end) < ($1.begin, $1.end) }
        var at = 0
        for t in sorted {
            guard t.end >= t.begin else { throw bad("tensor '\(t.name)': data_offsets [\(t.begin), \(t.end)] end before they begin") }
            guard t.begin == at else {
                throw bad(t.begin < at ? "tensor '\(t.name)' at byte \(t.begin) overlaps the tensor before it (which ends at \(at))"
                                       : "a gap of \(t.begin - at) bytes before tensor '\(t.name)' (at \(t.begin), expected \(at))")
            }
            guard let numel = elementCount(t.shape), case let (bits, o) = numel.multipliedReportingOverflow(by: t.dtype.bits), !o else {
                throw bad("tensor '\(t.name)': shape \(t.shape) overflows")
            }
            guard bits % 8 == 0 else { throw bad("tensor '\(t.name)': \(numel) elements of \(t.dtype.rawValue) are not a whole number of bytes") }
            guard t.end - t.begin == bits / 8 else {
                throw bad("tensor '\(t.name)': \(t.end - t.begin) bytes for \(t.dtype.rawValue) \(t.shape), expected \(bits / 8)")
            }
            guard t.end <= size - bufferStart else {
                throw bad("tensor '\(t.name)' ends at buffer byte \(t.end), past the end of the file (\(size - bufferStart) bytes of buffer)")
            }
            at = t.end
        }
        guard at == size - bufferStart else {
            throw bad(bufferStart + at < size ? "\(size - bufferStart - at) bytes after the last tensor (the buffer must be entirely indexed)"
                                              : "the tensors need \(at) bytes of buffer, the file holds \(size - bufferStart)")
        }
        metadata = meta
        entries = list
        var index: [String: Int] = [:]
        for (i, t) in list.enumerated() {
            // distinct bytes, yet equal as Swift strings (é and e + ◌́): one name to a reader
            guard index[t.name] == nil else { throw bad("tensor names '\(list[index[t.name]!].name)' and '\(t.name)' differ only in Unicode normalisation") }
            index[t.name] = i
        }
        byName = index
    }

    public var names: [String] { entries.map(\.name) }
    public func entry(_ name: String) -> Entry? { byName[name].map { entries[$0] } }

    /// The tensor `name` as Float, row-major.
    public func floats(_ name: String) throws -> [Float] {
        guard let e = entry(name) else { throw BMError.invalid("\(path): no tensor '\(name)'") }
        guard e.dtype.isReadableFloat else { throw BMError.invalid("\(path): tensor '\(name)' is \(e.dtype.rawValue), expected a float type (F32, F16, BF16, F64)") }
        let raw = try file.read(at: bufferStart + e.begin, count: e.end - e.begin)
        var out = [Float](repeating: 0, count: e.count)
        if e.count > 0 {
            raw.withUnsafeBytes { rb in out.withUnsafeMutableBufferPointer { e.dtype.widen(rb.baseAddress!, count: e.count, into: $0.baseAddress!) } }
        }
        return out
    }

    // MARK: writing

    /// Writes F32 tensors as the reference writer lays them out (sorted by name for one
    /// element size; header padded with spaces to a multiple of 8; `__metadata__` first),
    /// atomically: a crash leaves the old file or none.
    public static func write(to path: String, tensors: [(name: String, shape: [Int], values: [Float])],
                             metadata: [(String, String)] = [("format", "pt")]) throws {
        var seen = Set<String>()
        for t in tensors {
            guard seen.insert(t.name).inserted else { throw BMError.invalid("\(path): tensor '\(t.name)' given twice") }
            guard t.name != "__metadata__" else { throw BMError.invalid("\(path): '__metadata__' cannot name a tensor") }
            guard elementCount(t.shape) == t.values.count else {
                throw BMError.invalid("\(path): tensor '\(t.name)' has \(t.values.count) values for shape \(t.shape)")
            }
        }
        let order = tensors.sorted { $0.name < $1.name }
        var members: [(String, JSONValue)] = []
        if !metadata.isEmpty { members.append(("__metadata__", .object(metadata.map { ($0.0, .string($0.1)) }))) }
        var at = 0
        for t in order {
            let n = t.values.count * 4
            members.append((t.name, .object([("dtype", .string("F32")), ("shape", .array(t.shape.map { .number(String($0)) })),
                                             ("data_offsets", .array([.number(String(at)), .number(String(at + n))]))])))
            at += n
        }
        var header = Array(JSONValue.object(members).text.utf8)
        while header.count % 8 != 0 { header.append(0x20) }
        var bytes = Data(capacity: 8 + header.count + at)
        withUnsafeBytes(of: UInt64(header.count).littleEndian) { bytes.append(contentsOf: $0) }
        bytes.append(contentsOf: header)
        for t in order { t.values.withUnsafeBufferPointer { bytes.append($0) } }   // little-endian: x86-64's order
        do {
            try AtomicFile.write(to: path) { tmp in try bytes.write(to: URL(fileURLWithPath: tmp)) }
        } catch {
            throw BMError.system("\(path): cannot write: \(BMError.reason(error))")
        }
    }
}
