import Foundation
import XCTest
@testable import BMStorage

/// Base class: every test gets a fresh temporary directory, removed afterwards.
class H5TestCase: XCTestCase {
    var directory = ""

    override func setUpWithError() throws {
        let base = FileManager.default.temporaryDirectory.path
        directory = base + "/bmstorage-tests-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: directory)
    }

    func path(_ name: String) -> String { directory + "/" + name }

    /// Runs `body`, expecting an HDF5Error; returns it.
    func expectHDF5Error(_ body: () throws -> Void, file: StaticString = #filePath, line: UInt = #line) -> HDF5Error? {
        do {
            try body()
            XCTFail("expected an HDF5Error", file: file, line: line)
            return nil
        } catch let error as HDF5Error {
            return error
        } catch {
            XCTFail("expected an HDF5Error, got \(error)", file: file, line: line)
            return nil
        }
    }
}

/// Result of a child process.
struct ProcessResult {
    var status: Int32
    var stdout: String
    var stderr: String
}

enum Tools {
    static func run(_ executable: String, _ arguments: [String]) throws -> ProcessResult {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        // Read stderr on another thread so neither pipe can fill up and block.
        let errData = LockedData()
        let errThread = Thread { errData.set(err.fileHandleForReading.readDataToEndOfFile()) }
        errThread.start()
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        while errData.get() == nil { usleep(1000) }
        return ProcessResult(status: process.terminationStatus,
                             stdout: String(decoding: outData, as: UTF8.self),
                             stderr: String(decoding: errData.get() ?? Data(), as: UTF8.self))
    }
}

final class LockedData: @unchecked Sendable {
    private let lock = NSLock()
    private var data: Data?
    func set(_ d: Data) { lock.lock(); data = d; lock.unlock() }
    func get() -> Data? { lock.lock(); defer { lock.unlock() }; return data }
}
