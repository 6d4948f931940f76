import ArgumentParser
import Foundation
import BMCore
import BMStorage
import BMDistributed

struct BMLabCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bmlab",
        abstract: "BlackMambaLab: small BlackMamba-style models on a CPU, from plugins.",
        version: BMLab.version,
        subcommands: [DoctorCommand.self, ListCommand.self, ValidateCommand.self, TrainCommand.self, EvalCommand.self, GenerateCommand.self, DemoCommand.self, SweepCommand.self, PlotCommand.self, ReportCommand.self, RobustnessCommand.self, NotebookCommand.self, SinkhornCommand.self, BenchCommand.self, ImportCommand.self, ExportCommand.self])
}

/// Loads OpenBLAS (fast kernels, threads = cores) and turns errors into a message + exit code.
func startBLAS(threads: Int = 0) {
    do { try BLAS.setup(threads: threads) } catch { fail(error) }
}

/// Batch-1 generation (`BLAS.setUpForGeneration`); errors become a message + exit code.
func startGeneration(threads: Int = 0) {
    do { try BLAS.setUpForGeneration(threads: threads) } catch { fail(error) }
}

/// Exit codes (README): 2 for a refusal or a file that cannot be read or written
/// (also libhdf5's and the file system's errors), 3 a missing system part, 4 a
/// numerical failure, 130/143 a stopping signal, 64 a command line that does not parse.
func fail(_ error: Error) -> Never {
    let fileError = error is HDF5Error || error is AtomicFileError ||
        [NSCocoaErrorDomain, NSPOSIXErrorDomain].contains((error as NSError).domain)
    let code: Int32 = (error as? BMError)?.exitCode ?? (fileError ? 2 : 1)
    // one rank of several: say which, and end every rank (MPI_Abort) rather than leave
    // the others waiting in a collective for this one
    if let world = MPICommunicator.current, world.size > 1 {
        FileHandle.standardError.write("bmlab: error: rank \(world.rank) of \(world.size): \(BMError.reason(error))\n".data(using: .utf8)!)
        world.abort(code: code)
    }
    FileHandle.standardError.write("bmlab: error: \(BMError.reason(error))\n".data(using: .utf8)!)
    exit(code)
}

/// A command-line option check: one line naming the option and what it must be, exit 2
/// (the same as every other user error; commands call it from `validate()`).
func require(_ ok: Bool, _ message: @autoclosure () -> String) {
    if !ok { fail(BMError.invalid(message())) }
}

func requireThreads(_ n: Int, _ name: String = "--threads") {
    require(n >= 0, "\(name) must be 0 (one per available core) or a positive count, got \(n)")
}

/// Settings that do nothing useful, one `bmlab: warning:` line each on standard error.
func warn(_ warnings: [String]) {
    for w in warnings { FileHandle.standardError.write(Data("bmlab: warning: \(w)\n".utf8)) }
}

/// Runs `body`, mapping toolkit errors to their exit codes and clear messages.
func guarded(_ body: () throws -> Void) {
    do { try body() } catch { fail(error) }
}

extension WeightFormat: ExpressibleByArgument {}
extension EvalRouting: ExpressibleByArgument {}
