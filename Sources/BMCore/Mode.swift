/// Whether a forward pass is for training (cache activations, training-mode
/// routing) or evaluation/generation. In BMCore so that routers (BMRouting) and
/// layers (BMLayers) share it without depending on each other.
public enum Mode: Sendable { case train, eval }

/// How an evaluation routes tokens to experts (`eval.routing`, docs/routing.md).
/// `argmax`: each token by its own router logits, as generation does (causal).
/// `train`: the assignment training uses — for the Sinkhorn routers the balanced
/// choice over the whole evaluated batch, so a token's expert depends on the other
/// tokens of the batch, later ones too (not causal). `both`: each, side by side.
public enum EvalRouting: String, Sendable, CaseIterable { case argmax, train, both }
