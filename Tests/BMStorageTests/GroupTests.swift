import XCTest
import BMStorage

final class GroupTests: H5TestCase {
    func testNestedGroupsExistsChildren() throws {
        let p = path("groups.h5")
        let f = try H5File(path: p, mode: .create)
        let c = try f.createGroup("a/b/c")
        XCTAssertEqual(c.name, "/a/b/c")
        XCTAssertTrue(f.exists("a"))
        XCTAssertTrue(f.exists("a/b"))
        XCTAssertTrue(f.exists("/a/b/c"))
        XCTAssertTrue(f.exists("/"))
        XCTAssertFalse(f.exists("a/x/y"))          // missing intermediate: false, not an error
        XCTAssertFalse(f.exists("z"))
        _ = try f.createGroup("zeta")
        _ = try f.createGroup("alpha")
        try f.write("data", floats: [1], shape: [1])
        XCTAssertEqual(try f.children(), ["a", "alpha", "data", "zeta"])

        let b = try f.group("a").group("b")
        XCTAssertEqual(b.name, "/a/b")
        XCTAssertEqual(try b.children(), ["c"])
        XCTAssertTrue(b.exists("c"))

        let again = try f.requireGroup("a/b")       // existing
        XCTAssertEqual(try again.children(), ["c"])
        let fresh = try f.requireGroup("new/inner") // created
        XCTAssertEqual(fresh.name, "/new/inner")
        XCTAssertTrue(f.exists("new/inner"))

        let dup = expectHDF5Error { _ = try f.createGroup("a/b") }
        XCTAssertTrue(dup?.description.contains("/a/b") ?? false, dup?.description ?? "")
        XCTAssertTrue(dup?.description.contains(p) ?? false)

        try f.remove("zeta")
        XCTAssertFalse(f.exists("zeta"))
    }

    func testGroupsSurviveReopen() throws {
        let p = path("g2.h5")
        do {
            let f = try H5File(path: p, mode: .create)
            let g = try f.createGroup("model/layers")
            try g.write("w", doubles: [0.5, 0.25], shape: [2])
            try g.setAttribute("kind", "mamba")
        }
        let f = try H5File(path: p, mode: .readOnly)
        let g = try f.group("model/layers")
        XCTAssertEqual(try g.stringAttribute("kind"), "mamba")
        XCTAssertEqual(try g.dataset("w").readDoubles(), [0.5, 0.25])
        XCTAssertEqual(try f.dataset("/model/layers/w").name, "/model/layers/w")
    }
}
