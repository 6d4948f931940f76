import Foundation
import BMCore

/// The subset of Python's pickle that `torch.save(state_dict)` writes (protocol 2), run
/// with a closed allow-list of globals, as PyTorch's own `weights_only` loader does
/// (`_weights_only_unpickler.py`): nothing is ever imported or called. Opcodes outside the
/// subset, globals outside the list, REDUCE on anything but an allowed callable, and
/// persistent ids that are not storages are refused with the opcode's position; memo
/// references, stack and mark depths and every length are checked against the data.
///
/// The allowed globals: `collections.OrderedDict`, `torch._utils._rebuild_tensor_v2`,
/// `torch._utils._rebuild_parameter`, `torch.nn.parameter.Parameter` (rebuilt as its
/// data), the typed storage classes `torch.{Float,Half,BFloat16,Double,Long,Int,Short,
/// Char,Byte,Bool}Storage`, and `torch.Size`.
struct RestrictedUnpickler {
    /// A storage reference: record `data/KEY` of the archive, `numel` elements of `dtype`.
    struct StorageRef: Equatable { let key: String; let dtype: TensorDType; let numel: Int }
    /// A tensor view of a storage (element offset, sizes and strides in storage elements).
    struct TensorRef: Equatable { let storage: StorageRef; let offset: Int; let shape: [Int]; let strides: [Int] }

    // Containers are boxes that empty themselves iteratively when freed (`release`): the
    // ordinary release of a value nested a million deep recurses a million frames.
    final class ListBox { var items: [Value] = []; deinit { if !items.isEmpty { RestrictedUnpickler.release(items) } } }
    final class TupleBox {
        var items: [Value]
        init(_ items: [Value]) { self.items = items }
        deinit { if !items.isEmpty { RestrictedUnpickler.release(items) } }
    }
    final class DictBox {
        var items: [(Value, Value)] = []
        deinit { if !items.isEmpty { RestrictedUnpickler.release(items.flatMap { [$0.0, $0.1] }) } }
    }

    indirect enum Value {
        case none, bool(Bool), int(Int), float(Double), string(String)
        case tuple(TupleBox), list(ListBox), dict(DictBox)
        case global(String)                 // "module.name", allowed
        case storage(StorageRef), tensor(TensorRef)

        var describe: String {
            switch self {
            case .none: return "None"
            case .bool(let b): return "\(b)"
            case .int(let i): return "\(i)"
            case .float(let d): return "\(d)"
            case .string(let s): return "'\(s.prefix(40))'"
            case .tuple(let t): return "a tuple of \(t.items.count)"
            case .list: return "a list"
            case .dict: return "a dict"
            case .global(let g): return g
            case .storage: return "a storage"
            case .tensor: return "a tensor"
            }
        }
    }

    static let storageTypes: [String: TensorDType] = [
        "FloatStorage": .F32, "HalfStorage": .F16, "BFloat16Storage": .BF16, "DoubleStorage": .F64,
        "LongStorage": .I64, "IntStorage": .I32, "ShortStorage": .I16, "CharStorage": .I8,
        "ByteStorage": .U8, "BoolStorage": .BOOL,
    ]
    static let allowedGlobals: Set<String> = Set(["collections.OrderedDict", "torch._utils._rebuild_tensor_v2",
                                                  "torch._utils._rebuild_parameter", "torch.nn.parameter.Parameter",
                                                  "torch.Size"] + storageTypes.keys.map { "torch." + $0 })

    let bytes: [UInt8]
    let what: String
    static let maxStack = 1 << 20, maxMarks = 1 << 12
    /// Containers (tuples, lists, dicts) a pickle may build: a state dict builds about six a
    /// tensor; the bound keeps memory in proportion (a deep nesting is freed by `release`).
    static let maxContainers = 1 << 20

    /// Runs the pickle to its STOP and returns the object (with what else it built).
    /// What `load` built: the pickle's object, and everything else it made (the memo, the
    /// stack's leftovers). Hand both to `release` when done: letting a deeply nested value
    /// go the ordinary way frees it recursively, and a hostile nesting overflows the stack.
    struct Loaded { let root: Value; let rest: [Value] }

    /// Frees values iteratively: each container's children move to a work list before the
    /// container goes, so no release recurses. The values must not be used afterwards.
    static func release(_ values: [Value]) {
        var work = values
        while let v = work.popLast() {
            switch v {
            case .tuple(let t): work.append(contentsOf: t.items); t.items = []
            case .list(let b): work.append(contentsOf: b.items); b.items = []
            case .dict(let d): for (k, x) in d.items { work.append(k); work.append(x) }; d.items = []
            default: break
            }
        }
    }

    func load() throws -> Loaded {
        var stack: [Value] = [], marks: [Int] = [], memo: [Int: Value] = [:]
        var done = false
        defer { if !done { Self.release(stack + Array(memo.values)) } }
        var i = 0
        func fail(_ m: String, at pos: Int) -> BMError { .invalid("\(what): \(m) (pickle byte \(pos)); refused, nothing executed") }
        func need(_ k: Int, _ pos: Int) throws { guard k >= 0, i + k <= bytes.count else { throw fail("truncated", at: pos) } }
        func le(_ k: Int) -> Int { var v = 0; for j in 0..<k { v |= Int(bytes[i + j]) << (8 * j) }; return v }
        func pop(_ pos: Int) throws -> Value { guard let v = stack.popLast() else { throw fail("stack underflow", at: pos) }; return v }
        func popMark(_ pos: Int) throws -> [Value] {
            guard let m = marks.popLast(), m <= stack.count else { throw fail("no MARK to close", at: pos) }
            let items = Array(stack[m...]); stack.removeSubrange(m...)
            return items
        }
        var containers = 0
        func push(_ v: Value, _ pos: Int) throws {
            guard stack.count < Self.maxStack else { throw fail("stack deeper than \(Self.maxStack)", at: pos) }
            switch v {
            case .tuple, .list, .dict:
                containers += 1
                guard containers <= Self.maxContainers else { throw fail("more than \(Self.maxContainers) tuples, lists and dicts (a state dict builds about six a tensor)", at: pos) }
            default: break
            }
            stack.append(v)
        }
        func readLine(_ pos: Int) throws -> String {
            guard let nl = bytes[i...].firstIndex(of: 0x0A), nl - i < 256 else { throw fail("unterminated GLOBAL name", at: pos) }
            let s = String(decoding: bytes[i..<nl], as: UTF8.self); i = nl + 1
            return s
        }
        func int(_ v: Value, _ what: String, _ pos: Int) throws -> Int {
            guard case .int(let x) = v else { throw fail("\(what) is \(v.describe), expected an integer", at: pos) }
            return x
        }
        func ints(_ v: Value, _ what: String, _ pos: Int) throws -> [Int] {
            guard case .tuple(let box) = v else { throw fail("\(what) is \(v.describe), expected a tuple of integers", at: pos) }
            let t = box.items
            return try t.map { try int($0, what, pos) }
        }
        while true {
            let pos = i
            try need(1, pos)
            let op = bytes[i]; i += 1
            switch op {
            case 0x80: try need(1, pos); i += 1                                        // PROTO
            case UInt8(ascii: "."):                                                    // STOP
                let root = try pop(pos)
                done = true
                return Loaded(root: root, rest: stack + Array(memo.values))
            case UInt8(ascii: "("): guard marks.count < Self.maxMarks else { throw fail("marks nested too deep", at: pos) }; marks.append(stack.count)
            case UInt8(ascii: "N"): try push(.none, pos)
            case 0x88: try push(.bool(true), pos)
            case 0x89: try push(.bool(false), pos)
            case UInt8(ascii: "J"): try need(4, pos); try push(.int(Int(Int32(truncatingIfNeeded: le(4)))), pos); i += 4
            case UInt8(ascii: "K"): try need(1, pos); try push(.int(Int(bytes[i])), pos); i += 1
            case UInt8(ascii: "M"): try need(2, pos); try push(.int(le(2)), pos); i += 2
            case 0x8A:                                                                 // LONG1
                try need(1, pos); let n = Int(bytes[i]); i += 1
                guard n <= 8 else { throw fail("an integer of \(n) bytes", at: pos) }
                try need(n, pos)
                var v: UInt64 = 0
                for j in 0..<n { v |= UInt64(bytes[i + j]) << (8 * UInt64(j)) }
                if n > 0 && n < 8 && bytes[i + n - 1] & 0x80 != 0 { v |= ~UInt64(0) << (8 * UInt64(n)) }   // sign-extend
                i += n
                try push(.int(Int(Int64(bitPattern: v))), pos)
            case UInt8(ascii: "G"):                                                    // BINFLOAT, big-endian
                try need(8, pos)
                var v: UInt64 = 0
                for j in 0..<8 { v = v << 8 | UInt64(bytes[i + j]) }
                i += 8; try push(.float(Double(bitPattern: v)), pos)
            case UInt8(ascii: "X"), UInt8(ascii: "U"):                                 // BINUNICODE, SHORT_BINSTRING
                let w = op == UInt8(ascii: "X") ? 4 : 1
                try need(w, pos); let n = le(w); i += w
                try need(n, pos)
                guard let s = String(validating: bytes[i..<i + n], as: UTF8.self) else { throw fail("a string that is not UTF-8", at: pos) }
                i += n; try push(.string(s), pos)
            case UInt8(ascii: ")"): try push(.tuple(TupleBox([])), pos)
            case UInt8(ascii: "]"): try push(.list(ListBox()), pos)
            case UInt8(ascii: "}"): try push(.dict(DictBox()), pos)
            case UInt8(ascii: "t"): try push(.tuple(TupleBox(try popMark(pos))), pos)
            case 0x85: let a = try pop(pos); try push(.tuple(TupleBox([a])), pos)
            case 0x86: let b = try pop(pos), a = try pop(pos); try push(.tuple(TupleBox([a, b])), pos)
            case 0x87: let c = try pop(pos), b = try pop(pos), a = try pop(pos); try push(.tuple(TupleBox([a, b, c])), pos)
            case UInt8(ascii: "a"), UInt8(ascii: "e"):                                 // APPEND, APPENDS
                let items = op == UInt8(ascii: "a") ? [try pop(pos)] : try popMark(pos)
                guard case .list(let l)? = stack.last else { throw fail("APPEND to \(stack.last?.describe ?? "nothing"), expected a list", at: pos) }
                l.items += items
            case UInt8(ascii: "s"), UInt8(ascii: "u"):                                 // SETITEM, SETITEMS
                let items: [Value]
                if op == UInt8(ascii: "s") { let v = try pop(pos), k = try pop(pos); items = [k, v] } else { items = try popMark(pos) }
                guard items.count % 2 == 0 else { throw fail("SETITEMS with an odd number of items", at: pos) }
                guard case .dict(let d)? = stack.last else { throw fail("SETITEM on \(stack.last?.describe ?? "nothing"), expected a dict", at: pos) }
                for j in stride(from: 0, to: items.count, by: 2) { d.items.append((items[j], items[j + 1])) }
            case UInt8(ascii: "c"):                                                    // GLOBAL module\nname\n
                let module = try readLine(pos), name = try readLine(pos)
                let full = module + "." + name
                guard Self.allowedGlobals.contains(full) else {
                    throw fail("global \(full) is not one a state dict uses (allowed: \(Self.allowedGlobals.sorted().joined(separator: ", ")))", at: pos)
                }
                try push(.global(full), pos)
            case UInt8(ascii: "R"), 0x81:                                              // REDUCE, NEWOBJ
                let args = try pop(pos), callable = try pop(pos)
                guard case .global(let g) = callable, case .tuple(let argBox) = args else {
                    throw fail("\(op == 0x81 ? "NEWOBJ" : "REDUCE") of \(callable.describe), expected an allowed global called with a tuple", at: pos)
                }
                let a = argBox.items
                switch g {
                case "collections.OrderedDict":
                    guard a.isEmpty else { throw fail("OrderedDict called with arguments", at: pos) }
                    try push(.dict(DictBox()), pos)
                case "torch._utils._rebuild_tensor_v2":
                    guard a.count == 6 || a.count == 7, case .storage(let s) = a[0] else {
                        throw fail("_rebuild_tensor_v2 with \(a.count) arguments (expected storage, offset, size, stride, requires_grad, hooks[, metadata])", at: pos)
                    }
                    let offset = try int(a[1], "the storage offset", pos), shape = try ints(a[2], "the size", pos), strides = try ints(a[3], "the stride", pos)
                    guard shape.count == strides.count else { throw fail("size \(shape) and stride \(strides) differ in rank", at: pos) }
                    if a.count == 7, case .dict(let meta) = a[6], !meta.items.isEmpty {
                        throw fail("a tensor with conj/neg metadata, which a state dict of real weights does not have", at: pos)
                    }
                    try push(.tensor(TensorRef(storage: s, offset: offset, shape: shape, strides: strides)), pos)
                case "torch._utils._rebuild_parameter", "torch.nn.parameter.Parameter":
                    guard let first = a.first, case .tensor = first else { throw fail("\(g) of \(a.first?.describe ?? "nothing"), expected a tensor", at: pos) }
                    try push(first, pos)
                case "torch.Size":
                    try push(.tuple(TupleBox(a.count == 1 ? (a[0].tupleItems ?? a) : a)), pos)
                default:
                    throw fail("\(g) cannot be called", at: pos)
                }
            case UInt8(ascii: "b"):                                                    // BUILD: state on a dict or tensor is ignored
                _ = try pop(pos)
                guard let top = stack.last else { throw fail("BUILD on nothing", at: pos) }
                switch top { case .dict, .tensor: break; default: throw fail("BUILD on \(top.describe)", at: pos) }
            case UInt8(ascii: "Q"):                                                    // BINPERSID
                let pid = try pop(pos)
                guard case .tuple(let pidBox) = pid, case let t = pidBox.items, t.count >= 5, case .string("storage") = t[0], case .global(let cls) = t[1],
                      case .string(let key) = t[2], case .int(let numel) = t[4] else {
                    throw fail("persistent id \(pid.describe), expected ('storage', class, key, location, numel)", at: pos)
                }
                guard let dt = Self.storageTypes[String(cls.dropFirst("torch.".count))] else { throw fail("storage class \(cls)", at: pos) }
                guard numel >= 0 else { throw fail("storage \(key) of \(numel) elements", at: pos) }
                try push(.storage(StorageRef(key: key, dtype: dt, numel: numel)), pos)
            case UInt8(ascii: "q"), UInt8(ascii: "r"):                                 // BINPUT, LONG_BINPUT
                let w = op == UInt8(ascii: "q") ? 1 : 4
                try need(w, pos); let k = le(w); i += w
                guard let top = stack.last else { throw fail("PUT with an empty stack", at: pos) }
                memo[k] = top
            case UInt8(ascii: "h"), UInt8(ascii: "j"):                                 // BINGET, LONG_BINGET
                let w = op == UInt8(ascii: "h") ? 1 : 4
                try need(w, pos); let k = le(w); i += w
                guard let v = memo[k] else { throw fail("memo entry \(k) was never stored", at: pos) }
                try push(v, pos)
            default:
                throw fail(String(format: "opcode 0x%02x is not one torch.save writes for a state dict", op), at: pos)
            }
        }
    }
}

extension RestrictedUnpickler.Value {
    var tupleItems: [RestrictedUnpickler.Value]? { if case .tuple(let t) = self { return t.items }; return nil }
}
