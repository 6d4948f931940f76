import Foundation
import BMCore
import BMSpec

/// Byte-level text corpora from Debian packages, and the rule that splits every
/// source file into training, validation and test data (docs/data.md).
///
/// `fortunes`: every English fortune file (Debian's `fortunes`, 2.8 MB).
/// `english`:  the fortunes, the King James Bible as the `bible` program of
///             `bible-kjv` prints it (verse references removed, 4.3 MB) and the
///             Collaborative International Dictionary of English (`dict-gcide`,
///             decompressed, 40 MB): 47 MB of English text.
public enum Corpus {
    public typealias Name = CorpusName

    public static let fortunesDir = "/usr/share/games/fortunes"
    public static let gcidePath = "/usr/share/dictd/gcide.dict.dz"
    public static let bibleProgram = "/usr/bin/bible"
    /// Every verse, Genesis 1:1 to Revelation 22:21, as `bible -f` takes it.
    static let bibleRange = "Gen1:1-Rev22:21"

    /// One source file of a corpus: a name (its path) and its bytes, or tokens.
    public struct Source {
        public var name: String
        public var tokens: [UInt16]
    }

    /// The three parts of a corpus, each the concatenation of its blocks in source order.
    public struct Split {
        public var train: [UInt16] = [], validation: [UInt16] = [], test: [UInt16] = []
        /// Per source: (name, total, validation, test) token counts.
        public var perSource: [(name: String, total: Int, validation: Int, test: Int)] = []
    }

    // MARK: the split rule

    /// Blocks of min(8192, max(64, ⌊n/400⌋)) tokens (the last one shorter): a file of
    /// 26 KB to 3.3 MB has 400 blocks, so each part's share of it is within half a
    /// percent of the fraction asked for; a 2 KB fortune file still has 32 blocks.
    public static func blockSize(_ n: Int) -> Int { min(8192, max(64, n / 400)) }

    /// Block b (0-based) of every source goes to validation when u_b < val_fraction and
    /// to test when u_b ≥ 1 − test_fraction, with u_b = frac((b + 1) · φ⁻¹), φ⁻¹ =
    /// 0.618…: the golden-ratio sequence, which spreads each split evenly along every
    /// file: among the first n blocks of a file, validation holds n · val_fraction
    /// blocks within ±2.5 (checked for n ≤ 5,000 and fractions 0.05 and 0.1 by a test),
    /// and every 40 consecutive blocks hold 1–3 validation blocks at 0.05.
    public static func part(ofBlock b: Int, validation: Double, test: Double) -> Int {
        let u = (Double(b + 1) * 0.6180339887498949).truncatingRemainder(dividingBy: 1)
        if u < validation { return 1 }
        if u >= 1 - test { return 2 }
        return 0
    }

    /// Splits every source by the rule above; the parts keep source order.
    public static func split(_ sources: [Source], validation: Double, test: Double) -> Split {
        var s = Split()
        let total = sources.reduce(0) { $0 + $1.tokens.count }
        s.train.reserveCapacity(total); s.validation.reserveCapacity(Int(Double(total) * validation) + 8192)
        s.test.reserveCapacity(Int(Double(total) * test) + 8192)
        for src in sources {
            let n = src.tokens.count, size = blockSize(n)
            var v = 0, t = 0, start = 0, b = 0
            while start < n {
                let end = min(n, start + size)
                let chunk = src.tokens[start..<end]
                switch part(ofBlock: b, validation: validation, test: test) {
                case 1: s.validation.append(contentsOf: chunk); v += chunk.count
                case 2: s.test.append(contentsOf: chunk); t += chunk.count
                default: s.train.append(contentsOf: chunk)
                }
                start = end; b += 1
            }
            s.perSource.append((src.name, n, v, t))
        }
        return s
    }

    // MARK: reading

    /// The source files of a named corpus, read as bytes. `file` names the spec in errors.
    public static func sources(_ name: Name, file: String) throws -> [Source] {
        let fortunes = try fortuneSources(file: file)
        switch name {
        case .fortunes: return fortunes
        case .english:
            var missing: [String] = []
            if !FileManager.default.isExecutableFile(atPath: bibleProgram) { missing.append("bible-kjv (\(bibleProgram))") }
            if !FileManager.default.fileExists(atPath: gcidePath) { missing.append("dict-gcide (\(gcidePath))") }
            guard missing.isEmpty else {
                throw BMError.invalid("\(file): data.corpus english needs Debian's \(missing.joined(separator: " and ")); `make deps` installs them")
            }
            let bible = try run(bibleProgram, ["-f", bibleRange], file: file)
            let gcide = try run("/bin/gzip", ["-dc", gcidePath], file: file)
            return fortunes + [Source(name: "bible-kjv", tokens: stripVerseReferences(bible)),
                               Source(name: gcidePath, tokens: gcide.map(UInt16.init))]
        }
    }

    static func fortuneSources(file: String) throws -> [Source] {
        let files = Dataset.corpusFiles(fortunesDir)
        guard !files.isEmpty else {
            throw BMError.invalid("\(file): data: the fortunes corpus (\(fortunesDir)) is missing; install Debian's fortunes package (make deps) or set data.path")
        }
        return try files.map { f in
            guard let d = FileManager.default.contents(atPath: f) else { throw BMError.invalid("\(file): data.corpus: cannot read \(f)") }
            return Source(name: f, tokens: d.map(UInt16.init))
        }
    }

    /// `bible -f` prints one verse a line as "Ge1:1 In the beginning …": the reference
    /// (up to the first space) is dropped, the text kept.
    static func stripVerseReferences(_ d: Data) -> [UInt16] {
        var out: [UInt16] = []
        out.reserveCapacity(d.count)
        var atLineStart = true, skipping = false
        for c in d {
            if atLineStart { skipping = true; atLineStart = false }
            if skipping {
                if c == 0x20 { skipping = false } else if c == 0x0A { atLineStart = true; out.append(10) }
                continue
            }
            out.append(UInt16(c))
            if c == 0x0A { atLineStart = true }
        }
        return out
    }

    /// A program's whole standard output; an error naming the program when it fails.
    static func run(_ program: String, _ args: [String], file: String) throws -> Data {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: program)
        p.arguments = args
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        do { try p.run() } catch {
            throw BMError.invalid("\(file): data.corpus: cannot run \(program): \(error.localizedDescription)")
        }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0, !data.isEmpty else {
            throw BMError.invalid("\(file): data.corpus: \(program) \(args.joined(separator: " ")) failed (exit \(p.terminationStatus))")
        }
        return data
    }
}
