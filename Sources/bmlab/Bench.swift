import ArgumentParser
import Foundation
import BMCore

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmarks (run them from a release build).",
        subcommands: [Kernels.self])

    struct Kernels: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "sgemm and vectorised exp.")
        @Flag(help: "Print JSON.") var json = false
        @Option(help: "BLAS threads (0 = one per available core).") var threads = 0

        func run() throws {
            startBLAS(threads: threads)
            let g1 = KernelBench.sgemmGFLOPS()
            let g2 = KernelBench.sgemmGFLOPS(M: 2048, N: 1024, K: 256)
            let g3 = KernelBench.sgemmGFLOPS(M: 512, N: 512, K: 512, repeats: 10)
            let e = KernelBench.exp()
            let rows: [(String, Double)] = [
                ("sgemm_1024x1024x1024_gflops", g1), ("sgemm_2048x1024x256_gflops", g2),
                ("sgemm_512x512x512_gflops", g3),
                ("exp_vector_ns", e.vector), ("exp_scalar_ns", e.scalar), ("exp_speedup", e.scalar / e.vector),
            ]
            if json {
                print("{\"blas.core\": \"\(BLAS.coreName)\", \"blas.threads\": \(BLAS.threads), "
                      + rows.map { "\"\($0.0)\": \(String(format: "%.3f", $0.1))" }.joined(separator: ", ") + "}")
            } else {
                print("BLAS: \(BLAS.coreName), \(BLAS.threads) threads")
                for (k, v) in rows { print(String(format: "%@: %.3f", k, v)) }
            }
        }
    }
}
