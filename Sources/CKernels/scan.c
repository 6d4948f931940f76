// The selective scan, built per instruction set and dispatched on CPUID (bmkernels.h,
// bmdispatch.h).
#include "bmkernels.h"
#include "bmblas.h"
#include "bmdispatch.h"
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

typedef struct { fwd_fn forward; bwd_fn backward; } scan_ops;

// The builds, fastest first, chosen by the toolkit's one dispatch rule (bmdispatch.h):
// the scan has no generic build, so a forced "generic" path takes the AVX2 one.
static const scan_ops ops_avx512 = { scan_forward__avx512, scan_backward__avx512 };
static const scan_ops ops_avx2 = { scan_forward__avx2, scan_backward__avx2 };
static const bm_build builds[] = { { "avx512", &ops_avx512 }, { "avx2", &ops_avx2 } };
static bm_kernel kernel = { builds, sizeof builds / sizeof builds[0], 0 };
static const scan_ops *chosen(void) { return bm_kernel_build(&kernel)->ops; }

int bm_scan_kernel_runs(const char *name) { return bm_dispatch_find(builds, kernel.count, name) != 0; }
int bm_scan_use_kernel(const char *name) { return bm_kernel_use(&kernel, name); }
const char *bm_scan_kernel(void) { return bm_kernel_build(&kernel)->path; }

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
