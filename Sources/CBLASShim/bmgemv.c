// Row-split matrix-vector products for batch-1 generation (see bmgemv.h).
#define _GNU_SOURCE
#include "bmgemv.h"
#include "bmblas.h"
#include "bmdispatch.h"
#include "bmpool.h"
#include <stdint.h>
#include <string.h>

// ---------------------------------------------------------------------------
// Kernels: y[r0..<r1] = A[r0..<r1, :] · x

// bf16 weights: A holds the upper 16 bits of each fp32 weight (bm_f32_to_bf16); a
// weight widens exactly to fp32 (bits << 16) and is multiplied and summed in fp32,
// in the same order as the fp32 kernels (one body for both), so the result equals the
// fp32 kernel run on the widened weights, bit for bit. Half the bytes to read per token.

static inline float bf16_to_f32(uint16_t h) {
    union { uint32_t u; float f; } v = { .u = (uint32_t)h << 16 };
    return v.f;
}

__attribute__((always_inline))
static inline float load1(const void *A, size_t k, int bf16) {
    return bf16 ? bf16_to_f32(((const uint16_t *)A)[k]) : ((const float *)A)[k];
}

__attribute__((always_inline))
static inline void rows_scalar_any(const void *A, int r0, int r1, int cols, int lda,
                                   const float *x, float *y, int acc, int bf16) {
    for (int i = r0; i < r1; i++) {
        size_t a = (size_t)i * lda;
        float v = 0;
        for (int j = 0; j < cols; j++) v += load1(A, a + j, bf16) * x[j];
        y[i] = acc ? y[i] + v : v;
    }
}

// The vector builds (gemv_body.h): rows_avx2 / rows_bf16_avx2 and rows_avx512 / rows_bf16_avx512.
// Their 16-float vectors never cross a call boundary, so clang's ABI note does not apply.
#pragma clang diagnostic ignored "-Wpsabi"
#define SUF avx2
#define TARGET "avx2,fma"
#include "gemv_body.h"
#undef SUF
#undef TARGET
#define SUF avx512
#define TARGET "avx512f,avx512vl,avx512bw,avx512dq,fma"
#include "gemv_body.h"
#undef SUF
#undef TARGET

static void rows_scalar(const float *A, int r0, int r1, int cols, int lda, const float *x, float *y, int acc) {
    rows_scalar_any(A, r0, r1, cols, lda, x, y, acc, 0);
}
static void rows_bf16_scalar(const uint16_t *A, int r0, int r1, int cols, int lda, const float *x, float *y, int acc) {
    rows_scalar_any(A, r0, r1, cols, lda, x, y, acc, 1);
}

void bm_f32_to_bf16(const float *src, uint16_t *dst, long n) {
    for (long i = 0; i < n; i++) {
        union { float f; uint32_t u; } v = { .f = src[i] };
        if ((v.u & 0x7f800000u) == 0x7f800000u && (v.u & 0x007fffffu)) { dst[i] = (uint16_t)((v.u >> 16) | 0x40); continue; }  // NaN stays NaN
        v.u += 0x7fffu + ((v.u >> 16) & 1u);          // round to nearest, ties to even
        dst[i] = (uint16_t)(v.u >> 16);
    }
}

typedef void (*rows_fn)(const float *, int, int, int, int, const float *, float *, int);
typedef void (*rows16_fn)(const uint16_t *, int, int, int, int, const float *, float *, int);
typedef struct { rows_fn f32; rows16_fn bf16; } gemv_ops;

// The builds, fastest first, chosen by the toolkit's one dispatch rule (bmdispatch.h).
static const gemv_ops ops_avx512 = { rows_avx512, rows_bf16_avx512 };
static const gemv_ops ops_avx2 = { rows_avx2, rows_bf16_avx2 };
static const gemv_ops ops_generic = { rows_scalar, rows_bf16_scalar };
static const bm_build builds[] = {
    { "avx512", &ops_avx512 }, { "avx2", &ops_avx2 }, { "generic", &ops_generic },
};
static bm_kernel kernel = { builds, sizeof builds / sizeof builds[0], 0 };
static const gemv_ops *chosen_ops(void) { return bm_kernel_build(&kernel)->ops; }

const char *bm_rowgemv_kernel(void) { return bm_kernel_build(&kernel)->path; }
int bm_rowgemv_use_kernel(const char *name) { return bm_kernel_use(&kernel, name); }

// ---------------------------------------------------------------------------
// Rows split over the toolkit's thread pool (bmpool.h): one part per pool thread, in
// whole blocks of 4 rows; each row is computed by one thread in a fixed order.

enum { MIN_PARALLEL_ELEMS = 32768 };

typedef struct {
    const gemv_ops *ops;
    const float *A; const uint16_t *A16;     // A16 (bf16 weights) instead of A when set
    const float *x; float *y;
    int rows, cols, lda, acc, chunk;
} gemv_task;

static void gemv_part(void *ctx, int p) {
    const gemv_task *t = ctx;
    int r0 = p * t->chunk, r1 = r0 + t->chunk;
    if (r1 > t->rows) r1 = t->rows;
    if (r0 >= r1) return;
    if (t->A16) t->ops->bf16(t->A16, r0, r1, t->cols, t->lda, t->x, t->y, t->acc);
    else t->ops->f32(t->A, r0, r1, t->cols, t->lda, t->x, t->y, t->acc);
}

static void rowgemv(const float *A, const uint16_t *A16, int rows, int cols, int lda, const float *x, float *y, int accumulate) {
    gemv_task t = { chosen_ops(), A, A16, x, y, rows, cols, lda, accumulate, rows };
    int n = bm_pool_threads();
    // Small products run on the calling thread (as does any product the pool cannot
    // take now: bm_pool_run runs its parts in turn).
    if (n > 1 && (long)rows * cols >= MIN_PARALLEL_ELEMS && rows >= 8 * n) {
        t.chunk = ((rows + n - 1) / n + 3) & ~3;
        bm_pool_run((rows + t.chunk - 1) / t.chunk, gemv_part, &t);
        return;
    }
    gemv_part(&t, 0);
}

void bm_rowgemv(const float *A, int rows, int cols, int lda, const float *x, float *y, int accumulate) {
    rowgemv(A, NULL, rows, cols, lda, x, y, accumulate);
}

void bm_rowgemv_bf16(const uint16_t *A, int rows, int cols, int lda, const float *x, float *y, int accumulate) {
    rowgemv(NULL, A, rows, cols, lda, x, y, accumulate);
}
