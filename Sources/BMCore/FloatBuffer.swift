/// An owned, 64-byte aligned, zero-initialised block of Floats that can grow.
/// Activation caches and scratch space use it; it never shrinks, so after the
/// first training step no step allocates.
public final class FloatBuffer: @unchecked Sendable {
    public private(set) var pointer: UnsafeMutablePointer<Float>
    public private(set) var capacity: Int

    public init(count: Int = 0) {
        capacity = Swift.max(count, 1)
        pointer = FloatBuffer.allocate(capacity)
    }

    deinit { pointer.deallocate() }

    private static func allocate(_ n: Int) -> UnsafeMutablePointer<Float> {
        let raw = UnsafeMutableRawPointer.allocate(byteCount: n * 4, alignment: 64)
        let p = raw.bindMemory(to: Float.self, capacity: n)
        p.initialize(repeating: 0, count: n)
        return p
    }

    /// Makes room for `count` floats (contents are not kept when it grows) and returns the pointer.
    @discardableResult
    public func ensure(_ count: Int) -> UnsafeMutablePointer<Float> {
        if count > capacity {
            pointer.deallocate()
            capacity = count
            pointer = FloatBuffer.allocate(count)
        }
        return pointer
    }

    public func zero(_ count: Int? = nil) {
        pointer.update(repeating: 0, count: Swift.min(count ?? capacity, capacity))
    }

    public func buffer(_ count: Int) -> UnsafeMutableBufferPointer<Float> {
        UnsafeMutableBufferPointer(start: ensure(count), count: count)
    }

    public func array(_ count: Int) -> [Float] { Array(UnsafeBufferPointer(start: pointer, count: Swift.min(count, capacity))) }
}

/// Same for Int32 token ids and indices.
public final class IntBuffer: @unchecked Sendable {
    public private(set) var pointer: UnsafeMutablePointer<Int32>
    public private(set) var capacity: Int
    public init(count: Int = 0) {
        capacity = Swift.max(count, 1)
        pointer = .allocate(capacity: capacity)
        pointer.initialize(repeating: 0, count: capacity)
    }
    deinit { pointer.deallocate() }
    @discardableResult
    public func ensure(_ count: Int) -> UnsafeMutablePointer<Int32> {
        if count > capacity {
            pointer.deallocate()
            capacity = count
            pointer = .allocate(capacity: count)
            pointer.initialize(repeating: 0, count: count)
        }
        return pointer
    }
}
