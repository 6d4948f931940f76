// The toolkit's one thread pool (bmpool.h).
#define _GNU_SOURCE
#include "bmpool.h"
#include "bmblas.h"
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <immintrin.h>
#include <sched.h>

enum { MAX_THREADS = 64, SPIN_NS = 300000 };

static struct {
    bm_part_fn fn;                 // the task in flight: fn(ctx, p) for p in 0..<parts
    void *ctx;
    int parts;
    _Atomic int next;              // the next part to take
    _Atomic unsigned gen;          // bumped once per task, only by the caller holding `busy`
    _Atomic uint64_t stamp;        // (gen << 32) | helpers taking part, written before gen
    _Atomic int pending;           // helpers still working on the current task
    _Atomic int sleepers;          // helpers inside futex_wait
    _Atomic int busy;              // a task is in flight, or the pool is being resized
    _Atomic int threads;           // threads a task may use, the caller included; 0 = not set
    int helpers;                   // started helper threads (ids 1...helpers)
} pool;
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned start_gen[MAX_THREADS];   // the generation a helper starts from

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

// Takes parts from the shared counter until none is left.
static void take_parts(void) {
    int p;
    while ((p = atomic_fetch_add_explicit(&pool.next, 1, memory_order_relaxed)) < pool.parts) pool.fn(pool.ctx, p);
}

static void *helper_main(void *arg) {
    int id = (int)(intptr_t)arg;                 // 1...
    unsigned seen = start_gen[id];               // written before this thread was created
    bm_thread_set_in_parallel(1);                // a helper only ever runs parts
    for (;;) {
        unsigned g;
        uint64_t start = 0;
        int spins = 0;
        while ((g = atomic_load_explicit(&pool.gen, memory_order_acquire)) == seen) {
            // Spin for a while after a task (the next one comes soon); a helper beyond
            // the current thread count sleeps at once.
            if (id < atomic_load_explicit(&pool.threads, memory_order_relaxed)) {
                _mm_pause();
                if (++spins % 256 != 0) continue;
                sched_yield();                   // other runnable threads of the machine go first
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
        // The task's gen and helper count in one read: a helper that does not take part
        // in task g may look late, when the caller has finished g and is setting up the
        // next task; the stamp then names another gen, and this helper waits for that
        // task's gen instead of joining a task it is not counted in. A helper that takes
        // part cannot be late: the task waits for it.
        uint64_t st = atomic_load_explicit(&pool.stamp, memory_order_acquire);
        if ((unsigned)(st >> 32) != g) continue;
        if (id <= (int)(st & 0xffffffffu)) {
            take_parts();
            atomic_fetch_sub_explicit(&pool.pending, 1, memory_order_release);
        }
    }
    return NULL;
}

static void acquire_busy(void) {
    int expected = 0;
    while (!atomic_compare_exchange_weak(&pool.busy, &expected, 1)) { expected = 0; sched_yield(); }
}

void bm_pool_set_threads(int n) {
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

int bm_pool_threads(void) {
    int n = atomic_load(&pool.threads);
    if (n == 0) { bm_pool_set_threads(bm_cpu_available()); n = atomic_load(&pool.threads); }
    return n;
}

static void run_inline(int parts, bm_part_fn fn, void *ctx) {
    int outer = bm_thread_in_parallel();
    bm_thread_set_in_parallel(1);
    for (int p = 0; p < parts; p++) fn(ctx, p);
    bm_thread_set_in_parallel(outer);
}

void bm_pool_run(int parts, bm_part_fn fn, void *ctx) {
    if (parts <= 0) return;
    int expected = 0;
    if (parts == 1 || bm_pool_threads() <= 1 || bm_thread_in_parallel() ||
        !atomic_compare_exchange_strong(&pool.busy, &expected, 1)) {
        run_inline(parts, fn, ctx);
        return;
    }
    int helpers = atomic_load(&pool.threads) - 1;    // stable while we hold busy
    if (helpers > parts - 1) helpers = parts - 1;
    pool.fn = fn; pool.ctx = ctx; pool.parts = parts;
    atomic_store_explicit(&pool.next, 0, memory_order_relaxed);
    atomic_store_explicit(&pool.pending, helpers, memory_order_relaxed);
    unsigned next = atomic_load(&pool.gen) + 1;      // gen cannot move while we hold busy
    atomic_store(&pool.stamp, ((uint64_t)next << 32) | (uint64_t)helpers);
    atomic_fetch_add(&pool.gen, 1);                  // publishes the task (seq_cst)
    if (atomic_load(&pool.sleepers) > 0)
        syscall(SYS_futex, &pool.gen, FUTEX_WAKE_PRIVATE, MAX_THREADS, NULL, NULL, 0);
    bm_thread_set_in_parallel(1);
    take_parts();
    bm_thread_set_in_parallel(0);
    // Wait for the helpers' last parts: spin, then yield the core (on a machine busier
    // than its thread count a helper may be waiting for this very core).
    for (int spins = 0; atomic_load_explicit(&pool.pending, memory_order_acquire) > 0; spins++) {
        if (spins < 4096) _mm_pause(); else sched_yield();
    }
    atomic_store(&pool.busy, 0);
}
