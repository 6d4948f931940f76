import XCTest
import BMTestSupport
import Foundation

/// Documentation that runs: every code block of README.md and docs/*.md preceded by a
/// `<!-- runnable: ... -->` comment is run by this test, so the docs cannot drift
/// from the program. The directives:
///
/// - `<!-- runnable: validate [as PATH] -->` before a YAML block: the block is written
///   to PATH (default `doc-example.yaml`) in a scratch copy of the project's
///   `Experiments/` and must pass `bmlab validate`.
/// - `<!-- runnable: sh -->` before a shell block: the block runs with bash (`-e`, so
///   every line must succeed) in that scratch folder, with the built `bmlab` first on
///   PATH. To keep the suite short, a `train.steps=N` in it runs at most 8 steps.
/// - `<!-- runnable: keys of CMD -->` before a block of `key: value` lines (a sample
///   output): CMD is run and must print the same keys in the same order (the values
///   are the machine's).
final class RunnableDocsTests: XCTestCase {
    struct Block { var file: String; var line: Int; var directive: String; var text: String }

    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    /// The marked blocks of README.md and docs/*.md.
    static func blocks() throws -> [Block] {
        let docs = try FileManager.default.contentsOfDirectory(atPath: root + "/docs").filter { $0.hasSuffix(".md") }.sorted().map { "docs/" + $0 }
        var out: [Block] = []
        for rel in ["README.md"] + docs {
            let lines = try String(contentsOfFile: root + "/" + rel, encoding: .utf8).components(separatedBy: "\n")
            var i = 0
            while i < lines.count {
                let l = lines[i].trimmingCharacters(in: .whitespaces)
                if l.hasPrefix("<!-- runnable:"), l.hasSuffix("-->") {
                    let directive = l.dropFirst("<!-- runnable:".count).dropLast(3).trimmingCharacters(in: .whitespaces)
                    var j = i + 1
                    while j < lines.count, lines[j].trimmingCharacters(in: .whitespaces).isEmpty { j += 1 }
                    guard j < lines.count, lines[j].hasPrefix("```") else {
                        XCTFail("\(rel):\(i + 1): a runnable marker not followed by a code block"); i += 1; continue
                    }
                    var k = j + 1, body: [String] = []
                    while k < lines.count, !lines[k].hasPrefix("```") { body.append(lines[k]); k += 1 }
                    out.append(Block(file: rel, line: j + 1, directive: directive, text: body.joined(separator: "\n") + "\n"))
                    i = k
                }
                i += 1
            }
        }
        return out
    }

    /// A scratch folder holding a copy of Experiments/ and empty results/, notebooks-md/.
    func scratch() throws -> String {
        let dir = try tempDir(self)
        try FileManager.default.copyItem(atPath: Self.root + "/Experiments", toPath: dir + "/Experiments")
        for d in ["results", "notebooks-md"] { try FileManager.default.createDirectory(atPath: dir + "/" + d, withIntermediateDirectories: true) }
        return dir
    }

    /// Runs `script` with bash in `dir`; killed after `timeout` seconds (a hung block
    /// fails the test instead of stalling the suite).
    func shell(_ script: String, in dir: String, timeout: Double = 600) throws -> (status: Int32, output: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/bash")
        p.arguments = ["-e", "-o", "pipefail", "-c", script]
        p.currentDirectoryURL = URL(fileURLWithPath: dir)
        var env = ProcessInfo.processInfo.environment
        env["PATH"] = (BMLabProcess.path as NSString).deletingLastPathComponent + ":" + (env["PATH"] ?? "/usr/bin:/bin")
        p.environment = env
        let out = Pipe()
        p.standardOutput = out; p.standardError = out
        try p.run()
        let pid = p.processIdentifier
        let watchdog = DispatchWorkItem { kill(pid, SIGKILL) }
        DispatchQueue.global().asyncAfter(deadline: .now() + timeout, execute: watchdog)
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        watchdog.cancel()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    static func keys(_ text: String) -> [String] {
        text.split(separator: "\n").compactMap { l in l.firstIndex(of: ":").map { String(l[..<$0]) } }
    }

    /// docs/architecture.md's module graph is Package.swift's: each library and the
    /// executable listed with exactly the targets it depends on (`bmlab` with every
    /// library), and no module listed that the package does not have.
    func testModuleGraphIsPackageSwift() throws {
        let package = try String(contentsOfFile: Self.root + "/Package.swift", encoding: .utf8)
        var declared: [String: Set<String>] = [:]
        let target = try NSRegularExpression(pattern: #"\.(target|executableTarget)\(name: "(\w+)",\s*dependencies: \[(.*?)\]"#, options: [.dotMatchesLineSeparators])
        let quoted = try NSRegularExpression(pattern: #""(\w+)""#)
        func strings(_ s: String) -> [String] {
            quoted.matches(in: s, range: NSRange(s.startIndex..., in: s)).map { String(s[Range($0.range(at: 1), in: s)!]) }
        }
        for m in target.matches(in: package, range: NSRange(package.startIndex..., in: package)) {
            let name = String(package[Range(m.range(at: 2), in: package)!])
            // a product's name and its package both appear quoted: keep the product, drop the package
            let deps = package[Range(m.range(at: 3), in: package)!]
                .replacingOccurrences(of: #", package: "[^"]*""#, with: "", options: .regularExpression)
            if name != "BMTestSupport" { declared[name] = Set(strings(deps)) }
        }
        XCTAssertGreaterThan(declared.count, 10, "Package.swift's targets were not found")
        let doc = try String(contentsOfFile: Self.root + "/docs/architecture.md", encoding: .utf8)
        let section = try XCTUnwrap(doc.components(separatedBy: "## Modules").dropFirst().first)
        let block = try XCTUnwrap(section.components(separatedBy: "```").dropFirst().first)
        var documented: [String: Set<String>] = [:]
        for line in block.split(separator: "\n") where line.contains("→") {
            let parts = line.components(separatedBy: "→")
            let name = parts[0].trimmingCharacters(in: .whitespaces)
            let deps = parts[1].replacingOccurrences(of: #"\([^)]*\)"#, with: "", options: .regularExpression)
            documented[name] = Set(deps.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
        }
        let libraries = Set(declared.keys.filter { $0.hasPrefix("BM") })
        XCTAssertEqual(documented["bmlab"], ["every library below"])
        XCTAssertEqual(declared["bmlab"].map { $0.subtracting(["ArgumentParser"]) }, libraries, "bmlab depends on every library")
        for (name, deps) in declared where name != "bmlab" {
            XCTAssertEqual(documented[name], deps, "docs/architecture.md: \(name)'s dependencies")
        }
        XCTAssertEqual(Set(documented.keys), Set(declared.keys), "docs/architecture.md lists the package's modules")
    }

    func testEveryRunnableBlockOfTheDocsRuns() throws {
        try BMLabProcess.require()
        let blocks = try Self.blocks()
        // the docs mark at least these: the spec and sweep examples, the README's run, doctor's sample
        XCTAssertGreaterThanOrEqual(blocks.count, 4, "runnable blocks found: \(blocks.map { "\($0.file):\($0.line)" })")
        for b in blocks {
            let here = "\(b.file):\(b.line) (\(b.directive))"
            let dir = try scratch()
            let words = b.directive.split(separator: " ").map(String.init)
            switch words.first {
            case "validate":
                let rel = words.count >= 3 && words[1] == "as" ? words[2] : "doc-example.yaml"
                let path = dir + "/" + rel
                try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
                try b.text.write(toFile: path, atomically: true, encoding: .utf8)
                let r = try BMLabProcess.run(["validate", rel], in: dir)
                XCTAssertEqual(r.status, 0, "\(here): bmlab validate: \(r.err)")
            case "sh":
                // a block that reads with h5py is left out where h5py is missing (not under make test)
                if b.text.contains("import h5py"), !Needs.check(Needs.h5py, "\(here): python3 with h5py is not available") { continue }
                let script = b.text.replacingOccurrences(of: #"train\.steps=\d+"#, with: "train.steps=8", options: .regularExpression)
                let r = try shell(script, in: dir)
                XCTAssertEqual(r.status, 0, "\(here):\n\(script)\n\(r.output)")
            case "keys" where words.count >= 3 && words[1] == "of" && words[2] == "bmlab":
                let r = try BMLabProcess.run(Array(words.dropFirst(3)), in: dir)
                XCTAssertEqual(r.status, 0, "\(here): \(r.err)")
                XCTAssertEqual(Self.keys(b.text), Self.keys(r.out), "\(here): the sample's keys differ from what the command prints")
            default:
                XCTFail("\(here): unknown runnable directive '\(b.directive)'")
            }
        }
    }
}
