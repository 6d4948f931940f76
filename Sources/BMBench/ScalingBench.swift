import Foundation
import BMCore
import BMDistributed

/// `bmlab bench train --ranks 1,2`: data-parallel scaling on this machine. Every
/// configuration runs in a fresh process (`bmlab bench train --json`, under mpirun for
/// more than one rank): 1 process × all cores, 1 × 1 thread, and for each rank count N
/// N ranks × cores/N threads, the same global batch. Efficiency of N ranks = its tokens/s
/// ÷ (N × the 1 × 1 tokens/s) when each rank has one thread, ÷ the 1 × all-cores figure
/// otherwise; the allreduce's share is of rank 0's step time.
public enum ScalingBench {
    public struct Row: Codable, Sendable {
        public var ranks: Int, threadsPerRank: Int
        public var tokensPerSecond: Double, msPerStep: Double, allreduceMs: Double
        /// tokens/s ÷ what perfect scaling of the one-thread process would give (ranks × threads × 1×1)
        public var efficiency: Double
        /// tokens/s ÷ one process on the same cores
        public var againstOneProcess: Double
    }

    /// What a row needs of `bench train --json` (`TrainBench.Result`).
    struct Figures: Decodable { var tokensPerSecond: Double, msPerStep: Double, allreduceMs: Double }

    public static func run(bmlab: String, spec: String, overrides: [String], steps: Int, ranks: [Int],
                           log: (String) -> Void) throws -> [Row] {
        let cores = max(1, BLAS.availableCores)
        var configs: [(ranks: Int, threads: Int)] = [(1, cores)]
        if cores > 1 { configs.append((1, 1)) }
        for n in ranks where n > 1 { configs.append((n, max(1, cores / n))) }
        var figures: [(ranks: Int, threads: Int, r: Figures)] = []
        for c in configs {
            log("measuring \(c.ranks) rank(s) × \(c.threads) thread(s) …")
            let args = ["bench", "train", spec] + overrides + ["--steps", "\(steps)", "--threads", "\(c.threads)", "--json"]
            let p = Process()
            var env = ProcessInfo.processInfo.environment
            if c.ranks > 1 {
                let l = try MPILaunch.mpirun(ranks: c.ranks)
                p.executableURL = URL(fileURLWithPath: l.path)
                p.arguments = l.arguments + [bmlab] + args
                env.merge(l.environment) { _, new in new }
            } else {
                p.executableURL = URL(fileURLWithPath: bmlab)
                p.arguments = args
            }
            p.environment = env
            // stderr to a file, so a child that writes much there cannot block on a full pipe
            let errPath = NSTemporaryDirectory() + "bmlab-scaling-\(getpid())-\(c.ranks).err"
            FileManager.default.createFile(atPath: errPath, contents: nil)
            defer { try? FileManager.default.removeItem(atPath: errPath) }
            let out = Pipe()
            p.standardOutput = out; p.standardError = FileHandle(forWritingAtPath: errPath)
            try p.run()
            let data = out.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            let errText = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
            let text = String(decoding: data, as: UTF8.self)       // progress lines, then the JSON object
            guard p.terminationStatus == 0, let start = text.firstIndex(of: "{"),
                  let r = try? JSON.decoder().decode(Figures.self, from: Data(text[start...].utf8)) else {
                throw BMError.system("bench train with \(c.ranks) rank(s) × \(c.threads) thread(s) failed (exit \(p.terminationStatus)): "
                                     + errText.split(separator: "\n").prefix(3).joined(separator: "; "))
            }
            figures.append((c.ranks, c.threads, r))
        }
        let single = figures.first { $0.ranks == 1 && $0.threads == 1 }?.r.tokensPerSecond ?? figures[0].r.tokensPerSecond / Double(cores)
        let whole = figures[0].r.tokensPerSecond
        return figures.map { f in
            let used = Double(f.ranks * f.threads)
            return Row(ranks: f.ranks, threadsPerRank: f.threads, tokensPerSecond: f.r.tokensPerSecond, msPerStep: f.r.msPerStep,
                       allreduceMs: f.r.allreduceMs, efficiency: f.r.tokensPerSecond / (used * single),
                       againstOneProcess: f.r.tokensPerSecond / (used == Double(cores) ? whole : single * used))
        }
    }

    public static func table(_ rows: [Row], cpu: String) -> String {
        var s = "data-parallel scaling on \(cpu), \(BLAS.availableCores) cores; same global batch in every row\n"
        s += " ranks × threads   tokens/s   ms/step   allreduce ms (share)   efficiency   ÷ 1 process on the same cores\n"
        for r in rows {
            s += String(format: "%6d × %-7d %10.0f %9.1f %10.2f (%5.1f%%) %12.2f %12.2f\n", r.ranks, r.threadsPerRank, r.tokensPerSecond,
                        r.msPerStep, r.allreduceMs, 100 * r.allreduceMs / max(r.msPerStep, 1e-9), r.efficiency, r.againstOneProcess)
        }
        return s
    }
}
