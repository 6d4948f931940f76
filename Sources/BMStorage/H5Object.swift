import CHDF5

/// Base of every wrapper around an open libhdf5 object (file, group,
/// dataset). Owns exactly one identifier and closes it in `close()` or
/// `deinit`. Attributes (H5Attributes.swift) are available on all objects.
///
/// Not `Sendable`: use one object from one thread (or task) at a time.
/// libhdf5 itself is the thread-safe build, so different objects may be
/// used from different threads.
public class H5Object {
    /// The libhdf5 identifier; -1 once closed.
    private(set) var id: hid_t
    /// Path of the file on disk.
    public let filePath: String
    /// Absolute path of the object inside the file ("/" for the file itself).
    public let name: String
    private let closer: (hid_t) -> herr_t

    init(id: hid_t, filePath: String, name: String, closer: @escaping (hid_t) -> herr_t) {
        self.id = id
        self.filePath = filePath
        self.name = name
        self.closer = closer
    }

    deinit { close() }

    /// Releases the identifier. Idempotent; later operations throw.
    /// (The file stays open on disk until its last object is closed.)
    public func close() {
        if id >= 0 {
            _ = closer(id)
            id = -1
        }
    }

    /// Releases the identifier and reports a failure (a file's close writes what
    /// libhdf5 still buffers: on a full disk it is where the write fails). The
    /// identifier is released either way.
    func closeChecked() throws(HDF5Error) {
        guard id >= 0 else { return }
        let ctx = context()
        H5Runtime.prepare()
        let r = closer(id)
        id = -1
        if r < 0 { throw ctx.error("cannot close (write out)") }
    }

    /// Whether `close()` has not been called yet.
    public var isOpen: Bool { id >= 0 }

    /// Error context for this object (or for `child` inside it).
    func context(_ child: String? = nil) -> H5Context {
        H5Context(path: filePath, object: child.map { h5Join(name, $0) } ?? name)
    }

    /// The identifier, or an error if closed.
    func openID(_ ctx: H5Context? = nil) throws(HDF5Error) -> hid_t {
        guard id >= 0 else {
            throw (ctx ?? context()).error("cannot use closed object", stack: false)
        }
        return id
    }
}
