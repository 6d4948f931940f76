import XCTest
import BMTestSupport
import BMStorage

final class AppendableDatasetTests: H5TestCase {

    func testScalarsAndRowsAcrossReopenAndTruncate() throws {
        let p = path("metrics.h5")
        do {
            let f = try H5File(path: p, mode: .create)
            let loss = try f.createAppendable("metrics/loss", type: .float64)
            XCTAssertEqual(loss.rows, 0)
            XCTAssertEqual(loss.shape, [0])
            try loss.append(2.5)
            try loss.append(Int64(2))
            try loss.append(1.75)
            XCTAssertEqual(loss.rows, 3)

            let step = try f.createAppendable("metrics/step", type: .int64, chunkRows: 4, compression: nil)
            for s in [Int64(10), 20, 30] { try step.append(s) }
            try step.append(40.9)                      // double → int64 conversion by libhdf5 (truncates)

            let grads = try f.createAppendable("grad_norms", type: .float32, rowShape: [3], chunkRows: 16)
            try grads.append(row: [Float(1), 2, 3])
            try grads.append(row: [4.0, 5.0, 6.0] as [Double])
            let block: [Float] = [7, 8, 9, 10, 11, 12]
            try block.withUnsafeBufferPointer { try grads.append(rows: $0, count: 2) }
            XCTAssertEqual(grads.rows, 4)
            XCTAssertEqual(grads.shape, [4, 3])
            try f.flush()
        }
        // Resume: reopen read-write and continue appending.
        do {
            let f = try H5File(path: p, mode: .readWrite)
            let loss = try f.openAppendable("metrics/loss")
            XCTAssertEqual(loss.rows, 3)
            XCTAssertEqual(loss.elementType, .float64)
            XCTAssertEqual(loss.rowShape, [])
            try loss.append(1.5)
            XCTAssertEqual(try loss.readDoubles(), [2.5, 2.0, 1.75, 1.5])

            // Resume from an older checkpoint: drop the last two rows, then log again.
            try loss.truncate(toRows: 2)
            XCTAssertEqual(loss.rows, 2)
            try loss.append(9.0)
            XCTAssertEqual(try loss.readDoubles(), [2.5, 2.0, 9.0])

            let grads = try f.openAppendable("grad_norms")
            XCTAssertEqual(grads.rowShape, [3])
            XCTAssertEqual(grads.elementType, .float32)
            XCTAssertEqual(grads.rows, 4)
            try grads.append(row: [Float(13), 14, 15])
            try grads.truncate(toRows: 0)
            try grads.append(row: [Float(-1), -2, -3])
            try grads.flush()
        }
        let f = try H5File(path: p, mode: .readOnly)
        let loss = try f.dataset("metrics/loss")
        XCTAssertEqual(loss.shape, [3])
        XCTAssertEqual(try loss.readDoubles(), [2.5, 2.0, 9.0])
        XCTAssertEqual(try f.dataset("metrics/step").readInt64s(), [10, 20, 30, 40])
        let grads = try f.dataset("grad_norms")
        XCTAssertEqual(grads.shape, [1, 3])
        XCTAssertEqual(try grads.readFloats(), [-1, -2, -3])
    }

    func testChunkingAndCompressionAreVisible() throws {
        let p = path("layout.h5")
        let f = try H5File(path: p, mode: .create)
        let a = try f.createAppendable("a", type: .float32, rowShape: [3], chunkRows: 16)
        let layout = try a.storageLayout()
        XCTAssertEqual(layout.chunkShape, [16, 3])
        XCTAssertEqual(layout.filters, ["shuffle", "deflate"])
        XCTAssertEqual(layout.deflateLevel, 4)
        XCTAssertEqual(layout.maxShape, [nil, 3])

        let b = try f.createAppendable("b", type: .int32, chunkRows: 1000, compression: nil)
        let lb = try b.storageLayout()
        XCTAssertEqual(lb.chunkShape, [1000])
        XCTAssertEqual(lb.filters, [])
        XCTAssertNil(lb.deflateLevel)
        XCTAssertEqual(lb.maxShape, [nil])

        let c = try f.createAppendable("c", type: .uint16, compression: 9)
        XCTAssertEqual(try c.storageLayout().chunkShape, [256])
        XCTAssertEqual(try c.storageLayout().deflateLevel, 9)

        // Compression really works: 10 000 rows of repetitive data, default
        // chunking, gzip vs. none.
        let values = (0..<30_000).map { Float($0 % 7) }
        let packed = try f.createAppendable("packed", type: .float32, rowShape: [3])
        let plain = try f.createAppendable("plain", type: .float32, rowShape: [3], compression: nil)
        try values.withUnsafeBufferPointer {
            try a.append(rows: $0, count: 10_000)
            try packed.append(rows: $0, count: 10_000)
            try plain.append(rows: $0, count: 10_000)
        }
        XCTAssertEqual(try plain.storageLayout().storedBytes, 40 * 256 * 3 * 4)   // 40 whole chunks
        XCTAssertLessThan(try packed.storageLayout().storedBytes, 12_000)
        XCTAssertEqual(try packed.readFloats(), values)
        for d in [a, b, c, packed, plain] { d.close() }
        f.close()

        try Needs.require(Needs.which("h5dump") != nil, "h5dump is not on PATH (Debian: hdf5-tools)")
        let h5dump = Needs.which("h5dump")!
        let r = try Tools.run(h5dump, ["-p", "-H", p])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("CHUNKED ( 16, 3 )"), r.stdout)
        XCTAssertTrue(r.stdout.contains("SHUFFLE"), r.stdout)
        XCTAssertTrue(r.stdout.contains("COMPRESSION DEFLATE { LEVEL 4 }"), r.stdout)
        XCTAssertTrue(r.stdout.contains("CHUNKED ( 1000 )"), r.stdout)
        XCTAssertTrue(r.stdout.contains("( 10000, 3 ) / ( H5S_UNLIMITED, 3 )"), r.stdout)
    }

    func testBadAppendsAndTruncatesThrowAndLeaveRowsAlone() throws {
        let p = path("bad.h5")
        let f = try H5File(path: p, mode: .create)
        let a = try f.createAppendable("rows", type: .float32, rowShape: [2])
        try a.append(row: [Float(1), 2])
        let e1 = expectHDF5Error { try a.append(row: [Float(1), 2, 3]) }
        XCTAssertTrue(e1?.description.contains("/rows") ?? false, e1?.description ?? "")
        XCTAssertTrue(e1?.description.contains(p) ?? false)
        _ = expectHDF5Error { try a.append(1.0) }              // scalar into [2]-rows
        let e2 = expectHDF5Error { try a.truncate(toRows: 5) }
        XCTAssertTrue(e2?.description.contains("5") ?? false)
        XCTAssertEqual(a.rows, 1)
        XCTAssertEqual(try a.readFloats(), [1, 2])
        _ = expectHDF5Error { _ = try f.createAppendable("x", type: .float32, chunkRows: 0) }
        _ = expectHDF5Error { _ = try f.createAppendable("y", type: .float32, compression: 12) }
        try f.write("fixed", floats: [1, 2], shape: [2])
        let e3 = expectHDF5Error { _ = try f.openAppendable("fixed") }
        XCTAssertTrue(e3?.description.contains("/fixed") ?? false, e3?.description ?? "")
    }
}
