import CBLASShim

/// The toolkit's threads: one pool (bmpool.h) for its own parallel loops, the parts of
/// matrix products (`sgemm` splits them; OpenBLAS runs single-threaded) and the rows of
/// generation's one-token products.
public enum Parallel {
    /// Threads of the pool, the caller included (1 inside sweep workers; every
    /// available core until set).
    public static var workers: Int {
        get { Int(bm_pool_threads()) }
        set { bm_pool_set_threads(Int32(Swift.max(1, newValue))) }
    }

    /// Runs body(i) for i in 0..<n on up to `Parallel.workers` threads. Each i must
    /// write disjoint memory; reductions are done afterwards in a fixed order, so
    /// results do not depend on scheduling (determinism).
    public static func forEach(_ n: Int, _ body: (Int) -> Void) {
        if n <= 1 || workers <= 1 {
            for i in 0..<n { body(i) }
            return
        }
        split(n, body)
    }

    /// Runs body(range) for the blocks 0..<size, size..<2·size, … of 0..<n, in parallel
    /// (a short n is one block, run inline). Blocks are fixed by `size`, so what each
    /// computes does not depend on the threads.
    public static func forEachBlock(_ n: Int, size: Int, _ body: (Range<Int>) -> Void) {
        forEach((n + size - 1) / size) { k in body(k * size..<Swift.min(n, (k + 1) * size)) }
    }

    /// Runs body(p) for p in 0..<n concurrently (the parts of one matrix product,
    /// sized by `BLAS.threads`). Parts write disjoint memory. A matrix product
    /// inside a part runs on that part's thread (`isNested`), so loops can hold
    /// products (one expert per part) without oversubscribing the cores.
    public static func split(_ n: Int, _ body: (Int) -> Void) {
        withoutActuallyEscaping(body) { b in
            var box = UncheckedClosure(run: b)   // indices write disjoint memory (see above)
            withUnsafeMutablePointer(to: &box) { ctx in
                bm_pool_run(Int32(n), { ctx, i in
                    ctx!.assumingMemoryBound(to: UncheckedClosure.self).pointee.run(Int(i))
                }, ctx)
            }
        }
    }

    /// True on a thread that is running a part of `forEach` / `split`.
    public static var isNested: Bool { bm_thread_in_parallel() != 0 }
}

private struct UncheckedClosure: @unchecked Sendable {
    let run: (Int) -> Void
}
