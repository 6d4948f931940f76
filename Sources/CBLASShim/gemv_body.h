// y[r0..<r1] = A[r0..<r1, :] · x on vectors of 16 floats (clang's ext_vector_type),
// included by bmgemv.c once per instruction set with SUF and TARGET defined: AVX2 + FMA
// (a vector is two ymm registers) and AVX-512 (one zmm). The same source at the same
// width gives both builds the same arithmetic in the same order, so the AVX2 build,
// tested on every machine, checks the AVX-512 build's logic (docs/performance.md).
//
// Four rows at a time: x is loaded once per 16 columns and used for four rows, whose
// four accumulators (eight ymm registers on AVX2) hide the FMA latency. Memory-bound by
// design. bf16 weights (`bf16` is a constant in each caller, so each gets its own
// branch-free copy) widen exactly to fp32 (bits << 16) and are summed in the fp32
// order, so a bf16 product equals the fp32 product of the widened weights bit for bit.

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define F_(name) CAT(name, SUF)
#define VF F_(gvf_)
#define VU F_(gvu_)
#define VH F_(gvh_)
#define VF8 F_(gvf8_)
#define VU8 F_(gvu8_)
#define VH8 F_(gvh8_)
#define INL __attribute__((target(TARGET), always_inline)) static inline

typedef float VF __attribute__((ext_vector_type(16)));
typedef unsigned VU __attribute__((ext_vector_type(16)));
typedef unsigned short VH __attribute__((ext_vector_type(16)));
typedef float VF8 __attribute__((ext_vector_type(8)));
typedef unsigned VU8 __attribute__((ext_vector_type(8)));
typedef unsigned short VH8 __attribute__((ext_vector_type(8)));

/// 16 (or 8: a row's remainder of 8 to 15 columns) weights from column k, widened
/// from bf16 when `bf16`; one body for both widths.
#define GLOAD(VFT, VUT, VHT) {                                            \
    VFT v;                                                                \
    if (!bf16) { __builtin_memcpy(&v, (const float *)A + k, sizeof v); return v; } \
    VHT h;                                                                \
    __builtin_memcpy(&h, (const uint16_t *)A + k, sizeof h);              \
    VUT w = __builtin_convertvector(h, VUT) << 16;                        \
    __builtin_memcpy(&v, &w, sizeof v);                                   \
    return v;                                                             \
}
INL VF F_(gld_)(const void *A, size_t k, int bf16) GLOAD(VF, VU, VH)
INL VF8 F_(gld8_)(const void *A, size_t k, int bf16) GLOAD(VF8, VU8, VH8)
#undef GLOAD
/// Σ of the lanes as a tree (halves added), a fixed order.
INL float F_(ghsum8_)(VF8 v) {
    float a[8];
    __builtin_memcpy(a, &v, sizeof a);
    for (int h = 4; h >= 1; h /= 2)
        for (int i = 0; i < h; i++) a[i] += a[i + h];
    return a[0];
}
INL float F_(ghsum_)(VF v) { return F_(ghsum8_)(v.lo + v.hi); }

INL void F_(rows_any_)(const void *A, int r0, int r1, int cols, int lda, const float *x, float *y, int acc, int bf16) {
    int i = r0;
    for (; i + 4 <= r1; i += 4) {
        size_t a0 = (size_t)i * lda, a1 = a0 + lda, a2 = a1 + lda, a3 = a2 + lda;
        VF s0 = {}, s1 = {}, s2 = {}, s3 = {};
        int j = 0;
        for (; j + 16 <= cols; j += 16) {
            VF xv;
            __builtin_memcpy(&xv, x + j, sizeof xv);
            s0 = __builtin_elementwise_fma(F_(gld_)(A, a0 + j, bf16), xv, s0);
            s1 = __builtin_elementwise_fma(F_(gld_)(A, a1 + j, bf16), xv, s1);
            s2 = __builtin_elementwise_fma(F_(gld_)(A, a2 + j, bf16), xv, s2);
            s3 = __builtin_elementwise_fma(F_(gld_)(A, a3 + j, bf16), xv, s3);
        }
        float out[4] = { F_(ghsum_)(s0), F_(ghsum_)(s1), F_(ghsum_)(s2), F_(ghsum_)(s3) };
        if (j + 8 <= cols) {                     // 8 more columns in one step
            VF8 xv;
            __builtin_memcpy(&xv, x + j, sizeof xv);
            out[0] += F_(ghsum8_)(F_(gld8_)(A, a0 + j, bf16) * xv);
            out[1] += F_(ghsum8_)(F_(gld8_)(A, a1 + j, bf16) * xv);
            out[2] += F_(ghsum8_)(F_(gld8_)(A, a2 + j, bf16) * xv);
            out[3] += F_(ghsum8_)(F_(gld8_)(A, a3 + j, bf16) * xv);
            j += 8;
        }
        for (; j < cols; j++) {
            out[0] += load1(A, a0 + j, bf16) * x[j]; out[1] += load1(A, a1 + j, bf16) * x[j];
            out[2] += load1(A, a2 + j, bf16) * x[j]; out[3] += load1(A, a3 + j, bf16) * x[j];
        }
        for (int k = 0; k < 4; k++) y[i + k] = acc ? y[i + k] + out[k] : out[k];
    }
    for (; i < r1; i++) {
        size_t a = (size_t)i * lda;
        VF s = {};
        int j = 0;
        for (; j + 16 <= cols; j += 16) {
            VF xv;
            __builtin_memcpy(&xv, x + j, sizeof xv);
            s = __builtin_elementwise_fma(F_(gld_)(A, a + j, bf16), xv, s);
        }
        float v = F_(ghsum_)(s);
        if (j + 8 <= cols) {
            VF8 xv;
            __builtin_memcpy(&xv, x + j, sizeof xv);
            v += F_(ghsum8_)(F_(gld8_)(A, a + j, bf16) * xv);
            j += 8;
        }
        for (; j < cols; j++) v += load1(A, a + j, bf16) * x[j];
        y[i] = acc ? y[i] + v : v;
    }
}

__attribute__((target(TARGET)))
static void F_(rows_)(const float *A, int r0, int r1, int cols, int lda, const float *x, float *y, int acc) {
    F_(rows_any_)(A, r0, r1, cols, lda, x, y, acc, 0);
}
__attribute__((target(TARGET)))
static void F_(rows_bf16_)(const uint16_t *A, int r0, int r1, int cols, int lda, const float *x, float *y, int acc) {
    F_(rows_any_)(A, r0, r1, cols, lda, x, y, acc, 1);
}

#undef VF
#undef VU
#undef VH
#undef VF8
#undef VU8
#undef VH8
#undef INL
