import Foundation
import BMCore
import BMLayers
import BMMixers

/// `bmlab bench mixers`: forward+backward throughput of each sequence mixer at
/// bench-small shapes (d_model 256, batch 8 × 256), and batch-1 generation
/// latency per token after a prompt of a given context length.
public enum MixerBench {
    public struct Phase: Codable { public var name: String; public var ms: Double }
    public struct TrainFigure: Codable {
        public var mixer: String; public var tokensPerSecond: Double; public var msPerStep: Double
        /// Mean time per step of each phase, for mixers that profile themselves (`Mixer.phaseTimer`).
        public var phases: [Phase] = []
    }
    public struct GenFigure: Codable { public var mixer: String; public var context: Int; public var msPerToken: Double; public var stateBytes: Int }

    /// Byte-level token ids for the positions of a benchmark batch (routers that read
    /// token ids, as `hash`, need them); enough for B·L ≤ 2¹⁸.
    nonisolated(unsafe) static let tokenIDs: UnsafeMutablePointer<Int32> = {
        let n = 1 << 18
        let p = UnsafeMutablePointer<Int32>.allocate(capacity: n)
        var rng = RNG(seed: 3)
        for i in 0..<n { p[i] = Int32(rng.below(256)) }
        return p
    }()

    /// A mixer to measure, `name` or `name:key=value:key=value` (e.g. `mamba2:scan=recurrent`,
    /// `mamba2:chunk=128`): the plugin's name and its options (integers, numbers, or words).
    public static func parseMixer(_ s: String) throws -> (name: String, options: [String: OptionValue]) {
        let parts = s.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        var options: [String: OptionValue] = [:]
        for kv in parts.dropFirst() {
            let pair = kv.split(separator: "=", maxSplits: 1).map(String.init)
            guard pair.count == 2, !pair[0].isEmpty, !pair[1].isEmpty else {
                throw BMError.invalid("--mixers \(s): '\(kv)' is not key=value (expected e.g. mamba2:scan=recurrent:chunk=128)")
            }
            options[pair[0]] = Int(pair[1]).map(OptionValue.int) ?? Double(pair[1]).map(OptionValue.double) ?? .string(pair[1])
        }
        guard let name = parts.first, !name.isEmpty else { throw BMError.invalid("--mixers: an empty mixer name in '\(s)'") }
        return (name, options)
    }

    static func build(_ name: String, width: Int, layerIndex: Int = 0, options: [String: OptionValue] = [:]) throws -> (Mixer, ParameterSet) {
        let ps = ParameterSet()
        let ctx = MixerContext(params: ps, prefix: "m", width: width, layerIndex: layerIndex, layerCount: 8, initScheme: .megatron)
        let m = try MixerRegistry.build(name, options: options, in: ctx, context: "bench")
        ps.finalize(seed: 1)
        return (m, ps)
    }

    /// Median seconds of forward + backward over `steps` timed steps after `warmup`.
    public static func train(_ name: String, width: Int = 256, B: Int = 8, L: Int = 256, warmup: Int = 2, steps: Int = 7,
                             layerIndex: Int = 0, options: [String: OptionValue] = [:]) throws -> TrainFigure {
        let (m, ps) = try build(name, width: width, layerIndex: layerIndex, options: options)
        let timer = m.phaseTimer
        let times = timeSteps(m, ps, width: width, B: B, L: L, warmup: warmup, steps: steps) {
            timer?.enabled = true; timer?.reset()
        }
        timer?.enabled = false
        let med = median(times)
        let phases = timer.map { t in zip(t.names, t.seconds).map { Phase(name: $0, ms: $1 * 1e3 / Double(steps)) } } ?? []
        return TrainFigure(mixer: name, tokensPerSecond: Double(B * L) / med, msPerStep: med * 1e3, phases: phases)
    }

    /// Seconds of forward + backward for `steps` steps after `warmup` (random input and
    /// upstream gradient); `afterWarmup` runs once before the timed steps.
    static func timeSteps(_ m: Mixer, _ ps: ParameterSet, width: Int, B: Int, L: Int, warmup: Int, steps: Int,
                          afterWarmup: () -> Void = {}) -> [Double] {
        let n = B * L * width
        let x = FloatBuffer(count: n), y = FloatBuffer(count: n), dy = FloatBuffer(count: n), dx = FloatBuffer(count: n)
        var rng = RNG(seed: 2)
        rng.fillNormal(x.pointer, n, std: 1)
        rng.fillNormal(dy.pointer, n, std: 1)
        var times: [Double] = []
        let pass = Pass.train().with(tokens: UnsafePointer(tokenIDs))     // token ids for hash routing
        for i in 0..<(warmup + steps) {
            if i == warmup { afterWarmup() }
            let s = seconds {
                ps.zeroGrad()
                m.forward(x.pointer, y.pointer, B: B, L: L, pass: pass)
                m.backward(dy.pointer, dx.pointer, B: B, L: L, pass: pass)
            }
            if i >= warmup { times.append(s) }
        }
        return times
    }

    /// MoE at bench-small shapes with its per-phase profile (ms per step, in the figure)
    /// and the GFLOP/s of its expert multiplies.
    public static func moe(router: String = "sinkhorn-fast", width: Int = 256, experts: Int = 8, ffn: Int = 1024,
                           B: Int = 8, L: Int = 256, warmup: Int = 2, steps: Int = 7) throws -> (TrainFigure, Double) {
        var fig = try train("moe", width: width, B: B, L: L, warmup: warmup, steps: steps, layerIndex: 1,
                            options: ["experts": .int(experts), "ffn": .int(ffn), "router": .string(router)])
        fig.mixer = "moe(\(router))"
        // FLOPs of the expert multiplies: 3 products of 2·d·2F + 2·F·d per token, ×3 for fwd+bwd.
        let expertFlops = Double(B * L) * 3 * (2 * Double(width) * 2 * Double(ffn) + 2 * Double(ffn) * Double(width))
        return (fig, expertFlops / (fig.msPerStep / 1e3) / 1e9)
    }

    /// Median per-token latency (batch 1) of `tokens` steps after a prompt of `context` tokens.
    public static func generate(_ name: String, width: Int = 256, context: Int, tokens: Int = 256,
                                options: [String: OptionValue] = [:]) throws -> GenFigure {
        let (m, _) = try build(name, width: width, options: options)
        let state = try m.makeAnyState(batch: 1, maxLength: context + tokens + 1)
        let prompt = FloatBuffer(count: context * width), py = FloatBuffer(count: context * width)
        var rng = RNG(seed: 3)
        rng.fillNormal(prompt.pointer, context * width, std: 1)
        m.prefill(prompt.pointer, py.pointer, B: 1, L: context, anyState: state, pass: Pass.generate().with(tokens: UnsafePointer(tokenIDs)))
        let x = FloatBuffer(count: width), y = FloatBuffer(count: width)
        rng.fillNormal(x.pointer, width, std: 1)
        var times: [Double] = []
        for _ in 0..<tokens {
            times.append(seconds { m.step(x.pointer, y.pointer, B: 1, anyState: state, pass: Pass.generate().with(tokens: UnsafePointer(tokenIDs))) })
        }
        let med = median(times)
        return GenFigure(mixer: name, context: context, msPerToken: med * 1e3, stateBytes: state.bytes)
    }
}
