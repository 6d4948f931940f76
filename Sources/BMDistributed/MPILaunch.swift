import Foundation
import BMCore

/// How the toolkit starts a data-parallel run itself (a sweep's workers with `--ranks`,
/// `bmlab train --slurm-ranks`): the launcher, its flags and its environment, so that a
/// user never has to know them (docs/distributed.md).
public enum MPILaunch {
    /// Open MPI settings every launch gets: the allreduce algorithm fixed to basic_linear
    /// (rank order: the same bits on every run, and those of `--shards` in one process),
    /// and no ptrace-based single copy between ranks (refused in containers).
    public static let environment: [String: String] = {
        var e = ["OMPI_MCA_coll_tuned_use_dynamic_rules": "1", "OMPI_MCA_coll_tuned_allreduce_algorithm": "1",
                 "OMPI_MCA_btl_vader_single_copy_mechanism": "none"]
        if getuid() == 0 { e["OMPI_ALLOW_RUN_AS_ROOT"] = "1"; e["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1" }
        return e
    }()

    /// `mpirun -np N` on this machine: no binding (each rank runs its own threads),
    /// oversubscription allowed (more ranks than cores is slow, not an error).
    public static func mpirun(ranks: Int) throws -> (path: String, arguments: [String], environment: [String: String]) {
        guard let path = Machine.which("mpirun") else {
            throw BMError.system("--ranks \(ranks): mpirun is not installed (make deps installs openmpi-bin)")
        }
        return (path, ["-np", "\(ranks)", "--bind-to", "none", "--oversubscribe"], environment)
    }

    /// The lines of an sbatch script that launch `command` on the job's tasks with srun
    /// through Slurm's PMIx plugin (Debian's Open MPI is built against PMIx; its Slurm
    /// has `mpi_pmix`), `cpus` CPUs a task (srun does not inherit sbatch's
    /// --cpus-per-task since Slurm 22.05), ending every task when one fails.
    public static func srunLines(_ command: String, cpus: Int) -> String {
        environment.filter { !$0.key.hasPrefix("OMPI_ALLOW") }.sorted { $0.key < $1.key }
            .map { "export \($0.key)=\($0.value)\n" }.joined()
            + "exec srun --mpi=pmix --kill-on-bad-exit=1 --cpus-per-task=\(cpus) \(command)\n"
    }
}
