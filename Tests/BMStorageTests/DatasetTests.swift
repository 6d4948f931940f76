import XCTest
import BMStorage

final class DatasetTests: H5TestCase {
    let shapes: [[Int]] = [[5], [2, 3], [2, 3, 4]]

    func testEveryTypeAndRankRoundTrips() throws {
        let p = path("datasets.h5")
        do {
            let f = try H5File(path: p, mode: .create)
            for shape in shapes {
                let n = shape.reduce(1, *)
                let r = shape.count
                try f.write("f32_\(r)", floats: (0..<n).map { Float($0) * 0.5 - 3.25 }, shape: shape)
                try f.write("f64_\(r)", doubles: (0..<n).map { Double($0) / 3.0 }, shape: shape)
                try f.write("i64_\(r)", ints: (0..<n).map { Int64($0) * 1_000_000_007 - (1 << 40) }, shape: shape)
                try f.write("i32_\(r)", int32s: (0..<n).map { Int32($0) * -70_000 }, shape: shape)
                try f.write("u16_\(r)", uint16s: (0..<n).map { UInt16($0 * 2_700) }, shape: shape)
            }
            // Buffer-pointer variant, rank 0 (scalar) too.
            let values: [Float] = [1.5, 2.5, 3.5, 4.5, 5.5, 6.5]
            try values.withUnsafeBufferPointer { try f.write("fromBuffer", floats: $0, shape: [3, 2]) }
            try f.write("scalar", doubles: [42.25], shape: [])
        }

        let f = try H5File(path: p, mode: .readOnly)
        for shape in shapes {
            let n = shape.reduce(1, *)
            let r = shape.count
            let f32 = try f.dataset("f32_\(r)")
            XCTAssertEqual(f32.shape, shape)
            XCTAssertEqual(try f32.elementType, .float32)
            XCTAssertEqual(try f32.readFloats(), (0..<n).map { Float($0) * 0.5 - 3.25 })
            XCTAssertEqual(try f32.readDoubles(), (0..<n).map { Double($0) * 0.5 - 3.25 })

            let f64 = try f.dataset("f64_\(r)")
            XCTAssertEqual(f64.shape, shape)
            XCTAssertEqual(try f64.elementType, .float64)
            XCTAssertEqual(try f64.readDoubles(), (0..<n).map { Double($0) / 3.0 })

            let i64 = try f.dataset("i64_\(r)")
            XCTAssertEqual(i64.shape, shape)
            XCTAssertEqual(try i64.elementType, .int64)
            XCTAssertEqual(try i64.readInt64s(), (0..<n).map { Int64($0) * 1_000_000_007 - (1 << 40) })

            let i32 = try f.dataset("i32_\(r)")
            XCTAssertEqual(i32.shape, shape)
            XCTAssertEqual(try i32.elementType, .int32)
            XCTAssertEqual(try i32.readInt32s(), (0..<n).map { Int32($0) * -70_000 })
            XCTAssertEqual(try i32.readInt64s(), (0..<n).map { Int64($0) * -70_000 })

            let u16 = try f.dataset("u16_\(r)")
            XCTAssertEqual(u16.shape, shape)
            XCTAssertEqual(try u16.elementType, .uint16)
            XCTAssertEqual(try u16.readUInt16s(), (0..<n).map { UInt16($0 * 2_700) })
            XCTAssertEqual(try u16.readFloats(), (0..<n).map { Float($0 * 2_700) })   // converted
        }
        let fb = try f.dataset("fromBuffer")
        XCTAssertEqual(fb.shape, [3, 2])
        var out = [Float](repeating: 0, count: 6)
        try out.withUnsafeMutableBufferPointer { try fb.readFloats(into: $0) }
        XCTAssertEqual(out, [1.5, 2.5, 3.5, 4.5, 5.5, 6.5])

        let scalar = try f.dataset("scalar")
        XCTAssertEqual(scalar.shape, [])
        XCTAssertEqual(scalar.count, 1)
        XCTAssertEqual(try scalar.readDoubles(), [42.25])
    }

    func testRewriteSameShapeInPlaceAndOtherShapeReplaces() throws {
        let f = try H5File(path: path("rewrite.h5"), mode: .create)
        try f.write("w", floats: [1, 2, 3, 4], shape: [2, 2])
        try f.write("w", floats: [5, 6, 7, 8], shape: [2, 2])
        XCTAssertEqual(try f.dataset("w").readFloats(), [5, 6, 7, 8])
        try f.write("w", doubles: [9, 10, 11], shape: [3])
        let w = try f.dataset("w")
        XCTAssertEqual(w.shape, [3])
        XCTAssertEqual(try w.elementType, .float64)
        XCTAssertEqual(try w.readDoubles(), [9, 10, 11])
    }

    func testNestedNameCreatesGroupsAndEmptyDataset() throws {
        let f = try H5File(path: path("nested.h5"), mode: .create)
        try f.write("layers/0/A_log", floats: [0.1, 0.2], shape: [1, 2])
        XCTAssertTrue(f.exists("layers/0"))
        XCTAssertEqual(try f.group("layers/0").dataset("A_log").readFloats(), [0.1, 0.2])
        try f.write("empty", floats: [], shape: [0, 4])
        let e = try f.dataset("empty")
        XCTAssertEqual(e.shape, [0, 4])
        XCTAssertEqual(try e.readFloats(), [])
    }

    func testFixedDatasetsAreContiguous() throws {
        let f = try H5File(path: path("layout.h5"), mode: .create)
        try f.write("w", floats: [1, 2, 3], shape: [3])
        let layout = try f.dataset("w").storageLayout()
        XCTAssertNil(layout.chunkShape)
        XCTAssertEqual(layout.filters, [])
        XCTAssertEqual(layout.maxShape, [3])
    }
}
