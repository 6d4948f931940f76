import XCTest
import BMStorage

final class ErrorTests: H5TestCase {

    func testMissingFile() throws {
        let p = path("does-not-exist.h5")
        for mode in [H5Mode.readOnly, .readWrite] {
            let e = expectHDF5Error { _ = try H5File(path: p, mode: mode) }
            XCTAssertEqual(e?.path, p)
            XCTAssertTrue(e?.description.contains(p) ?? false, e?.description ?? "")
            // one line: the path, what failed, and the system's reason (not libhdf5's stack)
            XCTAssertTrue(e?.description.contains("No such file or directory") ?? false, e?.description ?? "")
            XCTAssertFalse(e?.description.contains("H5F") ?? true, e?.description ?? "")
            XCTAssertFalse(e?.description.contains("\n") ?? true)
            XCTAssertTrue(e?.libraryText.contains("H5Fopen") ?? false, e?.libraryText ?? "")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: p))
    }

    func testNotAnHDF5File() throws {
        let p = path("garbage.h5")
        try Data("this is not hdf5".utf8).write(to: URL(fileURLWithPath: p))
        let e = expectHDF5Error { _ = try H5File(path: p, mode: .readOnly) }
        XCTAssertTrue(e?.description.contains(p) ?? false, e?.description ?? "")
    }

    func testMissingDatasetGroupAttribute() throws {
        let p = path("errors.h5")
        let f = try H5File(path: p, mode: .create)
        _ = try f.createGroup("g")
        try f.write("g/w", floats: [1, 2, 3, 4, 5, 6], shape: [2, 3])

        let d = expectHDF5Error { _ = try f.dataset("g/missing") }
        XCTAssertEqual(d?.object, "/g/missing")
        XCTAssertTrue(d?.description.contains("/g/missing") ?? false, d?.description ?? "")
        XCTAssertTrue(d?.description.contains(p) ?? false)
        XCTAssertTrue(d?.description.contains("doesn't exist") ?? false, d?.description ?? "")

        let g = expectHDF5Error { _ = try f.group("nope") }
        XCTAssertTrue(g?.description.contains("/nope") ?? false)
        XCTAssertTrue(g?.description.contains(p) ?? false)

        let asGroup = expectHDF5Error { _ = try f.group("g/w") }      // a dataset, not a group
        XCTAssertTrue(asGroup?.description.contains("/g/w") ?? false)

        let a = expectHDF5Error { _ = try f.group("g").stringAttribute("missing_attr") }
        XCTAssertTrue(a?.description.contains("missing_attr") ?? false, a?.description ?? "")
        XCTAssertTrue(a?.description.contains("/g") ?? false)
        XCTAssertTrue(a?.description.contains(p) ?? false)

        let da = expectHDF5Error { _ = try f.dataset("g/w").doubleAttribute("scale") }
        XCTAssertTrue(da?.description.contains("/g/w@scale") ?? false, da?.description ?? "")
    }

    func testWrongCountAndWrongType() throws {
        let p = path("count.h5")
        let f = try H5File(path: p, mode: .create)
        try f.write("w", floats: [1, 2, 3, 4, 5, 6], shape: [2, 3])
        let w = try f.dataset("w")
        var small = [Float](repeating: -1, count: 5)
        let e = expectHDF5Error { try small.withUnsafeMutableBufferPointer { try w.readFloats(into: $0) } }
        XCTAssertTrue(e?.description.contains("/w") ?? false, e?.description ?? "")
        XCTAssertTrue(e?.description.contains(p) ?? false)
        XCTAssertTrue(e?.description.contains("expected 6") ?? false)
        XCTAssertTrue(e?.description.contains("holds 5") ?? false)
        XCTAssertEqual(small, [Float](repeating: -1, count: 5))     // untouched

        let t = expectHDF5Error { _ = try w.readInt64s() }            // floats are not read as integers
        XCTAssertTrue(t?.description.contains("float32") ?? false, t?.description ?? "")

        let s = expectHDF5Error { try f.write("bad", floats: [1, 2, 3], shape: [2, 2]) }
        XCTAssertTrue(s?.description.contains("/bad") ?? false)
        XCTAssertTrue(s?.description.contains("needs 4") ?? false, s?.description ?? "")
        XCTAssertFalse(f.exists("bad"))
        _ = expectHDF5Error { try f.write("neg", floats: [], shape: [-1]) }
    }

    func testReadOnlyFileRefusesWrites() throws {
        let p = path("ro.h5")
        do { _ = try H5File(path: p, mode: .create) }
        let f = try H5File(path: p, mode: .readOnly)
        let e = expectHDF5Error { try f.write("w", floats: [1], shape: [1]) }
        XCTAssertTrue(e?.description.contains("/w") ?? false, e?.description ?? "")
        _ = expectHDF5Error { try f.setAttribute("a", 1) }
        _ = expectHDF5Error { _ = try f.createGroup("g") }
    }

    func testUseAfterCloseThrows() throws {
        let p = path("closed.h5")
        let f = try H5File(path: p, mode: .create)
        try f.write("w", floats: [1], shape: [1])
        let w = try f.dataset("w")
        w.close()
        w.close()                                                       // idempotent
        let e = expectHDF5Error { _ = try w.readFloats() }
        XCTAssertTrue(e?.description.contains("closed") ?? false, e?.description ?? "")
        XCTAssertEqual(w.shape, [])
        f.close()
        f.close()
        XCTAssertFalse(f.isOpen)
        _ = expectHDF5Error { _ = try f.dataset("w") }
        _ = expectHDF5Error { try f.flush() }
        XCTAssertFalse(f.exists("w"))
    }

    func testSWMRWithoutSWMRFileFails() throws {
        let f = try H5File(path: path("noswmr.h5"), mode: .create)
        let e = expectHDF5Error { try f.startSWMRWrite() }
        XCTAssertTrue(e?.description.contains("noswmr.h5") ?? false, e?.description ?? "")
    }
}
