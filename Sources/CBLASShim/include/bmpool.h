// The toolkit's one thread pool: its parallel loops (Parallel.forEach / split in
// BMCore: the scan per sequence, the experts side by side, the parts of a matrix
// product) and the rows of generation's one-token matrix-vector products all run here.
//
// A task is `parts` calls fn(ctx, p), p in 0..<parts, taken one at a time from a shared
// counter by the calling thread and the pool's helpers, so each part runs once, on
// some thread; parts write disjoint memory and anything summed over parts is summed
// afterwards in part order, so results never depend on the threads. Helpers spin for a
// while after a task (a token's ~30 products, or a training step's loops, come
// microseconds apart), then sleep on a futex.
//
// A task runs on the calling thread alone, part after part, when the pool has one
// thread, when the caller is itself running a part (a product inside a loop over
// experts: its cores are busy), or when another thread's task is in flight.
#pragma once

#ifdef __cplusplus
extern "C" {
#endif

typedef void (*bm_part_fn)(void *ctx, int part);

/// Runs fn(ctx, p) for every p in 0..<parts and returns when all are done.
void bm_pool_run(int parts, bm_part_fn fn, void *ctx);
/// Threads a task may use, the caller included (starts helpers as needed; helpers
/// beyond a lowered count sleep until it is raised). Until set: every available CPU.
void bm_pool_set_threads(int n);
int bm_pool_threads(void);

#ifdef __cplusplus
}
#endif
