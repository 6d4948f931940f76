import XCTest
import Foundation
@testable import BMCore

/// The interop tests' common set-up: OpenBLAS loaded, and a fresh scratch directory
/// `dir` per test, removed after it.
class InteropTestCase: XCTestCase {
    var dir = ""
    override func setUpWithError() throws {
        try BLAS.setup()
        dir = NSTemporaryDirectory() + "\(type(of: self))-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }
}
