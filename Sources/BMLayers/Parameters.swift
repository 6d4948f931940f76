import Foundation
import BMCore

/// How a parameter is initialised. Initialisation runs in declaration order
/// from one seeded generator, so the same seed gives bitwise the same model.
public enum Initializer: Sendable, Equatable {
    case zeros
    case ones
    case constant(Float)
    case normal(std: Float)
    case uniform(Float, Float)
    /// Values computed by the declaring layer (e.g. Mamba's A_log, dt bias).
    case custom(@Sendable (inout RNG, UnsafeMutableBufferPointer<Float>) -> Void)

    public static func == (a: Initializer, b: Initializer) -> Bool {
        switch (a, b) {
        case (.zeros, .zeros), (.ones, .ones): return true
        case let (.constant(x), .constant(y)): return x == y
        case let (.normal(x), .normal(y)): return x == y
        case let (.uniform(a1, b1), .uniform(a2, b2)): return a1 == a2 && b1 == b2
        default: return false
        }
    }
}

/// Optimizer groups. `ssm`: a state-space layer's dynamics (A_log, the Δ projection,
/// S4D's B), which `train.optimizer.ssm_lr_scale` trains at a smaller learning rate,
/// as S4 does (docs/init.md).
public enum ParamGroup: String, Sendable { case standard, ssm }

/// A named view into the parameter slab: `w` the values, `g` the gradient.
public struct Param: @unchecked Sendable {
    public let name: String
    public let shape: [Int]
    public let offset: Int
    public let count: Int
    public let decay: Bool
    public let group: ParamGroup
    /// Strong: a layer keeps its parameters' memory alive even if the caller drops
    /// the ParameterSet (the slab does not point back at params, so no cycle).
    let owner: ParameterSlab

    /// The parameter values. Valid after `ParameterSet.finalize`.
    @inline(__always) public var w: UnsafeMutablePointer<Float> { owner.values + offset }
    /// The accumulated gradient.
    @inline(__always) public var g: UnsafeMutablePointer<Float> { owner.grads + offset }
    public var values: UnsafeMutableBufferPointer<Float> { .init(start: w, count: count) }
    public var grads: UnsafeMutableBufferPointer<Float> { .init(start: g, count: count) }
}

/// The memory of a ParameterSet: values and gradients, 64-byte aligned.
public final class ParameterSlab: @unchecked Sendable {
    public internal(set) var values: UnsafeMutablePointer<Float>
    public internal(set) var grads: UnsafeMutablePointer<Float>
    /// Bytes of the gradient slab when it is an anonymous mapping (large models), else 0.
    private var mappedGradBytes = 0
    init() {
        values = .allocate(capacity: 1)
        grads = .allocate(capacity: 1)
    }
    func allocate(_ n: Int) {
        values.deallocate(); freeGrads()
        let cap = Swift.max(n, 1)
        values = UnsafeMutableRawPointer.allocate(byteCount: cap * 4, alignment: 64).bindMemory(to: Float.self, capacity: cap)
        values.initialize(repeating: 0, count: cap)
        // A large gradient slab is an anonymous mapping: zero pages the kernel provides only
        // when first written, so a model that never trains (evaluation, generation) does
        // not hold a second copy of its size (5.8 GB for a 1.5 B model).
        if cap * 4 >= 1 << 20, let p = mmap(nil, cap * 4, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), p != MAP_FAILED {
            grads = p.bindMemory(to: Float.self, capacity: cap)
            mappedGradBytes = cap * 4
        } else {
            grads = UnsafeMutableRawPointer.allocate(byteCount: cap * 4, alignment: 64).bindMemory(to: Float.self, capacity: cap)
            grads.initialize(repeating: 0, count: cap)
        }
    }
    private func freeGrads() {
        if mappedGradBytes > 0 { munmap(UnsafeMutableRawPointer(grads), mappedGradBytes); mappedGradBytes = 0 } else { grads.deallocate() }
    }
    deinit {
        values.deallocate()
        freeGrads()
    }
}

/// All parameters of a model in one flat Float slab (plus one for gradients),
/// with named views. Optimisers, checkpoints and gradient dumps are one loop
/// over `params`.
///
/// Life cycle: layers `declare` their parameters while the model is built;
/// `finalize(seed:)` allocates the slabs and runs the initialisers in
/// declaration order.
public final class ParameterSet: @unchecked Sendable {
    public private(set) var params: [Param] = []
    private var initializers: [Initializer] = []
    public private(set) var count = 0
    public let slab = ParameterSlab()
    public var values: UnsafeMutablePointer<Float> { slab.values }
    public var grads: UnsafeMutablePointer<Float> { slab.grads }
    public private(set) var isFinal = false
    private var byName: [String: Int] = [:]

    /// False for a model built only to be counted (`MemoryEstimate`): `finalize`
    /// then allocates and initialises nothing.
    public let allocates: Bool

    public init(allocates: Bool = true) { self.allocates = allocates }

    /// Inside `sharing`, declaring a name already declared gives the existing parameter.
    private var reusing = false

    /// Builds a layer on another layer's parameters (`shared` layers of a spec): inside
    /// `body`, `declare` of a name already declared returns that parameter (same shape
    /// required) instead of stopping, so the new layer reads the same weights and adds
    /// its gradient to the same gradient (every layer accumulates).
    public func sharing<T>(_ body: () throws -> T) rethrows -> T {
        reusing = true
        defer { reusing = false }
        return try body()
    }

    /// Declares a parameter. `decay: false` for norms, biases, A_log, D, embeddings' …
    public func declare(_ name: String, _ shape: [Int], init initializer: Initializer, decay: Bool = true,
                        group: ParamGroup = .standard) -> Param {
        precondition(!isFinal, "parameter \(name) declared after finalize()")
        if reusing, let i = byName[name] {
            precondition(params[i].shape == shape, "shared parameter \(name): shape \(shape), declared as \(params[i].shape)")
            return params[i]
        }
        precondition(byName[name] == nil, "parameter \(name) declared twice")
        let n = shape.reduce(1, *)
        // Keep every parameter 16-float (64-byte) aligned for SIMD loops.
        let offset = (count + 15) / 16 * 16
        let p = Param(name: name, shape: shape, offset: offset, count: n, decay: decay, group: group, owner: slab)
        byName[name] = params.count
        params.append(p)
        initializers.append(initializer)
        count = offset + n
        return p
    }

    /// Allocates the slabs and initialises every parameter from `seed`.
    public func finalize(seed: UInt64) {
        precondition(!isFinal)
        isFinal = true
        guard allocates else { return }
        slab.allocate(count)
        var rng = RNG(seed: seed)
        for (p, ini) in zip(params, initializers) {
            let buf = p.values
            switch ini {
            case .zeros: buf.update(repeating: 0)
            case .ones: buf.update(repeating: 1)
            case .constant(let c): buf.update(repeating: c)
            case .normal(let s): rng.fillNormal(p.w, p.count, std: s)
            case .uniform(let a, let b): rng.fillUniform(p.w, p.count, a, b)
            case .custom(let f): f(&rng, buf)
            }
        }
    }

    /// Zeroes every gradient, chunk by chunk on every core (108 MB on bench-small).
    public func zeroGrad() {
        let g = grads
        forEachChunk { _, lo, hi in (g + lo).update(repeating: 0, count: hi - lo) }
    }

    public subscript(name: String) -> Param? { byName[name].map { params[$0] } }

    /// Number of scalar parameters (without alignment padding).
    public var parameterCount: Int { params.reduce(0) { $0 + $1.count } }

    /// Elements per work item of the slab-wide parallel loops (gradient norm, clipping, AdamW).
    public static let chunkSize = 65536
    private var chunkCount: Int { (count + Self.chunkSize - 1) / Self.chunkSize }

    /// Runs body(k, lo, hi) over the slab in fixed chunks of 64k elements, in parallel.
    /// Chunks are fixed, so per-chunk results combined in chunk order do not depend on threads.
    private func forEachChunk(_ body: (Int, Int, Int) -> Void) {
        Parallel.forEachBlock(count, size: Self.chunkSize) { r in body(r.lowerBound / Self.chunkSize, r.lowerBound, r.upperBound) }
    }

    /// A 64-bit hash of every parameter's bits (per 64k chunk, combined in chunk order):
    /// equal on two processes exactly when their parameters are, up to collisions.
    /// A data-parallel run compares it across ranks (`ExperimentRun.checkRanksAgree`).
    public func valuesHash() -> UInt64 {
        let w = UnsafeRawPointer(values).assumingMemoryBound(to: UInt32.self)
        var parts = [UInt64](repeating: 0, count: Swift.max(1, chunkCount))
        parts.withUnsafeMutableBufferPointer { part in
            let pp = part.baseAddress!
            forEachChunk { k, lo, hi in
                var h: UInt64 = 0xcbf2_9ce4_8422_2325 ^ UInt64(k)          // FNV-1a over 32-bit words
                for i in lo..<hi { h = (h ^ UInt64(w[i])) &* 0x0000_0100_0000_01b3 }
                pp[k] = h
            }
        }
        return parts.reduce(UInt64(count)) { ($0 ^ $1) &* 0x9e37_79b9_7f4a_7c15 }
    }

    /// Global L2 norm of the gradient: SIMD partial sums per chunk, added in chunk
    /// order in Double — the same bits whatever the threads.
    public func gradNorm() -> Double {
        let g = grads
        var sums = [Double](repeating: 0, count: Swift.max(1, chunkCount))
        sums.withUnsafeMutableBufferPointer { part in
            let pp = part.baseAddress!
            forEachChunk { k, lo, hi in
                var acc = Vec16()
                var i = lo
                while i + 16 <= hi { let v = ld(g, i); acc += v * v; i += 16 }
                var s = Double(acc.sum())
                while i < hi { s += Double(g[i] * g[i]); i += 1 }
                pp[k] = s
            }
        }
        return sums.reduce(0, +).squareRoot()
    }

    /// Scales all gradients so their global norm is at most `maxNorm`; returns the norm before clipping.
    @discardableResult
    public func clipGradients(maxNorm: Double) -> Double {
        let n = gradNorm()
        let s = Self.clipScale(norm: n, maxNorm: maxNorm)
        if s != 1 {
            let g = grads
            forEachChunk { _, lo, hi in for i in lo..<hi { g[i] *= s } }
        }
        return n
    }

    /// The factor clipping multiplies the gradients by: maxNorm / (norm + 1e-6) when
    /// the norm exceeds maxNorm (> 0), else 1. The optimizer applies it as it reads them.
    public static func clipScale(norm n: Double, maxNorm: Double) -> Float {
        maxNorm > 0 && n > maxNorm && n.isFinite ? Float(maxNorm / (n + 1e-6)) : 1
    }
}
