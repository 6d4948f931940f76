import ArgumentParser
import BMCore

/// The two kernel switches every command that computes takes: OpenBLAS's kernel
/// family and the path of the toolkit's own kernels (docs/blas.md, docs/performance.md).
/// Both are exported to the environment, so sweep workers inherit them.
struct MachineOptions: ParsableArguments {
    @Option(help: "Force OpenBLAS's kernel family (as OPENBLAS_CORETYPE), e.g. SkylakeX, Haswell, Sandybridge, Prescott.")
    var blasCore: String?
    @Option(help: "Force every one of the toolkit's own kernels onto one path (as BMLAB_KERNELS): avx512, avx2, generic, or cpuid (each kernel's best build, the default).")
    var kernels: String?

    /// Before any kernel runs: a kernel this CPU cannot run is refused (exit 2). The
    /// commands call `startBLAS` / `startGeneration` below, which apply it first; `sweep`,
    /// which may start no BLAS itself, calls this for its workers.
    func apply() {
        guarded {
            if let c = blasCore { try BLAS.forceCore(c) }
            if let k = kernels { try Kernels.force(k) }
        }
    }

    /// The switches, then OpenBLAS and the thread pools (`startBLAS` of BMLabCommand.swift).
    func startBLAS(threads: Int = 0) {
        apply()
        bmlab.startBLAS(threads: threads)
    }

    /// The switches, then batch-1 generation's set-up (`startGeneration`).
    func startGeneration(threads: Int = 0) {
        apply()
        bmlab.startGeneration(threads: threads)
    }
}
