import Foundation
import BMCore

/// A notebook is a markdown file whose ```bmlab fenced blocks are commands.
/// `run` executes the blocks in order (each line one bmlab command; `#` lines
/// are comments) and writes each block's output right below it, between
/// `<!-- bmlab:output -->` and `<!-- /bmlab:output -->`, replacing what was
/// there. Figures named in the output (.png/.svg paths that exist, in the
/// notebook's folder or below) become image links relative to the notebook. The notebook is both the record and
/// the way to regenerate it. A block whose command fails keeps its previous output (the
/// record is not replaced by an error; the failure is counted and named in `failed`), and
/// `only` runs some blocks, leaving the others' outputs as they are: a study that spans
/// sittings regenerates the steps whose results are on this machine.
public struct Notebook {
    public static let open = "<!-- bmlab:output -->", close = "<!-- /bmlab:output -->"

    public struct Outcome {
        public var text: String; public var blocks: Int; public var failures: Int
        /// One line per failed command: its block (1-based), the command and its exit status.
        public var failed: [String] = []
    }

    /// The number of ```bmlab blocks in a notebook's text, counted as `run` numbers them
    /// (a block's commands and output regions are not searched for more).
    public static func blockCount(_ text: String) -> Int {
        let lines = text.components(separatedBy: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
        var i = 0, n = 0
        while i < lines.count {
            let t = lines[i]
            i += 1
            if t == open {                                   // an output region: skipped whole
                while i < lines.count, lines[i] != close { i += 1 }
                i += 1
            } else if t == "```bmlab" {
                n += 1
                while i < lines.count, lines[i] != "```" { i += 1 }
                i += 1
            }
        }
        return n
    }

    /// Runs the notebook text; `execute(args)` runs one command (in `workingDir`, the
    /// notebook's project) and returns (output, exit status). Figure paths in the
    /// output are relative to `workingDir`. `name` (the file) is named in errors.
    public static func run(_ text: String, name: String = "notebook", notebookDir: String, workingDir: String = ".", only: Set<Int>? = nil,
                           execute: ([String]) -> (String, Int32)) throws -> Outcome {
        let lines = text.components(separatedBy: "\n")
        if let only {
            let count = blockCount(text)
            if let bad = only.sorted().first(where: { $0 < 1 || $0 > count }) {
                throw BMError.invalid("\(name): --blocks \(bad): no such block (the notebook has \(count) ```bmlab blocks, numbered 1 to \(count))")
            }
        }
        var out: [String] = [], failed: [String] = []
        var i = 0, blocks = 0, failures = 0, index = 0
        while i < lines.count {
            let line = lines[i]
            out.append(line)
            i += 1
            guard line.trimmingCharacters(in: .whitespaces) == "```bmlab" else { continue }
            // the block's commands
            var commands: [String] = []
            while i < lines.count, lines[i].trimmingCharacters(in: .whitespaces) != "```" {
                commands.append(lines[i]); out.append(lines[i]); i += 1
            }
            guard i < lines.count else { throw BMError.invalid("notebook: a ```bmlab block is not closed") }
            out.append(lines[i]); i += 1
            index += 1
            // the previous output region (optionally after blank lines)
            var previous: [String]? = nil
            var j = i
            while j < lines.count, lines[j].trimmingCharacters(in: .whitespaces).isEmpty { j += 1 }
            if j < lines.count, lines[j].trimmingCharacters(in: .whitespaces) == open {
                guard let end = lines[j...].firstIndex(where: { $0.trimmingCharacters(in: .whitespaces) == close }) else {
                    throw BMError.invalid("notebook: an output region opened at line \(j + 1) is not closed with \(close)")
                }
                previous = Array(lines[i...end])
                i = end + 1
            }
            if let only, !only.contains(index) { out += previous ?? []; continue }
            blocks += 1
            var text = "", images: [String] = [], blockFailed = false
            for c in commands {
                let trimmed = c.trimmingCharacters(in: .whitespaces)
                if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
                var args = try split(trimmed)
                if args.first == "bmlab" { args.removeFirst() }
                let (o, status) = execute(args)
                text += o
                if status != 0 {
                    text += "[exit status \(status)]\n"; failures += 1; blockFailed = true
                    failed.append("block \(index): bmlab \(args.joined(separator: " ")): exit status \(status)")
                }
                images += figurePaths(in: o, relativeTo: workingDir)
            }
            // a failed block keeps the output it had (if any): the record is not lost to an error
            if blockFailed, let previous { out += previous; continue }
            out.append(open)
            out.append("```text")
            out.append(contentsOf: text.trimmingCharacters(in: .newlines).components(separatedBy: "\n"))
            out.append("```")
            // Only figures beside the notebook are linked: they are committed with it
            // (results/ is not), so the links resolve wherever the notebook is read.
            for p in images where !relative(p, to: notebookDir).hasPrefix("../") {
                let rel = relative(p, to: notebookDir)
                out.append("![\(((p as NSString).lastPathComponent as NSString).deletingPathExtension)](\(rel))")
            }
            out.append(close)
        }
        return Outcome(text: out.joined(separator: "\n"), blocks: blocks, failures: failures, failed: failed)
    }

    /// Notebooks run `bmlab` commands, which may run notebooks: the chain of notebooks
    /// being run reaches each child in `BMLAB_NOTEBOOK_CHAIN` (absolute paths, one a
    /// line). A notebook already in the chain would run itself forever, and is refused
    /// naming the cycle; so is a chain deeper than `maxDepth`.
    public static let maxDepth = 4

    /// Checks that `notebook` may run under the chain in `environment`; returns the
    /// chain its commands run under (this notebook appended).
    public static func enter(_ notebook: String, environment: [String: String]) throws -> [String] {
        let path = URL(fileURLWithPath: notebook).standardizedFileURL.resolvingSymlinksInPath().path
        let chain = (environment["BMLAB_NOTEBOOK_CHAIN"] ?? "").split(separator: "\n").map(String.init)
        if chain.contains(path) {
            let cycle = (chain.drop { $0 != path } + [path]).map { ($0 as NSString).lastPathComponent }
            throw BMError.invalid("\(notebook): the notebook would run itself (\(cycle.joined(separator: " → "))); remove the bmlab notebook block that closes the cycle")
        }
        if chain.count >= maxDepth {
            throw BMError.invalid("\(notebook): notebooks nested \(chain.count + 1) deep (\(chain.map { ($0 as NSString).lastPathComponent }.joined(separator: " → ")) → \((path as NSString).lastPathComponent)); at most \(maxDepth) may run inside each other")
        }
        return chain + [path]
    }

    /// The project a notebook belongs to: the nearest folder at or above the
    /// notebook's that holds `Experiments/` (a BlackMambaLab project), else the
    /// notebook's own folder. Its commands run there, whatever the caller's working
    /// directory, so a notebook writes into its own project's `results/` and figures
    /// (a copy elsewhere never overwrites the original's).
    public static func projectRoot(for notebook: String) -> String {
        let dir = URL(fileURLWithPath: notebook).standardizedFileURL.deletingLastPathComponent()
        var d = dir
        while true {
            var isDir: ObjCBool = false
            if FileManager.default.fileExists(atPath: d.appendingPathComponent("Experiments").path, isDirectory: &isDir), isDir.boolValue {
                return d.path
            }
            let up = d.deletingLastPathComponent()
            if up.path == d.path { return dir.path }
            d = up
        }
    }

    /// Shell-like word splitting with single and double quotes.
    public static func split(_ s: String) throws -> [String] {
        var words: [String] = [], cur = "", quote: Character? = nil, has = false
        for ch in s {
            if let q = quote {
                if ch == q { quote = nil } else { cur.append(ch) }
            } else if ch == "'" || ch == "\"" { quote = ch; has = true }
            else if ch == " " || ch == "\t" { if has || !cur.isEmpty { words.append(cur); cur = ""; has = false } }
            else { cur.append(ch); has = true }
        }
        if quote != nil { throw BMError.invalid("notebook: unclosed quote in: \(s)") }
        if has || !cur.isEmpty { words.append(cur) }
        return words
    }

    static func figurePaths(in output: String, relativeTo base: String = ".") -> [String] {
        var found: [String] = []
        for word in output.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" }) {
            var w = String(word).trimmingCharacters(in: CharacterSet(charactersIn: "\"',()"))
            if !w.hasPrefix("/") && base != "." { w = (base as NSString).appendingPathComponent(w) }
            if (w.hasSuffix(".png") || w.hasSuffix(".svg")) && FileManager.default.fileExists(atPath: w) && !found.contains(w) { found.append(w) }
        }
        return found
    }

    /// `path` relative to `dir` (both relative to the current directory or absolute).
    public static func relative(_ path: String, to dir: String) -> String {
        let a = URL(fileURLWithPath: path).standardizedFileURL.pathComponents
        let b = URL(fileURLWithPath: dir).standardizedFileURL.pathComponents
        var k = 0
        while k < min(a.count, b.count), a[k] == b[k] { k += 1 }
        return (Array(repeating: "..", count: b.count - k) + a[k...]).joined(separator: "/")
    }
}
