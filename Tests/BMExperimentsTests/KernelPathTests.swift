import XCTest
import BMTestSupport
import Foundation
@testable import BMCore
@testable import BMStorage

/// The one switch over the toolkit's own kernel paths (`--kernels`, `BMLAB_KERNELS`;
/// `Kernels`): every path this CPU runs can be forced, is reported by `bmlab doctor`
/// and recorded in a run's metrics.h5, trains bit for bit what the CPU's own choice
/// trains, and a path the CPU cannot run, or a name that is no path, is refused with a
/// message and exit 2, never an illegal instruction.
final class KernelPathTests: XCTestCase {
    override func setUp() { XCTAssertNoThrow(try BLAS.setup()) }

    func testPathsThisCPURunsAndRefusals() throws {
        let runnable = Kernels.runnablePaths
        XCTAssertEqual(runnable.contains("avx512"), BLAS.cpuHasAVX512)
        XCTAssertTrue(runnable.contains("avx2") && runnable.contains("generic"), "every machine of this kind runs AVX2: \(runnable)")
        for p in runnable + ["cpuid"] { XCTAssertNoThrow(try Kernels.check(p, "--kernels")) }
        XCTAssertThrowsError(try Kernels.check("avx3", "--kernels")) { e in
            let m = BMError.reason(e)
            XCTAssertTrue(m.contains("--kernels=avx3") && m.contains("not a kernel path") && m.contains("avx512, avx2, generic"), m)
            XCTAssertEqual((e as? BMError)?.exitCode, 2)
        }
        if !BLAS.cpuHasAVX512 {
            // on an AVX2-only CPU the AVX-512 path is refused, naming what the CPU lacks
            XCTAssertThrowsError(try Kernels.check("avx512", "BMLAB_KERNELS")) { e in
                let m = BMError.reason(e)
                XCTAssertTrue(m.contains("BMLAB_KERNELS=avx512") && m.contains("no AVX-512"), m)
            }
        }
    }

    /// `bmlab doctor --kernels P` (and `BMLAB_KERNELS=P`) reports P and the build each kernel
    /// took; the scan has no generic build and takes AVX2 there.
    func testDoctorReportsTheForcedPath() throws {
        try BMLabProcess.require()
        func facts(_ r: (out: String, err: String, status: Int32, signaled: Bool)) -> [String: String] {
            var d: [String: String] = [:]
            for line in r.out.split(separator: "\n") {
                let kv = line.split(separator: ":", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
                if kv.count == 2 { d[kv[0]] = kv[1] }
            }
            return d
        }
        let plain = try BMLabProcess.run(["doctor"], environment: ["BMLAB_KERNELS": ""])   // not the matrix's path
        XCTAssertEqual(plain.status, 0, plain.err)
        XCTAssertEqual(facts(plain)["kernels"], "cpuid")
        XCTAssertEqual(facts(plain)["scan_kernel"], BLAS.cpuHasAVX512 ? "avx512" : "avx2")
        XCTAssertEqual(facts(plain)["kernels_runnable"], Kernels.runnablePaths.joined(separator: ","))
        for path in Kernels.runnablePaths {
            for viaEnv in [false, true] {
                let r = viaEnv ? try BMLabProcess.run(["doctor"], environment: ["BMLAB_KERNELS": path])
                               : try BMLabProcess.run(["doctor", "--kernels", path])
                XCTAssertEqual(r.status, 0, "\(path): \(r.err)")
                let f = facts(r)
                XCTAssertEqual(f["kernels"], path)
                XCTAssertEqual(f["gemv_kernel"], path)
                XCTAssertEqual(f["scan_kernel"], path == "generic" ? "avx2" : path)
            }
        }
        for (args, env, what) in [(["doctor", "--kernels", "avx1024"], [String: String](), "--kernels=avx1024"),
                                  (["doctor"], ["BMLAB_KERNELS": "sse9"], "BMLAB_KERNELS=sse9")]
                                  + (BLAS.cpuHasAVX512 ? [] : [(["doctor", "--kernels", "avx512"], [:], "--kernels=avx512")]) {
            let r = try BMLabProcess.run(args, environment: env)
            XCTAssertFalse(r.signaled, what)
            XCTAssertEqual(r.status, 2, "\(what): \(r.out) \(r.err)")
            XCTAssertTrue(r.err.contains(what), r.err)
        }
    }

    /// Training under each path gives the same losses and gradient norms bit for bit (the
    /// builds do the same arithmetic in the same order), and metrics.h5 records the path.
    func testTrainingIsBitwiseTheSameOnEveryPath() throws {
        try BMLabProcess.require()
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let spec = root.appendingPathComponent("Experiments/mqar-mamba.yaml").path
        let dir = try tempDir(self)
        var curves: [String: [[Double]]] = [:]
        for path in ["cpuid"] + Kernels.runnablePaths {
            let out = "\(dir)/\(path)"
            let r = try BMLabProcess.run(["train", spec, "train.steps=12", "train.log_every=1", "train.eval_every=6",
                                          "--threads", "1", "--kernels", path, "--out", out])
            XCTAssertEqual(r.status, 0, "\(path): \(r.err)")
            let f = try H5File(path: "\(out)/metrics.h5", mode: .readOnly)
            XCTAssertEqual(try f.stringAttribute("kernels"), path)
            let scan = try f.stringAttribute("scan_kernel")
            XCTAssertEqual(scan, path == "cpuid" ? (BLAS.cpuHasAVX512 ? "avx512" : "avx2") : path == "generic" ? "avx2" : path)
            f.close()
            curves[path] = [try readColumn("\(out)/metrics.h5", "train/loss"), try readColumn("\(out)/metrics.h5", "train/grad_norm"),
                            try readColumn("\(out)/metrics.h5", "eval/loss")]
            XCTAssertEqual(curves[path]?[0].count, 12)
        }
        for (path, c) in curves where path != "cpuid" {
            XCTAssertEqual(c, curves["cpuid"], "\(path) trains other bits than the CPU's own choice")
        }
    }
}
