import XCTest
import BMTestSupport
import Foundation
#if canImport(Glibc)
import Glibc
#endif
@testable import BMCore
@testable import BMStorage
@testable import BMExperiments

/// A disk that fills during training, for real: a 1 MiB tmpfs mounted for the test
/// (the suite runs as root in `make test` and CI; where mounting is impossible the
/// test is skipped and says why). The model's checkpoint (parameters and both AdamW
/// moments, about 0.85 MB) fits once and not twice, so depending on how much of the
/// disk a filler file takes, the disk fills while the metrics file is created, while
/// the first checkpoint is written or while the second is. Every case must end with
/// exit 2 and one line naming the path and "No space left on device" — no signal, no
/// temporary file left, and whatever checkpoint is there verified and usable.
final class FullDiskTests: XCTestCase {
    /// mqar with a 2-layer Mamba, d_model 64: 69.6k parameters.
    let spec = """
    name: full-disk
    model:
      d_model: 64
      layers: [mamba, mamba]
    data:
      kind: mqar
      vocab_size: 64
      num_pairs: 4
    train:
      steps: 60
      batch: 4
      seq_len: 32
      log_every: 5
      eval_every: 10
      eval_batches: 1
      checkpoint_every: 20
    """

    func mountSmallDisk() throws -> String {
        let dir = try tempDir(self) + "/disk"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/mount")
        p.arguments = ["-t", "tmpfs", "-o", "size=1m", "tmpfs", dir]
        p.standardOutput = FileHandle.nullDevice; p.standardError = FileHandle.nullDevice
        do { try p.run() } catch { throw XCTSkip("cannot run /bin/mount (\(error)): the full-disk test needs a mountable tmpfs") }
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            throw XCTSkip("mounting a tmpfs failed (exit \(p.terminationStatus); not root, or no CAP_SYS_ADMIN): the full-disk test needs one")
        }
        addTeardownBlock {
            let u = Process()
            u.executableURL = URL(fileURLWithPath: "/bin/umount")
            u.arguments = ["-l", dir]
            try? u.run(); u.waitUntilExit()
        }
        return dir
    }

    func testEveryWayTheDiskFillsEndsCleanlyAndKeepsTheLastCheckpoint() throws {
        try BMLabProcess.require()
        XCTAssertNoThrow(try BLAS.setup())
        let disk = try mountSmallDisk()
        let work = try tempDir(self)
        let specPath = work + "/full-disk.yaml"
        try spec.write(toFile: specPath, atomically: true, encoding: .utf8)

        // the same run on a disk with room, for the resume comparison
        let whole = work + "/whole"
        XCTAssertEqual(try BMLabProcess.run(["train", specPath, "--out", whole, "--threads", "1"]).status, 0)

        var kinds = Set<String>()
        for fillKiB in [0, 100, 500, 1000] {
            for name in (try? FileManager.default.contentsOfDirectory(atPath: disk)) ?? [] {
                try FileManager.default.removeItem(atPath: disk + "/" + name)
            }
            if fillKiB > 0 {
                XCTAssertTrue(FileManager.default.createFile(atPath: disk + "/filler", contents: Data(count: fillKiB * 1024)))
            }
            let run = disk + "/run"
            let r = try BMLabProcess.run(["train", specPath, "--out", run, "--threads", "1"])
            // standard error holds the progress lines, then the error: one line, the last
            let errors = r.err.split(separator: "\n").filter { $0.contains("error") }
            let message = errors.last.map(String.init) ?? ""
            let context = "filler \(fillKiB) KiB: \(message)"
            XCTAssertFalse(r.signaled, context)
            XCTAssertEqual(r.status, 2, context)
            XCTAssertEqual(errors.count, 1, "filler \(fillKiB) KiB: \(r.err)")
            XCTAssertTrue(message.hasPrefix("bmlab: error: "), context)
            XCTAssertTrue(r.err.hasSuffix(message + "\n"), "the error is not the last line: \(r.err)")
            XCTAssertTrue(message.contains("No space left on device"), context)
            XCTAssertTrue(message.contains(run), context)
            XCTAssertFalse(r.err.contains("HDF5-DIAG") || r.err.contains("#000"), "a raw libhdf5 stack: \(r.err)")
            let left = (try? FileManager.default.contentsOfDirectory(atPath: run)) ?? []
            XCTAssertTrue(left.allSatisfy { !$0.contains(".tmp") }, "temporary files left: \(left) — " + context)

            let ck = run + "/checkpoint.h5"
            if FileManager.default.fileExists(atPath: ck) {
                kinds.insert("kept")
                XCTAssertTrue(message.contains("of step 20 is kept"), context)
                XCTAssertNoThrow(try Checkpoint.verify(ck), context)
                let e = try BMLabProcess.run(["eval", "--checkpoint", ck])
                XCTAssertEqual(e.status, 0, "eval of the kept checkpoint: " + e.err)
                // metrics.h5 is readable and holds the steps up to the failure
                let steps = try readColumn(run + "/metrics.h5", "train/step")
                XCTAssertGreaterThanOrEqual(steps.last ?? 0, 20, context)
                // resumed where there is room, it ends exactly as the uninterrupted run
                let moved = work + "/moved"
                try? FileManager.default.removeItem(atPath: moved)
                try FileManager.default.copyItem(atPath: run, toPath: moved)
                let res = try BMLabProcess.run(["train", moved + "/spec.yaml", "--out", moved, "--resume", "--threads", "1"])
                XCTAssertEqual(res.status, 0, "resume: " + res.err)
                for col in ["train/step", "train/loss", "eval/loss"] {
                    XCTAssertEqual(try readColumn(moved + "/metrics.h5", col).map(\.bitPattern),
                                   try readColumn(whole + "/metrics.h5", col).map(\.bitPattern), "\(col) after resume")
                }
            } else if message.contains("cannot write the checkpoint of step 20") {
                kinds.insert("first checkpoint")
                XCTAssertTrue(message.contains("no checkpoint was written yet"), context)
            } else {
                kinds.insert("metrics")
                XCTAssertTrue(message.contains("metrics.h5"), context)
            }
        }
        // the fillers were chosen so that the disk fills at each of the three places
        XCTAssertEqual(kinds, ["kept", "first checkpoint", "metrics"])
    }
}
