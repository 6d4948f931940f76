import XCTest
@testable import BMCore

/// SHA-256 against FIPS 180-4 test vectors and against itself fed in pieces.
final class SHA256Tests: XCTestCase {
    func hex(_ s: [UInt8]) -> String { s.withUnsafeBytes { SHA256.hex($0) } }

    func testKnownVectors() {
        XCTAssertEqual(hex([]), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(hex(Array("abc".utf8)), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(hex(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)),
                       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        XCTAssertEqual(hex([UInt8](repeating: 0x61, count: 1000)), "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3")
    }

    func testPiecewiseEqualsWhole() {
        var rng = RNG(seed: 4)
        let data = (0..<10_000).map { _ in UInt8(truncatingIfNeeded: rng.below(256)) }
        let whole = hex(data)
        var s = SHA256()
        var i = 0
        for n in [1, 63, 64, 65, 127, 3000, 6680] {
            data[i..<i + n].withUnsafeBytes { s.update($0) }
            i += n
        }
        XCTAssertEqual(i, data.count)
        XCTAssertEqual(s.finalizeHex(), whole)
    }
}
