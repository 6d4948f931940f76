import BMCore
import BMMixers

/// `bmlab bench kernels`, the toolkit's own kernels at bench-small shapes: the
/// selective scan (forward, backward) and the MoE dispatch (gather, scatter-add).
/// Best of `repeats`; GB/s counts the bytes each kernel reads and writes in memory.
public enum KernelsBench {
    public struct Figure: Codable, Sendable {
        public var name: String
        public var ms: Double
        public var elementsPerSecond: Double    // scan: state elements (B·L·E·N); dispatch: floats moved
        public var gbPerSecond: Double
    }

    /// The selective scan of B sequences in parallel, as a Mamba layer runs it.
    public static func scan(B: Int = 8, L: Int = 256, E: Int = 512, N: Int = 16, R: Int = 16, chunk: Int = 16,
                            repeats: Int = 7) -> [Figure] {
        let W = R + 2 * N                                    // x_proj output row: [δr | B | C]
        let sh = ScanShape(L: L, E: E, N: N, chunk: chunk, deltaT: E, bT: W, bN: 1, bC: 0, cT: W, cN: 1, cC: 0)
        let SN = N * sh.Ep
        let u = FloatBuffer(count: B * L * E), delta = FloatBuffer(count: B * L * E), gy = FloatBuffer(count: B * L * E)
        let dbc = FloatBuffer(count: B * L * W), A = FloatBuffer(count: SN)
        let y = FloatBuffer(count: B * L * E), du = FloatBuffer(count: B * L * E), dDelta = FloatBuffer(count: B * L * E)
        let ddbc = FloatBuffer(count: B * L * W), dA = FloatBuffer(count: B * SN), dD = FloatBuffer(count: B * E)
        let state = FloatBuffer(count: B * SN), bnd = FloatBuffer(count: B * sh.chunks * SN)
        let work = FloatBuffer(count: B * sh.workSize), D = FloatBuffer(count: E)
        var rng = RNG(seed: 8)
        rng.fillNormal(u.pointer, B * L * E, std: 1)
        rng.fillUniform(delta.pointer, B * L * E, 0.001, 0.1)      // softplus outputs at init
        rng.fillNormal(gy.pointer, B * L * E, std: 1)
        rng.fillNormal(dbc.pointer, B * L * W, std: 1)
        rng.fillUniform(D.pointer, E, 0.5, 1.5)
        for n in 0..<N { for c in 0..<sh.Ep { A.pointer[n * sh.Ep + c] = c < E ? -Float(n + 1) : 0 } }
        let (up, dp, ap, bp, dsk) = (u.pointer, delta.pointer, A.pointer, dbc.pointer, D.pointer)
        let fwd = bestTime(repeats: repeats) {
            Parallel.forEach(B) { b in
                let s0 = state.pointer + b * SN
                s0.update(repeating: 0, count: SN)
                SelectiveScan.forward(sh, u: up + b * L * E, delta: dp + b * L * E, A: ap,
                                      Bm: bp + b * L * W + R, Cm: bp + b * L * W + R + N, D: dsk,
                                      y: y.pointer + b * L * E, state: s0, boundaries: bnd.pointer + b * sh.chunks * SN)
            }
        }
        let bwd = bestTime(repeats: repeats) {
            Parallel.forEach(B) { b in
                SelectiveScan.backward(sh, u: up + b * L * E, delta: dp + b * L * E, A: ap,
                                       Bm: bp + b * L * W + R, Cm: bp + b * L * W + R + N, D: dsk,
                                       boundaries: bnd.pointer + b * sh.chunks * SN, gy: gy.pointer + b * L * E,
                                       du: du.pointer + b * L * E, dDelta: dDelta.pointer + b * L * E,
                                       dB: ddbc.pointer + b * L * W + R, dC: ddbc.pointer + b * L * W + R + N,
                                       dA: dA.pointer + b * SN, dD: dD.pointer + b * E, work: work.pointer + b * sh.workSize)
            }
        }
        let elements = Double(B * L * E * N)
        let rowFloats = Double(B * L * E), bcFloats = Double(B * L * 2 * N), bndFloats = Double(B * sh.chunks * SN)
        let fwdBytes = 4 * (3 * rowFloats + bcFloats + bndFloats)               // u, δ, B, C in; y, boundaries out
        let bwdBytes = 4 * (7 * rowFloats + 3 * bcFloats + bndFloats)           // u, δ, gy, B, C, boundaries in; du, dδ (rmw), dB, dC out
        return [Figure(name: "scan_forward", ms: fwd * 1e3, elementsPerSecond: elements / fwd, gbPerSecond: fwdBytes / fwd / 1e9),
                Figure(name: "scan_backward", ms: bwd * 1e3, elementsPerSecond: elements / bwd, gbPerSecond: bwdBytes / bwd / 1e9)]
    }

    /// MoE dispatch at bench-small shapes: T tokens of width d, top-1 over E experts.
    public static func dispatch(T: Int = 2048, d: Int = 256, E: Int = 8, repeats: Int = 15) -> [Figure] {
        let x = FloatBuffer(count: T * d), xe = FloatBuffer(count: T * d), y = FloatBuffer(count: T * d)
        let gate = FloatBuffer(count: T), order = IntBuffer(count: T), token = IntBuffer(count: T)
        var rng = RNG(seed: 9)
        rng.fillNormal(x.pointer, T * d, std: 1)
        rng.fillUniform(gate.pointer, T, 0, 1)
        // assignment i = token i, expert random; slots grouped by expert (stable)
        let expert = (0..<T).map { _ in rng.below(E) }
        var slot = 0
        for e in 0..<E { for i in 0..<T where expert[i] == e { order.pointer[slot] = Int32(i); slot += 1 } }
        for i in 0..<T { token.pointer[i] = Int32(i) }
        let g = bestTime(repeats: repeats) {
            ExpertDispatch.gather(x.pointer, into: xe.pointer, order: order.pointer, token: token.pointer, n: T, d: d)
        }
        let s = bestTime(repeats: repeats) {
            ExpertDispatch.scatterAdd(xe.pointer, into: y.pointer, order: order.pointer, token: token.pointer,
                                      weight: gate.pointer, n: T, d: d)
        }
        let floats = Double(T * d)
        return [Figure(name: "moe_gather", ms: g * 1e3, elementsPerSecond: floats / g, gbPerSecond: 8 * floats / g / 1e9),
                Figure(name: "moe_scatter_add", ms: s * 1e3, elementsPerSecond: floats / s, gbPerSecond: 12 * floats / s / 1e9)]
    }
}
