import Foundation
import BMCore
import BMStorage

/// A `torch.save` file of a state dict (`pytorch_model.bin`): a zip archive of uncompressed
/// members `<P>/data.pkl` (the pickle), `<P>/data/<key>` (each storage's raw bytes),
/// `<P>/byteorder`, `<P>/version`, … with `<P>` whatever prefix its first member has
/// (docs/weights.md). The pickle runs in `RestrictedUnpickler`, never in Python's sense;
/// every tensor's storage must exist with exactly its `numel × element size` bytes, and
/// every view (offset, sizes, strides) must lie inside it. Non-zip files from before
/// PyTorch 1.6 are recognised and refused with how to convert them.
public final class TorchCheckpoint {
    public struct Entry: Sendable, Equatable {
        public let name: String
        public let dtype: TensorDType
        public let shape: [Int]
        public var count: Int { shape.reduce(1, *) }
    }

    public let path: String
    /// Tensors in pickle order; nested dicts give dotted names (`model.decoder.…`).
    public let entries: [Entry]
    /// Names of non-tensor values (an `epoch` beside the weights, say), skipped.
    public let skipped: [String]
    private let archive: ZipArchive
    private let prefix: String
    private let bigEndian: Bool
    private let views: [String: RestrictedUnpickler.TensorRef]

    static let legacyMagic: [UInt8] = [0x80, 0x02, 0x8A, 0x0A, 0x6C, 0xFC, 0x9C, 0x46, 0xF9, 0x20, 0x6A, 0xA8, 0x50, 0x19]

    /// True when the file starts as a zip archive does (`PK\3\4`).
    public static func looksLikeZip(_ path: String) -> Bool { head(path, 4) == [0x50, 0x4B, 0x03, 0x04] }
    static func head(_ path: String, _ n: Int) -> [UInt8] {
        guard let f = try? ReadOnlyFile(path: path) else { return [] }
        return (try? f.read(at: 0, count: min(n, f.size))) ?? []
    }

    public init(path: String) throws {
        self.path = path
        let file = try ReadOnlyFile(path: path)
        let first = try file.read(at: 0, count: min(16, file.size))
        if first.starts(with: Self.legacyMagic) {
            throw BMError.invalid("\(path): a torch.save file in the legacy (pre-1.6, non-zip) format, which is not read here; convert it with PyTorch ≥ 1.6: python -c \"import torch; torch.save(torch.load('\(path)', weights_only=True), 'converted.bin')\"")
        }
        guard first.starts(with: [0x50, 0x4B, 0x03, 0x04]) else {
            throw BMError.invalid("\(path): not a torch.save zip archive (it starts with \(first.prefix(4).map { String(format: "%02x", $0) }.joined(separator: " ")), expected 50 4b 03 04)")
        }
        archive = try ZipArchive(file: file)
        guard let firstName = archive.members.first?.name, let slash = firstName.firstIndex(of: "/") else {
            throw BMError.invalid("\(path): an empty archive, or members outside a top-level folder")
        }
        prefix = String(firstName[...slash])
        for m in archive.members where !m.name.hasPrefix(prefix) {
            throw BMError.invalid("\(path): member \(m.name) lies outside the archive's folder \(prefix)")
        }
        guard let pkl = archive.member(prefix + "data.pkl") else { throw BMError.invalid("\(path): no \(prefix)data.pkl (not a torch.save archive)") }
        if let bo = archive.member(prefix + "byteorder") {
            guard bo.size <= 8 else { throw BMError.invalid("\(path): \(prefix)byteorder holds \(bo.size) bytes, expected little or big") }
            let s = String(decoding: try archive.bytes(bo), as: UTF8.self)
            guard s == "little" || s == "big" else { throw BMError.invalid("\(path): \(prefix)byteorder is '\(s.prefix(20))', expected little or big") }
            bigEndian = s == "big"
        } else { bigEndian = false }
        let loaded = try RestrictedUnpickler(bytes: try archive.bytes(pkl), what: "\(path): \(prefix)data.pkl").load()
        defer { RestrictedUnpickler.release([loaded.root] + loaded.rest) }
        let root = loaded.root
        // name the tensors; dicts nest with dots
        var list: [Entry] = [], skip: [String] = [], views: [String: RestrictedUnpickler.TensorRef] = [:]
        let (arch, pre) = (archive, prefix)
        var seen = Set<ObjectIdentifier>(), entriesWalked = 0
        func walk(_ v: RestrictedUnpickler.Value, _ name: String, depth: Int) throws {
            switch v {
            case .dict(let d):
                // a state dict nests a level or two ({"model": {...}}); a dict met twice is a cycle or a bomb
                guard depth < 8 else { throw BMError.invalid("\(path): dicts nested deeper than 8 at '\(name)'") }
                guard seen.insert(ObjectIdentifier(d)).inserted else { throw BMError.invalid("\(path): the dict at '\(name)' appears twice (a cycle or a shared sub-dict)") }
                for (k, x) in d.items {
                    entriesWalked += 1
                    guard entriesWalked <= 1 << 20 else { throw BMError.invalid("\(path): more than 2^20 entries") }
                    guard case .string(let key) = k else { throw BMError.invalid("\(path): a dict key \(k.describe), expected a string (a state dict's names)") }
                    try walk(x, name.isEmpty ? key : name + "." + key, depth: depth + 1)
                }
            case .tensor(let t):
                guard views[name] == nil else { throw BMError.invalid("\(path): tensor '\(name)' appears twice") }
                try Self.check(t, name, archive: arch, prefix: pre, path: path)
                views[name] = t
                list.append(Entry(name: name, dtype: t.storage.dtype, shape: t.shape))
            default:
                skip.append(name.isEmpty ? "(the top level: \(v.describe))" : name)
            }
        }
        try walk(root, "", depth: 0)
        guard !list.isEmpty else { throw BMError.invalid("\(path): no tensors (the pickle holds \(root.describe); expected a state dict)") }
        entries = list; skipped = skip; self.views = views
    }

    /// Storage record present with exactly numel × size bytes; the view inside it.
    private static func check(_ t: RestrictedUnpickler.TensorRef, _ name: String, archive: ZipArchive, prefix: String, path: String) throws {
        let s = t.storage
        guard let m = archive.member(prefix + "data/" + s.key) else { throw BMError.invalid("\(path): tensor '\(name)': storage \(s.key) has no record \(prefix)data/\(s.key)") }
        guard let bytes = elementCount([s.numel, s.dtype.bits / 8]), m.size == bytes else {
            throw BMError.invalid("\(path): tensor '\(name)': storage \(s.key) holds \(m.size) bytes, expected \(s.numel) × \(s.dtype.bits / 8)")
        }
        guard t.offset >= 0, t.shape.allSatisfy({ $0 >= 0 }), t.strides.allSatisfy({ $0 >= 0 }), elementCount(t.shape) != nil else {
            throw BMError.invalid("\(path): tensor '\(name)': offset \(t.offset), size \(t.shape), stride \(t.strides): negative or overflowing")
        }
        if t.shape.contains(0) { return }
        // a view with zero strides can be far larger than its storage: bounded before anything is allocated
        let count = elementCount(t.shape)!
        guard count <= max(s.numel, 1 << 24) else {
            throw BMError.invalid("\(path): tensor '\(name)': a view of \(count) elements on a storage of \(s.numel) (zero strides)")
        }
        var last = t.offset
        for (n, st) in zip(t.shape, t.strides) {
            let (p, o1) = (n - 1).multipliedReportingOverflow(by: st)
            let (q, o2) = last.addingReportingOverflow(p)
            guard !o1, !o2 else { throw BMError.invalid("\(path): tensor '\(name)': its view overflows") }
            last = q
        }
        guard last < s.numel else {
            throw BMError.invalid("\(path): tensor '\(name)': offset \(t.offset), size \(t.shape), stride \(t.strides) reach element \(last) of a storage of \(s.numel)")
        }
    }

    public var names: [String] { entries.map(\.name) }
    public func entry(_ name: String) -> Entry? { entries.first { $0.name == name } }

    /// The tensor as Float, row-major (strides and offset honoured; big-endian files swapped).
    public func floats(_ name: String) throws -> [Float] {
        guard let t = views[name] else { throw BMError.invalid("\(path): no tensor '\(name)'") }
        let dt = t.storage.dtype
        guard dt.isReadableFloat else { throw BMError.invalid("\(path): tensor '\(name)' is \(dt.rawValue), expected a float type") }
        let raw = try archive.bytes(archive.member(prefix + "data/" + t.storage.key)!)
        let size = dt.bits / 8, n = t.shape.reduce(1, *)
        var out = [Float](repeating: 0, count: n)
        if n == 0 { return out }
        var elem = [UInt8](repeating: 0, count: size)
        raw.withUnsafeBytes { rb in
            out.withUnsafeMutableBufferPointer { ob in
                // walk the index space row-major; element = offset + Σ i_k · stride_k
                var idx = [Int](repeating: 0, count: t.shape.count)
                for j in 0..<n {
                    var e = t.offset
                    for k in 0..<idx.count { e += idx[k] * t.strides[k] }
                    let src = rb.baseAddress! + e * size
                    if bigEndian {
                        for b in 0..<size { elem[b] = src.load(fromByteOffset: size - 1 - b, as: UInt8.self) }
                        elem.withUnsafeBytes { dt.widen($0.baseAddress!, count: 1, into: ob.baseAddress! + j) }
                    } else {
                        dt.widen(src, count: 1, into: ob.baseAddress! + j)
                    }
                    var k = idx.count - 1
                    while k >= 0 { idx[k] += 1; if idx[k] < t.shape[k] { break }; idx[k] = 0; k -= 1 }
                }
            }
        }
        return out
    }

    /// Tensors that share a storage (tied weights): name → the first name with the same view.
    public var aliases: [String: String] {
        var first: [String: String] = [:], out: [String: String] = [:]
        for e in entries {
            let v = views[e.name]!
            let key = "\(v.storage.key)|\(v.offset)|\(v.shape)|\(v.strides)"
            if let f = first[key] { out[e.name] = f } else { first[key] = e.name }
        }
        return out
    }
}
