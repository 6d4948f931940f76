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

    /// Before `startBLAS`: a kernel this CPU cannot run is refused (exit 2).
    func apply() {
        guarded {
            if let c = blasCore { try BLAS.forceCore(c) }
            if let k = kernels { try Kernels.force(k) }
        }
    }
}
