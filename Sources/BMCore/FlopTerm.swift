/// One term of a layer's (or a router's) training FLOPs per token beyond its weight products.
/// Convention (docs/flops.md): an element-wise or score operation costs its forward
/// count × 3 in training (the backward pass twice the forward, as for the 6 = 3 × 2 of
/// a weight product); an exp, a division or a square root counts as one FLOP; a step
/// without a gradient (Sinkhorn's choice) counts once.
public struct FlopTerm: Sendable, Equatable {
    public var name: String
    public var flops: Double
    public init(_ name: String, _ flops: Double) { self.name = name; self.flops = flops }

}
