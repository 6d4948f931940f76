import Foundation
import BMCore
import BMDistributed
import BMStorage
import BMSpec
import BMExperiments

/// What a finished (or failed) run leaves in DIR/runs/NAME/result.json.
public struct RunResult: Codable, Sendable {
    public var index: Int
    public var name: String
    public var status: String                  // ok | failed
    public var error: String?
    public var steps: Int?
    public var trainLoss: Double?, valLoss: Double?, valMetric: Double?
    public var metricName: String?
    public var tokensPerSecond: Double?, seconds: Double?
    public var parametersTotal: Int?, parametersActive: Int?
    public var trainingFlops: Double?
    /// The run directory this run was copied from by `--adopt` (nil: it ran here).
    public var adoptedFrom: String?
}

/// Runs a sweep: one run in this process (`runOne`, what each worker process or
/// Slurm array task does), all runs with N worker processes (`runLocal`), and the
/// summary (`collect` → DIR/sweep.h5 and a table).
public struct SweepRunner {
    public let sweep: Sweep
    public let outDir: String
    public init(sweep: Sweep, outDir: String) { self.sweep = sweep; self.outDir = outDir }

    public func runDir(_ r: Sweep.Run) -> String { "\(outDir)/runs/\(r.name)" }
    func resultPath(_ r: Sweep.Run) -> String { "\(runDir(r))/result.json" }

    public func result(_ r: Sweep.Run) -> RunResult? {
        guard let d = FileManager.default.contents(atPath: resultPath(r)) else { return nil }
        return try? JSON.decoder().decode(RunResult.self, from: d)
    }

    /// Throws when run `r`'s directory holds a run made from a different spec (a
    /// rerun into the same --out with other overrides): its results would be stale.
    public func checkReusable(_ r: Sweep.Run) throws {
        let dir = runDir(r)
        guard let stored = try? String(contentsOfFile: "\(dir)/spec.yaml", encoding: .utf8) else { return }
        if let diff = try SpecDiff.firstDifference(stored: stored, now: r.spec) {
            throw BMError.invalid("\(dir) holds run \(r.index) of a different spec (\(diff)); " +
                                  "rerun with the same sweep file and overrides, or choose another --out")
        }
    }

    /// Finished runs of other sweeps' output directories that this sweep asks for too --
    /// the same resolved spec up to its name and description (SpecDiff.ignored) -- are
    /// copied in instead of being run again (`bmlab sweep FILE --adopt DIR`): a sweep split
    /// into halves that ran in different sittings or on different machines, sharing a
    /// baseline, reports as one sweep. The run's files are copied as they are (its
    /// metrics.h5 keeps the name it ran under); its result.json takes this sweep's index
    /// and run name and records where it came from. Only runs with no directory here are
    /// adopted: an unfinished attempt (perhaps still running) is never replaced.
    /// Returns one line per run adopted or left alone.
    public func adopt(from dirs: [String], only: Int? = nil) throws -> [String] {
        let fm = FileManager.default
        // each candidate's stored spec resolved once (not once per run of this sweep)
        var candidates: [(dir: String, leaves: [(String, String)])] = []
        for d in dirs {
            guard let names = try? fm.contentsOfDirectory(atPath: "\(d)/runs") else {
                throw BMError.invalid("--adopt \(d): not a sweep's output directory (no \(d)/runs/)")
            }
            for n in names.sorted() where !n.hasPrefix(".") {
                // the real directory (a symlinked one would be copied as the link, and its
                // result.json rewritten in the other sweep), named absolutely in adopted_from
                let rd = URL(fileURLWithPath: "\(d)/runs/\(n)").standardizedFileURL.resolvingSymlinksInPath().path
                var isDir: ObjCBool = false
                guard fm.fileExists(atPath: rd, isDirectory: &isDir), isDir.boolValue,
                      let data = fm.contents(atPath: "\(rd)/result.json"),
                      let res = try? JSON.decoder().decode(RunResult.self, from: data), res.status == "ok",
                      let spec = try? String(contentsOfFile: "\(rd)/spec.yaml", encoding: .utf8),
                      let leaves = SpecDiff.tree(spec) else { continue }
                candidates.append((rd, leaves))
            }
        }
        var lines: [String] = []
        for r in sweep.runs where (only == nil || r.index == only) && result(r)?.status != "ok" {
            let now = SpecDiff.flatten(try r.spec.resolvedNode())
            guard let c = candidates.first(where: { SpecDiff.firstDifference($0.leaves, now) == nil }) else { continue }
            let dir = runDir(r)
            if fm.fileExists(atPath: dir) {
                lines.append("[adopt] run \(r.index): not adopted from \(c.dir): \(dir) holds an unfinished attempt (remove it to adopt)")
                continue
            }
            // copied outside runs/ under a name of this process, then renamed into place: an
            // interrupted or failed copy is removed and never taken for a run, and two
            // processes adopting at once cannot install each other's half copies
            let staging = "\(outDir)/.adopting"
            let tmp = "\(staging)/\(getpid())-\(r.index)"
            try fm.createDirectory(atPath: staging, withIntermediateDirectories: true)
            try fm.createDirectory(atPath: "\(outDir)/runs", withIntermediateDirectories: true)
            try? fm.removeItem(atPath: tmp)
            defer { try? fm.removeItem(atPath: tmp); rmdir(staging) }   // rmdir: only when no other copy is in it
            try fm.copyItem(atPath: c.dir, toPath: tmp)
            guard let data = fm.contents(atPath: "\(tmp)/result.json"), var res = try? JSON.decoder().decode(RunResult.self, from: data) else {
                throw BMError.invalid("--adopt: \(c.dir)/result.json changed while it was copied")
            }
            // a run adopted again keeps the directory it ran in
            res.index = r.index; res.name = r.name; res.adoptedFrom = res.adoptedFrom ?? c.dir
            let out = try JSON.encoder(pretty: true).encode(res)
            try AtomicFile.write(to: "\(tmp)/result.json") { t in try out.write(to: URL(fileURLWithPath: t)) }
            do { try fm.moveItem(atPath: tmp, toPath: dir) } catch {
                if result(r)?.status == "ok" { lines.append("[adopt] run \(r.index): adopted by another process meanwhile"); continue }
                throw BMError.invalid("--adopt: cannot move the copy of \(c.dir) to \(dir): \(error.localizedDescription)")
            }
            lines.append("[adopt] run \(r.index): \(r.name) <- \(c.dir)")
        }
        return lines
    }

    /// Runs (or resumes) run `index` here; returns its result (also written to result.json).
    /// Already finished runs are not run again, if their spec is the one asked for.
    /// In a run distributed over several ranks (`group`), every rank trains and rank 0
    /// alone writes the run's files and its result.json; an error on any rank ends the job.
    @discardableResult
    public func runOne(_ index: Int, progress: Bool = false, group: Communicator = SingleProcess()) throws -> RunResult {
        guard index >= 0 && index < sweep.runs.count else {
            throw BMError.invalid("--run-index \(index) is out of range: the sweep has \(sweep.runs.count) runs (0…\(sweep.runs.count - 1))")
        }
        let r = sweep.runs[index]
        try checkReusable(r)
        if let done = result(r), done.status == "ok" { return done }
        let dir = runDir(r)
        let fm = FileManager.default
        // A run interrupted before its first checkpoint is started over by
        // ExperimentRun (--resume semantics); only the sweep's own files go here.
        for f in ["result.json", "error.txt"] { try? fm.removeItem(atPath: "\(dir)/\(f)") }
        var res = RunResult(index: index, name: r.name, status: "failed")
        do {
            let run = try ExperimentRun(spec: r.spec, outDir: dir, resume: true, group: group)
            run.printProgress = progress
            let s = try run.run()
            if !group.isWriter { return res }
            res.status = "ok"
            res.steps = s.steps; res.trainLoss = s.trainLoss; res.valLoss = s.evalLoss; res.valMetric = s.evalMetric
            res.metricName = s.metricName; res.tokensPerSecond = s.tokensPerSecond; res.seconds = s.seconds
            res.parametersTotal = s.counts.total; res.parametersActive = s.counts.active
            res.trainingFlops = Double(s.steps * r.spec.train.batch * r.spec.train.seqLen) * s.counts.flopsPerToken
            try? fm.removeItem(atPath: "\(dir)/error.txt")
        } catch {
            res.error = BMError.reason(error)
            if group.isWriter {
                try fm.createDirectory(atPath: dir, withIntermediateDirectories: true)
                try ((group.size > 1 ? "rank 0 of \(group.size): " : "") + "\(error)\n").write(toFile: "\(dir)/error.txt", atomically: true, encoding: .utf8)
            }
            if group.size > 1 { throw error }          // the caller ends every rank
        }
        try fm.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let data = try JSON.encoder(pretty: true).encode(res)
        try AtomicFile.write(to: resultPath(r)) { tmp in try data.write(to: URL(fileURLWithPath: tmp)) }
        return res
    }

    /// Runs every unfinished run with `workers` processes of `executable`
    /// (`bmlab sweep FILE --run-index i --out DIR --threads T`), T = cores / workers;
    /// with `ranks` > 1 each worker is `mpirun -np ranks` of that command (a run
    /// data-parallel over its ranks, `MPILaunch`), T = cores / (workers × ranks).
    public func runLocal(workers: Int, ranks: Int = 1, executable: String, sweepArgs: [String], log: (String) -> Void) throws {
        for r in sweep.runs { try checkReusable(r) }          // before any run starts
        let pending = sweep.runs.filter { result($0)?.status != "ok" }
        let done = sweep.runs.count - pending.count
        if done > 0 { log("\(done) of \(sweep.runs.count) runs already finished; running the other \(pending.count)") }
        let threads = max(1, BLAS.availableCores / max(1, workers * ranks))
        let launch = ranks > 1 ? try MPILaunch.mpirun(ranks: ranks) : nil
        // SIGINT / SIGTERM stop the workers first; each worker also dies with this
        // process however it ends (Machine.dieWithParentIfAsked)
        Machine.catchStopSignals()
        var queue = pending[...]
        var running: [(Process, Sweep.Run, Date)] = []
        var finished = done
        try FileManager.default.createDirectory(atPath: outDir, withIntermediateDirectories: true)
        while !queue.isEmpty || !running.isEmpty {
            while running.count < max(1, workers), let r = queue.popFirst() {
                let p = Process()
                let command = ["sweep"] + sweepArgs + ["--run-index", "\(r.index)", "--out", outDir, "--threads", "\(threads)"]
                if let launch {
                    p.executableURL = URL(fileURLWithPath: launch.path)
                    p.arguments = launch.arguments + [executable] + command
                } else {
                    p.executableURL = URL(fileURLWithPath: executable)
                    p.arguments = command
                }
                try FileManager.default.createDirectory(atPath: runDir(r), withIntermediateDirectories: true)
                let logPath = "\(runDir(r))/log.txt"
                guard FileManager.default.createFile(atPath: logPath, contents: nil), let fh = FileHandle(forWritingAtPath: logPath) else {
                    throw BMError.invalid("\(logPath): cannot create the run's log (\(String(cString: strerror(errno))))")
                }
                p.standardOutput = fh; p.standardError = fh
                if let launch {
                    // the ranks' parent is mpirun, not this process: no BMLAB_PARENT_PID for them
                    // (mpirun gets SIGTERM from here on a stop and ends its ranks)
                    p.environment = ProcessInfo.processInfo.environment.merging(launch.environment) { _, new in new }
                } else {
                    p.environment = Machine.workerEnvironment
                }
                try p.run()
                running.append((p, r, Date()))
                log("[start] run \(r.index): \(r.name)")
            }
            usleep(50_000)
            let sig = Machine.stopSignal
            if sig != 0 {
                for (p, _, _) in running where p.isRunning { kill(p.processIdentifier, SIGTERM) }
                for (p, _, _) in running { p.waitUntilExit() }
                let name = sig == SIGINT ? "SIGINT" : "SIGTERM"
                throw BMError.interrupted(sig, "interrupted by \(name): stopped \(running.count) running run(s) (\(running.map(\.1.name).joined(separator: ", "))); each resumes from its last checkpoint when the same sweep command runs again")
            }
            for (i, (p, r, t0)) in running.enumerated().reversed() where !p.isRunning {
                running.remove(at: i)
                finished += 1
                let res = result(r)
                let secs = Int(Date().timeIntervalSince(t0))
                if let res, res.status == "ok" {
                    log(String(format: "[%d/%d] ok     %@  val %.4f  (%d s)", finished, sweep.runs.count, r.name, res.valLoss ?? .nan, secs))
                } else {
                    let msg = res?.error ?? "worker exited with status \(p.terminationStatus); see \(runDir(r))/log.txt"
                    log("[\(finished)/\(sweep.runs.count)] FAILED \(r.name): \(msg.split(separator: "\n").first ?? "")")
                }
            }
        }
    }

    // MARK: summary

    public struct Row: Sendable { public var run: Sweep.Run; public var result: RunResult? }
    public var rows: [Row] { sweep.runs.map { Row(run: $0, result: result($0)) } }

    /// Writes DIR/sweep.h5 (atomically): one row per run.
    public func collect() throws -> [Row] {
        let rows = self.rows
        let path = "\(outDir)/sweep.h5"
        try FileManager.default.createDirectory(atPath: outDir, withIntermediateDirectories: true)
        func col(_ f: (RunResult) -> Double?) -> [Double] { rows.map { $0.result.flatMap(f) ?? .nan } }
        try H5File.createAtomically(path) { f in
            try f.setAttribute("sweep_file", sweep.file)
            if !sweep.overrides.isEmpty { try f.setAttribute("overrides", sweep.overrides) }
            try f.setAttribute("toolkit_version", BMLab.version)
            try f.setAttribute("axes", sweep.axes)
            try f.setAttribute("run_names", rows.map(\.run.name))
            try f.setAttribute("status", rows.map { $0.result?.status ?? "missing" })
            try f.setAttribute("errors", rows.map { $0.result?.error ?? "" })
            for a in sweep.axes { try f.setAttribute("axis:\(a)", rows.map { $0.run.valueText(a) }) }
            let n = rows.count
            try f.write("index", ints: rows.map { Int64($0.run.index) }, shape: [n])
            try f.write("ok", ints: rows.map { $0.result?.status == "ok" ? 1 : 0 }, shape: [n])
            try f.write("steps", doubles: col { $0.steps.map(Double.init) }, shape: [n])
            try f.write("train_loss", doubles: col(\.trainLoss), shape: [n])
            try f.write("val_loss", doubles: col(\.valLoss), shape: [n])
            try f.write("val_metric", doubles: col(\.valMetric), shape: [n])
            try f.write("tokens_per_s", doubles: col(\.tokensPerSecond), shape: [n])
            try f.write("parameters_total", doubles: col { $0.parametersTotal.map(Double.init) }, shape: [n])
            try f.write("parameters_active", doubles: col { $0.parametersActive.map(Double.init) }, shape: [n])
            try f.write("training_flops", doubles: col(\.trainingFlops), shape: [n])
        }
        return rows
    }

    public static func table(_ rows: [Row], axes: [String]) -> String {
        let header = ["#"] + axes + ["status", "train loss", "val loss", "metric", "tokens/s", "params", "active", "train FLOPs"]
        var lines: [[String]] = []
        for r in rows {
            let x = r.result
            func f(_ v: Double?, _ p: String = "%.4f") -> String { v.map { String(format: p, $0) } ?? "-" }
            lines.append(["\(r.run.index)"] + axes.map { r.run.valueText($0) } + [x?.status ?? "missing", f(x?.trainLoss), f(x?.valLoss),
                          f(x?.valMetric), f(x?.tokensPerSecond, "%.0f"), x?.parametersTotal.map(String.init) ?? "-",
                          x?.parametersActive.map(String.init) ?? "-", f(x?.trainingFlops, "%.3g")])
        }
        let widths = header.indices.map { i in max(header[i].count, lines.map { $0[i].count }.max() ?? 0) }
        func fmt(_ row: [String]) -> String { row.enumerated().map { $1.padding(toLength: widths[$0], withPad: " ", startingAt: 0) }.joined(separator: "  ") }
        return ([fmt(header)] + lines.map(fmt)).joined(separator: "\n") + "\n"
    }
}
