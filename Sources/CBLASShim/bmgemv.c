// Row-split matrix-vector products for batch-1 generation (see bmgemv.h).
#define _GNU_SOURCE
#include "bmgemv.h"
#include "bmblas.h"
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <string.h>
#include <unistd.h>
#include <immintrin.h>

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
static rows_fn kernel;
static rows16_fn kernel16;
static pthread_once_t kernel_once = PTHREAD_ONCE_INIT;
static int set_kernel(const char *name) {
    if (bm_kernels_check(name) != 0) return 0;
    if (strcmp(name, "generic") == 0) { kernel = rows_scalar; kernel16 = rows_bf16_scalar; return 1; }
    if (strcmp(name, "avx2") == 0) { kernel = rows_avx2; kernel16 = rows_bf16_avx2; return 1; }
    if (strcmp(name, "avx512") == 0) { kernel = rows_avx512; kernel16 = rows_bf16_avx512; return 1; }
    return 0;
}

// The forced path (BMLAB_KERNELS, bmblas.h) if any, else the CPU's best build.
static void choose_kernel(void) {
    int f = bm_cpu_features();
    if (set_kernel(bm_kernels_forced())) return;
    set_kernel((f & 2) ? "avx512" : (f & 1) ? "avx2" : "generic");
}

const char *bm_rowgemv_kernel(void) {
    pthread_once(&kernel_once, choose_kernel);
    return kernel == rows_avx512 ? "avx512" : kernel == rows_avx2 ? "avx2" : "generic";
}

int bm_rowgemv_use_kernel(const char *name) {
    pthread_once(&kernel_once, choose_kernel);
    return set_kernel(name);
}

// ---------------------------------------------------------------------------
// A small pool: helpers spin on a generation counter for a while after each task
// (a token's ~30 products arrive microseconds apart), then sleep on a futex.

enum { MAX_THREADS = 16, SPIN_NS = 300000, MIN_PARALLEL_ELEMS = 32768 };

static struct {
    const float *A, *x; float *y;
    const uint16_t *A16;           // bf16 weights instead of A when set
    int rows, cols, lda, acc, parts, chunk;
    _Atomic unsigned gen;          // bumped once per task, only by the caller holding `busy`
    _Atomic uint64_t stamp;        // (gen << 32) | parts of the task being published, written before gen
    _Atomic int pending;           // helpers still working on the current task
    _Atomic int sleepers;          // helpers inside futex_wait
    _Atomic int busy;              // a task is in flight, or the pool is being resized
    _Atomic int threads;           // threads per product, the caller included
    int helpers;                   // started helper threads (ids 1...helpers)
} pool = { .threads = 1 };
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned start_gen[MAX_THREADS];   // the generation a helper starts from

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static void run_part(int p) {
    int r0 = p * pool.chunk, r1 = r0 + pool.chunk;
    if (r1 > pool.rows) r1 = pool.rows;
    if (r0 >= r1) return;
    if (pool.A16) kernel16(pool.A16, r0, r1, pool.cols, pool.lda, pool.x, pool.y, pool.acc);
    else kernel(pool.A, r0, r1, pool.cols, pool.lda, pool.x, pool.y, pool.acc);
}

static void *helper_main(void *arg) {
    int id = (int)(intptr_t)arg;                 // part index 1...
    unsigned seen = start_gen[id];               // written before this thread was created
    for (;;) {
        unsigned g;
        uint64_t start = 0;
        int spins = 0;
        while ((g = atomic_load_explicit(&pool.gen, memory_order_acquire)) == seen) {
            // Spin for a while after a task (the next product of the token comes soon);
            // a helper beyond the current thread count sleeps at once.
            if (id < atomic_load_explicit(&pool.threads, memory_order_relaxed)) {
                _mm_pause();
                if (++spins % 256 != 0) continue;
                uint64_t t = now_ns();
                if (!start) { start = t; continue; }
                if (t - start <= SPIN_NS) continue;
            }
            atomic_fetch_add(&pool.sleepers, 1);
            syscall(SYS_futex, &pool.gen, FUTEX_WAIT_PRIVATE, seen, NULL, NULL, 0);
            atomic_fetch_sub(&pool.sleepers, 1);
            start = 0;
        }
        seen = g;
        // The task's gen and parts in one read: a helper that is not a part of task g
        // may look late, when the caller has finished g and is setting up the next
        // task (parts already rewritten); the stamp then names another gen, and this
        // helper waits for that task's gen instead of running a part of it twice. A
        // part of task g cannot be late: the task waits for it.
        uint64_t st = atomic_load_explicit(&pool.stamp, memory_order_acquire);
        if ((unsigned)(st >> 32) != g) continue;
        if (id < (int)(st & 0xffffffffu)) {
            run_part(id);
            atomic_fetch_sub_explicit(&pool.pending, 1, memory_order_release);
        }
    }
    return NULL;
}

static void acquire_busy(void) {
    int expected = 0;
    while (!atomic_compare_exchange_weak(&pool.busy, &expected, 1)) { expected = 0; sched_yield(); }
}

void bm_rowgemv_set_threads(int n) {
    if (n < 1) n = 1;
    if (n > MAX_THREADS) n = MAX_THREADS;
    pthread_mutex_lock(&pool_lock);
    acquire_busy();                              // no task in flight while the pool changes
    while (pool.helpers < n - 1) {
        int id = pool.helpers + 1;
        start_gen[id] = atomic_load(&pool.gen);  // gen cannot move while we hold busy
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int rc = pthread_create(&t, &attr, helper_main, (void *)(intptr_t)id);
        pthread_attr_destroy(&attr);
        if (rc != 0) break;                      // fewer helpers: still correct
        pool.helpers++;
    }
    atomic_store(&pool.threads, n <= pool.helpers + 1 ? n : pool.helpers + 1);
    atomic_store(&pool.busy, 0);
    pthread_mutex_unlock(&pool_lock);
}

int bm_rowgemv_threads(void) { return atomic_load(&pool.threads); }

static void run_alone(const float *A, const uint16_t *A16, int rows, int cols, int lda, const float *x, float *y, int acc) {
    if (A16) kernel16(A16, 0, rows, cols, lda, x, y, acc);
    else kernel(A, 0, rows, cols, lda, x, y, acc);
}

static void rowgemv(const float *A, const uint16_t *A16, int rows, int cols, int lda, const float *x, float *y, int accumulate) {
    pthread_once(&kernel_once, choose_kernel);
    int expected = 0;
    // Small products, a caller inside a parallel loop (its cores are busy), or a
    // second concurrent caller: run on the calling thread.
    if (atomic_load_explicit(&pool.threads, memory_order_relaxed) <= 1 || (long)rows * cols < MIN_PARALLEL_ELEMS ||
        bm_thread_in_parallel() || !atomic_compare_exchange_strong(&pool.busy, &expected, 1)) {
        run_alone(A, A16, rows, cols, lda, x, y, accumulate);
        return;
    }
    int n = atomic_load(&pool.threads);          // stable while we hold busy
    if (n <= 1 || rows < 8 * n) {
        atomic_store(&pool.busy, 0);
        run_alone(A, A16, rows, cols, lda, x, y, accumulate);
        return;
    }
    pool.A = A; pool.A16 = A16; pool.x = x; pool.y = y;
    pool.rows = rows; pool.cols = cols; pool.lda = lda; pool.acc = accumulate;
    pool.parts = n;
    pool.chunk = ((rows + n - 1) / n + 3) & ~3;     // whole 4-row blocks per thread
    atomic_store_explicit(&pool.pending, n - 1, memory_order_relaxed);
    unsigned next = atomic_load(&pool.gen) + 1;      // gen cannot move while we hold busy
    atomic_store(&pool.stamp, ((uint64_t)next << 32) | (uint64_t)n);
    atomic_fetch_add(&pool.gen, 1);                  // publishes the task (seq_cst)
    if (atomic_load(&pool.sleepers) > 0)
        syscall(SYS_futex, &pool.gen, FUTEX_WAKE_PRIVATE, MAX_THREADS, NULL, NULL, 0);
    run_part(0);
    while (atomic_load_explicit(&pool.pending, memory_order_acquire) > 0) _mm_pause();
    atomic_store(&pool.busy, 0);
}

void bm_rowgemv(const float *A, int rows, int cols, int lda, const float *x, float *y, int accumulate) {
    rowgemv(A, NULL, rows, cols, lda, x, y, accumulate);
}

void bm_rowgemv_bf16(const uint16_t *A, int rows, int cols, int lda, const float *x, float *y, int accumulate) {
    rowgemv(NULL, A, rows, cols, lda, x, y, accumulate);
}
