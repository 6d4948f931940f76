import Foundation
import CBLASShim

/// The toolkit's own kernels — the selective scan, generation's one-token
/// matrix-vector product, and every kernel added later — are each built for AVX-512
/// and AVX2 (some also as generic C) and pick a build from CPUID at their first use.
/// One switch forces all of them onto one path: `BMLAB_KERNELS=avx512|avx2|generic`
/// in the environment, or `--kernels` on the command line (which sets the variable, so
/// sweep workers inherit it). A kernel with no generic build takes its AVX2 one. The
/// OpenBLAS kernel family is the separate `--blas-core` / `OPENBLAS_CORETYPE`.
///
/// This is how one AVX-512 machine runs every path the project has (`make
/// test-matrix`); `bmlab doctor` and every run's `metrics.h5` record the path and the
/// build each kernel took. See docs/performance.md, "Kernels and CPUID dispatch".
public enum Kernels {
    /// Every path, fastest first; `cpuid` (the default) lets each kernel choose.
    public static let paths = ["avx512", "avx2", "generic"]

    /// The paths this CPU runs.
    public static var runnablePaths: [String] { paths.filter { bm_kernels_check($0) == 0 } }

    /// The forced path, or `cpuid` when each kernel chooses from CPUID.
    public static var forced: String {
        let s = String(cString: bm_kernels_forced())
        return s.isEmpty ? "cpuid" : s
    }

    /// Throws a clear error (exit 2) unless `path` is `cpuid` or a path this CPU runs;
    /// `what` names where it came from (`--kernels`, `BMLAB_KERNELS`).
    public static func check(_ path: String, _ what: String) throws {
        guard !path.isEmpty else {
            throw BMError.invalid("\(what) is empty; expected one of \(paths.joined(separator: ", ")) or cpuid (each kernel's best build for this CPU, the default)")
        }
        switch bm_kernels_check(cName(path)) {
        case 0: return
        case -2:
            let need = path == "avx512" ? "AVX-512 (F, BW, DQ, VL)" : "AVX2 and FMA"
            throw BMError.invalid("\(what)=\(path): this CPU (\(Machine.cpuModel)) has no \(need), so it cannot run that path (it would end in an illegal instruction); it runs: \(runnablePaths.joined(separator: ", ")) (or cpuid, the default)")
        default:
            throw BMError.invalid("\(what)=\(path): not a kernel path\(didYouMean(path, in: paths + ["cpuid"])); expected one of \(paths.joined(separator: ", ")) or cpuid (each kernel's best build for this CPU, the default)")
        }
    }

    /// Forces every toolkit kernel onto `path` (before the first kernel runs); child
    /// processes inherit it through `BMLAB_KERNELS`.
    public static func force(_ path: String, _ what: String = "--kernels") throws {
        try check(path, what)
        setenv("BMLAB_KERNELS", path, 1)
        _ = bm_kernels_force(cName(path))
    }

    /// The C side's name of a path: "" for `cpuid`.
    private static func cName(_ path: String) -> String { path == "cpuid" ? "" : path }

    /// Checks `BMLAB_KERNELS` (called by `BLAS.setup`): a value this CPU cannot run is
    /// an error, never an illegal instruction.
    static func checkEnvironment() throws {
        if let v = ProcessInfo.processInfo.environment["BMLAB_KERNELS"], !v.isEmpty {
            try check(v, "BMLAB_KERNELS")
        }
    }
}
