import BMCore

/// A layer that maps a sequence batch to a sequence batch with an explicit,
/// paired backward pass (llm.c style).
///
/// Contract:
/// - `forward` reads `x: [B, L, inWidth]`, writes `y: [B, L, outWidth]`, and
///   caches what `backward` needs. The caller keeps `x` unchanged until the
///   matching `backward` (layers may keep a pointer to it instead of a copy).
/// - `pass` (both) says what the pass is for: mode, token ids, step, routing. It is
///   the only thing besides the input a layer reads; nothing is shared between passes.
/// - `backward` reads `dy: [B, L, outWidth]`, *overwrites* `dx: [B, L, inWidth]`,
///   and *accumulates* parameter gradients into their `Param.g`.
/// - Layers are causal along L unless documented otherwise.
public protocol SequenceLayer: AnyObject {
    var inWidth: Int { get }
    var outWidth: Int { get }
    /// Every parameter this layer (and its children) declared.
    var parameters: [Param] { get }
    func forward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, B: Int, L: Int, pass: Pass)
    func backward(_ dy: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>, B: Int, L: Int, pass: Pass)
    /// Extra scalar loss this layer adds (aux / z losses), computed in forward;
    /// its gradient is included by backward. 0 for most layers.
    var auxiliaryLoss: Double { get }
}

extension SequenceLayer {
    public var auxiliaryLoss: Double { 0 }
}
