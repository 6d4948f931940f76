// The selective scan, built per instruction set and dispatched on CPUID (bmkernels.h).
#include "bmkernels.h"
#include "bmblas.h"
#include <stdlib.h>
#include <string.h>

// The AVX2 build passes 16-float vectors (two ymm registers) between its inlined
// helpers; they never cross a call boundary, so clang's note on their ABI does not apply.
#pragma clang diagnostic ignored "-Wpsabi"

#define W 16                 // channels a vector, in both builds (bmkernels.h)
#define SUF _avx2
#define TARGET "avx2,fma"
#include "scan_body.h"
#undef SUF
#undef TARGET

#define SUF _avx512
#define TARGET "avx512f,avx512vl,avx512bw,avx512dq,fma"
#include "scan_body.h"
#undef SUF
#undef TARGET

typedef void (*fwd_fn)(const bm_scan_shape *, const float *, const float *, const float *, const float *,
                       const float *, const float *, float *, float *, float *, int, int);
typedef void (*bwd_fn)(const bm_scan_shape *, const float *, const float *, const float *, const float *,
                       const float *, const float *, const float *, const float *, float *, float *, float *,
                       float *, float *, float *, float *, int, int, float *, float *);

static const struct kernel {
    const char *name;
    int needs512;
    fwd_fn forward;
    bwd_fn backward;
} kernels[] = {
    { "avx512", 1, scan_forward__avx512, scan_backward__avx512 },
    { "avx2", 0, scan_forward__avx2, scan_backward__avx2 },
};

// AVX-512 F, BW, DQ and VL, as the OpenBLAS kernel choice reads them (bmblas.h)
static int has_avx512(void) { return (bm_cpu_features() & 2) != 0; }

static const struct kernel *find(const char *name) {
    for (unsigned i = 0; i < sizeof kernels / sizeof kernels[0]; i++)
        if (strcmp(kernels[i].name, name) == 0) return &kernels[i];
    return 0;
}

int bm_scan_kernel_runs(const char *name) {
    const struct kernel *k = find(name);
    return k && (!k->needs512 || has_avx512());
}

// Chosen once, from CPUID, on first use (a plain pointer: all choices are valid kernels,
// and bm_scan_use_kernel is for tests and benchmarks, called between scans).
static const struct kernel *current;

static const struct kernel *chosen(void) {
    const struct kernel *k = __atomic_load_n(&current, __ATOMIC_ACQUIRE);
    if (!k) {
        // The path BMLAB_KERNELS forces (bmblas.h; the scan has no generic build, so
        // "generic" takes the AVX2 one), else the CPU's best.
        const char *path = bm_kernels_forced();
        if (strcmp(path, "generic") == 0) path = "avx2";
        k = *path && bm_scan_kernel_runs(path) ? find(path) : has_avx512() ? &kernels[0] : &kernels[1];
        __atomic_store_n(&current, k, __ATOMIC_RELEASE);
    }
    return k;
}

int bm_scan_use_kernel(const char *name) {
    if (!bm_scan_kernel_runs(name)) return 0;
    __atomic_store_n(&current, find(name), __ATOMIC_RELEASE);
    return 1;
}

const char *bm_scan_kernel(void) { return chosen()->name; }

void bm_scan_forward(const bm_scan_shape *s, const float *u, const float *delta, const float *A,
                     const float *B, const float *C, const float *D, float *y, float *state,
                     float *boundaries, int c0, int c1) {
    chosen()->forward(s, u, delta, A, B, C, D, y, state, boundaries, c0, c1);
}

void bm_scan_backward(const bm_scan_shape *s, const float *u, const float *delta, const float *A,
                      const float *B, const float *C, const float *D, const float *boundaries,
                      const float *gy, float *du, float *dDelta, float *dB, float *dC, float *dA,
                      float *dD, float *work, int c0, int c1, float *sharedDB, float *sharedDC) {
    chosen()->backward(s, u, delta, A, B, C, D, boundaries, gy, du, dDelta, dB, dC, dA, dD, work, c0, c1,
                       sharedDB, sharedDC);
}
