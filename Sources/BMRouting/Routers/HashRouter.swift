import BMCore

/// `hash` (Roller et al. 2021): expert = a fixed hash of the token id; gate 1;
/// no router parameters, no balance loss — the "no learning" baseline.
public final class HashRouter: Router {
    public static let entry = RouterEntry(
        name: "hash", summary: "expert = fixed hash of the token id (Roller et al. 2021); no router parameters",
        options: [.int("salt", 0, "changes the hash function", min: 0)],
        build: { o, _ in HashRouter(salt: UInt64(o.int("salt"))) })

    public let salt: UInt64
    public init(salt: UInt64) { self.salt = salt }
    public var usesLogits: Bool { false }
    public var allowsCapacity: Bool { true }
    public var isCausal: Bool { true }

    /// SplitMix64 finaliser of (id, salt), reduced to [0, E).
    public func expert(for id: Int32, experts E: Int) -> Int {
        var z = UInt64(UInt32(bitPattern: id)) &+ salt &* 0x9E37_79B9_7F4A_7C15 &+ 0x632B_E59B_D9B4_E019
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        return Int(z % UInt64(E))
    }

    public func assign(_ input: RouteInput, _ a: Assignment, stats: inout RouterStats) {
        guard let tokens = input.tokens else { preconditionFailure("hash routing needs token ids (StepContext.tokens)") }
        a.reset(input.T)
        for t in 0..<input.T {
            a.token.pointer[t] = Int32(t)
            a.expert.pointer[t] = Int32(expert(for: tokens[t], experts: input.E))
        }
    }

    public func gates(_ input: RouteInput, _ a: Assignment, stats: inout RouterStats) -> (aux: Double, z: Double) {
        a.gate.pointer.update(repeating: 1, count: a.count)
        return (0, 0)
    }

    public func backward(_ input: RouteInput, _ a: Assignment, dgate: UnsafePointer<Float>, dlogits: UnsafeMutablePointer<Float>) {}
}
