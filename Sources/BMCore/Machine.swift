import Foundation

/// Facts about this machine and its tools, for `bmlab doctor` and run metadata.
public enum Machine {
    /// Runs a program and returns its first output line, or nil if it is missing.
    public static func firstLine(of program: String, _ args: [String]) -> String? {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = [program] + args
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        do { try p.run() } catch { return nil }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { return nil }
        return String(decoding: data, as: UTF8.self).split(separator: "\n").first.map(String.init)
    }

    public static var gnuplotVersion: String? {
        firstLine(of: "gnuplot", ["--version"]).map { $0.replacingOccurrences(of: "gnuplot ", with: "") }
    }

    public static var cpuModel: String {
        guard let s = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return "unknown" }
        for line in s.split(separator: "\n") where line.hasPrefix("model name") {
            return line.split(separator: ":", maxSplits: 1).last.map { $0.trimmingCharacters(in: .whitespaces) } ?? "unknown"
        }
        return "unknown"
    }

    /// Current resident set size of this process in bytes (VmRSS).
    public static var currentResidentBytes: Int { statusBytes("VmRSS:") }

    /// Peak resident set size of this process in bytes (VmHWM).
    public static var peakResidentBytes: Int { statusBytes("VmHWM:") }

    /// A "Field:   N kB" line of /proc/self/status, in bytes (0 when unknown).
    static func statusBytes(_ field: String) -> Int {
        guard let s = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
        for line in s.split(separator: "\n") where line.hasPrefix(field) {
            return (line.split(separator: " ").compactMap { Int($0) }.first ?? 0) * 1024
        }
        return 0
    }
}

extension Duration {
    /// The duration in seconds.
    public var seconds: Double { Double(components.seconds) + Double(components.attoseconds) * 1e-18 }
}

/// Seconds of a closure, best of `repeats`.
public func bestTime(repeats: Int, _ body: () -> Void) -> Double {
    var best = Double.infinity
    for _ in 0..<repeats {
        let t0 = ContinuousClock.now
        body()
        let d = ContinuousClock.now - t0
        best = min(best, d.seconds)
    }
    return best
}
