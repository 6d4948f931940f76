import XCTest
import Foundation

/// The suite's one policy for what a test needs from outside the package: a program
/// (gnuplot, h5dump, the `bmlab` binary built beside the tests), a Python package (h5py) or
/// Debian's text packages. Under `swift test` a test whose need is missing is skipped and
/// says why; under `make test`, which installs them all first (`make deps`) and sets
/// `BMLAB_REQUIRE_TOOLS=1`, it fails instead, so a suite that passed there ran every test
/// that this CPU can run. What a CPU cannot do (an AVX-512 build on an AVX2 machine) or a
/// privilege the user may lack (mounting a tmpfs) is not a need: those tests skip everywhere.
public enum Needs {
    /// True under `make test`: a missing need fails the test.
    public static var required: Bool { ProcessInfo.processInfo.environment["BMLAB_REQUIRE_TOOLS"] == "1" }

    /// What a test throws for a need that `make test` requires.
    public struct Missing: Error, CustomStringConvertible {
        public let what: String
        public var description: String { "\(what): make test requires it (BMLAB_REQUIRE_TOOLS=1; make deps installs it)" }
    }

    /// Returns when `available`; otherwise skips the test with `what` as the reason, or
    /// fails it when `make test` requires it.
    public static func require(_ available: Bool, _ what: @autoclosure () -> String) throws {
        if available { return }
        if required { throw Missing(what: what()) }
        throw XCTSkip(what())
    }

    /// For a part of a test (one block of a document among many): false when the need is
    /// missing, after printing why it is left out — or recording a failure under `make test`.
    public static func check(_ available: Bool, _ what: @autoclosure () -> String, file: StaticString = #filePath, line: UInt = #line) -> Bool {
        if available { return true }
        if required { XCTFail(Missing(what: what()).description, file: file, line: line) } else { print("skipped: \(what())") }
        return false
    }

    /// The absolute path of `name` on PATH, or nil.
    public static func which(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for dir in path.split(separator: ":") where FileManager.default.isExecutableFile(atPath: "\(dir)/\(name)") {
            return "\(dir)/\(name)"
        }
        return nil
    }

    /// Whether `python3` on PATH imports h5py.
    public static var h5py: Bool {
        guard let python = which("python3") else { return false }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: python)
        p.arguments = ["-c", "import h5py"]
        p.standardOutput = FileHandle.nullDevice; p.standardError = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return false }
        p.waitUntilExit()
        return p.terminationStatus == 0
    }
}
