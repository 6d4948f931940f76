import Foundation
import XCTest
import BMStorage

/// libhdf5 keeps its "print errors automatically" switch per thread; the
/// wrapper must silence it on every thread it is used from.
final class ThreadTests: H5TestCase {

    /// Runs `body` with the process's stderr redirected to a file; returns what was written.
    private func capturingStderr(_ body: () -> Void) throws -> String {
        let capture = path("stderr.txt")
        let fd = open(capture, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        XCTAssertGreaterThanOrEqual(fd, 0)
        fflush(nil)
        let saved = dup(2)
        dup2(fd, 2)
        body()
        fflush(nil)
        dup2(saved, 2)
        close(saved)
        close(fd)
        return try String(contentsOfFile: capture, encoding: .utf8)
    }

    func testErrorsOnOtherThreadsAreReportedNotPrinted() throws {
        let missing = path("missing.h5")
        let messages = LockedStrings()
        let dir = directory
        let printed = try capturingStderr {
            let done = DispatchSemaphore(value: 0)
            for i in 0..<3 {
                Thread {
                    defer { done.signal() }
                    do {
                        _ = try H5File(path: missing, mode: .readOnly)
                    } catch {
                        messages.append("\(error)")
                    }
                    // Objects may also be used from another thread.
                    do {
                        let f = try H5File(path: dir + "/t\(i).h5", mode: .create)
                        try f.write("w", floats: [Float(i)], shape: [1])
                        _ = try? f.dataset("nope")
                        messages.append("ok \(try f.dataset("w").readFloats())")
                    } catch {
                        messages.append("unexpected \(error)")
                    }
                }.start()
            }
            for _ in 0..<3 { done.wait() }
        }
        XCTAssertEqual(printed, "")
        let all = messages.values.sorted()
        XCTAssertEqual(all.count, 6, "\(all)")
        XCTAssertEqual(all.filter { $0.hasPrefix("ok") }.sorted(), ["ok [0.0]", "ok [1.0]", "ok [2.0]"])
        for m in all where !m.hasPrefix("ok") {
            XCTAssertTrue(m.contains(missing) && m.contains("No such file or directory"), m)
        }
    }
}

final class LockedStrings: @unchecked Sendable {
    private let lock = NSLock()
    private var list: [String] = []
    func append(_ s: String) { lock.lock(); list.append(s); lock.unlock() }
    var values: [String] { lock.lock(); defer { lock.unlock() }; return list }
}
