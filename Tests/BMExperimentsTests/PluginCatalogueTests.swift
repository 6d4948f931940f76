import XCTest
import Foundation
@testable import BMMixers
@testable import BMRouting

/// docs/plugins.md's catalogue is the registries': its mixer table lists exactly
/// `MixerRegistry`'s names and its router table exactly `RouterRegistry`'s, and every
/// file and example it names exists — so a plugin cannot be added without its row.
final class PluginCatalogueTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    /// The first-column names of the table under `heading` (rows `| \`name\` | … |`).
    private func table(_ doc: String, under heading: String) throws -> [[String]] {
        let section = try XCTUnwrap(doc.components(separatedBy: "\n## ").first { $0.hasPrefix(heading) }, "no section '\(heading)'")
        return section.split(separator: "\n").filter { $0.hasPrefix("| `") }.map { line in
            line.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
        }
    }

    func testCatalogueIsTheRegistries() throws {
        let doc = try String(contentsOfFile: Self.root + "/docs/plugins.md", encoding: .utf8)
        let unquote = { (s: String) in s.trimmingCharacters(in: CharacterSet(charactersIn: "`")) }
        let mixers = try table(doc, under: "Mixers"), routers = try table(doc, under: "Routers")
        XCTAssertEqual(mixers.map { unquote($0[0]) }, MixerRegistry.names, "docs/plugins.md's mixer table")
        XCTAssertEqual(routers.map { unquote($0[0]) }, RouterRegistry.names, "docs/plugins.md's router table")
        // files (first `…` of the file column, under its plugin folder) and examples exist
        let fm = FileManager.default
        for (rows, folder) in [(mixers, "Sources/BMMixers/"), (routers, "Sources/BMRouting/")] {
            for row in rows {
                let file = try XCTUnwrap(row[1].split(separator: "`").first.map(String.init))
                XCTAssertTrue(fm.fileExists(atPath: Self.root + "/" + folder + file), "\(row[0]): \(folder + file)")
                let example = unquote(row[4])
                XCTAssertTrue(fm.fileExists(atPath: Self.root + "/" + example), "\(row[0]): \(example)")
            }
        }
    }
}
