import Foundation
import BMCore
import BMLayers

/// `mamba`: the Mamba-1 mixer (Gu & Dao 2023), exactly as docs/mixers.md states it:
/// `SSMBlock` with selective dynamics — Δ, B and C are functions of the input at every
/// position. Its own parameters: `x_proj.weight [R+2N, E]` and `dt_proj.weight [E, R]`.
///
/// Glossary: `dbc` = x_proj output = [δ_raw (R) | B (N) | C (N)] per position;
/// `dtPre` = δ_raw·dt_projᵀ + dt_proj.bias; `delta` = Δ = softplus(dtPre). The scan
/// reads B_t and C_t in place from `dbc`'s rows.
public enum Mamba {
    public static let entry = MixerEntry(
        name: "mamba", kind: .sequence,
        summary: "Mamba-1 selective SSM (input-dependent Δ, B, C), causal conv, SiLU gate",
        options: Array(SSMBlock.blockOptions[0..<3])
            + [.int("dt_rank", -1, "rank R of the Δ projection (auto = ceil(d_model/16))", min: 1, auto: true)]
            + Array(SSMBlock.blockOptions[3...]),
        variants: [[:], ["gate": .bool(false)], ["skip_d": .bool(false)], ["d_state": .int(20), "d_conv": .int(3)]],
        validate: SSMBlock.validateDt,
        build: { ctx, o in SSMBlock(ctx, o) { SelectiveDynamics($0) } })
}

/// Δ = softplus(x_proj(u)[:R] · dt_projᵀ + bias), B = x_proj(u)[R:R+N], C = x_proj(u)[R+N:].
public final class SelectiveDynamics: SSMDynamics {
    public let R: Int, N: Int, E: Int
    public private(set) var xProj: Param!, dtW: Param!
    var dbcWidth: Int { R + 2 * N }
    private let dbc = FloatBuffer(), dtPre = FloatBuffer(), delta = FloatBuffer()
    private let dDelta = FloatBuffer(), ddbc = FloatBuffer()
    private let stepDBC = FloatBuffer(), stepDelta = FloatBuffer()

    init(_ d: SSMDims) {
        R = d.options.intOrAuto("dt_rank") ?? (d.D + 15) / 16
        N = d.N; E = d.E
    }

    public var early: [Param] { [xProj, dtW] }
    public var late: [Param] { [] }

    public func declareEarly(_ d: SSMDims) {
        let ps = d.ctx.params, p = d.ctx.prefix
        xProj = ps.declare("\(p).x_proj.weight", [R + 2 * N, E], init: d.ctx.hiddenInit(fanIn: E))
        let dtStd = 1 / Float(R).squareRoot()
        dtW = ps.declare("\(p).dt_proj.weight", [E, R], init: .uniform(-dtStd, dtStd), group: .ssm)
    }
    public func declareLate(_ d: SSMDims) {}

    public func activationFloats(B: Int, L: Int) -> Int {
        // dbc, ddbc [T, R+2N]; dtPre, delta, dDelta [T, E]
        B * L * (2 * dbcWidth + 3 * E)
    }

    public func scanShape(_ blk: SSMBlock, L: Int) -> ScanShape {
        // B_t, C_t read in place from x_proj's output rows [δr | B | C]
        ScanShape(L: L, E: E, N: N, chunk: blk.chunk, deltaT: E, bT: dbcWidth, bN: 1, bC: 0, cT: dbcWidth, cN: 1, cC: 0)
    }

    public func prepare(_ blk: SSMBlock) {}

    public func forward(_ blk: SSMBlock, u up: UnsafePointer<Float>, B: Int, L: Int, pass: Pass) -> ScanInputs {
        let T = B * L
        // 3. dbc = u · x_projᵀ                                  dbc: [T, R+2N]
        let dbcp = dbc.ensure(T * dbcWidth)
        matmulXWt(up, xProj.w, dbcp, T: T, inDim: E, outDim: dbcWidth, bf16: pass.bf16)
        // 4. Δ = softplus(δr · dt_projᵀ + bias)                 delta: [T, E]
        let dtp = dtPre.ensure(T * E), dp = delta.ensure(T * E)
        let bias = blk.dtB.w
        Parallel.forEach(B) { b in for t in b * L..<(b + 1) * L { (dtp + t * E).update(from: bias, count: E) } }
        matmulXWt(dbcp, dtW.w, dtp, T: T, inDim: R, outDim: E, ldx: dbcWidth, beta: 1, bf16: pass.bf16)
        Parallel.forEach(B) { b in vsoftplus(dtp + b * L * E, dp + b * L * E, count: L * E) }
        return scanInputs(blk, B: B, L: L)
    }

    public func scanInputs(_ blk: SSMBlock, B: Int, L: Int) -> ScanInputs {
        ScanInputs(delta: UnsafePointer(delta.pointer), deltaStride: L * E,
                   b: UnsafePointer(dbc.pointer + R), c: UnsafePointer(dbc.pointer + R + N), bcStride: L * dbcWidth)
    }

    public func step(_ blk: SSMBlock, u up: UnsafePointer<Float>, B: Int, pass: Pass) -> ScanInputs {
        let p = stepDBC.ensure(B * dbcWidth), dp = stepDelta.ensure(B * E)
        matmulXWt(up, xProj.w, p, T: B, inDim: E, outDim: dbcWidth, bf16: pass.bf16)
        for b in 0..<B { (dp + b * E).update(from: blk.dtB.w, count: E) }
        matmulXWt(p, dtW.w, dp, T: B, inDim: R, outDim: E, ldx: dbcWidth, beta: 1, bf16: pass.bf16)
        vsoftplus(dp, dp, count: B * E)
        // B_t, C_t in place in x_proj's output row
        return ScanInputs(delta: UnsafePointer(dp), deltaStride: E, b: UnsafePointer(p + R), c: UnsafePointer(p + R + N), bcStride: dbcWidth)
    }

    public func gradientTargets(_ blk: SSMBlock, B: Int, L: Int) -> ScanGradients {
        // ∂Δ per (t, c) and ∂B, ∂C per (t, n), written straight into x_proj's output gradient ddbc [T, R+2N]
        let T = B * L
        let ddp = dDelta.ensure(T * E), ddbcp = ddbc.ensure(T * dbcWidth), w = dbcWidth
        Parallel.forEach(B) { b in
            (ddp + b * L * E).update(repeating: 0, count: L * E)
            (ddbcp + b * L * w).update(repeating: 0, count: L * w)
        }
        return ScanGradients(delta: ddp, deltaStride: L * E, b: ddbcp + R, c: ddbcp + R + N, bcStride: L * dbcWidth)
    }

    public func backward(_ blk: SSMBlock, du dup: UnsafeMutablePointer<Float>, B: Int, L: Int) {
        let T = B * L, ddp = dDelta.pointer, up = blk.u.pointer
        // softplus: ∂v = ∂Δ · σ(v) (1 above the threshold)        ddp now holds ∂v
        // (per sequence on every core; each element on its own, so the same bits)
        let dtp = dtPre.pointer
        Parallel.forEach(B) { b in
            let hi = (b + 1) * L * E
            var i = b * L * E
            while i + 16 <= hi {
                let v = ld(dtp, i)
                var s = vsigmoid(v)
                s.replace(with: 1, where: v .> 20)
                st(ddp, i, ld(ddp, i) * s)
                i += 16
            }
            while i < hi { let v = dtp[i]; if v <= 20 { ddp[i] *= sigmoid(v) }; i += 1 }
        }
        // dt_proj: dW += ∂vᵀ·δr, db += Σ ∂v, ∂δr = ∂v·W        ddbc: [T, R+2N]
        let dbcp = dbc.pointer, ddbcp = ddbc.pointer      // ∂B, ∂C already in its columns R..<R+2N
        matmulDyTX(ddp, dbcp, dtW.g, T: T, inDim: R, outDim: E, ldx: dbcWidth)
        // db: each channel summed over t in order, blocks of 64 channels on every core (the same bits)
        let dbg = blk.dtB.g
        Parallel.forEachBlock(E, size: 64) { channels in
            for t in 0..<T { let r = ddp + t * E; for c in channels { dbg[c] += r[c] } }
        }
        matmulDyW(ddp, dtW.w, ddbcp, T: T, inDim: R, outDim: E, lddx: dbcWidth)   // columns 0..<R
        // x_proj: dW += ddbcᵀ·u; du += ddbc·W
        matmulDyTX(ddbcp, up, xProj.g, T: T, inDim: E, outDim: dbcWidth)
        matmulDyW(ddbcp, xProj.w, dup, T: T, inDim: E, outDim: dbcWidth, beta: 1)
    }
}
