import XCTest
import Foundation
@testable import BMCore
@testable import BMInterop

/// Damaged files of both formats, at seeded random places: 300 corruptions each of a
/// safetensors file and a torch.save archive (the fixtures) — bytes overwritten, runs
/// zeroed, the file cut short — and every outcome is either an error of the invalid-input
/// kind (exit 2) or a file that still reads (its tensors finite-size, readable); never a
/// crash or a trap, which would end this test process.
final class CorruptionTests: InteropTestCase {
    func corruptAndRead(_ source: String, tries: Int = 300, read: (String) throws -> Int) throws -> (refused: Int, read: Int) {
        let original = try [UInt8](Data(contentsOf: URL(fileURLWithPath: source)))
        var rng = RNG(seed: 77)
        var refused = 0, readOK = 0
        for k in 0..<tries {
            var b = original
            switch k % 3 {
            case 0: for _ in 0..<(1 + rng.below(8)) { b[rng.below(b.count)] = UInt8(rng.below(256)) }
            case 1: let at = rng.below(b.count), n = min(b.count - at, 1 + rng.below(64)); for i in at..<at + n { b[i] = 0 }
            default: b = Array(b.prefix(rng.below(b.count)))
            }
            let p = dir + "/c\(k)" + (source.hasSuffix(".bin") ? ".bin" : ".safetensors")
            try Data(b).write(to: URL(fileURLWithPath: p))
            do {
                _ = try read(p)
                readOK += 1
            } catch let e as BMError {
                guard case .invalid(let m) = e else { XCTFail("\(k): \(e) is not an invalid-input error"); continue }
                XCTAssertTrue(m.contains(p), "\(k): \(m) names the file")
                refused += 1
            }
        }
        return (refused, readOK)
    }

    func testDamagedFilesAreRefusedOrRead() throws {
        let base = ParityTests.fixtures + "/hf-untied-rank5"
        let st = try corruptAndRead(base + "/safetensors/model.safetensors") { p in
            let f = try SafeTensorsFile(path: p)
            return try f.names.reduce(0) { $0 + (try f.floats($1)).count }
        }
        let pt = try corruptAndRead(base + "/bin/pytorch_model.bin") { p in
            let c = try TorchCheckpoint(path: p)
            return try c.names.reduce(0) { $0 + (try c.floats($1)).count }
        }
        // most damage is caught (the rest hit tensor bytes, which no format can check)
        XCTAssertGreaterThan(st.refused, 100, "safetensors: \(st)")
        XCTAssertGreaterThan(pt.refused, 100, "torch.save: \(pt)")
    }
}
