import XCTest
import Foundation
@testable import BMCore
@testable import BMInterop

/// `torch.save` archives: a state dict written as torch writes it (zip of stored members,
/// protocol-2 pickle of an OrderedDict of `_rebuild_tensor_v2` calls on persistent
/// storages) reads back with offsets, strides, shared storages and dtypes honoured; and
/// hostile or damaged archives — an unknown global (the code-execution route of pickle),
/// an unsupported opcode, a truncated pickle, a missing or short storage, a view outside
/// its storage, a compressed member, a truncated archive, the legacy format — are refused
/// with an error naming the file and the problem, nothing executed.
final class TorchCheckpointTests: InteropTestCase {

    // MARK: writing test archives as torch.save does

    /// A zip of stored members (method 0), optionally marking one compressed (method 8).
    static func zip(_ members: [(String, [UInt8])], compressed: String? = nil) -> [UInt8] {
        var out = [UInt8](), central = [UInt8]()
        func u16(_ v: Int, _ a: inout [UInt8]) { a += [UInt8(v & 0xFF), UInt8(v >> 8 & 0xFF)] }
        func u32(_ v: Int, _ a: inout [UInt8]) { for k in 0..<4 { a.append(UInt8(v >> (8 * k) & 0xFF)) } }
        for (name, data) in members {
            let off = out.count, nm = Array(name.utf8), method = name == compressed ? 8 : 0
            u32(0x0403_4B50, &out); u16(20, &out); u16(0, &out); u16(method, &out); u16(0, &out); u16(0, &out)
            u32(0, &out); u32(data.count, &out); u32(data.count, &out); u16(nm.count, &out); u16(0, &out)
            out += nm + data
            u32(0x0201_4B50, &central); u16(20, &central); u16(20, &central); u16(0, &central); u16(method, &central)
            u16(0, &central); u16(0, &central); u32(0, &central); u32(data.count, &central); u32(data.count, &central)
            u16(nm.count, &central); u16(0, &central); u16(0, &central); u16(0, &central); u16(0, &central); u32(0, &central); u32(off, &central)
            central += nm
        }
        let cdOff = out.count
        out += central
        u32(0x0605_4B50, &out); u16(0, &out); u16(0, &out); u16(members.count, &out); u16(members.count, &out)
        u32(central.count, &out); u32(cdOff, &out); u16(0, &out)
        return out
    }

    /// A protocol-2 pickle of OrderedDict{name: _rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())}.
    struct Pickle {
        var b: [UInt8] = [0x80, 0x02]
        mutating func global(_ m: String, _ n: String) { b += [UInt8(ascii: "c")] + Array("\(m)\n\(n)\n".utf8) }
        mutating func str(_ s: String) { let u = Array(s.utf8); b += [UInt8(ascii: "X")]; for k in 0..<4 { b.append(UInt8(u.count >> (8 * k) & 0xFF)) }; b += u }
        mutating func int(_ v: Int) { b += [UInt8(ascii: "J")]; for k in 0..<4 { b.append(UInt8(v >> (8 * k) & 0xFF)) } }
        mutating func ints(_ xs: [Int]) { b.append(UInt8(ascii: "(")); xs.forEach { int($0) }; b.append(UInt8(ascii: "t")) }
        mutating func tensor(storage key: String, cls: String = "FloatStorage", numel: Int, offset: Int, size: [Int], stride: [Int]) {
            global("torch._utils", "_rebuild_tensor_v2")
            b.append(UInt8(ascii: "("))
            b.append(UInt8(ascii: "(")); str("storage"); global("torch", cls); str(key); str("cpu"); int(numel); b.append(UInt8(ascii: "t")); b.append(UInt8(ascii: "Q"))
            int(offset); ints(size); ints(stride); b.append(0x89)
            global("collections", "OrderedDict"); b += [UInt8(ascii: ")"), UInt8(ascii: "R")]
            b += [UInt8(ascii: "t"), UInt8(ascii: "R")]
        }
        static func stateDict(_ body: (inout Pickle) -> Void) -> [UInt8] {
            var p = Pickle()
            p.global("collections", "OrderedDict"); p.b += [UInt8(ascii: ")"), UInt8(ascii: "R")]
            body(&p)
            p.b.append(UInt8(ascii: "."))
            return p.b
        }
        /// One entry: name, then the tensor, then SETITEM.
        mutating func entry(_ name: String, _ t: (inout Pickle) -> Void) { str(name); t(&self); b.append(UInt8(ascii: "s")) }
    }

    static func floats(_ xs: [Float]) -> [UInt8] { xs.withUnsafeBytes { Array($0) } }

    func write(_ bytes: [UInt8], _ name: String) throws -> String {
        let p = dir + "/" + name
        try Data(bytes).write(to: URL(fileURLWithPath: p))
        return p
    }

    /// The storage 0..11 (12 floats): w = rows 1..2 of a [3, 4] view, wT its transpose
    /// (strides 1, 4), tied = the same view as w (a tied weight); h a float16 storage.
    func goodArchive(prefix: String = "pytorch_model") -> [UInt8] {
        let pkl = Pickle.stateDict { p in
            p.entry("w") { $0.tensor(storage: "0", numel: 12, offset: 4, size: [2, 4], stride: [4, 1]) }
            p.entry("wT") { $0.tensor(storage: "0", numel: 12, offset: 0, size: [4, 3], stride: [1, 4]) }
            p.entry("tied") { $0.tensor(storage: "0", numel: 12, offset: 4, size: [2, 4], stride: [4, 1]) }
            p.entry("h") { $0.tensor(storage: "1", cls: "HalfStorage", numel: 2, offset: 0, size: [2], stride: [1]) }
        }
        let half: [UInt8] = [0x00, 0x3C, 0x00, 0xC0]        // 1, −2
        return Self.zip([("\(prefix)/data.pkl", pkl), ("\(prefix)/byteorder", Array("little".utf8)),
                         ("\(prefix)/data/0", Self.floats((0..<12).map(Float.init))), ("\(prefix)/data/1", half),
                         ("\(prefix)/version", Array("3\n".utf8))])
    }

    func testReadsAStateDictWithViewsAndSharedStorages() throws {
        for prefix in ["pytorch_model", "archive", "renamed_later"] {
            let p = try write(goodArchive(prefix: prefix), "\(prefix).bin")
            let c = try TorchCheckpoint(path: p)
            XCTAssertEqual(c.names, ["w", "wT", "tied", "h"])
            XCTAssertEqual(c.entry("w")?.shape, [2, 4])
            XCTAssertEqual(try c.floats("w"), [4, 5, 6, 7, 8, 9, 10, 11])
            XCTAssertEqual(try c.floats("wT"), [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11])
            XCTAssertEqual(try c.floats("tied"), try c.floats("w"))
            XCTAssertEqual(c.aliases, ["tied": "w"])
            XCTAssertEqual(c.entry("h")?.dtype, .F16)
            XCTAssertEqual(try c.floats("h"), [1, -2])
            // the same through the format-agnostic reader
            let w = try WeightFiles(path: p)
            XCTAssertEqual(w.names, c.names)
            XCTAssertEqual(try w.floats("wT", shape: [4, 3]).count, 12)
            XCTAssertThrowsError(try w.floats("w", shape: [4, 2])) { XCTAssertTrue("\($0)".contains("has shape [2, 4], expected [4, 2]"), "\($0)") }
        }
    }

    func testNestedDictAsZyphraSaves() throws {
        // {"model": OrderedDict{"a": tensor}, "iteration": 7}
        var p = Pickle()
        p.b.append(UInt8(ascii: "}"))
        p.str("model"); p.global("collections", "OrderedDict"); p.b += [UInt8(ascii: ")"), UInt8(ascii: "R")]
        p.entry("a") { $0.tensor(storage: "0", numel: 2, offset: 0, size: [2], stride: [1]) }
        p.b.append(UInt8(ascii: "s"))
        p.str("iteration"); p.int(7); p.b.append(UInt8(ascii: "s"))
        p.b.append(UInt8(ascii: "."))
        let path = try write(Self.zip([("x/data.pkl", p.b), ("x/data/0", Self.floats([3, 4]))]), "nested.bin")
        let c = try TorchCheckpoint(path: path)
        XCTAssertEqual(c.names, ["model.a"])
        XCTAssertEqual(c.skipped, ["iteration"])
        XCTAssertEqual(try c.floats("model.a"), [3, 4])
    }

    func testHostileAndDamagedArchivesAreRefused() throws {
        let good = goodArchive()
        var cases: [(String, String)] = []
        func archive(_ pkl: [UInt8], storage: [UInt8] = Self.floats((0..<12).map(Float.init)), name: String) throws -> String {
            try write(Self.zip([("p/data.pkl", pkl), ("p/data/0", storage)]), name)
        }
        // the code-execution route: GLOBAL os.system + REDUCE
        var evil = Pickle(); evil.global("os", "system"); evil.str("echo pwned > \(dir)/pwned"); evil.b += [0x85, UInt8(ascii: "R"), UInt8(ascii: ".")]
        cases.append((try archive(evil.b, name: "evil.bin"), "global os.system is not one a state dict uses"))
        var builtins = Pickle(); builtins.global("builtins", "eval"); builtins.b.append(UInt8(ascii: "."))
        cases.append((try archive(builtins.b, name: "eval.bin"), "global builtins.eval"))
        // STACK_GLOBAL (0x93) and INST are outside the subset
        cases.append((try archive([0x80, 0x02, 0x93, UInt8(ascii: ".")], name: "stackglobal.bin"), "opcode 0x93"))
        cases.append((try archive([0x80, 0x02, UInt8(ascii: "i")] + Array("os\nsystem\n".utf8), name: "inst.bin"), "opcode 0x69"))
        // truncated pickle; a memo never stored; stack underflow
        let full = Pickle.stateDict { p in p.entry("w") { $0.tensor(storage: "0", numel: 12, offset: 0, size: [12], stride: [1]) } }
        cases.append((try archive(Array(full.prefix(40)), name: "trunc-pkl.bin"), "pickle byte"))
        cases.append((try archive([0x80, 0x02, UInt8(ascii: "h"), 9, UInt8(ascii: ".")], name: "memo.bin"), "memo entry 9 was never stored"))
        cases.append((try archive([0x80, 0x02, UInt8(ascii: "s"), UInt8(ascii: ".")], name: "underflow.bin"), "stack underflow"))
        // a persistent id that is not a storage
        var pid = Pickle(); pid.str("not-a-storage"); pid.b += [0x85, UInt8(ascii: "Q"), UInt8(ascii: ".")]
        cases.append((try archive(pid.b, name: "pid.bin"), "persistent id"))
        // storages: missing record, wrong size; views outside the storage
        cases.append((try write(Self.zip([("p/data.pkl", full)]), "nostorage.bin"), "has no record p/data/0"))
        cases.append((try archive(full, storage: Self.floats([1, 2, 3]), name: "short.bin"), "holds 12 bytes, expected 12 × 4"))
        let outside = Pickle.stateDict { p in p.entry("w") { $0.tensor(storage: "0", numel: 12, offset: 6, size: [2, 4], stride: [4, 1]) } }
        cases.append((try archive(outside, name: "view.bin"), "reach element 13 of a storage of 12"))
        let negative = Pickle.stateDict { p in p.entry("w") { $0.tensor(storage: "0", numel: 12, offset: -1, size: [2], stride: [1]) } }
        cases.append((try archive(negative, name: "negview.bin"), "negative or overflowing"))
        // the archive itself: compressed member, truncated, not a zip, legacy format, members outside the folder
        cases.append((try write(Self.zip([("p/data.pkl", full), ("p/data/0", Self.floats((0..<12).map(Float.init)))], compressed: "p/data.pkl"), "deflated.bin"), "is compressed"))
        cases.append((try write(Array(good.prefix(good.count - 30)), "truncated.bin"), "end-of-central-directory"))
        cases.append((try write(Array(good.prefix(200)), "cut.bin"), "end-of-central-directory"))
        cases.append((try write(TorchCheckpoint.legacyMagic + [0x2E, 0x80, 0x02], "legacy.bin"), "legacy (pre-1.6, non-zip) format"))
        cases.append((try write(Array("hello".utf8), "text.bin"), "not a torch.save zip archive"))
        cases.append((try write(Self.zip([("p/data.pkl", full), ("q/data/0", Self.floats((0..<12).map(Float.init)))]), "outside.bin"), "lies outside the archive's folder"))
        // a dict that holds itself; a tuple nested a million deep (freed without recursion, after
        // a success and after a failure); a zero-stride view of 2^60 elements
        let cyclic: [UInt8] = [0x80, 0x02, UInt8(ascii: "}"), UInt8(ascii: "q"), 0, UInt8(ascii: "X"), 1, 0, 0, 0, UInt8(ascii: "a"),
                               UInt8(ascii: "h"), 0, UInt8(ascii: "s"), UInt8(ascii: ".")]
        cases.append((try archive(cyclic, name: "cycle.bin"), "appears twice"))
        cases.append((try archive([0x80, 0x02, UInt8(ascii: "K"), 0] + [UInt8](repeating: 0x85, count: 1_000_000) + [UInt8(ascii: ".")], name: "deep.bin"), "no tensors"))
        cases.append((try archive([0x80, 0x02, UInt8(ascii: "K"), 0] + [UInt8](repeating: 0x85, count: 1_000_000) + [UInt8(ascii: "s")], name: "deep-fail.bin"), "stack underflow"))
        let broadcast = Pickle.stateDict { p in p.entry("w") { $0.tensor(storage: "0", numel: 12, offset: 0, size: [1 << 30, 1 << 30], stride: [0, 0]) } }
        cases.append((try archive(broadcast, name: "broadcast.bin"), "a view of 1152921504606846976 elements on a storage of 12"))
        // ZIP64 records pointing near Int.max: errors, not arithmetic traps
        var z64 = good
        let eocd = z64.count - 22
        var locator: [UInt8] = [0x50, 0x4B, 0x06, 0x07, 0, 0, 0, 0]
        locator += [0xF0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F] + [1, 0, 0, 0]
        z64.insert(contentsOf: locator, at: eocd)
        cases.append((try write(z64, "zip64-far.bin"), "the ZIP64 end record lies outside the file"))
        for (p, phrase) in cases {
            XCTAssertThrowsError(try TorchCheckpoint(path: p), p) { e in
                guard case BMError.invalid(let m) = e else { return XCTFail("\(p): \(e) is not an invalid-input error (exit 2)") }
                XCTAssertTrue(m.hasPrefix(p), "\(m) names the file")
                XCTAssertTrue(m.contains(phrase), "\(p): '\(m)' should say '\(phrase)'")
            }
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/pwned"), "nothing was executed")
    }

    /// A directory of shards with an index: names map to their files; a tensor the index
    /// lists but its shard lacks, or a shard outside the directory, is an error.
    func testShardedDirectory() throws {
        let d = dir + "/sharded"
        try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        try SafeTensorsFile.write(to: d + "/model-00001-of-00002.safetensors", tensors: [("a", [2], [1, 2])])
        try SafeTensorsFile.write(to: d + "/model-00002-of-00002.safetensors", tensors: [("b", [1], [3])])
        let index = #"{"metadata": {"total_size": 12}, "weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}"#
        try index.write(toFile: d + "/model.safetensors.index.json", atomically: true, encoding: .utf8)
        let w = try WeightFiles(path: d)
        XCTAssertEqual(Set(w.names), ["a", "b"])
        XCTAssertEqual(try w.floats("b"), [3])
        XCTAssertTrue(w.tensor("b")!.file.hasSuffix("model-00002-of-00002.safetensors"))
        try #"{"weight_map": {"a": "model-00001-of-00002.safetensors", "c": "model-00002-of-00002.safetensors"}}"#.write(toFile: d + "/model.safetensors.index.json", atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try WeightFiles(path: d)) { XCTAssertTrue("\($0)".contains("the index lists tensors their shards do not hold: c"), "\($0)") }
        try #"{"weight_map": {"a": "../elsewhere.safetensors"}}"#.write(toFile: d + "/model.safetensors.index.json", atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try WeightFiles(path: d)) { XCTAssertTrue("\($0)".contains("expected a file name in the same directory"), "\($0)") }
        XCTAssertThrowsError(try WeightFiles(path: dir + "/none")) { XCTAssertTrue("\($0)".contains("no such file")) }
        let empty = dir + "/empty"; try FileManager.default.createDirectory(atPath: empty, withIntermediateDirectories: true)
        XCTAssertThrowsError(try WeightFiles(path: empty)) { XCTAssertTrue("\($0)".contains("no weights"), "\($0)") }
    }
}
