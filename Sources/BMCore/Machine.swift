import Foundation
import CBLASShim

/// Facts about this machine and its tools, for `bmlab doctor` and run metadata.
public enum Machine {
    /// What a finished child process left: its exit status and both outputs.
    public struct ProcessResult: Sendable {
        public var status: Int32
        public var stdout: String
        public var stderr: String
    }

    /// Runs `program` (looked up on PATH) with `args`, in `dir` when given, and waits.
    /// stdout and stderr are read concurrently, so a child that fills one pipe while
    /// the other is being read cannot deadlock. Throws only when it cannot be started.
    public static func run(_ program: String, _ args: [String], in dir: String? = nil) throws -> ProcessResult {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = [program] + args
        if let dir { p.currentDirectoryURL = URL(fileURLWithPath: dir) }
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let errBox = DataBox()
        let done = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            errBox.data = err.fileHandleForReading.readDataToEndOfFile()
            done.signal()
        }
        let o = out.fileHandleForReading.readDataToEndOfFile()
        done.wait()
        p.waitUntilExit()
        return ProcessResult(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self),
                             stderr: String(decoding: errBox.data, as: UTF8.self))
    }

    /// The full path of `program` on PATH, or nil.
    public static func which(_ program: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for dir in path.split(separator: ":") {
            let candidate = "\(dir)/\(program)"
            if access(candidate, X_OK) == 0 { return candidate }
        }
        return nil
    }

    /// The first line a successful `program args` prints (stdout, else stderr); nil when
    /// it is missing or fails.
    public static func firstLine(of program: String, _ args: [String]) -> String? {
        guard let r = try? run(program, args), r.status == 0 else { return nil }
        let text = r.stdout.isEmpty ? r.stderr : r.stdout
        return text.split(separator: "\n").first.map(String.init)
    }

    public static var gnuplotVersion: String? {
        firstLine(of: "gnuplot", ["--version"]).map { $0.replacingOccurrences(of: "gnuplot ", with: "") }
    }

    public static var cpuModel: String { cpuinfo("model name") ?? "unknown" }

    /// "family F, model M" from /proc/cpuinfo: what tells CPUs with one model name apart
    /// (an AMD EPYC of family 23 is Zen 2, 25 model 1 Zen 3, 25 model 17 Zen 4).
    public static var cpuFamilyModel: String {
        guard let f = cpuinfo("cpu family"), let m = cpuinfo("model") else { return "unknown" }
        return "family \(f), model \(m)"
    }

    /// The value of `key` in /proc/cpuinfo (the first CPU's).
    static func cpuinfo(_ key: String) -> String? { firstCPU[key] }

    /// The first CPU's block of /proc/cpuinfo, read once (it does not change).
    private static let firstCPU: [String: String] = {
        guard let s = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return [:] }
        var fields: [String: String] = [:]
        for line in s.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.isEmpty && !fields.isEmpty { break }            // the end of the first CPU
            let kv = line.split(separator: ":", maxSplits: 1)
            if kv.count == 2 { fields[kv[0].trimmingCharacters(in: .whitespaces)] = kv[1].trimmingCharacters(in: .whitespaces) }
        }
        return fields
    }()

    /// Current resident set size of this process in bytes (VmRSS).
    public static var currentResidentBytes: Int { statusBytes("VmRSS:") }

    /// Peak resident set size of this process in bytes (VmHWM).
    public static var peakResidentBytes: Int { statusBytes("VmHWM:") }

    /// Resets the peak (VmHWM) to the current resident size, so that one process can
    /// measure the peaks of several runs (Linux ≥ 4.0: `5` into /proc/self/clear_refs).
    /// False where that is not possible.
    @discardableResult
    public static func resetPeakResident() -> Bool {
        guard let h = FileHandle(forWritingAtPath: "/proc/self/clear_refs") else { return false }
        defer { try? h.close() }
        return (try? h.write(contentsOf: Data("5".utf8))) != nil
    }

    /// A parent that runs worker processes (sweeps, notebooks) records SIGINT and SIGTERM
    /// instead of dying at once (`stopSignal`), so that it stops its workers first.
    public static func catchStopSignals() { bm_catch_stop_signals() }
    /// The SIGINT or SIGTERM received since `catchStopSignals`, or 0.
    public static var stopSignal: Int32 { Int32(bm_stop_signal()) }
    /// The environment of a worker: it names this process, its parent, so that the
    /// worker dies with it (`dieWithParentIfAsked`).
    public static var workerEnvironment: [String: String] {
        ProcessInfo.processInfo.environment.merging(["BMLAB_PARENT_PID": String(getpid())]) { $1 }
    }
    /// At start-up: a process started as a worker (BMLAB_PARENT_PID) gets SIGTERM when its
    /// parent dies, however the parent dies (PR_SET_PDEATHSIG), and ends at once if the
    /// parent is already gone. No worker outlives the command that started it.
    /// The variable is removed at once, so that a process this one starts (a benchmark's
    /// contenders, say) is not taken for a worker of the wrong parent.
    public static func dieWithParentIfAsked() {
        guard let v = getenv("BMLAB_PARENT_PID").map({ String(cString: $0) }) else { return }
        unsetenv("BMLAB_PARENT_PID")
        if let pid = Int32(v) { bm_die_with_parent(pid) }
    }

    /// Standard output line-buffered even into a file or a pipe (Slurm .out files,
    /// sweep logs, notebooks): each line is there as soon as it is printed.
    public static func lineBufferStandardOutput() { bm_stdout_line_buffered() }

    /// Memory this process can still take, in bytes: MemAvailable of /proc/meminfo,
    /// lowered to the cgroup's limit less its usage when a limit is set (containers,
    /// Slurm jobs). `BMLAB_MEMORY_LIMIT` (bytes) overrides both, for tests.
    public static var availableMemoryBytes: Int {
        if let v = ProcessInfo.processInfo.environment["BMLAB_MEMORY_LIMIT"], let n = Int(v) { return n }
        var avail = Int.max
        if let s = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8) {
            for line in s.split(separator: "\n") where line.hasPrefix("MemAvailable:") {
                avail = (line.split(separator: " ").compactMap { Int($0) }.first ?? 0) * 1024
            }
        }
        func read(_ p: String) -> Int? {
            (try? String(contentsOfFile: p, encoding: .utf8)).flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        }
        if let limit = read("/sys/fs/cgroup/memory.max"), let used = read("/sys/fs/cgroup/memory.current") {
            avail = min(avail, max(0, limit - used))
        }
        return avail == Int.max ? 0 : avail
    }

    /// A "Field:   N kB" line of /proc/self/status, in bytes (0 when unknown).
    static func statusBytes(_ field: String) -> Int {
        guard let s = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
        for line in s.split(separator: "\n") where line.hasPrefix(field) { return statusLineBytes(line) }
        return 0
    }

    /// The bytes of a /proc status line: "VmRSS:\t    1924 kB", or with a wide number
    /// "VmRSS:\t11998532 kB" (a tab, not a space, before it).
    static func statusLineBytes(_ line: Substring) -> Int {
        (line.split(whereSeparator: { $0 == " " || $0 == "\t" }).compactMap { Int($0) }.first ?? 0) * 1024
    }
}

extension Duration {
    /// The duration in seconds.
    public var seconds: Double { Double(components.seconds) + Double(components.attoseconds) * 1e-18 }
}

/// Seconds one run of `body` takes.
public func seconds(of body: () throws -> Void) rethrows -> Double {
    let t0 = ContinuousClock.now
    try body()
    return (ContinuousClock.now - t0).seconds
}

/// Seconds of a closure, best of `repeats`.
public func bestTime(repeats: Int, _ body: () -> Void) -> Double {
    var best = Double.infinity
    for _ in 0..<repeats { best = min(best, seconds(of: body)) }
    return best
}

/// The median of timings (the upper middle one for an even count).
/// The middle value (the mean of the two middle values for an even count).
public func median(_ xs: [Double]) -> Double {
    let s = xs.sorted(), n = s.count
    return n % 2 == 1 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2
}

/// The stderr bytes of `Machine.run`, filled by the reading thread before it signals.
private final class DataBox: @unchecked Sendable {
    var data = Data()
}
