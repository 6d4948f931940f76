import BMCore

/// Moving token rows to and from the experts' grouped buffers (the MoE's dispatch and
/// combine). `order[s]` is the assignment in slot s (slots grouped by expert),
/// `token[i]` the token of assignment i. Rows are d floats.
public enum ExpertDispatch {
    /// xe[s] = x[token[order[s]]] for s in 0..<n.            x: [T, d] → xe: [n, d]
    @inline(__always)
    public static func gather(_ x: UnsafePointer<Float>, into xe: UnsafeMutablePointer<Float>,
                              order: UnsafePointer<Int32>, token: UnsafePointer<Int32>, n: Int, d: Int) {
        for s in 0..<n { (xe + s * d).update(from: x + Int(token[Int(order[s])]) * d, count: d) }
    }

    /// y[token[order[s]]] += w[order[s]] · ye[s] (w = 1 when nil) for s in 0..<n, in slot
    /// order (deterministic).                                 ye: [n, d] → y: [T, d]
    @inline(__always)
    public static func scatterAdd(_ ye: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>,
                                  order: UnsafePointer<Int32>, token: UnsafePointer<Int32>,
                                  weight: UnsafePointer<Float>?, n: Int, d: Int) {
        for s in 0..<n {
            let i = Int(order[s])
            axpy(weight?[i] ?? 1, ye + s * d, y + Int(token[i]) * d, d)
        }
    }
}
