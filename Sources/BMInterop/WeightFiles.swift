import Foundation
import BMCore

/// The tensors of a checkpoint in the PyTorch world, whatever its files: one
/// `.safetensors`, one `torch.save` zip (`pytorch_model.bin`), or a directory holding
/// `model.safetensors`, `pytorch_model.bin`, or shards listed by
/// `model.safetensors.index.json` / `pytorch_model.bin.index.json` (`weight_map`: tensor
/// name → shard file). Names map to the file holding them; a name in two shards, a shard
/// outside the directory or a listed tensor missing from its shard is an error.
public final class WeightFiles {
    public struct Tensor: Sendable, Equatable {
        public let name: String
        public let dtype: TensorDType
        public let shape: [Int]
        public let file: String
    }

    private enum Source { case safetensors(SafeTensorsFile), torch(TorchCheckpoint) }

    public let path: String
    /// Every tensor, in the files' order.
    public let tensors: [Tensor]
    private var files: [String: Source] = [:]
    private let index: [String: Int]

    public init(path: String) throws {
        self.path = path
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw BMError.invalid("\(path): no such file or directory")
        }
        var shardFiles: [String] = []
        var expected: [String: String]? = nil            // from an index: name → file
        if isDir.boolValue {
            let fm = FileManager.default
            let dir = path.hasSuffix("/") ? String(path.dropLast()) : path
            if let idx = ["model.safetensors.index.json", "pytorch_model.bin.index.json"].first(where: { fm.fileExists(atPath: dir + "/" + $0) }) {
                let ip = dir + "/" + idx
                let j = try JSONValue.parse(try ReadOnlyFile.contents(ip, limit: 1 << 28), what: ip)
                guard let map = j["weight_map"]?.objectMembers else { throw BMError.invalid("\(ip): no 'weight_map' object (tensor name → shard file)") }
                var e: [String: String] = [:]
                for (name, f) in map {
                    guard let file = f.stringValue, !file.contains("/"), !file.hasPrefix(".") else {
                        throw BMError.invalid("\(ip): weight_map.\(name) is \(f.kindDescription), expected a file name in the same directory")
                    }
                    e[name] = dir + "/" + file
                }
                expected = e
                shardFiles = Array(Set(e.values)).sorted()
            } else if let f = ["model.safetensors", "pytorch_model.bin"].first(where: { fm.fileExists(atPath: dir + "/" + $0) }) {
                shardFiles = [dir + "/" + f]
            } else {
                throw BMError.invalid("\(path): no weights (expected model.safetensors, pytorch_model.bin, or an index model.safetensors.index.json / pytorch_model.bin.index.json)")
            }
        } else {
            shardFiles = [path]
        }
        var list: [Tensor] = [], where_: [String: Int] = [:]
        for f in shardFiles {
            let src: Source
            if TorchCheckpoint.looksLikeZip(f) || TorchCheckpoint.head(f, 2) == [0x80, 0x02] {
                src = .torch(try TorchCheckpoint(path: f))
            } else {
                src = .safetensors(try SafeTensorsFile(path: f))
            }
            files[f] = src
            let entries: [(String, TensorDType, [Int])]
            switch src {
            case .safetensors(let s): entries = s.entries.map { ($0.name, $0.dtype, $0.shape) }
            case .torch(let t): entries = t.entries.map { ($0.name, $0.dtype, $0.shape) }
            }
            for (n, dt, sh) in entries {
                if let e = expected, e[n] != f { continue }          // a shard may hold tensors its index does not list for it
                if let prior = where_[n] { throw BMError.invalid("\(path): tensor '\(n)' is in both \(list[prior].file) and \(f)") }
                where_[n] = list.count
                list.append(Tensor(name: n, dtype: dt, shape: sh, file: f))
            }
        }
        if let e = expected {
            let missing = e.keys.filter { where_[$0] == nil }.sorted()
            if !missing.isEmpty {
                throw BMError.invalid("\(path): the index lists tensors their shards do not hold: \(missing.prefix(8).joined(separator: ", "))\(missing.count > 8 ? " and \(missing.count - 8) more" : "")")
            }
        }
        tensors = list
        index = where_
    }

    public var names: [String] { tensors.map(\.name) }
    public func tensor(_ name: String) -> Tensor? { index[name].map { tensors[$0] } }

    /// The tensor `name` as Float, row-major; a shape check names what was expected.
    public func floats(_ name: String, shape: [Int]? = nil) throws -> [Float] {
        guard let t = tensor(name) else { throw BMError.invalid("\(path): no tensor '\(name)'") }
        if let shape, shape != t.shape {
            throw BMError.invalid("\(t.file): tensor '\(name)' has shape \(t.shape), expected \(shape)")
        }
        switch files[t.file]! {
        case .safetensors(let s): return try s.floats(name)
        case .torch(let c): return try c.floats(name)
        }
    }
}
