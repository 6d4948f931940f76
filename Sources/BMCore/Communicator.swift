/// The processes of a data-parallel run and the collectives a training step needs.
///
/// A run's ranks each hold the whole model, compute the gradient of their shard of each
/// step's global batch, and sum the shards' gradients into identical copies
/// (`sum`), so that every rank then takes the same optimizer step. `SingleProcess` is
/// the world of one (every collective is the identity); `MPICommunicator`
/// (module BMDistributed) is Open MPI's MPI_COMM_WORLD. docs/distributed.md.
public protocol Communicator: AnyObject {
    /// This process's index, 0..<size; rank 0 alone writes the run's files.
    var rank: Int { get }
    var size: Int { get }
    /// Elementwise sum over ranks, in place; every rank receives the same bits.
    func sum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws
    func sum(_ buffer: UnsafeMutablePointer<Double>, count: Int) throws
    /// Whether `value` is the same on every rank (a hash of the parameters).
    func allEqual(_ value: UInt64) throws -> Bool
    /// Returns when every rank has reached it.
    func barrier() throws
    /// Names the work in flight, for the message of a collective that never completes.
    func setContext(_ what: String)
}

extension Communicator {
    public var isWriter: Bool { rank == 0 }
    /// Sum of a few Doubles over ranks (a step's loss, an evaluation's counts).
    public func sum(_ values: [Double]) throws -> [Double] {
        guard size > 1 else { return values }
        var v = values
        try v.withUnsafeMutableBufferPointer { try sum($0.baseAddress!, count: $0.count) }
        return v
    }
}

/// One process: the collectives are the identity.
public final class SingleProcess: Communicator {
    public init() {}
    public var rank: Int { 0 }
    public var size: Int { 1 }
    public func sum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws {}
    public func sum(_ buffer: UnsafeMutablePointer<Double>, count: Int) throws {}
    public func allEqual(_ value: UInt64) throws -> Bool { true }
    public func barrier() throws {}
    public func setContext(_ what: String) {}
}
