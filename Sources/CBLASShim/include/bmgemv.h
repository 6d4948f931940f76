// Batch-1 generation's matrix-vector products, tuned for memory bandwidth.
//
// A token of generation multiplies every weight matrix of the model by one vector:
// the cost is reading the weights (about 20 MB per token for bench-small), not the
// arithmetic. OpenBLAS's sgemv is fast on one thread, but waking its threads costs
// more than a 30 µs product is worth. Here a row-major A·x kernel (four rows at a time;
// built for AVX-512 and for AVX2 + FMA from one source, gemv_body.h, and as plain C,
// chosen by the toolkit's dispatch rule, bmdispatch.h) splits its rows over the
// toolkit's thread pool (bmpool.h), whose threads spin briefly between tasks, so
// consecutive products of a token reuse awake threads.
//
// Each output row is computed by one thread in a fixed order, so the result does not
// depend on the number of threads.
#pragma once
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// y[rows] = A[rows, cols] · x[cols] (+ y when accumulate != 0); A row-major, leading dimension lda.
void bm_rowgemv(const float *A, int rows, int cols, int lda, const float *x, float *y, int accumulate);

/// Which build runs: "avx512", "avx2" or "generic" (plain C). At first use it is the
/// path BMLAB_KERNELS forces (bm_kernels_forced), else the CPU's best.
const char *bm_rowgemv_kernel(void);
/// Chooses the build ("avx512", "avx2" or "generic"), so that a test runs every path
/// the CPU can run. Returns 0 (and changes nothing) for one the CPU cannot run.
int bm_rowgemv_use_kernel(const char *name);

/// The same product with bf16 weights (the upper 16 bits of fp32 values, as
/// bm_f32_to_bf16 rounds them), widened to fp32 and summed in fp32 in the fp32
/// kernel's order: equal to bm_rowgemv on the widened weights, bit for bit.
void bm_rowgemv_bf16(const uint16_t *A, int rows, int cols, int lda, const float *x, float *y, int accumulate);
/// fp32 → bf16, rounding to nearest (ties to even); NaN stays NaN.
void bm_f32_to_bf16(const float *src, uint16_t *dst, long n);

#ifdef __cplusplus
}
#endif
