/// Accumulates wall time per named phase (a handful of clock reads per layer call;
/// used by `bmlab bench` to show where a layer's time goes). Off by default.
public final class PhaseTimer: @unchecked Sendable {
    public var enabled = false
    public private(set) var names: [String] = []
    public private(set) var seconds: [Double] = []
    private var last = ContinuousClock.now

    public init() {}

    /// Starts timing from now.
    @inline(__always) public func start() { if enabled { last = ContinuousClock.now } }

    /// Adds the time since the previous mark to `name`.
    @inline(__always) public func mark(_ name: String) {
        guard enabled else { return }
        let now = ContinuousClock.now
        let s = (now - last).seconds
        last = now
        if let i = names.firstIndex(of: name) { seconds[i] += s } else { names.append(name); seconds.append(s) }
    }

    public func reset() { names = []; seconds = [] }
    public var total: Double { seconds.reduce(0, +) }
}
