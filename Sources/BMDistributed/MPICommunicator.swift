import Foundation
import BMCore
import CMPIShim

/// Open MPI's MPI_COMM_WORLD, through CMPIShim (libmpi loaded at run time).
///
/// Every call is made from the main thread (MPI_THREAD_FUNNELED). A collective that waits
/// longer than `timeout` seconds for the other ranks ends the process with a message
/// naming the step (CMPIShim's watchdog); mpirun or srun then ends the job.
public final class MPICommunicator: Communicator {
    public let rank: Int
    public let size: Int
    nonisolated(unsafe) private static var shared: MPICommunicator?

    /// Seconds a collective may wait (BMLAB_MPI_TIMEOUT, default 600: longer than rank 0
    /// takes to write a checkpoint of the largest model this machine trains).
    public static var defaultTimeout: Double {
        ProcessInfo.processInfo.environment["BMLAB_MPI_TIMEOUT"].flatMap(Double.init) ?? 600
    }

    /// MPI_Init (once per process); throws `BMError.system` when Open MPI cannot be loaded.
    public static func world(timeout: Double = defaultTimeout) throws -> MPICommunicator {
        if let s = shared { return s }
        var err = [CChar](repeating: 0, count: 512)
        var r: Int32 = 0, n: Int32 = 0
        guard bm_mpi_init(&r, &n, timeout, &err, Int32(err.count)) == 0 else {
            throw BMError.system("--distributed: " + String(cString: err))
        }
        let c = MPICommunicator(rank: Int(r), size: Int(n))
        shared = c
        atexit { _ = bm_mpi_finalize() }
        return c
    }

    /// The world, once `world()` has joined it (nil in a single-process run).
    public static var current: MPICommunicator? { shared }

    private init(rank: Int, size: Int) { self.rank = rank; self.size = size }

    /// Whether this process was started by mpirun or srun as one rank of several
    /// (Open MPI's, PMIx's or Slurm's variables), so `train` runs distributed without the flag.
    public static var launchedAsRank: Bool {
        let env = ProcessInfo.processInfo.environment
        if let n = env["OMPI_COMM_WORLD_SIZE"].flatMap(Int.init) { return n > 1 }
        if env["PMIX_RANK"] != nil, let n = env["SLURM_NTASKS"].flatMap(Int.init) { return n > 1 }
        return false
    }

    private func check(_ rc: Int32, _ err: [CChar]) throws {
        guard rc == 0 else { throw BMError.system("rank \(rank): " + String(cString: err)) }
    }

    public func sum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws {
        var err = [CChar](repeating: 0, count: 512)
        try check(bm_mpi_allreduce_sum_float(buffer, Int64(count), &err, Int32(err.count)), err)
    }

    public func sum(_ buffer: UnsafeMutablePointer<Double>, count: Int) throws {
        var err = [CChar](repeating: 0, count: 512)
        try check(bm_mpi_allreduce_sum_double(buffer, Int64(count), &err, Int32(err.count)), err)
    }

    public func allEqual(_ value: UInt64) throws -> Bool {
        var err = [CChar](repeating: 0, count: 512)
        var lo: UInt64 = 0, hi: UInt64 = 0
        try check(bm_mpi_allreduce_minmax_u64(value, &lo, &hi, &err, Int32(err.count)), err)
        return lo == hi
    }

    public func barrier() throws {
        var err = [CChar](repeating: 0, count: 512)
        try check(bm_mpi_barrier(&err, Int32(err.count)), err)
    }

    public func setContext(_ what: String) { bm_mpi_set_context(what) }

    /// Ends every rank (after an error on one of them, so that no rank waits forever).
    public func abort(code: Int32) -> Never {
        bm_mpi_abort(code)
        fatalError("unreachable")
    }
}
