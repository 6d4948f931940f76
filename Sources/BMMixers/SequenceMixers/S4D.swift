import Foundation
import BMCore
import BMLayers

/// `s4d`: the Mamba block with a linear time-invariant SSM (the Mamba paper's key
/// ablation): `SSMBlock` whose Δ, B and C are learned per-channel parameters, not
/// functions of the input — `dt_proj.bias [E]` (Δ = softplus of it), `B [E, N]`,
/// `C [E, N]`; no x_proj, no dt_proj weight. The scan runs them with zero time strides.
public enum S4D {
    public static let entry = MixerEntry(
        name: "s4d", kind: .sequence,
        summary: "time-invariant SSM (S4D-real): Mamba's block with learned per-channel Δ, B, C",
        options: SSMBlock.blockOptions,
        variants: [[:], ["gate": .bool(false), "skip_d": .bool(false)]],
        validate: SSMBlock.validateDt,
        build: { ctx, o in SSMBlock(ctx, o) { TimeInvariantDynamics($0) } })
}

/// Δ = softplus(dt_proj.bias) [E], B and C [E, N]: the same at every position and sequence.
public final class TimeInvariantDynamics: SSMDynamics {
    public let N: Int, E: Int, Ep: Int
    public private(set) var bParam: Param!, cParam: Param!
    // Δ [E]; B, C as [N, Ep] (channels padded with zeros), derived in `prepare`
    private let delta = FloatBuffer(), Bp = FloatBuffer(), Cp = FloatBuffer()
    private let dDelta = FloatBuffer(), dBp = FloatBuffer(), dCp = FloatBuffer()

    init(_ d: SSMDims) { N = d.N; E = d.E; Ep = d.Ep }

    public var early: [Param] { [] }
    public var late: [Param] { [bParam, cParam] }
    public func declareEarly(_ d: SSMDims) {}
    public func declareLate(_ d: SSMDims) {
        // S4D-real: B = 1, C ~ N(0, 1/N) (Gu et al. 2022, "On the parameterization…").
        let ps = d.ctx.params, p = d.ctx.prefix
        bParam = ps.declare("\(p).B", [E, N], init: .ones, decay: false, group: .ssm)
        cParam = ps.declare("\(p).C", [E, N], init: .normal(std: 1 / Float(N).squareRoot()), decay: false)
    }

    public func activationFloats(B: Int, L: Int) -> Int {
        // Δ, B, C; per-sequence slices of ∂Δ, ∂B, ∂C
        E + 2 * N * Ep + B * (E + 2 * N * Ep)
    }

    public func scanShape(_ blk: SSMBlock, L: Int) -> ScanShape {
        ScanShape(L: L, E: E, N: N, chunk: blk.chunk, deltaT: 0, bT: 0, bN: Ep, bC: 1, cT: 0, cN: Ep, cC: 1)
    }

    public func prepare(_ blk: SSMBlock) {
        vsoftplus(blk.dtB.w, delta.ensure(E), count: E)
        let bp = Bp.ensure(N * Ep), cp = Cp.ensure(N * Ep)
        bp.update(repeating: 0, count: N * Ep); cp.update(repeating: 0, count: N * Ep)
        for c in 0..<E { for n in 0..<N {
            bp[n * Ep + c] = bParam.w[c * N + n]
            cp[n * Ep + c] = cParam.w[c * N + n]
        } }
    }

    public func forward(_ blk: SSMBlock, u: UnsafePointer<Float>, B: Int, L: Int, pass: Pass) -> ScanInputs { scanInputs(blk, B: B, L: L) }

    public func scanInputs(_ blk: SSMBlock, B: Int, L: Int) -> ScanInputs {
        ScanInputs(delta: UnsafePointer(delta.pointer), deltaStride: 0,
                   b: UnsafePointer(Bp.pointer), c: UnsafePointer(Cp.pointer), bcStride: 0)
    }

    public func step(_ blk: SSMBlock, u: UnsafePointer<Float>, B: Int, pass: Pass) -> ScanInputs { scanInputs(blk, B: B, L: 1) }

    public func gradientTargets(_ blk: SSMBlock, B: Int, L: Int) -> ScanGradients {
        // shared by all positions: each sequence accumulates into its own slice, summed after
        let SN = N * Ep
        let ddp = dDelta.ensure(B * E), dbp = dBp.ensure(B * SN), dcp = dCp.ensure(B * SN)
        ddp.update(repeating: 0, count: B * E)
        dbp.update(repeating: 0, count: B * SN); dcp.update(repeating: 0, count: B * SN)
        return ScanGradients(delta: ddp, deltaStride: E, b: dbp, c: dcp, bcStride: SN)
    }

    public func backward(_ blk: SSMBlock, du: UnsafeMutablePointer<Float>, B: Int, L: Int) {
        // Per-channel Δ = softplus(b): ∂b = Σ_seq ∂Δ · σ(b); B, C: sum the slices.
        let SN = N * Ep, ddp = dDelta.pointer, dbp = dBp.pointer, dcp = dCp.pointer
        for b in 0..<B {
            for c in 0..<E {
                let v = blk.dtB.w[c]
                blk.dtB.g[c] += ddp[b * E + c] * (v > 20 ? 1 : sigmoid(v))
                for n in 0..<N {
                    bParam.g[c * N + n] += dbp[b * SN + n * Ep + c]
                    cParam.g[c * N + n] += dcp[b * SN + n * Ep + c]
                }
            }
        }
    }
}
