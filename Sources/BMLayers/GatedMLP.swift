import BMCore

/// The gated-MLP kernel shared by the dense `mlp` mixer and every MoE expert:
///   h = x · fc1ᵀ  (fc1 [2F, d]: rows 0..<F are the gate, F..<2F the up projection)
///   a = act(gate) ⊙ up
///   y = a · fc2ᵀ  (fc2 [d, F])
/// Works on any row count T, so an expert runs it once on all its tokens.
public struct GatedMLPKernel {
    public let d: Int, F: Int
    public let activation: GateActivation

    public init(d: Int, F: Int, activation: GateActivation) {
        self.d = d; self.F = F; self.activation = activation
    }

    // x: [T, d] → y: [T, d];  h: [T, 2F] and a: [T, F] are cached for backward
    // (`bf16`: a generation pass's weight copy, read by one-row products)
    public func forward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, T: Int,
                        fc1: UnsafePointer<Float>, fc2: UnsafePointer<Float>,
                        h: UnsafeMutablePointer<Float>, a: UnsafeMutablePointer<Float>, bf16: BF16Weights? = nil) {
        if T == 0 { return }
        matmulXWt(x, fc1, h, T: T, inDim: d, outDim: 2 * F, bf16: bf16)
        for t in 0..<T {
            let hr = h + t * 2 * F
            activation.forward(gate: hr, up: hr + F, a + t * F, F)
        }
        matmulXWt(a, fc2, y, T: T, inDim: F, outDim: d, bf16: bf16)
    }

    // dy: [T, d] → dx: [T, d] (overwritten); dfc1, dfc2 accumulate.
    // `scratch` needs 3·T·F floats: da [T, F] and dh [T, 2F].
    public func backward(_ dy: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>, T: Int,
                         x: UnsafePointer<Float>, fc1: UnsafePointer<Float>, fc2: UnsafePointer<Float>,
                         dfc1: UnsafeMutablePointer<Float>, dfc2: UnsafeMutablePointer<Float>,
                         h: UnsafePointer<Float>, a: UnsafePointer<Float>, scratch: UnsafeMutablePointer<Float>) {
        if T == 0 { return }
        let da = scratch, dh = scratch + T * F
        matmulDyTX(dy, a, dfc2, T: T, inDim: F, outDim: d)          // dfc2 += dyᵀ · a
        matmulDyW(dy, fc2, da, T: T, inDim: F, outDim: d)           // da = dy · fc2
        for t in 0..<T {
            let hr = h + t * 2 * F, dhr = dh + t * 2 * F
            activation.backward(gate: hr, up: hr + F, da: da + t * F, dgate: dhr, dup: dhr + F, F)
        }
        matmulDyTX(dh, x, dfc1, T: T, inDim: d, outDim: 2 * F)      // dfc1 += dhᵀ · x
        matmulDyW(dh, fc1, dx, T: T, inDim: d, outDim: 2 * F)       // dx = dh · fc1
    }
}

/// Dense gated MLP (`mlp` channel mixer): `linear_fc1.weight [2F, d]`, `linear_fc2.weight [d, F]`.
public final class GatedMLP: SequenceLayer {
    public let kernel: GatedMLPKernel
    public let fc1: Param, fc2: Param
    private var x: UnsafePointer<Float>?
    private let h = FloatBuffer(), a = FloatBuffer(), scratch = FloatBuffer()

    /// `outputInit` initialises fc2 (residual-output scaling, see InitScheme).
    public init(_ ps: ParameterSet, _ name: String, d: Int, F: Int, activation: GateActivation = .swiglu,
                init fc1Init: Initializer = .normal(std: 0.02), outputInit: Initializer = .normal(std: 0.02)) {
        kernel = GatedMLPKernel(d: d, F: F, activation: activation)
        fc1 = ps.declare("\(name).linear_fc1.weight", [2 * F, d], init: fc1Init)
        fc2 = ps.declare("\(name).linear_fc2.weight", [d, F], init: outputInit)
    }
    public var inWidth: Int { kernel.d }
    public var outWidth: Int { kernel.d }
    public var parameters: [Param] { [fc1, fc2] }

    // x: [B, L, d] → y: [B, L, d]
    public func forward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, B: Int, L: Int, pass: Pass) {
        let T = B * L
        self.x = x
        kernel.forward(x, y, T: T, fc1: fc1.w, fc2: fc2.w, h: h.ensure(T * 2 * kernel.F), a: a.ensure(T * kernel.F), bf16: pass.bf16)
    }

    public func backward(_ dy: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>, B: Int, L: Int, pass: Pass) {
        guard let x else { preconditionFailure("GatedMLP.backward before forward") }
        let T = B * L
        kernel.backward(dy, dx, T: T, x: x, fc1: fc1.w, fc2: fc2.w, dfc1: fc1.g, dfc2: fc2.g,
                        h: h.pointer, a: a.pointer, scratch: scratch.ensure(3 * T * kernel.F))
    }
}

/// A gated MLP is also a mixer (`mlp` in the registry, `DenseMLP.swift`): it acts on
/// each position on its own, so generation keeps no state.
extension GatedMLP: GeneratingMixer {
    public var pluginName: String { "mlp" }
    /// act(gate) · up per hidden unit, × 3 for training (docs/flops.md).
    public func flopTerms(seqLen: Int) -> [FlopTerm] { [FlopTerm("mlp activation", 3 * kernel.activation.flopsPerUnit * Double(kernel.F))] }
    /// h [T, 2F], a [T, F], backward scratch [T, 3F].
    public func activationFloats(B: Int, L: Int) -> Int { 6 * B * L * kernel.F }
    public func makeState(batch: Int, maxLength: Int) throws -> StatelessState { StatelessState() }
    /// Position by position: nothing carries over between calls.
    public var prefillsInChunks: Bool { true }
    public func prefill(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, B: Int, L: Int, state: StatelessState, pass: Pass) {
        forward(x, y, B: B, L: L, pass: pass)
    }
    public func step(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, B: Int, state: StatelessState, pass: Pass) {
        forward(x, y, B: B, L: 1, pass: pass)
    }
}
