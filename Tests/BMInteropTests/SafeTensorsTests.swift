import XCTest
import Foundation
@testable import BMCore
@testable import BMInterop

/// safetensors: a written file reads back (names, shapes, values, metadata, the reference
/// writer's layout); F16, BF16 and F64 widen exactly; and every malformed file of the
/// format's checks — truncated, oversized or overrunning header, bad JSON, duplicate
/// keys, unknown dtype, gaps, overlaps, wrong sizes, trailing bytes, overflowing shapes —
/// is a clear error naming the file and what is wrong, never a crash.
final class SafeTensorsTests: InteropTestCase {

    /// A file of header text (padded to 8) and a buffer.
    func file(_ header: String, _ buffer: [UInt8], name: String = "t.safetensors", rawLength: UInt64? = nil) throws -> String {
        var h = Array(header.utf8)
        while h.count % 8 != 0 { h.append(0x20) }
        var bytes = [UInt8]()
        withUnsafeBytes(of: (rawLength ?? UInt64(h.count)).littleEndian) { bytes += $0 }
        bytes += h + buffer
        let p = dir + "/" + name
        try Data(bytes).write(to: URL(fileURLWithPath: p))
        return p
    }

    func testRoundTrip() throws {
        let p = dir + "/w.safetensors"
        let a: [Float] = [1, -2.5, 3e-8, .greatestFiniteMagnitude, 0, -0.0]
        let b: [Float] = (0..<12).map { Float($0) * 0.25 - 1 }
        try SafeTensorsFile.write(to: p, tensors: [("z.bias", [6], a), ("a.weight", [3, 4], b), ("scalar", [], [7])],
                                  metadata: [("format", "pt")])
        let f = try SafeTensorsFile(path: p)
        XCTAssertEqual(f.names, ["a.weight", "scalar", "z.bias"], "sorted by name, as the reference writer")
        XCTAssertEqual(f.entry("a.weight")?.shape, [3, 4])
        XCTAssertEqual(f.entry("scalar")?.shape, [])
        XCTAssertEqual(try f.floats("z.bias").map(\.bitPattern), a.map(\.bitPattern))
        XCTAssertEqual(try f.floats("a.weight"), b)
        XCTAssertEqual(try f.floats("scalar"), [7])
        XCTAssertEqual(f.metadata.map(\.0), ["format"]); XCTAssertEqual(f.metadata.first?.1, "pt")
        let raw = try Data(contentsOf: URL(fileURLWithPath: p))
        let n = raw.withUnsafeBytes { Int($0.loadUnaligned(as: UInt64.self)) }
        XCTAssertEqual(n % 8, 0)
        XCTAssertTrue(String(decoding: raw[8..<8 + n], as: UTF8.self).hasPrefix("{\"__metadata__\""))
        XCTAssertEqual(raw.count, 8 + n + 4 * (6 + 12 + 1))
        XCTAssertThrowsError(try SafeTensorsFile.write(to: dir + "/bad.safetensors", tensors: [("x", [2, 2], [1, 2, 3])])) {
            XCTAssertTrue("\($0)".contains("3 values for shape [2, 2]"), "\($0)")
        }
        XCTAssertThrowsError(try f.floats("nope")) { XCTAssertTrue("\($0)".contains("no tensor 'nope'")) }
    }

    func testHalfBFloatAndDoubleWidenExactly() throws {
        // F16: 1, −2, 65504 (max), 2^-24 (smallest subnormal), inf; BF16: 1, −3.5; F64: 0.1
        let f16: [UInt16] = [0x3C00, 0xC000, 0x7BFF, 0x0001, 0x7C00]
        let bf16: [UInt16] = [0x3F80, 0xC060]
        var buf = [UInt8]()
        for h in f16 { withUnsafeBytes(of: h.littleEndian) { buf += $0 } }
        for h in bf16 { withUnsafeBytes(of: h.littleEndian) { buf += $0 } }
        withUnsafeBytes(of: (0.1 as Double).bitPattern.littleEndian) { buf += $0 }
        let p = try file(#"{"h":{"dtype":"F16","shape":[5],"data_offsets":[0,10]},"b":{"dtype":"BF16","shape":[2],"data_offsets":[10,14]},"d":{"dtype":"F64","shape":[1],"data_offsets":[14,22]}}"#, buf)
        let f = try SafeTensorsFile(path: p)
        XCTAssertEqual(try f.floats("h"), [1, -2, 65504, Float(sign: .plus, exponent: -24, significand: 1), .infinity])
        XCTAssertEqual(try f.floats("b"), [1, -3.5])
        XCTAssertEqual(try f.floats("d"), [Float(0.1 as Double)])
    }

    func testNonFloatTensorsAreListedButNotReadAsFloats() throws {
        let p = try file(#"{"ids":{"dtype":"I64","shape":[2],"data_offsets":[0,16]}}"#, [UInt8](repeating: 0, count: 16))
        let f = try SafeTensorsFile(path: p)
        XCTAssertEqual(f.entry("ids")?.dtype, .I64)
        XCTAssertThrowsError(try f.floats("ids")) { XCTAssertTrue("\($0)".contains("is I64, expected a float type"), "\($0)") }
    }

    func testMalformedFilesAreRefusedByName() throws {
        let ok = #"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#
        let eight = [UInt8](repeating: 0, count: 8)
        var cases: [(String, String)] = []                  // (path, expected phrase)
        // 1: shorter than the length field
        let tiny = dir + "/tiny.safetensors"; try Data([1, 2, 3]).write(to: URL(fileURLWithPath: tiny))
        cases.append((tiny, "shorter than the 8-byte header length"))
        // 2: header length over the limit; past the end of the file
        cases.append((try file(ok, eight, name: "huge.st", rawLength: 200_000_000), "exceeds the limit"))
        cases.append((try file(ok, eight, name: "overrun.st", rawLength: 4096), "runs past the end"))
        cases.append((try file(ok, eight, name: "max.st", rawLength: UInt64.max), "exceeds the limit"))
        // 3: JSON and its fields
        cases.append((try file(#"{"w":{"dtype":"F32","#, eight, name: "json.st"), "invalid JSON"))
        cases.append((try file(#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, eight, name: "dup.st"), "duplicate key \"w\""))
        cases.append((try file(#"{"w":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}}"#, eight, name: "dtype.st"), "unknown dtype 'F33'"))
        cases.append((try file(#"{"__metadata__":{"format":3},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, eight, name: "meta.st"), "__metadata__.format is the number 3, expected a string"))
        cases.append((try file(#"{"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}"#, eight, name: "neg.st"), "shape entry"))
        cases.append((try file(#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0]}}"#, eight, name: "offs.st"), "'data_offsets' must be two"))
        cases.append((try file(#"[1,2]"#, eight, name: "list.st"), "the header is a list, expected an object"))
        // 4: tiling of the buffer
        cases.append((try file(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#, [UInt8](repeating: 0, count: 12), name: "gap.st"), "a gap of 4 bytes before tensor 'b'"))
        cases.append((try file(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#, eight, name: "overlap.st"), "overlaps"))
        cases.append((try file(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}"#, eight, name: "backwards.st"), "end before they begin"))
        // 5: sizes
        cases.append((try file(#"{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, eight, name: "size.st"), "8 bytes for F32 [3], expected 12"))
        cases.append((try file(#"{"w":{"dtype":"F32","shape":[281474976710655,281474976710655],"data_offsets":[0,8]}}"#, eight, name: "overflow.st"), "overflows"))
        cases.append((try file(#"{"w":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}}"#, [0, 0], name: "bits.st"), "not a whole number of bytes"))
        // 6: the buffer is entirely indexed
        cases.append((try file(ok, eight + [9], name: "trailing.st"), "1 bytes after the last tensor"))
        cases.append((try file(ok, [0, 0, 0, 0], name: "short.st"), "past the end of the file (4 bytes of buffer)"))
        // offsets adding up to Int.max: an error, not an overflow trap
        cases.append((try file(#"{"t0":{"dtype":"U8","shape":[1073741823,1073741825],"data_offsets":[0,1152921504606846975]},"t1":{"dtype":"U8","shape":[1073741823,1073741825],"data_offsets":[1152921504606846975,2305843009213693950]},"t2":{"dtype":"U8","shape":[1073741823,1073741825],"data_offsets":[2305843009213693950,3458764513820540925]},"t3":{"dtype":"U8","shape":[1073741823,1073741825],"data_offsets":[3458764513820540925,4611686018427387900]},"t4":{"dtype":"U8","shape":[1073741823,1073741825],"data_offsets":[4611686018427387900,5764607523034234875]},"t5":{"dtype":"U8","shape":[1073741823,1073741825],"data_offsets":[5764607523034234875,6917529027641081850]},"t6":{"dtype":"U8","shape":[1073741823,1073741825],"data_offsets":[6917529027641081850,8070450532247928825]},"t7":{"dtype":"U8","shape":[1073741823,1073741825],"data_offsets":[8070450532247928825,9223372036854775800]}}"#, eight, name: "intmax.st"), "past the end of the file"))
        // names equal only under Unicode normalisation
        cases.append((try file(#"{"\u00e9":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"e\u0301":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}}"#, eight, name: "nfc.st"), "differ only in Unicode normalisation"))
        for (p, phrase) in cases {
            XCTAssertThrowsError(try SafeTensorsFile(path: p), p) { e in
                guard case BMError.invalid(let m) = e else { return XCTFail("\(p): \(e) is not an invalid-input error (exit 2)") }
                XCTAssertTrue(m.hasPrefix(p), "\(m) names the file")
                XCTAssertTrue(m.contains(phrase), "\(p): '\(m)' should say '\(phrase)'")
            }
        }
    }

    func testStrictJSON() throws {
        let v = try JSONValue.parse(Array(#"{"a": [1, -2.5e3, "x\u00e9\ud83d\ude00", true, null], "big": 281474976710655}"#.utf8), what: "t")
        XCTAssertEqual(v["a"]?.arrayValue?.count, 5)
        XCTAssertEqual(v["a"]?.arrayValue?[2].stringValue, "xé😀")
        XCTAssertEqual(v["big"]?.intValue, 281_474_976_710_655)
        XCTAssertEqual(v["a"]?.arrayValue?[1].doubleValue, -2500)
        XCTAssertNil(v["a"]?.arrayValue?[1].intValue)
        for bad in [#""\u+041""#, #"{"a":1,}"#, #"[1 2]"#, #"{"a":01}"#, #""\ud800""#, #"{"a":1} x"#, String(repeating: "[", count: 100) + String(repeating: "]", count: 100)] {
            XCTAssertThrowsError(try JSONValue.parse(Array(bad.utf8), what: "t"), bad)
        }
    }
}
