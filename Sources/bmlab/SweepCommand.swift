import ArgumentParser
import Foundation
import BMCore
import BMExperiments
import BMSweeps

struct SweepCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sweep",
        abstract: "Run a sweep (the cartesian product of sweep.axes) locally, one run of it, or as a Slurm array.")
    @Argument(help: "The sweep file (a spec with a 'sweep' section).") var file: String
    @Argument(help: "Overrides key.path=value applied to every run.") var overrides: [String] = []
    @Option(help: "Output directory (default results/sweep-NAME).") var out: String?
    @Option(help: "Worker processes (BLAS threads are divided among them).") var workers = 1
    @Flag(help: "List the runs and exit.") var dryRun = false
    @Option(help: "Run only this run (what each worker and Slurm array task does).") var runIndex: Int?
    @Option(help: "BLAS threads for --run-index (0 = all cores).") var threads = 0
    @Flag(help: "Write an sbatch array script (one task per run) and submit it where sbatch exists.") var slurm = false
    @Option(help: "Slurm partition.") var partition: String?
    @Option(help: "Slurm time limit per run.") var time = "01:00:00"
    @Option(help: "CPUs per Slurm task.") var cpus = 2
    @Option(help: "Ranks of each run: > 1 trains each run data-parallel (local workers through mpirun, Slurm tasks through srun). docs/distributed.md.")
    var ranks = 1
    @Option(help: "Slurm nodes the ranks of one run may spread over.") var nodes: Int?
    @OptionGroup var machine: MachineOptions    // every run inherits both switches

    func validate() throws {
        requireThreads(threads)
        require(workers >= 1, "--workers must be at least 1, got \(workers)")
        require(cpus >= 1, "--cpus must be at least 1, got \(cpus)")
        require(ranks >= 1, "--ranks must be at least 1, got \(ranks)")
        if let n = nodes { require(n >= 1 && n <= ranks, "--nodes must be between 1 and --ranks (\(ranks)), got \(n)") }
        require(Slurm.isTimeLimit(time), "--time '\(time)' is not a Slurm time limit; expected MINUTES, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS or UNLIMITED")
        if let i = runIndex { require(i >= 0, "--run-index must be 0 or more, got \(i)") }
    }
    @Flag(help: "Build sweep.h5 and the table from the finished runs.") var collect = false
    @Option(help: ArgumentHelp("Copy in the finished runs of another sweep's output directory that this sweep asks for too (same spec up to its name); repeatable.",
                               discussion: "A sweep run in halves (different sittings or machines) reports as one.", valueName: "dir"))
    var adopt: [String] = []

    func run() throws {
        machine.apply()
        guarded {
            guard workers >= 1 else { throw BMError.invalid("--workers must be at least 1") }
            let sweep = try Sweep(path: file, overrides: overrides)
            let name = ((file as NSString).lastPathComponent as NSString).deletingPathExtension
            let dir = out ?? "results/sweep-\(name)"
            let runner = SweepRunner(sweep: sweep, outDir: dir)
            try ExperimentRun.checkOutputDirectory(dir)
            // (a --run-index task adopts its own run only: array tasks do not copy each other's)
            if !dryRun { for line in try runner.adopt(from: adopt, only: runIndex) { print(line) } }
            if collect, !FileManager.default.fileExists(atPath: (dir as NSString).appendingPathComponent("runs")) {
                throw BMError.invalid("--collect: \(dir) holds no runs of a sweep (no \(dir)/runs/); run the sweep first, or give its --out")
            }
            if dryRun {
                print("\(sweep.runs.count) runs (axes: \(sweep.axes.joined(separator: ", "))):")
                for r in sweep.runs { print("  \(r.index)  \(r.name)") }
                return
            }
            if let i = runIndex {
                let group = dataParallelGroup()
                startBLAS(threads: threads > 0 ? threads : rankThreads(group))
                let r = try runner.runOne(i, progress: group.isWriter, group: group)
                guard group.isWriter else { return }
                if r.status != "ok" { throw BMError.numerical("run \(i) (\(sweep.runs[i].name)) failed: \(r.error ?? "?")") }
                print("run \(i) ok: \(runner.runDir(sweep.runs[i]))")
                return
            }
            if slurm {
                for r in sweep.runs { try runner.checkReusable(r) }
                var o = Slurm.Options()
                o.partition = partition; o.time = time; o.cpus = cpus; o.ranks = ranks; o.nodes = nodes
                let script = try Slurm.writeScript(runner: runner, bmlab: selfPath(), sweepArgs: [file] + overrides, options: o)
                if let job = try Slurm.submit(script) {
                    print("submitted array job \(job) (\(sweep.runs.count) tasks): \(script)")
                    print("when it has finished: bmlab sweep \(file) --collect --out \(dir)")
                } else {
                    print("wrote \(script); sbatch is not installed here — submit it where Slurm runs: sbatch \(script)")
                }
                return
            }
            if !collect {
                startBLAS()
                let ranksNote = ranks > 1 ? " × \(ranks) ranks" : ""
                print("sweep \(file): \(sweep.runs.count) runs, \(workers) worker(s)\(ranksNote) × \(max(1, BLAS.availableCores / (workers * ranks))) BLAS thread(s); out: \(dir)")
                try runner.runLocal(workers: workers, ranks: ranks, executable: selfPath(), sweepArgs: [file] + overrides) { print($0); fflush(nil) }
            }
            let rows = try runner.collect()
            print(SweepRunner.table(rows, axes: sweep.axes), terminator: "")
            print("summary: \(dir)/sweep.h5")
            let failed = rows.filter { $0.result?.status != "ok" }.count
            if failed > 0 { throw BMError.numerical("\(failed) of \(rows.count) runs did not finish (see \(dir)/runs/*/error.txt)") }
        }
    }
}

/// This program's own path (to start workers).
func selfPath() -> String {
    (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
}
