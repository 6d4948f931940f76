import XCTest
import BMStorage

final class AtomicFileTests: H5TestCase {
    struct Boom: Error {}

    private func leftovers() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.contains(".tmp-") }
    }

    func testReplacesFileAndRemovesNothingElse() throws {
        let p = path("ckpt.h5")
        try Data("old".utf8).write(to: URL(fileURLWithPath: p))
        var seenTmp = ""
        try AtomicFile.write(to: p) { tmp in
            seenTmp = tmp
            let f = try H5File(path: tmp, mode: .create)
            try f.write("w", floats: [1, 2, 3], shape: [3])
            f.close()
        }
        XCTAssertEqual(seenTmp, directory + "/.ckpt.h5.tmp-\(ProcessInfo.processInfo.processIdentifier)")
        XCTAssertEqual(try H5File(path: p, mode: .readOnly).dataset("w").readFloats(), [1, 2, 3])
        XCTAssertEqual(try leftovers(), [])
    }

    func testThrowingBodyLeavesOldFileAndRemovesTemp() throws {
        let p = path("ckpt.h5")
        let old = Data("previous checkpoint bytes".utf8)
        try old.write(to: URL(fileURLWithPath: p))
        var tmpExisted = false
        XCTAssertThrowsError(try AtomicFile.write(to: p) { tmp in
            let f = try H5File(path: tmp, mode: .create)
            try f.write("w", floats: [1, 2, 3], shape: [3])
            f.close()
            tmpExisted = FileManager.default.fileExists(atPath: tmp)
            throw Boom()
        }) { error in XCTAssertTrue(error is Boom) }
        XCTAssertTrue(tmpExisted)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: p)), old)
        XCTAssertEqual(try leftovers(), [])

        // An HDF5 error inside the body behaves the same.
        XCTAssertThrowsError(try AtomicFile.writeHDF5(to: p) { f in
            try f.write("w", floats: [1, 2, 3], shape: [2, 2])
        }) { error in XCTAssertTrue(error is HDF5Error) }
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: p)), old)
        XCTAssertEqual(try leftovers(), [])
    }

    func testBodyThatWritesNothingIsAnError() throws {
        let p = path("never.h5")
        XCTAssertThrowsError(try AtomicFile.write(to: p) { _ in }) { error in
            XCTAssertTrue(error is AtomicFileError)
            XCTAssertTrue("\(error)".contains("never.h5"), "\(error)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: p))
    }

    func testWriteHDF5CreatesNewFile() throws {
        let p = path("sub.h5")
        try AtomicFile.writeHDF5(to: p) { f in
            try f.setAttribute("step", 1200)
            try f.write("w", doubles: [0.5], shape: [1])
        }
        let f = try H5File(path: p, mode: .readOnly)
        XCTAssertEqual(try f.intAttribute("step"), 1200)
        XCTAssertEqual(try f.dataset("w").readDoubles(), [0.5])
        XCTAssertEqual(try leftovers(), [])
    }
}
