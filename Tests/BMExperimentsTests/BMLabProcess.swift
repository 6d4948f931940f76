import XCTest
import BMTestSupport
import Foundation

/// The bmlab binary built beside the test bundle (`swift build --build-tests` builds
/// both), and ways to run it, for the tests that go through the command line.
enum BMLabProcess {
    static var path: String {
        let exe = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        var dir = exe.deletingLastPathComponent()
        if dir.lastPathComponent.hasSuffix(".xctest") { dir = dir.deletingLastPathComponent() }
        return dir.appendingPathComponent("bmlab").path
    }

    static var exists: Bool { FileManager.default.isExecutableFile(atPath: path) }

    /// Skips the test (fails it under `make test`) when the binary was not built beside
    /// the tests (`swift build --build-tests` builds it).
    static func require() throws {
        try Needs.require(exists, "no bmlab binary at \(path) (swift build --build-tests builds it)")
    }

    /// Waits for `condition`, looking every 20 ms. The test waits for an event (a file,
    /// a line in a log, a process gone), never for an amount of time; `timeout` only keeps
    /// a hang from stalling the suite, so it is generous (a 2-core machine running
    /// something else is slow), and running into it fails the test naming the event.
    @discardableResult
    static func wait(for event: String, timeout: Double = 600, file: StaticString = #filePath, line: UInt = #line,
                     _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while !condition() {
            if Date() >= deadline {
                XCTFail("waited \(Int(timeout)) s for \(event)", file: file, line: line)
                return false
            }
            usleep(20_000)
        }
        return true
    }

    /// Starts bmlab; its output goes to `log` (both streams) or nowhere.
    static func launch(_ args: [String], log: String? = nil, environment: [String: String] = [:], in dir: String? = nil) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = args
        if !environment.isEmpty { p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        if let dir { p.currentDirectoryURL = URL(fileURLWithPath: dir) }
        if let log {
            FileManager.default.createFile(atPath: log, contents: nil)
            let fh = FileHandle(forWritingAtPath: log)!
            p.standardOutput = fh; p.standardError = fh
        } else {
            p.standardOutput = FileHandle.nullDevice; p.standardError = FileHandle.nullDevice
        }
        try p.run()
        return p
    }

    /// Runs bmlab to completion; returns stdout and stderr and the exit status
    /// (a signal shows as the status of an uncaught signal, never as 0 or 2).
    static func run(_ args: [String], environment: [String: String] = [:], in dir: String? = nil) throws -> (out: String, err: String, status: Int32, signaled: Bool) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = args
        if !environment.isEmpty { p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        if let dir { p.currentDirectoryURL = URL(fileURLWithPath: dir) }
        let o = Pipe(), e = Pipe()
        p.standardOutput = o; p.standardError = e
        try p.run()
        let errData = DataBox()
        let done = DispatchSemaphore(value: 0)
        DispatchQueue.global().async { errData.data = e.fileHandleForReading.readDataToEndOfFile(); done.signal() }
        let outData = o.fileHandleForReading.readDataToEndOfFile()
        done.wait()
        p.waitUntilExit()
        return (String(decoding: outData, as: UTF8.self), String(decoding: errData.data, as: UTF8.self),
                p.terminationStatus, p.terminationReason == .uncaughtSignal)
    }
}

/// Standard error's bytes, filled by the reading thread before it signals.
private final class DataBox: @unchecked Sendable { var data = Data() }
