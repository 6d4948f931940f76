import ArgumentParser
import Foundation
import BMCore
import BMStorage
import BMMixers

struct DoctorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "doctor", 
        abstract: "Report the BLAS kernel and threads, sgemm speed, HDF5 and gnuplot versions.")

    @Flag(help: "Print one JSON object instead of key: value lines.") var json = false
    @Option(help: "BLAS threads (0 = one per available core).") var threads = 0
    @OptionGroup var machine: MachineOptions
    func validate() throws { requireThreads(threads) }

    func run() throws {
        machine.startBLAS(threads: threads)
        // the toolkit's split and OpenBLAS's own threads, alternating (this machine's
        // speed drifts by minutes), the best of each
        var mine = 0.0, theirs = 0.0
        for _ in 0..<3 {
            mine = max(mine, KernelBench.sgemmGFLOPS())
            theirs = max(theirs, KernelBench.sgemmGFLOPS(openblasThreads: BLAS.threads))
        }
        let facts = DoctorFacts(sgemmGflops: (mine * 10).rounded() / 10, sgemmOpenblasThreadsGflops: (theirs * 10).rounded() / 10)
        if json {
            guarded { print(try JSON.text(facts)) }
        } else {
            for (k, v) in facts.lines { print("\(k): \(v)") }
        }
    }
}

/// What `bmlab doctor` reports; `--json` prints it as one object, otherwise one
/// `key: value` line each, in this order, with the same snake_case keys.
struct DoctorFacts: Encodable {
    var bmlabVersion = BMLab.version
    var blasCore = BLAS.coreName
    var blasCoreSource = BLAS.coreSource
    var blasThreads = BLAS.threads
    var blasOpenblasThreads = BLAS.openblasThreads
    /// the path forced on the toolkit's own kernels (--kernels / BMLAB_KERNELS), or cpuid
    var kernels = Kernels.forced
    var kernelsRunnable = Kernels.runnablePaths
    var gemvKernel = BLAS.gemvKernel
    var scanKernel = SelectiveScan.kernel
    var blasLibrary = BLAS.libraryPath
    /// 1024³ sgemm split over the toolkit's threads (how training runs its products)
    var sgemmGflops: Double
    /// the same product on OpenBLAS's own threads (as many), measured in the same run
    var sgemmOpenblasThreadsGflops: Double
    var hdf5Version = HDF5Library.version
    var gnuplotVersion = Machine.gnuplotVersion ?? "missing"
    var cpuCores = BLAS.availableCores
    var cpuModel = Machine.cpuModel
    var cpuFamilyModel = Machine.cpuFamilyModel
    var cpuAvx2 = BLAS.cpuHasAVX2
    var cpuAvx512 = BLAS.cpuHasAVX512
    var blasRunnableCores = BLAS.runnableCores

    /// (snake_case key, value as text) in declaration order.
    var lines: [(String, String)] {
        Mirror(reflecting: self).children.map { c in
            let v: String
            switch c.value {
            case let a as [String]: v = a.joined(separator: ",")
            case let d as Double: v = String(format: "%.1f", d)
            default: v = "\(c.value)"
            }
            return (JSON.snakeCase(c.label ?? "?"), v)
        }
    }
}
