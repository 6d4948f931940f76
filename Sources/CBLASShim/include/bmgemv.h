// Batch-1 generation's matrix-vector products, tuned for memory bandwidth.
//
// A token of generation multiplies every weight matrix of the model by one vector:
// the cost is reading the weights (about 20 MB per token for bench-small), not the
// arithmetic. OpenBLAS's sgemv is fast on one thread, but waking its threads costs
// more than a 30 µs product is worth. Here a row-major A·x kernel (AVX2 + FMA, four
// rows at a time) splits its rows over a small pool of threads that spin briefly
// between calls, so consecutive products of a token reuse awake threads, then sleep.
//
// Each output row is computed by one thread in a fixed order, so the result does not
// depend on the number of threads.
#pragma once

#ifdef __cplusplus
extern "C" {
#endif

/// y[rows] = A[rows, cols] · x[cols] (+ y when accumulate != 0); A row-major, leading dimension lda.
void bm_rowgemv(const float *A, int rows, int cols, int lda, const float *x, float *y, int accumulate);

/// Threads used by bm_rowgemv (1 = the calling thread only). Starts helpers as needed;
/// helpers beyond a lowered count sleep until it is raised again.
void bm_rowgemv_set_threads(int n);
int bm_rowgemv_threads(void);
/// Which kernel runs: "avx2-fma" or "scalar".
const char *bm_rowgemv_kernel(void);

#ifdef __cplusplus
}
#endif
