import BMCore

/// The causal depthwise convolution of the SSM blocks (mamba, s4d, mamba2), over one
/// sequence of L positions and C channels with K taps. The weight is kept transposed,
/// `wt [K, C]` (the parameter `conv1d.weight` is `[C, 1, K]`), so a tap is a contiguous
/// row; generation keeps a history of the K most recent raw inputs `[K, C]`, oldest first.
enum CausalConv {
    /// out[t, c] = bias[c] + Σ_k wt[k, c] · x[t − (K−1) + k, c]   (x rows of stride ld;
    /// out [L, C]). Positions before the sequence are zeros, or rows of `history`.
    static func forward(x: UnsafePointer<Float>, ld: Int, out: UnsafeMutablePointer<Float>, L: Int, C: Int, K: Int,
                        wt: UnsafePointer<Float>, bias: UnsafePointer<Float>, history: UnsafePointer<Float>? = nil) {
        for t in 0..<L {
            let row = out + t * C
            row.update(from: bias, count: C)
            for k in 0..<K {
                let src = t - (K - 1) + k
                let xr: UnsafePointer<Float>
                if src >= 0 { xr = x + src * ld } else if let history { xr = history + (K + src) * C } else { continue }
                let wr = wt + k * C
                for c in 0..<C { row[c] += wr[c] * xr[c] }
            }
        }
    }

    /// The backward, from a start without history: dx[t', c] = Σ_k dout[t' + (K−1) − k, c] ·
    /// wt[k, c] (written, rows of stride ldx); dwt[k, c] += Σ_t dout[t, c] · x[t − (K−1) + k, c];
    /// dbias[c] += Σ_t dout[t, c].    dout: [L, C]
    static func backward(x: UnsafePointer<Float>, ld: Int, dout: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>, ldx: Int,
                         L: Int, C: Int, K: Int, wt: UnsafePointer<Float>, dwt: UnsafeMutablePointer<Float>, dbias: UnsafeMutablePointer<Float>) {
        for t in 0..<L { (dx + t * ldx).update(repeating: 0, count: C) }
        for t in 0..<L {
            let gr = dout + t * C
            for c in 0..<C { dbias[c] += gr[c] }
            for k in 0..<K {
                let src = t - (K - 1) + k
                if src < 0 { continue }
                let xr = x + src * ld, dxr = dx + src * ldx, wr = wt + k * C, dwr = dwt + k * C
                for c in 0..<C {
                    dwr[c] += gr[c] * xr[c]
                    dxr[c] += gr[c] * wr[c]
                }
            }
        }
    }

    /// Appends a sequence's L raw inputs (rows of `x`, stride ld) to its history [K, C].
    /// Row k reads old row L + k > k, not yet overwritten.
    static func pushHistory(_ history: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, ld: Int, L: Int, C: Int, K: Int) {
        for k in 0..<K {
            let t = L - K + k, dst = history + k * C
            if t >= 0 { dst.update(from: x + t * ld, count: C) } else { dst.update(from: history + (L + k) * C, count: C) }
        }
    }

    /// conv1d.weight [C, 1, K] → wt [K, C].
    static func transpose(_ w: UnsafePointer<Float>, into wt: UnsafeMutablePointer<Float>, C: Int, K: Int) {
        for c in 0..<C { for k in 0..<K { wt[k * C + c] = w[c * K + k] } }
    }
}
