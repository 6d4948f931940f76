import XCTest
import BMStorage

final class AttributeTests: H5TestCase {

    /// Sets every attribute kind on `object`.
    private func setAll(on object: H5Object) throws {
        try object.setAttribute("title", "héllo wörld ✓")
        try object.setAttribute("steps", 9_007_199_254_740_993)      // > 2^53: must stay exact
        try object.setAttribute("negative", -42)
        try object.setAttribute("lr", 3.0e-4)
        try object.setAttribute("tags", ["mamba", "", "ünïcode", "a b"])
        try object.setAttribute("losses", [2.5, -1.25, 1e-300])
        try object.setAttribute("dims", [64, 128, -1])
        try object.setAttribute("noTags", [String]())
    }

    private func checkAll(on object: H5Object) throws {
        XCTAssertEqual(try object.stringAttribute("title"), "héllo wörld ✓")
        XCTAssertEqual(try object.intAttribute("steps"), 9_007_199_254_740_993)
        XCTAssertEqual(try object.intAttribute("negative"), -42)
        XCTAssertEqual(try object.doubleAttribute("negative"), -42.0)   // ints convert to Double
        XCTAssertEqual(try object.doubleAttribute("lr"), 3.0e-4)
        XCTAssertEqual(try object.stringArrayAttribute("tags"), ["mamba", "", "ünïcode", "a b"])
        XCTAssertEqual(try object.stringArrayAttribute("title"), ["héllo wörld ✓"])
        XCTAssertEqual(try object.doubleArrayAttribute("losses"), [2.5, -1.25, 1e-300])
        XCTAssertEqual(try object.intArrayAttribute("dims"), [64, 128, -1])
        XCTAssertEqual(try object.stringArrayAttribute("noTags"), [])
        XCTAssertEqual(try object.attributeNames(),
                       ["dims", "losses", "lr", "negative", "noTags", "steps", "tags", "title"])
    }

    func testRoundTripOnFileGroupAndDatasetsAcrossReopen() throws {
        let p = path("attrs.h5")
        do {
            let f = try H5File(path: p, mode: .create)
            try setAll(on: f)
            let g = try f.createGroup("run/config")
            try setAll(on: g)
            try f.write("w", floats: [1, 2], shape: [2])
            try setAll(on: try f.dataset("w"))
            try setAll(on: try f.createAppendable("loss", type: .float32))
            // Checked while still open, too.
            try checkAll(on: f)
            try checkAll(on: g)
        }
        let f = try H5File(path: p, mode: .readOnly)
        try checkAll(on: f)
        try checkAll(on: try f.group("run/config"))
        try checkAll(on: try f.dataset("w"))
        try checkAll(on: try f.dataset("loss"))
    }

    func testOverwriteReplacesValueAndType() throws {
        let f = try H5File(path: path("over.h5"), mode: .create)
        try f.setAttribute("x", "first")
        try f.setAttribute("x", "second, longer than the first")
        XCTAssertEqual(try f.stringAttribute("x"), "second, longer than the first")
        try f.setAttribute("x", 7)
        XCTAssertEqual(try f.intAttribute("x"), 7)
        try f.setAttribute("x", [1.5, 2.5])
        XCTAssertEqual(try f.doubleArrayAttribute("x"), [1.5, 2.5])
        XCTAssertEqual(try f.attributeNames(), ["x"])
        XCTAssertTrue(f.hasAttribute("x"))
        try f.removeAttribute("x")
        XCTAssertFalse(f.hasAttribute("x"))
        XCTAssertEqual(try f.attributeNames(), [])
    }

    func testWrongKindIsAnErrorNotAConversion() throws {
        let p = path("kinds.h5")
        let f = try H5File(path: p, mode: .create)
        try f.setAttribute("s", "text")
        try f.setAttribute("d", 1.5)
        try f.setAttribute("many", [1, 2, 3])
        let e1 = expectHDF5Error { _ = try f.intAttribute("s") }
        XCTAssertTrue(e1?.description.contains("/@s") ?? false, e1?.description ?? "")
        XCTAssertTrue(e1?.description.contains(p) ?? false)
        XCTAssertTrue(e1?.description.contains("string") ?? false)
        let e2 = expectHDF5Error { _ = try f.intAttribute("d") }
        XCTAssertTrue(e2?.description.contains("float64") ?? false, e2?.description ?? "")
        let e3 = expectHDF5Error { _ = try f.stringAttribute("d") }
        XCTAssertTrue(e3?.description.contains("/@d") ?? false)
        let e4 = expectHDF5Error { _ = try f.intAttribute("many") }
        XCTAssertTrue(e4?.description.contains("holds 3") ?? false, e4?.description ?? "")
    }
}
