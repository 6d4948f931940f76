import XCTest
@testable import BMCore

final class MachineTests: XCTestCase {
    /// A child that writes more to stderr than a pipe holds (64 KiB) before it writes to
    /// stdout must not deadlock: both outputs are read concurrently and returned whole.
    func testRunReadsBothOutputsWithoutDeadlock() throws {
        let r = try Machine.run("sh", ["-c", "head -c 300000 /dev/zero | tr '\\0' e >&2; echo out; exit 3"])
        XCTAssertEqual(r.status, 3)
        XCTAssertEqual(r.stdout, "out\n")
        XCTAssertEqual(r.stderr.count, 300000)
        XCTAssertTrue(r.stderr.allSatisfy { $0 == "e" })
    }

    func testRunInDirectoryAndFirstLine() throws {
        let dir = FileManager.default.temporaryDirectory.path
        let r = try Machine.run("pwd", [], in: dir)
        XCTAssertEqual(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines),
                       URL(fileURLWithPath: dir).resolvingSymlinksInPath().path)
        XCTAssertEqual(Machine.firstLine(of: "printf", ["a\\nb\\n"]), "a")
        XCTAssertNil(Machine.firstLine(of: "false", []))
        XCTAssertNil(Machine.firstLine(of: "bmlab-no-such-program", []))
    }

    /// /proc/self/status pads a number with spaces after the tab, but not a wide one: both
    /// parse (the resident memory of a 6 GB process read as 0 before).
    func testStatusLines() {
        XCTAssertEqual(Machine.statusLineBytes("VmRSS:\t    1924 kB"), 1924 * 1024)
        XCTAssertEqual(Machine.statusLineBytes("VmRSS:\t11998532 kB"), 11_998_532 * 1024)
        XCTAssertGreaterThan(Machine.currentResidentBytes, 1 << 20)
    }
}
