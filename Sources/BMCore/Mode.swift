/// Whether a forward pass is for training (cache activations, training-mode
/// routing) or evaluation/generation. In BMCore so that routers (BMRouting) and
/// layers (BMLayers) share it without depending on each other.
public enum Mode: Sendable { case train, eval }
