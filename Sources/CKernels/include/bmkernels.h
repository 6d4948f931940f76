// The toolkit's own vector kernels, compiled for several instruction sets and chosen
// at run time from CPUID (docs/performance.md, "Kernels and CPUID dispatch").
//
// Each kernel body is written once, on a vector of W = 16 floats (clang's
// ext_vector_type), and compiled twice: for AVX-512 (one zmm register a vector) and for
// AVX2 + FMA (two ymm registers). The two builds do the same arithmetic in the same
// order (the same source, FMA contraction decided before code generation), so the
// AVX2 build, tested on every machine, checks the AVX-512 build's logic; the AVX-512
// build differs from it only in instruction selection. (A build with W = 8 on AVX2 was
// measured 10-20 % slower than 16 on the scan: a broadcast B_t[n], C_t[n] and the loop
// overhead serve half as many channels.)
#pragma once

#ifdef __cplusplus
extern "C" {
#endif

/// The selective scan's shape and strides (Swift's `ScanShape`): element (t, c) of δ is
/// at t·deltaT + c; element (t, n, c) of B at t·bT + n·bN + c·bC with bC 0 (one value
/// for all channels) or 1 (rows padded to Ep: read and written 16 channels at a time);
/// C likewise. Ep = E rounded up to 16: the row length of A,
/// the state, the chunk boundaries and dA ([N, Ep], zero in the padding).
typedef struct {
    int L, E, N, Ep, chunk, deltaT;
    int bT, bN, bC, cT, cN, cC;
} bm_scan_shape;

/// s_t = exp(δ_t·A)·s_{t−1} + δ_t·B_t·u_t, y_t = Σ_n s_t·C_t + D·u_t for one sequence,
/// channels [c0, c1) (c0 a multiple of 16, c1 a multiple of 16 or E: the state is
/// written 16 channels at a time). u, y: [L, E]; state [N, Ep] updated in
/// place; boundaries [chunks, N, Ep] receives the state before each chunk (may be NULL);
/// D may be NULL.
void bm_scan_forward(const bm_scan_shape *s, const float *u, const float *delta, const float *A,
                     const float *B, const float *C, const float *D, float *y, float *state,
                     float *boundaries, int c0, int c1);

/// Backward of bm_scan_forward (the states recomputed chunk by chunk from the
/// boundaries). Writes du [L, E]; accumulates dDelta, dB, dC (strides of B, C), dA
/// [N, Ep], dD [E] (may be NULL). A B or C shared by all channels (bC or cC = 0) gets
/// this call's share of its gradient in sharedDB / sharedDC ([L, N], accumulated) when
/// they are given, else in dB / dC. `work` holds N·Ep + 4·chunk·N·16 floats (mu and four
/// [chunk, N, 16] blocks; Swift's `ScanShape.workSize`).
void bm_scan_backward(const bm_scan_shape *s, const float *u, const float *delta, const float *A,
                      const float *B, const float *C, const float *D, const float *boundaries,
                      const float *gy, float *du, float *dDelta, float *dB, float *dC, float *dA,
                      float *dD, float *work, int c0, int c1, float *sharedDB, float *sharedDC);

/// The scan's kernel: "avx512" or "avx2". At first use it is the path BMLAB_KERNELS
/// forces (bm_kernels_forced in bmblas.h; "generic" takes "avx2"), else the CPU's best.
const char *bm_scan_kernel(void);
/// Chooses the kernel by name; returns 0 (and changes nothing) if this CPU cannot run it.
int bm_scan_use_kernel(const char *name);
/// Whether this CPU can run the named kernel.
int bm_scan_kernel_runs(const char *name);

#ifdef __cplusplus
}
#endif
