// Open MPI, loaded at run time. The toolkit does not link libmpi: a `bmlab` built on a
// machine without Open MPI trains single-process as before, and the same binary trains
// data-parallel under mpirun or srun when libmpi.so.40 (Debian's libopenmpi3) is present
// (docs/distributed.md says why this is a run-time choice and not a second target).
//
// Swift cannot import Open MPI's predefined handles: MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM …
// are macros taking the address of a library global (`((MPI_Comm) ((void *) &(ompi_mpi_comm_world)))`
// in mpi.h). This shim resolves those globals with dlsym, so each handle is the address
// the macro would give; scripts/mpi/abi-check.c compiles against the installed mpi.h and
// checks that the two agree. Handles are opaque pointers in Open MPI (not in MPICH, whose
// library has another soname and is not loaded).
//
// Every call is made from the thread that called bm_mpi_init (MPI_THREAD_FUNNELED). A
// watchdog thread, started by bm_mpi_init, ends the process with a message when one
// collective has waited longer than the timeout (a rank that died or hangs): the job
// never hangs on a lost peer.
#pragma once
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Loads libmpi.so.40 and resolves what the toolkit calls. 0 on success; otherwise
/// writes why into err (e.g. the library is not installed) and returns -1.
int bm_mpi_load(char *err, int errlen);

/// MPI_Init_thread (FUNNELED) with MPI_ERRORS_RETURN on MPI_COMM_WORLD; fills rank and
/// size. `timeout_s` > 0 arms the collective watchdog. 0 on success, else -1 with err.
int bm_mpi_init(int *rank, int *size, double timeout_s, char *err, int errlen);

/// What the watchdog says when it fires (names the step; set before each step).
void bm_mpi_set_context(const char *what);

/// Sum over ranks, in place. count elements of float / double. 0, or an MPI error code
/// (message in err).
int bm_mpi_allreduce_sum_float(float *buf, int64_t count, char *err, int errlen);
int bm_mpi_allreduce_sum_double(double *buf, int64_t count, char *err, int errlen);
/// Minimum and maximum of a 64-bit value over ranks.
int bm_mpi_allreduce_minmax_u64(uint64_t value, uint64_t *minv, uint64_t *maxv, char *err, int errlen);
int bm_mpi_barrier(char *err, int errlen);
/// Ends every rank of the job (MPI_Abort) with `code`.
void bm_mpi_abort(int code);
/// MPI_Finalize (once; no-op when not initialised).
int bm_mpi_finalize(void);

#ifdef __cplusplus
}
#endif
