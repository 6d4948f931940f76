// swift-tools-version:6.0
// BlackMambaLab — small BlackMamba-style models on a CPU, built from plugins.
import PackageDescription

// Every Swift target is compiled for a CPU with AVX2 + FMA so that SIMD
// `addingProduct` becomes `vfmadd` instead of a libm `fmaf` call
// (see docs/performance.md). All machines of this project's kind have both; on a CPU
// without them, bmlab and the tests exit with a message before any Swift code runs
// (CBLASShim's constructor), never with SIGILL.
//
// Linux only (Debian: libhdf5, OpenBLAS loaded with dlopen, /proc, prctl): no Apple
// platform is declared because none is built or tested.
let fast: [SwiftSetting] = [
    .unsafeFlags(["-target-cpu", "haswell"]),
]

let package = Package(
    name: "BlackMambaLab",
    products: [
        .executable(name: "bmlab", targets: ["bmlab"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.1"),
    ],
    targets: [
        // C shims --------------------------------------------------------
        // OpenBLAS is loaded with dlopen *after* OPENBLAS_CORETYPE has been
        // chosen from CPUID, so the fast kernels are used however the toolkit
        // is started (bmlab, swift test, make). See docs/blas.md.
        .target(name: "CBLASShim", linkerSettings: [.linkedLibrary("dl")]),
        // The toolkit's own vector kernels (the selective scan), one source compiled
        // for AVX2 and AVX-512 and chosen from CPUID at run time (bmkernels.h).
        .target(name: "CKernels", dependencies: ["CBLASShim"], cSettings: [.unsafeFlags(["-O3"])]),
        // Open MPI, loaded with dlopen at run time (data-parallel training; docs/distributed.md):
        // the handles mpi.h defines as macros are resolved here. No link-time dependency, so
        // the toolkit builds and trains single-process where Open MPI is absent.
        .target(name: "CMPIShim", cSettings: [.unsafeFlags(["-O2"])], linkerSettings: [.linkedLibrary("dl"), .linkedLibrary("pthread")]),
        .systemLibrary(name: "CHDF5", pkgConfig: "hdf5-serial",
                       providers: [.apt(["libhdf5-dev"])]),

        // Libraries, one per concern --------------------------------------
        .target(name: "BMCore", dependencies: ["CBLASShim"], swiftSettings: fast),
        .target(name: "BMLayers", dependencies: ["BMCore"], swiftSettings: fast),
        .target(name: "BMStorage", dependencies: ["CHDF5"], swiftSettings: fast),
        .target(name: "BMRouting", dependencies: ["BMCore"], swiftSettings: fast),
        .target(name: "BMMixers", dependencies: ["BMCore", "BMLayers", "BMRouting", "CKernels"], swiftSettings: fast),
        .target(name: "BMPlot", dependencies: ["BMCore"], swiftSettings: fast),
        .target(name: "BMStudies", dependencies: ["BMCore", "BMRouting", "BMStorage", "BMPlot"], swiftSettings: fast),
        // The spec language: YAML read and checked key by key, the key table, resolved specs.
        .target(name: "BMSpec", dependencies: ["BMCore", "BMLayers", "BMMixers", "BMRouting", "BMStorage",
                                               .product(name: "Yams", package: "Yams")], swiftSettings: fast),
        // Data: the text corpora and their split rule, token files, the synthetic tasks.
        .target(name: "BMData", dependencies: ["BMCore", "BMSpec"], swiftSettings: fast),
        // A run: model building, training and evaluation, checkpoints, generation, dumps.
        .target(name: "BMExperiments", dependencies: ["BMCore", "BMLayers", "BMMixers", "BMRouting", "BMStorage", "BMTrain",
                                                      "BMSpec", "BMData"], swiftSettings: fast),
        // Sweeps of runs: local workers, adoption, Slurm arrays.
        .target(name: "BMSweeps", dependencies: ["BMCore", "BMStorage", "BMSpec", "BMExperiments", "BMDistributed"], swiftSettings: fast),
        .target(name: "BMReports", dependencies: ["BMCore", "BMStorage", "BMPlot", "BMStudies", "BMTrain", "BMSpec", "BMData", "BMExperiments", "BMSweeps", "BMBench"], swiftSettings: fast),
        .target(name: "BMBench", dependencies: ["BMCore", "BMLayers", "BMMixers", "BMTrain", "BMSpec", "BMData", "BMExperiments", "BMDistributed"], swiftSettings: fast),
        .target(name: "BMTrain", dependencies: ["BMCore", "BMLayers", "BMStorage"], swiftSettings: fast),
        // Data-parallel training across processes: Open MPI's communicator (BMCore.Communicator).
        .target(name: "BMDistributed", dependencies: ["BMCore", "CMPIShim"], swiftSettings: fast),
        .target(name: "BMInterop", dependencies: ["BMCore", "BMLayers", "BMStorage", "BMSpec", "BMData", "BMExperiments"], swiftSettings: fast),

        // The command-line tool: parses arguments, calls the libraries.
        .executableTarget(name: "bmlab", dependencies: [
            "BMCore", "BMLayers", "BMStorage", "BMMixers", "BMTrain", "BMBench", "BMPlot", "BMStudies", "BMRouting",
            "BMSpec", "BMData", "BMExperiments", "BMSweeps", "BMReports", "BMInterop", "BMDistributed",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], swiftSettings: fast),

        // Tests ------------------------------------------------------------
        // What a test needs from outside the package (gnuplot, h5dump, h5py, the bmlab
        // binary): skipped with the reason under `swift test`, required by `make test`.
        .target(name: "BMTestSupport", path: "Tests/BMTestSupport"),
        .testTarget(name: "BMCoreTests", dependencies: ["BMCore"], swiftSettings: fast),
        .testTarget(name: "BMBenchTests", dependencies: ["BMCore", "BMRouting", "BMBench"], swiftSettings: fast),
        .testTarget(name: "BMLayersTests", dependencies: ["BMCore", "BMLayers"], swiftSettings: fast),
        .testTarget(name: "BMMixersTests", dependencies: ["BMCore", "BMLayers", "BMRouting", "BMMixers", "BMSpec", "BMExperiments"], swiftSettings: fast),
        .testTarget(name: "BMStudiesTests", dependencies: ["BMCore", "BMRouting", "BMStorage", "BMPlot", "BMStudies", "BMTestSupport"], swiftSettings: fast),
        .testTarget(name: "BMExperimentsTests", dependencies: ["BMCore", "BMLayers", "BMMixers", "BMRouting", "BMStorage", "BMTrain", "BMSpec", "BMData", "BMExperiments", "BMSweeps", "BMTestSupport"], swiftSettings: fast),
        .testTarget(name: "BMReportsTests", dependencies: ["BMCore", "BMStorage", "BMPlot", "BMSpec", "BMExperiments", "BMSweeps", "BMReports", "BMBench", "BMStudies", "BMTestSupport"], swiftSettings: fast),
        .testTarget(name: "BMStorageTests", dependencies: ["BMStorage", "BMTestSupport"], swiftSettings: fast),
        .testTarget(name: "BMDataTests", dependencies: ["BMCore", "BMData"], swiftSettings: fast),
        .testTarget(name: "BMInteropTests", dependencies: ["BMCore", "BMLayers", "BMSpec", "BMData", "BMExperiments", "BMInterop"], swiftSettings: fast),
        .testTarget(name: "BMTrainTests", dependencies: ["BMCore", "BMLayers", "BMStorage", "BMTrain", "BMData"], swiftSettings: fast),
    ]
)
