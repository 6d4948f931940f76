import ArgumentParser
import Foundation
import BMCore
import BMStorage

struct Doctor: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Report the BLAS kernel and threads, sgemm speed, HDF5 and gnuplot versions.")

    @Flag(help: "Print one JSON object instead of key: value lines.") var json = false
    @Option(help: "BLAS threads (0 = one per available core).") var threads = 0
    func validate() throws { requireThreads(threads) }

    func run() throws {
        startBLAS(threads: threads)
        let gflops = KernelBench.sgemmGFLOPS()
        let facts: [(String, String)] = [
            ("bmlab.version", BMLab.version),
            ("blas.core", BLAS.coreName),
            ("blas.core_source", BLAS.coreSource),
            ("blas.threads", String(BLAS.threads)),
            ("blas.openblas_threads", String(BLAS.openblasThreads)),
            ("gemv.kernel", BLAS.gemvKernel),
            ("blas.library", BLAS.libraryPath),
            ("sgemm.gflops", String(format: "%.1f", gflops)),
            ("hdf5.version", HDF5Library.version),
            ("gnuplot.version", Machine.gnuplotVersion ?? "missing"),
            ("cpu.cores", String(BLAS.availableCores)),
            ("cpu.model", Machine.cpuModel),
            ("cpu.avx2", String(BLAS.cpuHasAVX2)),
            ("cpu.avx512", String(BLAS.cpuHasAVX512)),
            ("blas.runnable_cores", BLAS.runnableCores.joined(separator: ",")),
        ]
        if json {
            let obj = "{" + facts.map { k, v in
                let num = Double(v) != nil && k != "bmlab.version" && k != "hdf5.version"
                let isBool = v == "true" || v == "false"
                return "\"\(k)\": " + (num || isBool ? v : "\"\(v.replacingOccurrences(of: "\"", with: "\\\""))\"")
            }.joined(separator: ", ") + "}"
            print(obj)
        } else {
            for (k, v) in facts { print("\(k): \(v)") }
        }
    }
}
