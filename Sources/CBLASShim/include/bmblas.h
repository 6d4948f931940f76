// BlackMambaLab's door to OpenBLAS.
//
// OpenBLAS chooses its kernels once, when the library is loaded, from the
// OPENBLAS_CORETYPE environment variable or its own CPU detection (which picks
// slow SSE3 "Prescott" kernels on some virtual CPUs). Linking it normally means
// it is loaded before any of our code runs. So we do not link it: bm_blas_load()
// picks a core type from CPUID (unless the environment already sets one, which
// is respected), exports it, and only then dlopen()s libopenblas.
#pragma once
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

enum { BM_ROW_MAJOR = 101, BM_NO_TRANS = 111, BM_TRANS = 112 };

/// Loads OpenBLAS (idempotent, thread-safe). Returns 0 on success, otherwise
/// -1 and a message in bm_blas_error().
int bm_blas_load(int threads);
const char *bm_blas_error(void);
/// Where the core type came from: "environment", "cpuid" or "openblas".
const char *bm_blas_coretype_source(void);
/// The core type we asked for ("" when we left the choice to OpenBLAS).
const char *bm_blas_coretype_requested(void);
/// The library file that was loaded.
const char *bm_blas_library_path(void);

const char *bm_blas_corename(void);
const char *bm_blas_config(void);
int bm_blas_get_threads(void);
void bm_blas_set_threads(int n);
/// CPU feature bits: 1 = avx2+fma, 2 = avx512 (f, bw, dq, vl).
int bm_cpu_features(void);
/// Number of CPUs this process may run on (sched_getaffinity).
int bm_cpu_available(void);

/// The path every one of the toolkit's own kernels takes (the selective scan, the
/// one-token matrix-vector product, and any kernel added later): "" when each picks
/// its best build from CPUID, else a forced path: "avx512", "avx2" or "generic" (a
/// kernel without a generic build takes its AVX2 one). Read once from the environment
/// variable BMLAB_KERNELS unless bm_kernels_force ran first; a value that is not a
/// path this CPU runs is ignored here (CPUID decides, never SIGILL) and refused with a
/// message by the Swift start-up (`BLAS.setup`, through `Kernels.checkEnvironment`).
const char *bm_kernels_forced(void);
/// 0 when `path` names a path this CPU runs, -1 for an unknown name, -2 for a path
/// the CPU cannot run.
int bm_kernels_check(const char *path);
/// Forces the path ("" = back to CPUID) for the kernels chosen after this call; each
/// kernel chooses once, at its first use. Returns bm_kernels_check's code (0 = done).
int bm_kernels_force(const char *path);

/// Per-thread flag: set while a thread runs a part of a parallel loop, so that a
/// matrix product started there runs on that thread instead of splitting again.
int bm_thread_in_parallel(void);
void bm_thread_set_in_parallel(int on);

void bm_sgemm(int transA, int transB, int M, int N, int K, float alpha,
              const float *A, int lda, const float *B, int ldb, float beta,
              float *C, int ldc);
void bm_sgemv(int transA, int M, int N, float alpha, const float *A, int lda,
              const float *x, float beta, float *y);

#ifdef __cplusplus
}
#endif

// The toolkit's own one-token matrix-vector products (generation).
#include "bmgemv.h"

// Makes C's stdout line-buffered (Swift cannot name `stdout` under strict concurrency).
void bm_stdout_line_buffered(void);

// Process lifetime (docs/sweeps.md, "Interrupting a sweep"):
// A parent that runs workers records SIGINT / SIGTERM instead of dying at once, so it
// can stop its workers first; bm_stop_signal() is the signal received (0 = none).
void bm_catch_stop_signals(void);
int bm_stop_signal(void);
// A worker dies with its parent: SIGTERM when the parent exits (PR_SET_PDEATHSIG); if
// the parent `expected` is already gone, the worker ends at once (exit 143).
void bm_die_with_parent(int expected);
