import XCTest
import BMStorage
import CHDF5   // only to leak identifiers on purpose in testProbeDetectsALeak

/// No libhdf5 identifier outlives its wrapper, on success and error paths.
final class HandleLeakTests: H5TestCase {

    /// Touches every code path (including failing ones) on an open file.
    private func workload(_ f: H5File) throws {
        let g = try f.requireGroup("g/h")
        try g.setAttribute("s", "x")
        try g.setAttribute("i", 3)
        try g.setAttribute("d", 2.5)
        try g.setAttribute("ss", ["a", "b"])
        try g.setAttribute("dd", [1.0, 2.0])
        try g.setAttribute("ii", [1, 2])
        try g.setAttribute("s", "replaced")
        _ = try g.stringAttribute("s")
        _ = try g.intAttribute("i")
        _ = try g.doubleAttribute("d")
        _ = try g.stringArrayAttribute("ss")
        _ = try g.doubleArrayAttribute("dd")
        _ = try g.intArrayAttribute("ii")
        _ = try g.attributeNames()
        _ = try f.children()
        _ = f.exists("g/h/missing/deeper")
        try g.write("w", floats: [1, 2, 3, 4], shape: [2, 2])
        try g.write("w", floats: [1, 2, 3, 4], shape: [2, 2])           // in place
        try g.write("w", ints: [1, 2], shape: [2])                       // replaced
        let d = try g.dataset("w")
        _ = d.shape
        _ = try d.elementType
        _ = try d.readInt64s()
        _ = try d.readFloats()
        _ = try d.storageLayout()
        try d.setAttribute("unit", "m")
        let a = try f.createAppendable("metrics/m", type: .float32, rowShape: [2], chunkRows: 8)
        try a.append(row: [Float(1), 2])
        try a.truncate(toRows: 0)
        try a.flush()
        _ = try a.readFloats()
        let b = try f.openAppendable("metrics/m")
        try b.append(row: [3.0, 4.0] as [Double])

        // Error paths.
        _ = try? f.dataset("missing")
        _ = try? f.group("missing")
        _ = try? g.stringAttribute("missing")
        _ = try? g.intAttribute("s")
        _ = try? d.readInt64s().isEmpty
        _ = try? f.dataset("g/h/w").readFloats(into: UnsafeMutableBufferPointer(start: nil, count: 0))
        _ = try? b.append(row: [Float(1)])
        _ = try? f.openAppendable("g/h/w")
        _ = try? f.createGroup("g")
        _ = try? g.write("bad", floats: [1], shape: [3])
    }

    func testNoHandleLeaks() throws {
        let none = HDF5Library.LiveIdentifiers()
        let mark = HDF5Library.identifierMark()
        let p = path("leak.h5")
        do {
            let f = try H5File(path: p, mode: .create)
            try workload(f)
            // Every group / dataset / attribute wrapper is gone: only the file is open.
            XCTAssertEqual(try f.openObjectCount(), 1)
            var live = HDF5Library.liveIdentifiers(since: mark)
            XCTAssertEqual(live.files, 1, "\(live)")
            live.files = 0
            XCTAssertEqual(live, none)
            let g = try f.group("g")
            XCTAssertEqual(try f.openObjectCount(), 2)
            XCTAssertEqual(HDF5Library.liveIdentifiers(since: mark).groups, 1)
            g.close()
            XCTAssertEqual(try f.openObjectCount(), 1)
            f.close()
        }
        XCTAssertEqual(HDF5Library.liveIdentifiers(since: mark), none)
        do {
            let f = try H5File(path: p, mode: .readWrite)
            _ = try f.dataset("g/h/w").readInt64s()
            _ = try f.openAppendable("metrics/m").readFloats()
            XCTAssertEqual(try f.openObjectCount(), 1)
        }
        _ = try? H5File(path: path("missing.h5"), mode: .readOnly)
        XCTAssertEqual(HDF5Library.liveIdentifiers(since: mark), none)
    }

    /// The probe itself sees a deliberately leaked identifier.
    func testProbeDetectsALeak() throws {
        let mark = HDF5Library.identifierMark()
        let f = try H5File(path: path("probe.h5"), mode: .create)
        let d = try f.createAppendable("x", type: .float32)
        var live = HDF5Library.liveIdentifiers(since: mark)
        XCTAssertEqual(live.files, 1)
        XCTAssertEqual(live.datasets, 1)
        XCTAssertEqual(live.dataspaces, 0)
        d.close()
        let space = H5Screate(H5S_SCALAR)
        let plist = H5Pcreate(bm_h5p_dataset_create())
        live = HDF5Library.liveIdentifiers(since: mark)
        XCTAssertEqual(live.datasets, 0)
        XCTAssertEqual(live.dataspaces, 1)
        XCTAssertEqual(live.propertyLists, 1)
        H5Sclose(space)
        H5Pclose(plist)
        f.close()
        XCTAssertEqual(HDF5Library.liveIdentifiers(since: mark), HDF5Library.LiveIdentifiers())
    }
}
