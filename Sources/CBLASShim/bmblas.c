#define _GNU_SOURCE
#include "bmblas.h"
#include <dlfcn.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*sgemm_fn)(int, int, int, int, int, int, float, const float *, int,
                         const float *, int, float, float *, int);
typedef void (*sgemv_fn)(int, int, int, int, float, const float *, int,
                         const float *, int, float, float *, int);
typedef char *(*str_fn)(void);
typedef int (*int_fn)(void);
typedef void (*setint_fn)(int);

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int load_status = -1;
static int wanted_threads = 0;
static char error_text[512] = "OpenBLAS not loaded yet";
static char source[32] = "";
static char requested[32] = "";
static char libpath[256] = "";
static sgemm_fn p_sgemm;
static sgemv_fn p_sgemv;
static str_fn p_corename, p_config;
static int_fn p_get_threads;
static setint_fn p_set_threads;

int bm_cpu_features(void) {
    __builtin_cpu_init();
    int f = 0;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) f |= 1;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl")) f |= 2;
    if (__builtin_cpu_supports("avx")) f |= 4;
    return f;
}

// Every Swift target is compiled for AVX2 + FMA (-target-cpu haswell, Package.swift), so
// on a CPU without them the first vector instruction would end the process with SIGILL.
// This file is compiled for plain x86-64 and its constructor runs before any Swift code:
// it says what is missing and exits with status 2 instead.
__attribute__((constructor)) static void bm_require_avx2_fma(void) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return;
    static const char msg[] =
        "BlackMambaLab needs a CPU with AVX2 and FMA (Intel Haswell, AMD Zen or later): it is "
        "compiled for them (Package.swift, -target-cpu haswell), and this CPU lacks one or both.\n";
    ssize_t r = write(2, msg, sizeof msg - 1);
    (void)r;
    _exit(2);
}

int bm_cpu_available(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0) return n;
    }
    return 1;
}

// ---------------------------------------------------------------------------
// The toolkit kernels' path (bmblas.h): "" = CPUID, else avx512 / avx2 / generic.

static char kernels_path[16] = "";
static pthread_once_t kernels_once = PTHREAD_ONCE_INIT;

int bm_kernels_check(const char *path) {
    if (!path) return -1;
    int f = bm_cpu_features();
    if (strcmp(path, "") == 0 || strcmp(path, "generic") == 0) return 0;
    if (strcmp(path, "avx2") == 0) return (f & 1) ? 0 : -2;
    if (strcmp(path, "avx512") == 0) return (f & 2) ? 0 : -2;
    return -1;
}

static void kernels_from_env(void) {
    const char *env = getenv("BMLAB_KERNELS");
    if (env && strcmp(env, "cpuid") != 0 && bm_kernels_check(env) == 0)
        snprintf(kernels_path, sizeof kernels_path, "%s", env);
}

const char *bm_kernels_forced(void) {
    pthread_once(&kernels_once, kernels_from_env);
    return kernels_path;
}

int bm_kernels_force(const char *path) {
    pthread_once(&kernels_once, kernels_from_env);
    int rc = bm_kernels_check(path);
    if (rc == 0) snprintf(kernels_path, sizeof kernels_path, "%s", path);
    return rc;
}

static void do_load(void) {
    const char *env = getenv("OPENBLAS_CORETYPE");
    if (env && *env) {
        snprintf(source, sizeof source, "environment");
        snprintf(requested, sizeof requested, "%s", env);
    } else {
        int f = bm_cpu_features();
        const char *core = (f & 2) ? "SkylakeX" : (f & 1) ? "Haswell" : NULL;
        if (core) {
            setenv("OPENBLAS_CORETYPE", core, 1);
            snprintf(source, sizeof source, "cpuid");
            snprintf(requested, sizeof requested, "%s", core);
        } else {
            snprintf(source, sizeof source, "openblas");
        }
    }
    if (wanted_threads > 0 && !getenv("OPENBLAS_NUM_THREADS")) {
        char buf[16];
        snprintf(buf, sizeof buf, "%d", wanted_threads);
        setenv("OPENBLAS_NUM_THREADS", buf, 1);
    }
    // Prefer the pthread flavour's own file: the generic names are Debian
    // "alternatives" links that may point at another BLAS.
    const char *candidates[] = {
        getenv("BMLAB_OPENBLAS_LIB"),
        "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0",
        "/usr/lib/aarch64-linux-gnu/openblas-pthread/libopenblas.so.0",
        "libopenblas.so.0",
        "libopenblas.so",
    };
    void *h = NULL;
    for (size_t i = 0; i < sizeof candidates / sizeof *candidates && !h; i++) {
        if (!candidates[i] || !*candidates[i]) continue;
        h = dlopen(candidates[i], RTLD_NOW | RTLD_GLOBAL);
        if (h) snprintf(libpath, sizeof libpath, "%s", candidates[i]);
    }
    if (!h) {
        snprintf(error_text, sizeof error_text,
                 "cannot load OpenBLAS (%s); install libopenblas-dev (make deps)", dlerror());
        return;
    }
    p_sgemm = (sgemm_fn)dlsym(h, "cblas_sgemm");
    p_sgemv = (sgemv_fn)dlsym(h, "cblas_sgemv");
    p_corename = (str_fn)dlsym(h, "openblas_get_corename");
    p_config = (str_fn)dlsym(h, "openblas_get_config");
    p_get_threads = (int_fn)dlsym(h, "openblas_get_num_threads");
    p_set_threads = (setint_fn)dlsym(h, "openblas_set_num_threads");
    if (!p_sgemm || !p_sgemv || !p_corename || !p_get_threads || !p_set_threads) {
        snprintf(error_text, sizeof error_text,
                 "%s lacks cblas_sgemm/openblas_* symbols: not an OpenBLAS build", libpath);
        return;
    }
    if (wanted_threads > 0) p_set_threads(wanted_threads);
    load_status = 0;
    error_text[0] = 0;
}

int bm_blas_load(int threads) {
    wanted_threads = threads;
    pthread_once(&once, do_load);
    return load_status;
}

static void ensure(void) {
    // A product before BLAS.setup: OpenBLAS still single-threaded (the toolkit splits).
    if (bm_blas_load(1) != 0) {
        fprintf(stderr, "bmlab: %s\n", error_text);
        exit(3);
    }
}

const char *bm_blas_error(void) { return error_text; }
const char *bm_blas_coretype_source(void) { return source; }
const char *bm_blas_coretype_requested(void) { return requested; }
const char *bm_blas_library_path(void) { return libpath; }
const char *bm_blas_corename(void) { ensure(); return p_corename(); }
const char *bm_blas_config(void) { ensure(); return p_config ? p_config() : ""; }
int bm_blas_get_threads(void) { ensure(); return p_get_threads(); }
void bm_blas_set_threads(int n) { ensure(); p_set_threads(n); }

static _Thread_local int in_parallel;
int bm_thread_in_parallel(void) { return in_parallel; }
void bm_thread_set_in_parallel(int on) { in_parallel = on; }

void bm_sgemm(int transA, int transB, int M, int N, int K, float alpha,
              const float *A, int lda, const float *B, int ldb, float beta,
              float *C, int ldc) {
    if (!p_sgemm) ensure();
    p_sgemm(BM_ROW_MAJOR, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void bm_sgemv(int transA, int M, int N, float alpha, const float *A, int lda,
              const float *x, float beta, float *y) {
    if (!p_sgemv) ensure();
    p_sgemv(BM_ROW_MAJOR, transA, M, N, alpha, A, lda, x, 1, beta, y, 1);
}

void bm_stdout_line_buffered(void) { setvbuf(stdout, NULL, _IOLBF, 0); }

// ---------------------------------------------------------------------------
// Process lifetime (bmblas.h).

static volatile sig_atomic_t stop_signal = 0;
static void record_stop(int sig) { stop_signal = sig; }

void bm_catch_stop_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = record_stop;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

int bm_stop_signal(void) { return stop_signal; }

void bm_die_with_parent(int expected) {
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (expected > 0 && getppid() != expected) _exit(128 + SIGTERM);   // the parent died before prctl
}
