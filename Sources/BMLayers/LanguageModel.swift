import BMCore

public enum NormKind: String, Sendable, CaseIterable { case rmsnorm, layernorm }

/// embedding → N × [x + mixer_i(norm_i(x))] → final norm → tied (or untied) head → cross-entropy.
///
/// Parameter names follow the Zyphra/BlackMamba state dict (docs/checkpoints.md):
/// `embedding.word_embeddings.weight`, `decoder.layers.{i}.norm.weight`,
/// `decoder.layers.{i}.mixer.*`, `decoder.final_layernorm.{weight,bias}`,
/// and `output_layer.weight` when the head is not tied.
public final class LanguageModel {
    public let params: ParameterSet
    public let vocab: Int, width: Int
    public let embedding: Embedding
    public let blocks: [ResidualBlock]
    public let finalNorm: SequenceLayer
    public let head: Linear?            // nil when tied to the embedding
    public let loss: CrossEntropy
    /// Wall time per phase and layer kind (`bmlab bench train`); off unless enabled.
    public let timer = PhaseTimer()
    private lazy var kinds: [String] = blocks.map(\.mixer.pluginName)

    private var residual: [FloatBuffer] = []      // blocks.count + 1 buffers of [B, L, D]
    private let normed = FloatBuffer(), logits = FloatBuffer()
    private let gradA = FloatBuffer(), gradB = FloatBuffer()
    private var shape = (B: 0, L: 0)

    /// The head and the loss run only on the positions the loss scores (target not
    /// ignored) when some are ignored: the synthetic tasks score a few positions a
    /// sequence (MQAR: k of L), and a head over a large vocabulary at every position
    /// would dominate a step. Off: every position (for the test that compares the two).
    public var headOnScoredPositions = true
    /// Multiplies the cross-entropy's gradient (not the layers' auxiliary losses) in a
    /// training forward. A data-parallel shard that scores n_s of the batch's N targets
    /// over a share t_s of its positions sets n_s / (N·t_s): after its whole gradient is
    /// scaled by t_s, the cross-entropy counts per scored target and the auxiliary losses
    /// per position, as over the whole batch (`Trainer`). 1 everywhere else.
    public var lossGradientWeight: Float = 1
    private let scoredRows = IntBuffer()                 // [S] positions t with targets[t] ≠ ignored
    private let scoredTargets = IntBuffer()              // [S]
    private let scoredNormed = FloatBuffer()             // [S, D] rows of the final norm's output
    private let scoredGrad = FloatBuffer()               // [S, D] d loss / d scoredNormed
    private var scoredCount: Int? = nil                  // S of the last forward; nil: the head ran on all T

    /// With `allocate: false` the model is only declared (its parameters counted, no
    /// memory given to them), for the memory estimate made before a run.
    /// `mixer(ps, prefix, i)` builds layer i's mixer with parameters under
    /// `prefix` (= "decoder.layers.{i}.mixer"). No argument has a default: a model built
    /// from a spec takes every value from it (`ModelBuilder`; the spec's defaults are
    /// `SpecKeys.all`'s), and code building one by hand says what it builds.
    public init(vocab: Int, width: Int, layers: Int, finalNorm: NormKind, tiedHead: Bool,
                embeddingStd: Float, seed: UInt64, allocate: Bool = true,
                mixer: (ParameterSet, String, Int) throws -> Mixer) rethrows {
        let ps = ParameterSet(allocates: allocate)
        params = ps
        self.vocab = vocab; self.width = width
        embedding = Embedding(ps, "embedding.word_embeddings", vocab: vocab, width: width, std: embeddingStd)
        var bs: [ResidualBlock] = []
        for i in 0..<layers {
            let prefix = "decoder.layers.\(i)"
            let norm = RMSNorm(ps, "\(prefix).norm", width: width)
            bs.append(ResidualBlock(norm: norm, mixer: try mixer(ps, "\(prefix).mixer", i)))
        }
        blocks = bs
        switch finalNorm {
        case .rmsnorm: self.finalNorm = RMSNorm(ps, "decoder.final_layernorm", width: width)
        case .layernorm: self.finalNorm = LayerNorm(ps, "decoder.final_layernorm", width: width)
        }
        head = tiedHead ? nil : Linear(ps, "output_layer", in: width, out: vocab)
        loss = CrossEntropy(vocab: vocab)
        residual = (0...layers).map { _ in FloatBuffer() }
        ps.finalize(seed: seed)
    }

    /// Extra losses of all layers (MoE aux / z losses) from the last forward.
    public var auxiliaryLoss: Double { blocks.reduce(0) { $0 + $1.auxiliaryLoss } }

    /// Forward pass. tokens, targets: [B, L]. A training pass (`Pass.train`) also fills
    /// dlogits (in place of the logits) so that `backward(pass:)` can follow; every layer
    /// gets `pass` with these token ids. Returns the cross-entropy (without auxiliary losses).
    @discardableResult
    public func forward(tokens: UnsafePointer<Int32>, targets: UnsafePointer<Int32>, B: Int, L: Int,
                        pass given: Pass) -> CrossEntropy.Result {
        let T = B * L, D = width
        shape = (B, L)
        let pass = given.with(tokens: tokens)
        let train = pass.mode == .train
        timer.start()
        embedding.forward(tokens: tokens, residual[0].ensure(T * D), T: T)
        timer.mark("embedding")
        for (i, block) in blocks.enumerated() {
            block.forward(residual[i].pointer, residual[i + 1].ensure(T * D), B: B, L: L, pass: pass)
            timer.mark("fwd \(kinds[i])")
        }
        let n = normed.ensure(T * D)
        finalNorm.forward(residual[blocks.count].pointer, n, B: B, L: L, pass: pass)
        // the head's rows: every position, or only the S scored ones gathered
        var S = 0
        for t in 0..<T where targets[t] != loss.ignoreIndex { S += 1 }
        scoredCount = headOnScoredPositions && S < T ? S : nil
        var headIn = UnsafePointer(n), headTargets = targets, rows = T
        if let S = scoredCount {
            let idx = scoredRows.ensure(max(S, 1)), tg = scoredTargets.ensure(max(S, 1)), sn = scoredNormed.ensure(max(S, 1) * D)
            var j = 0
            for t in 0..<T where targets[t] != loss.ignoreIndex {
                idx[j] = Int32(t); tg[j] = targets[t]
                (sn + j * D).update(from: n + t * D, count: D)
                j += 1
            }
            headIn = UnsafePointer(sn); headTargets = UnsafePointer(tg); rows = S
        }
        let lg = logits.ensure(max(rows, 1) * vocab)                   // logits: [rows, V]
        if rows > 0 {
            if let head { head.forward(headIn, lg, B: 1, L: rows, pass: pass) } else { embedding.headForward(headIn, lg, T: rows) }
        }
        let r = loss.forwardBackward(logits: lg, targets: headTargets, T: rows, dlogits: train ? lg : nil)
        if train && lossGradientWeight != 1 { scal(lossGradientWeight, lg, max(rows, 1) * vocab) }
        timer.mark("head and loss")
        return r
    }

    /// Logits of the last forward: [T, V] in position order when every target was scored or
    /// `headOnScoredPositions` is off, else [S, V] for the S scored positions in order;
    /// overwritten by dlogits after a training forward.
    public var lastLogits: UnsafePointer<Float> { UnsafePointer(logits.pointer) }

    /// Backward of the last training forward, with its pass; accumulates into `params.grads`.
    public func backward(pass: Pass) {
        let (B, L) = shape
        let T = B * L, D = width
        var g = gradA.ensure(T * D), g2 = gradB.ensure(T * D)
        timer.start()
        if let S = scoredCount {
            // dlogits [S, V] → d scoredNormed [S, D], scattered into g2 [T, D] (zero where not scored)
            let sg = scoredGrad.ensure(max(S, 1) * D)
            if S > 0 {
                if let head { head.backward(logits.pointer, sg, B: 1, L: S, pass: pass) } else { embedding.headBackward(logits.pointer, sg, T: S) }
            }
            g2.update(repeating: 0, count: T * D)
            for j in 0..<S { (g2 + Int(scoredRows.pointer[j]) * D).update(from: sg + j * D, count: D) }
        } else if let head { head.backward(logits.pointer, g2, B: B, L: L, pass: pass) } else { embedding.headBackward(logits.pointer, g2, T: T) }
        finalNorm.backward(g2, g, B: B, L: L, pass: pass)
        timer.mark("head and loss")
        for (i, block) in blocks.enumerated().reversed() {
            block.backward(g, g2, B: B, L: L, pass: pass)
            swap(&g, &g2)
            timer.mark("bwd \(kinds[i])")
        }
        embedding.backward(g, T: T)
        timer.mark("embedding")
    }

    // MARK: generation: a prompt in parallel (`prefill`), then one token at a time (`step`)

    /// Every mixer's generation state for one sequence of up to `maxLength` tokens, and
    /// the weights its one-token products read: the model's fp32 values, or a bf16 copy
    /// this state owns (made when the state is made, so a generator starting after the
    /// weights changed copies the new ones; another state of the same model is not affected).
    public final class GenerationState {
        public let mixers: [MixerState]
        /// The bf16 copy of the model's parameters (`weights: .bf16`), nil for fp32.
        public let bf16: BF16Weights?
        /// Bytes held by the mixers' states (grows with the context only for attention's
        /// KV cache); the bf16 copy's are `bf16.bytes`.
        public var bytes: Int { mixers.reduce(0) { $0 + $1.bytes } }
        init(_ mixers: [MixerState], bf16: BF16Weights?) { self.mixers = mixers; self.bf16 = bf16 }
    }

    /// Throws when a mixer cannot generate (e.g. non-causal expert-choice routing).
    public func makeGenerationState(maxLength: Int, weights: WeightFormat = .fp32) throws -> GenerationState {
        let mixers = try blocks.map { try $0.mixer.makeAnyState(batch: 1, maxLength: maxLength) }
        return GenerationState(mixers, bf16: weights == .bf16 ? BF16Weights(params.values, count: params.count) : nil)
    }

    /// Prompt positions per prefill pass when every mixer continues from its state
    /// (Mamba, attention from its KV cache, MoE, MLP): a long prompt then needs the
    /// activations of one chunk, not of the whole prompt. A mixer that cannot continue
    /// (`prefillsInChunks` false) makes the model prefill the prompt in one pass.
    public var prefillChunk = 512
    private let genX = FloatBuffer(), genN = FloatBuffer(), genF = FloatBuffer(), genLogits = FloatBuffer()
    private let genToken = IntBuffer(count: 1)

    /// Runs the prompt (embedding → each block's norm, mixer prefill, residual);
    /// returns the logits [V] for the next token.
    public func prefill(_ prompt: [Int32], state: GenerationState) -> UnsafePointer<Float> {
        precondition(!prompt.isEmpty)
        let D = width
        let chunk = blocks.allSatisfy(\.mixer.prefillsInChunks) ? max(1, prefillChunk) : prompt.count
        let tp = IntBuffer(count: min(chunk, prompt.count))
        var start = 0, L = 0
        while start < prompt.count {
            L = min(chunk, prompt.count - start)
            for i in 0..<L { tp.pointer[i] = prompt[start + i] }
            let pass = Pass.generate(bf16: state.bf16).with(tokens: UnsafePointer(tp.pointer))
            let xp = genX.ensure(L * D), np = genN.ensure(L * D), fp = genF.ensure(L * D)
            embedding.forward(tokens: tp.pointer, xp, T: L)
            for (i, b) in blocks.enumerated() {
                b.norm.forward(xp, np, B: 1, L: L, pass: pass)
                b.mixer.prefill(np, fp, B: 1, L: L, anyState: state.mixers[i], pass: pass)
                axpy(1, fp, xp, L * D)
            }
            start += L
        }
        return generationHead(genX.pointer + (L - 1) * D, state: state)
    }

    /// Feeds one token; returns the logits [V] for the next one.
    public func step(_ t: Int32, state: GenerationState) -> UnsafePointer<Float> {
        let D = width
        genToken.pointer[0] = t
        let pass = Pass.generate(bf16: state.bf16).with(tokens: UnsafePointer(genToken.pointer))
        let xp = genX.ensure(D), np = genN.ensure(D), fp = genF.ensure(D)
        embedding.forward(tokens: genToken.pointer, xp, T: 1)
        for (i, b) in blocks.enumerated() {
            b.norm.forward(xp, np, B: 1, L: 1, pass: pass)
            b.mixer.step(np, fp, B: 1, anyState: state.mixers[i], pass: pass)
            axpy(1, fp, xp, D)
        }
        return generationHead(xp, state: state)
    }

    /// Final norm and head of one hidden vector h [D] → logits [V].
    private func generationHead(_ h: UnsafePointer<Float>, state: GenerationState) -> UnsafePointer<Float> {
        let hn = genN.ensure(width), lg = genLogits.ensure(vocab)
        let pass = Pass.generate(bf16: state.bf16)
        finalNorm.forward(h, hn, B: 1, L: 1, pass: pass)
        if let head { head.forward(hn, lg, B: 1, L: 1, pass: pass) } else { embedding.headForward(hn, lg, T: 1, bf16: state.bf16) }
        return UnsafePointer(lg)
    }
}
