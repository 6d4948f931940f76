import XCTest
@testable import BMCore
@testable import BMLayers
@testable import BMRouting
@testable import BMMixers
@testable import BMExperiments
@testable import BMSpec

/// A toy sequence mixer, written here as a plugin author would: one file, one registry
/// line. y_t = W·x_t + U·x_{t−1} (x_{−1} = 0): causal, with a one-row generation state.
final class ToyShift: GeneratingMixer {
    static let entry = MixerEntry(name: "toy-shift", kind: .sequence, summary: "test plugin: y_t = W x_t + U x_{t-1}",
                                  options: [], build: { ctx, _ in ToyShift(ctx) })
    let D: Int, w: Param, u: Param
    let pluginName: String
    private var x: UnsafePointer<Float>?
    private let shifted = FloatBuffer(), dshift = FloatBuffer()

    init(_ ctx: MixerContext) {
        D = ctx.width; pluginName = ctx.pluginName
        w = ctx.params.declare("\(ctx.prefix).w.weight", [D, D], init: ctx.hiddenInit(fanIn: D))
        u = ctx.params.declare("\(ctx.prefix).u.weight", [D, D], init: ctx.hiddenInit(fanIn: D))
    }
    var inWidth: Int { D }
    var outWidth: Int { D }
    var parameters: [Param] { [w, u] }
    func activationFloats(B: Int, L: Int) -> Int { 2 * B * L * D }

    /// xs[b, t] = x[b, t − 1], the first row from `first` (zeros without it).    xs: [B, L, D]
    private func shift(_ x: UnsafePointer<Float>, B: Int, L: Int, first: UnsafePointer<Float>?) -> UnsafeMutablePointer<Float> {
        let xs = shifted.ensure(B * L * D)
        for b in 0..<B {
            let row0 = xs + b * L * D
            if let first { row0.update(from: first + b * D, count: D) } else { row0.update(repeating: 0, count: D) }
            if L > 1 { (row0 + D).update(from: x + b * L * D, count: (L - 1) * D) }
        }
        return xs
    }
    // x: [B, L, D] → y: [B, L, D]
    func forward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, B: Int, L: Int, pass: Pass) {
        self.x = x
        let xs = shift(x, B: B, L: L, first: nil)
        matmulXWt(x, w.w, y, T: B * L, inDim: D, outDim: D)
        matmulXWt(xs, u.w, y, T: B * L, inDim: D, outDim: D, beta: 1)
    }
    // dy: [B, L, D] → dx: [B, L, D]
    func backward(_ dy: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>, B: Int, L: Int, pass: Pass) {
        let T = B * L
        matmulDyTX(dy, x!, w.g, T: T, inDim: D, outDim: D)
        matmulDyTX(dy, shifted.pointer, u.g, T: T, inDim: D, outDim: D)
        matmulDyW(dy, w.w, dx, T: T, inDim: D, outDim: D)
        let ds = dshift.ensure(T * D)
        matmulDyW(dy, u.w, ds, T: T, inDim: D, outDim: D)
        for b in 0..<B { for t in 0..<(L - 1) { axpy(1, ds + (b * L + t + 1) * D, dx + (b * L + t) * D, D) } }
    }

    final class State: MixerState {
        let last: FloatBuffer
        init(_ n: Int) { last = FloatBuffer(count: n) }
        var bytes: Int { last.capacity * 4 }
    }
    func makeState(batch: Int, maxLength: Int) throws -> State { State(batch * D) }
    var prefillsInChunks: Bool { true }
    func prefill(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, B: Int, L: Int, state s: State, pass: Pass) {
        let xs = shift(x, B: B, L: L, first: UnsafePointer(s.last.pointer))
        matmulXWt(x, w.w, y, T: B * L, inDim: D, outDim: D)
        matmulXWt(xs, u.w, y, T: B * L, inDim: D, outDim: D, beta: 1)
        for b in 0..<B { (s.last.pointer + b * D).update(from: x + (b * L + L - 1) * D, count: D) }
    }
    func step(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, B: Int, state: State, pass: Pass) {
        prefill(x, y, B: B, L: 1, state: state, pass: pass)
    }
}

/// A toy router: each token to its two largest logits, gate σ(logit); two experts per token.
final class ToyTopTwo: Router {
    static let entry = RouterEntry(name: "toy-top2", summary: "test plugin: the two largest logits, sigmoid gates",
                                   options: [], build: { _, _ in ToyTopTwo() })
    var usesLogits: Bool { true }
    var allowsCapacity: Bool { true }
    var isCausal: Bool { true }
    var expertsPerToken: Double { 2 }
    func assign(_ input: RouteInput, _ a: Assignment, stats: inout RouterStats) {
        let T = input.T, E = input.E, lg = input.logits!
        a.reset(2 * T)
        for t in 0..<T {
            let r = lg + t * E
            var first = 0
            for e in 1..<E where r[e] > r[first] { first = e }
            var second = first == 0 ? 1 : 0
            for e in 0..<E where e != first && r[e] > r[second] { second = e }
            for (k, e) in [first, second].enumerated() {
                a.token.pointer[2 * t + k] = Int32(t); a.expert.pointer[2 * t + k] = Int32(e)
            }
        }
    }
    func gates(_ input: RouteInput, _ a: Assignment, stats: inout RouterStats) -> (aux: Double, z: Double) {
        for i in 0..<a.count { a.gate.pointer[i] = sigmoid(input.logits![Int(a.token.pointer[i]) * input.E + Int(a.expert.pointer[i])]) }
        return (0, 0)
    }
    func backward(_ input: RouteInput, _ a: Assignment, dgate: UnsafePointer<Float>, dlogits: UnsafeMutablePointer<Float>) {
        dlogits.update(repeating: 0, count: input.T * input.E)
        for i in 0..<a.count where a.expert.pointer[i] >= 0 {
            let j = Int(a.token.pointer[i]) * input.E + Int(a.expert.pointer[i]), g = a.gate.pointer[i]
            dlogits[j] += dgate[i] * g * (1 - g)
        }
    }
}

/// "A new router or mixer is one file and one registry line": registered here, the toy
/// plugins get what every built-in one gets — `bmlab list`, the FLOP and parameter
/// counts, the gradient check, causality and recurrent-generation parity.
final class ToyPluginTests: XCTestCase {
    override func setUp() {
        XCTAssertNoThrow(try BLAS.setup())
        MixerRegistry.register(ToyShift.entry)
        RouterRegistry.register(ToyTopTwo.entry)
    }
    override func tearDown() {
        MixerRegistry.remove("toy-shift")
        RouterRegistry.remove("toy-top2")
    }

    func testToyPluginsGetEverythingABuiltInGets() throws {
        let list = MixerRegistry.listing(short: true)
        XCTAssertTrue(list.contains("toy-shift") && list.contains("test plugin: y_t = W x_t + U x_{t-1}"), list)
        XCTAssertTrue(list.contains("toy-top2") && list.contains("the two largest logits"), list)

        try checkGradients("toy-shift", [:])
        try checkCausality("toy-shift", [:])
        try checkRecurrentParity("toy-shift", [:])
        let moeWithToy: [String: OptionValue] = ["router": .string("toy-top2")]
        try checkGradients("moe", moeWithToy)
        try checkCausality("moe", moeWithToy)
        try checkRecurrentParity("moe", moeWithToy)

        // Counts: a spec of both, built the way every run is built.
        let spec = try ExperimentSpec.parse("""
            name: toy
            model:
              d_model: 16
              layers: [toy-shift, {mixer: moe, experts: 4, ffn: 8, router: toy-top2}]
            data: {kind: mqar, vocab_size: 32, num_pairs: 2}
            train: {steps: 1, batch: 2, seq_len: 8}
            """, file: "toy.yaml")
        let model = try ModelBuilder.build(spec)
        XCTAssertEqual(model.blocks.map(\.mixer.pluginName), ["toy-shift", "moe"])
        let c = ModelBuilder.counts(model, seqLen: 8)
        let toy = 2 * 16 * 16                                    // W, U: every token uses both
        let expert = 2 * 8 * 16 + 16 * 8                         // fc1 [2F, d] + fc2 [d, F]
        let routerW = 4 * 16
        XCTAssertEqual(c.matmulActive, toy + 2 * expert + routerW + 32 * 16)     // two experts per token, the head
        // the toy mixer declares no terms; the MoE's: the toy router's (none), SwiGLU 3·6·F and the combine 3·2·d per
        // active expert; norms and residual adds 3·(5d + d) per block and the final LayerNorm 3·8d; the loss 3·5·V
        let moeTerms: Double = 2 * (144 + 96)                   // 2 × (3·6·8 + 3·2·16)
        let norms: Double = 2 * 288 + 384                       // 2 × 3·(5·16 + 16) + 3·8·16
        let loss: Double = 480                                  // 3·5·32
        XCTAssertEqual(c.flopsPerToken, 6 * Double(c.matmulActive) + moeTerms + norms + loss)
        XCTAssertEqual(c.total - c.active, 2 * expert)                          // two of four experts idle per token
    }
}
