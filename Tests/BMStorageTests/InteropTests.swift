import XCTest
import BMTestSupport
import BMStorage

/// Files written here are read by other HDF5 tools: h5dump and h5py.
final class InteropTests: H5TestCase {

    func testH5dumpSeesNamesShapesAndTypes() throws {
        try Needs.require(Needs.which("h5dump") != nil, "h5dump is not on PATH (Debian: hdf5-tools)")
        let h5dump = Needs.which("h5dump")!
        let p = path("dump.h5")
        do {
            let f = try H5File(path: p, mode: .create)
            try f.write("weights", floats: [Float](repeating: 0.5, count: 6), shape: [2, 3])
            try f.write("layers/0/bias", doubles: [1, 2, 3, 4], shape: [4])
            try f.write("tokens", ints: [1, 2, 3, 4, 5, 6, 7, 8], shape: [2, 2, 2])
            let m = try f.createAppendable("metrics/loss", type: .float32)
            try m.append(1.0); try m.append(0.5)
            try f.setAttribute("model", "blackmamba")
        }
        let r = try Tools.run(h5dump, ["-H", p])
        XCTAssertEqual(r.status, 0, r.stderr)
        let out = r.stdout
        XCTAssertTrue(out.contains("DATASET \"weights\""), out)
        XCTAssertTrue(out.contains("H5T_IEEE_F32LE"), out)
        XCTAssertTrue(out.contains("DATASPACE  SIMPLE { ( 2, 3 ) / ( 2, 3 ) }"), out)
        XCTAssertTrue(out.contains("GROUP \"layers\""), out)
        XCTAssertTrue(out.contains("DATASET \"bias\""), out)
        XCTAssertTrue(out.contains("H5T_IEEE_F64LE"), out)
        XCTAssertTrue(out.contains("DATASPACE  SIMPLE { ( 4 ) / ( 4 ) }"), out)
        XCTAssertTrue(out.contains("DATASET \"tokens\""), out)
        XCTAssertTrue(out.contains("H5T_STD_I64LE"), out)
        XCTAssertTrue(out.contains("( 2, 2, 2 ) / ( 2, 2, 2 )"), out)
        XCTAssertTrue(out.contains("DATASET \"loss\""), out)
        XCTAssertTrue(out.contains("( 2 ) / ( H5S_UNLIMITED )"), out)
        XCTAssertTrue(out.contains("ATTRIBUTE \"model\""), out)
        XCTAssertTrue(out.contains("CSET H5T_CSET_UTF8"), out)
    }

    private let readScript = """
    import sys, h5py
    with h5py.File(sys.argv[1], "r") as f:
        a = f.attrs["model"]
        print("model", type(a).__name__, a)
        print("tags", [type(t).__name__ for t in f.attrs["tags"]], list(f.attrs["tags"]))
        print("step", int(f.attrs["step"]))
        w = f["weights"]
        print("weights", w.dtype, w.shape, w[1, 2])
        loss = f["metrics/loss"]
        print("loss", loss.shape[0], loss.maxshape, loss.chunks, loss.compression, loss[:].tolist())
    """

    func testH5pyReadsStringsShapesAndRows() throws {
        try Needs.require(Needs.h5py, "python3 with h5py is not available")
        let python = Needs.which("python3")!
        let p = path("py.h5")
        do {
            let f = try H5File(path: p, mode: .create)
            try f.setAttribute("model", "blackmamba ✓")
            try f.setAttribute("tags", ["ssm", "moe"])
            try f.setAttribute("step", 1234)
            try f.write("weights", floats: (0..<6).map { Float($0) + 0.25 }, shape: [2, 3])
            let loss = try f.createAppendable("metrics/loss", type: .float32, chunkRows: 64)
            for v in [3.0, 2.5, 2.0] { try loss.append(v) }
        }
        let r = try Tools.run(python, ["-c", readScript, p])
        XCTAssertEqual(r.status, 0, r.stderr)
        let lines = r.stdout.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines, [
            "model str blackmamba ✓",
            "tags ['str', 'str'] ['ssm', 'moe']",
            "step 1234",
            "weights float32 (2, 3) 5.25",
            "loss 3 (None,) (64,) gzip [3.0, 2.5, 2.0]",
        ])
    }

    /// SWMR: h5py reads the rows while the writer still has the file open.
    func testH5pyReadsWhileSWMRWriterIsOpen() throws {
        try Needs.require(Needs.h5py, "python3 with h5py is not available")
        let python = Needs.which("python3")!
        let p = path("swmr.h5")
        let script = """
        import sys, h5py
        with h5py.File(sys.argv[1], "r", libver="latest", swmr=True) as f:
            d = f["metrics/loss"]
            print(d.shape[0], d[:].tolist(), f.attrs["run"])
        """
        let f = try H5File(path: p, mode: .create, swmr: true)
        try f.setAttribute("run", "swmr-test")
        let loss = try f.createAppendable("metrics/loss", type: .float64, chunkRows: 4)
        try f.startSWMRWrite()
        for v in [1.0, 2.0, 3.0] { try loss.append(v) }
        try loss.flush()
        let r1 = try Tools.run(python, ["-c", script, p])
        XCTAssertEqual(r1.status, 0, r1.stderr)
        XCTAssertEqual(r1.stdout, "3 [1.0, 2.0, 3.0] swmr-test\n")

        for v in [4.0, 5.0] { try loss.append(v) }
        try loss.flush()
        let r2 = try Tools.run(python, ["-c", script, p])
        XCTAssertEqual(r2.status, 0, r2.stderr)
        XCTAssertEqual(r2.stdout, "5 [1.0, 2.0, 3.0, 4.0, 5.0] swmr-test\n")

        // A Swift SWMR reader in the same process is not possible (libhdf5
        // refuses to open a file twice with different flags), so h5py it is.
        loss.close()
        f.close()
        let reader = try H5File(path: p, mode: .readOnly, swmr: true)
        XCTAssertEqual(try reader.dataset("metrics/loss").readDoubles(), [1, 2, 3, 4, 5])
    }
}
