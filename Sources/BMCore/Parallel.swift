import Dispatch

/// Runs body(i) for i in 0..<n on up to `Parallel.workers` threads. Each i must
/// write disjoint memory; reductions are done afterwards in a fixed order, so
/// results do not depend on scheduling (determinism). No BLAS calls inside.
public enum Parallel {
    /// Threads for the toolkit's own parallel loops (set to 1 inside sweep workers).
    nonisolated(unsafe) public static var workers = BLAS.availableCores

    public static func forEach(_ n: Int, _ body: (Int) -> Void) {
        if n <= 1 || workers <= 1 {
            for i in 0..<n { body(i) }
            return
        }
        withoutActuallyEscaping(body) { b in
            let box = UncheckedClosure(run: b)   // indices write disjoint memory (see above)
            DispatchQueue.concurrentPerform(iterations: n) { box.run($0) }
        }
    }
}

private struct UncheckedClosure: @unchecked Sendable {
    let run: (Int) -> Void
}
