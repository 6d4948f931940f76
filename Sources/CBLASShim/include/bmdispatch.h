// One dispatch mechanism for the toolkit's CPU-specific kernels (the selective scan,
// the one-token matrix-vector product, and any kernel added later).
//
// A kernel lists its builds, fastest first, each named by a path of the toolkit
// ("avx512", "avx2", "generic") with a pointer to its functions, and asks
// bm_dispatch_choose for one at its first use:
//   - when a path is forced (BMLAB_KERNELS, --kernels; bm_kernels_forced), the build of
//     that path, or, for a kernel without one, its next slower build (a kernel with no
//     generic build takes its AVX2 one), or its slowest when none is slower;
//   - otherwise the fastest build this CPU runs (CPUID, bm_kernels_check).
// Tests and benchmarks switch builds with bm_dispatch_find, which gives a build only
// when the CPU runs it.
#pragma once

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    const char *path;     // "avx512", "avx2" or "generic"
    const void *ops;      // the kernel's own table of functions for this build
} bm_build;

/// The build to run, by the rules above (never NULL for a non-empty list).
const bm_build *bm_dispatch_choose(const bm_build *builds, int count);
/// The build of `path`, or NULL when the kernel has none or the CPU cannot run it.
const bm_build *bm_dispatch_find(const bm_build *builds, int count, const char *path);

/// A kernel: its builds and the one in use, chosen at first use (a plain pointer: every
/// choice is a valid build; switching is for tests and benchmarks, between calls).
typedef struct {
    const bm_build *builds;
    int count;
    const bm_build *current;
} bm_kernel;

/// The build in use (chosen by bm_dispatch_choose at the first call).
const bm_build *bm_kernel_build(bm_kernel *k);
/// Switches to the build of `path`; 0 (and no change) when the kernel has none the CPU runs.
int bm_kernel_use(bm_kernel *k, const char *path);

#ifdef __cplusplus
}
#endif
