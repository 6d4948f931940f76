// One dispatch mechanism for the toolkit's kernels (bmdispatch.h).
#include "bmdispatch.h"
#include "bmblas.h"
#include <string.h>

static const char *const order[] = { "avx512", "avx2", "generic" };   // fastest first
enum { PATHS = 3 };

static int rank_of(const char *path) {
    for (int i = 0; i < PATHS; i++) if (strcmp(order[i], path) == 0) return i;
    return -1;
}

const bm_build *bm_dispatch_find(const bm_build *builds, int count, const char *path) {
    for (int i = 0; i < count; i++)
        if (strcmp(builds[i].path, path) == 0) return bm_kernels_check(path) == 0 ? &builds[i] : 0;
    return 0;
}

const bm_build *bm_kernel_build(bm_kernel *k) {
    const bm_build *b = __atomic_load_n(&k->current, __ATOMIC_ACQUIRE);
    if (!b) {
        b = bm_dispatch_choose(k->builds, k->count);
        __atomic_store_n(&k->current, b, __ATOMIC_RELEASE);
    }
    return b;
}

int bm_kernel_use(bm_kernel *k, const char *path) {
    const bm_build *b = bm_dispatch_find(k->builds, k->count, path);
    if (!b) return 0;
    __atomic_store_n(&k->current, b, __ATOMIC_RELEASE);
    return 1;
}

const bm_build *bm_dispatch_choose(const bm_build *builds, int count) {
    if (count <= 0) return 0;
    const char *forced = bm_kernels_forced();
    if (*forced) {
        // the forced path's build, else the next slower one the kernel has
        for (int r = rank_of(forced); r >= 0 && r < PATHS; r++) {
            const bm_build *b = bm_dispatch_find(builds, count, order[r]);
            if (b) return b;
        }
        // slower than every build (generic, for a kernel without one): its slowest it runs
        for (int i = count - 1; i >= 0; i--)
            if (bm_kernels_check(builds[i].path) == 0) return &builds[i];
    }
    for (int i = 0; i < count; i++)
        if (bm_kernels_check(builds[i].path) == 0) return &builds[i];
    return &builds[count - 1];
}
