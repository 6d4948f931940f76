import ArgumentParser
import Foundation
import BMCore
import BMExperiments
import BMPlot
import BMReports
import BMStorage
import BMSweeps

struct PlotCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "plot", abstract: "Figures (gnuplot) of a run, a sweep or a Sinkhorn study.")
    @Argument(help: "A run directory, a sweep directory, or a study directory.") var dir: String
    @Option(help: "Where the figures go (default DIR/figures).") var out: String?
    @Option(help: "png or svg.") var format = "png"

    func run() throws {
        guarded {
            guard let fmt = FigureFormat(rawValue: format) else { throw BMError.invalid("--format must be png or svg, got '\(format)'") }
            if let out { try ExperimentRun.checkOutputDirectory(out) }
            for p in try RunFigures.renderAny(dir, outDir: out ?? "\(dir)/figures", format: fmt) { print(p) }
        }
    }
}

struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "report", abstract: "Write a markdown report of a run or a sweep (with its figures).")
    @Argument(help: "A run or sweep directory.") var dir: String
    @Option(help: "The report file, e.g. notebooks-md/NAME.md.") var out: String
    @Option(help: "png or svg.") var format = "png"
    @Flag(help: "Write over an existing --out file that is not a report.") var force = false

    func run() throws {
        startBLAS()
        guarded {
            guard let fmt = FigureFormat(rawValue: format) else { throw BMError.invalid("--format must be png or svg, got '\(format)'") }
            try ExperimentRun.checkReportOutput(out, force: force, titles: ["# Run report:", "# Sweep report:"])
            let path = try Report.write(dir: dir, out: out, format: fmt, command: "bmlab report \(dir) --out \(out)")
            print("report: \(path)")
        }
    }
}

struct RobustnessCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "robustness",
        abstract: "Does a recipe learn in every run? Final accuracy of every run of one or more sweeps (each a condition: init, threads, BLAS kernel), a summary and the curves.")
    @Argument(help: "Sweep directories, one per condition.") var dirs: [String]
    @Option(help: "The report file, e.g. notebooks-md/NAME.md.") var out: String
    @Option(help: "Accuracy every run must reach.") var threshold = 0.9
    @Option(help: "Also report when each run first reached this accuracy (e.g. 0.4: when an MQAR run left its 1/k plateau) and how many steps it then took to reach the threshold.") var escape: Double?
    @Option(help: "Also count the runs whose first evaluation at the threshold came no later than this fraction of their schedule (e.g. 0.6: the margin a learning test needs).") var within: Double?
    @Flag(help: "Write over an existing --out file that is not a report.") var force = false

    func validate() throws {
        require(!dirs.isEmpty, "give at least one sweep directory")
        require(threshold > 0 && threshold <= 1, "--threshold must be in (0, 1], got \(threshold)")
        if let e = escape { require(e > 0 && e < threshold, "--escape must be in (0, threshold), got \(e)") }
        if let w = within { require(w > 0 && w <= 1, "--within must be in (0, 1], got \(w)") }
    }

    func run() throws {
        startBLAS()
        guarded {
            let cmd = "bmlab robustness \(dirs.joined(separator: " ")) --out \(out)" + (threshold == 0.9 ? "" : " --threshold \(threshold)")
                + (escape.map { " --escape \($0)" } ?? "") + (within.map { " --within \($0)" } ?? "")
            try ExperimentRun.checkReportOutput(out, force: force, titles: ["# Learning robustness:"])
            let (n, failed, late) = try Robustness.write(dirs: dirs, out: out, threshold: threshold, escape: escape, within: within, command: cmd)
            print("\(n - failed) of \(n) runs reach \(Int(threshold * 100)) %"
                  + (within.map { "; \(n - late) of \(n) by \(Int(($0 * 100).rounded())) % of their schedule" } ?? "") + "; report: \(out)")
        }
    }
}

struct NotebookCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "notebook", abstract: "Run the ```bmlab blocks of a markdown notebook and write their outputs below them.")
    @Argument(help: "The notebook (.md).") var file: String
    @Option(help: "Run only these blocks (1-based, comma-separated, e.g. 3,4); the others keep their outputs.") var blocks: String?

    func run() throws {
        guarded {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else { throw BMError.invalid("\(file): cannot read the notebook") }
            var only: Set<Int>? = nil
            if let b = blocks {
                let parts = b.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
                guard !parts.isEmpty, parts.allSatisfy({ Int($0) != nil }) else {
                    throw BMError.invalid("--blocks: expected block numbers separated by commas (e.g. 3,4), got '\(b)'")
                }
                only = Set(parts.compactMap { Int($0) })   // their range: Notebook.run checks it
            }
            let dir = URL(fileURLWithPath: file).standardizedFileURL.deletingLastPathComponent().path
            let root = Notebook.projectRoot(for: file)
            let chain = try Notebook.enter(file, environment: ProcessInfo.processInfo.environment)
            let exe = selfPath()
            FileHandle.standardError.write("running \(file)'s blocks in its project: \(root)\n".data(using: .utf8)!)
            let r = try Notebook.run(text, name: file, notebookDir: dir, workingDir: root, only: only) { args in
                FileHandle.standardError.write("$ bmlab \(args.joined(separator: " "))\n".data(using: .utf8)!)
                let p = Process()
                p.executableURL = URL(fileURLWithPath: exe)
                p.currentDirectoryURL = URL(fileURLWithPath: root)
                p.arguments = args
                // dies with this process; knows which notebooks are running (no cycles)
                p.environment = Machine.workerEnvironment.merging(["BMLAB_NOTEBOOK_CHAIN": chain.joined(separator: "\n")]) { $1 }
                let pipe = Pipe()
                p.standardOutput = pipe
                p.standardError = pipe
                do { try p.run() } catch { return ("cannot run bmlab: \(error)\n", 127) }
                let data = pipe.fileHandleForReading.readDataToEndOfFile()
                p.waitUntilExit()
                return (String(decoding: data, as: UTF8.self), p.terminationStatus)
            }
            // write, fsync, rename: an interrupted notebook leaves the old file whole
            try AtomicFile.write(to: file) { tmp in try r.text.write(toFile: tmp, atomically: false, encoding: .utf8) }
            for f in r.failed { FileHandle.standardError.write("\(file): \(f) (the block keeps its previous output)\n".data(using: .utf8)!) }
            print("\(file): ran \(r.blocks) blocks\(r.failures > 0 ? ", \(r.failures) commands failed" : "")")
            if r.failures > 0 { throw BMError.numerical("\(r.failures) notebook commands failed") }
        }
    }
}
