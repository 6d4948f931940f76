// Internal plumbing shared by every wrapper: silencing libhdf5's automatic
// error printing, and turning failed calls into `HDF5Error`.
import CHDF5
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

enum H5Runtime {
    /// libhdf5 (thread-safe build) keeps one error stack — and one
    /// "print automatically" setting — per thread. The key is created once;
    /// each thread turns printing off the first time it calls into the wrapper.
    private static let silencedKey: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key, nil)
        return key
    }()

    /// libhdf5 closes every file still open when the process exits (an atexit
    /// handler). After a close that failed (a full disk) that handler dereferences
    /// the half-closed file and the process ends in SIGSEGV instead of with its
    /// error; so the toolkit closes its files itself and turns the handler off.
    /// `H5dont_atexit` counts only before the library initialises: this runs
    /// before the first call of the wrapper.
    private static let noAtexit: Void = { _ = H5dont_atexit() }()

    /// Call before any libhdf5 function whose failure we report ourselves.
    @inline(__always)
    static func prepare() {
        _ = noAtexit
        if pthread_getspecific(silencedKey) == nil {
            H5Eset_auto2(bm_h5e_default(), nil, nil)
            pthread_setspecific(silencedKey, UnsafeRawPointer(bitPattern: 1))
        }
    }
}

/// Where an operation happened, for error messages.
struct H5Context {
    let path: String
    let object: String?

    func error(_ action: String, _ detail: String? = nil, stack: Bool = true) -> HDF5Error {
        HDF5Error(path: path, object: object, action: action,
                  detail: detail, stack: stack ? HDF5Error.currentStack() : [])
    }

    /// Calls `body`, which returns an identifier; negative means failure.
    @inline(__always)
    func id(_ action: @autoclosure () -> String, _ body: () -> hid_t) throws(HDF5Error) -> hid_t {
        H5Runtime.prepare()
        let id = body()
        if id < 0 { throw error(action()) }
        return id
    }

    /// Calls `body`, which returns herr_t / htri_t / ssize_t; negative means failure.
    @inline(__always)
    @discardableResult
    func check<T: BinaryInteger>(_ action: @autoclosure () -> String, _ body: () -> T) throws(HDF5Error) -> T {
        H5Runtime.prepare()
        let r = body()
        if r < 0 { throw error(action()) }
        return r
    }

    /// `check` for htri_t results.
    @inline(__always)
    func truth(_ action: @autoclosure () -> String, _ body: () -> htri_t) throws(HDF5Error) -> Bool {
        try check(action(), body) > 0
    }
}

/// Full HDF5 path of `name` relative to the object at `parent`.
func h5Join(_ parent: String, _ name: String) -> String {
    if name.hasPrefix("/") { return name }
    if name == "." || name.isEmpty { return parent }
    return parent.hasSuffix("/") ? parent + name : parent + "/" + name
}

/// Closes a dataspace / datatype / property list identifier, ignoring errors.
@inline(__always) func closeSpace(_ id: hid_t) { if id >= 0 { H5Sclose(id) } }
@inline(__always) func closeType(_ id: hid_t) { if id >= 0 { H5Tclose(id) } }
@inline(__always) func closePlist(_ id: hid_t) { if id >= 0 { H5Pclose(id) } }

/// Creates a dataspace for `shape` ([] → scalar).
func makeDataspace(_ shape: [Int], maxShape: [hsize_t]? = nil, _ ctx: H5Context) throws(HDF5Error) -> hid_t {
    if shape.isEmpty {
        return try ctx.id("cannot create scalar dataspace for") { H5Screate(H5S_SCALAR) }
    }
    let dims = shape.map { hsize_t($0) }
    return try ctx.id("cannot create dataspace \(shape) for") {
        dims.withUnsafeBufferPointer { d in
            if let maxShape {
                return maxShape.withUnsafeBufferPointer { m in
                    H5Screate_simple(Int32(dims.count), d.baseAddress, m.baseAddress)
                }
            }
            return H5Screate_simple(Int32(dims.count), d.baseAddress, nil)
        }
    }
}

/// Current dimensions of a dataspace (scalar → []).
func dataspaceShape(_ space: hid_t, _ ctx: H5Context) throws(HDF5Error) -> [Int] {
    let rank = Int(try ctx.check("cannot read rank of") { H5Sget_simple_extent_ndims(space) })
    if rank == 0 { return [] }
    var dims = [hsize_t](repeating: 0, count: rank)
    try ctx.check("cannot read dimensions of") { H5Sget_simple_extent_dims(space, &dims, nil) }
    return dims.map { Int($0) }
}

/// Maximum dimensions of a dataspace.
func dataspaceMaxShape(_ space: hid_t, _ ctx: H5Context) throws(HDF5Error) -> [hsize_t] {
    let rank = Int(try ctx.check("cannot read rank of") { H5Sget_simple_extent_ndims(space) })
    if rank == 0 { return [] }
    var dims = [hsize_t](repeating: 0, count: rank)
    var maxDims = [hsize_t](repeating: 0, count: rank)
    try ctx.check("cannot read dimensions of") { H5Sget_simple_extent_dims(space, &dims, &maxDims) }
    return maxDims
}

/// Number of elements of `shape`, or nil when a dimension is negative or it overflows.
public func elementCount(_ shape: [Int]) -> Int? {
    var n = 1
    for d in shape {
        guard d >= 0 else { return nil }
        let (p, o) = n.multipliedReportingOverflow(by: d)
        if o { return nil }
        n = p
    }
    return n
}

/// Library-wide information, mostly for tests and diagnostics.
public enum HDF5Library {
    /// "major.minor.release" of the linked libhdf5.
    public static var version: String {
        var major: UInt32 = 0, minor: UInt32 = 0, release: UInt32 = 0
        H5Runtime.prepare()
        H5get_libversion(&major, &minor, &release)
        return "\(major).\(minor).\(release)"
    }

    /// Live identifiers, for leak checks in tests and diagnostics.
    public struct LiveIdentifiers: Equatable, Sendable, CustomStringConvertible {
        /// Open files, groups, datasets, attributes across all files.
        public var files = 0, groups = 0, datasets = 0, attributes = 0
        /// Dataspaces, datatypes and property lists created after the mark and still open.
        public var dataspaces = 0, datatypes = 0, propertyLists = 0
        public init() {}
        public var description: String {
            "files \(files) groups \(groups) datasets \(datasets) attributes \(attributes) " +
            "dataspaces \(dataspaces) datatypes \(datatypes) property lists \(propertyLists)"
        }
    }

    /// A point in libhdf5's identifier sequence (see `liveIdentifiers(since:)`).
    public struct IdentifierMark: Sendable {
        let dataspace: hid_t, datatype: hid_t, propertyList: hid_t
    }

    /// Remembers the current position of libhdf5's identifier counters.
    public static func identifierMark() -> IdentifierMark {
        H5Runtime.prepare()
        let s = H5Screate(H5S_SCALAR); defer { closeSpace(s) }
        let t = H5Tcopy(bm_h5t_native_int32()); defer { closeType(t) }
        let p = H5Pcreate(bm_h5p_dataset_create()); defer { closePlist(p) }
        return IdentifierMark(dataspace: s, datatype: t, propertyList: p)
    }

    /// Open file objects now, and transient identifiers (dataspaces,
    /// datatypes, property lists) created since `mark` that are still open.
    /// libhdf5 numbers identifiers of each kind sequentially, so the latter
    /// are found by probing the identifiers issued since the mark. Only
    /// meaningful while no other thread uses libhdf5.
    public static func liveIdentifiers(since mark: IdentifierMark) -> LiveIdentifiers {
        let now = identifierMark()
        func alive(_ from: hid_t, _ to: hid_t) -> Int {
            guard to > from + 1 else { return 0 }
            return (from + 1 ..< to).reduce(0) { $0 + (H5Iis_valid($1) > 0 ? 1 : 0) }
        }
        func open(_ kind: UInt32) -> Int {
            max(0, Int(H5Fget_obj_count(hid_t(bm_h5f_obj_all()), kind)))
        }
        var r = LiveIdentifiers()
        r.files = open(UInt32(H5F_OBJ_FILE))
        r.groups = open(UInt32(H5F_OBJ_GROUP))
        r.datasets = open(UInt32(H5F_OBJ_DATASET))
        r.attributes = open(UInt32(H5F_OBJ_ATTR))
        r.dataspaces = alive(mark.dataspace, now.dataspace)
        r.datatypes = alive(mark.datatype, now.datatype) + open(UInt32(H5F_OBJ_DATATYPE))
        r.propertyLists = alive(mark.propertyList, now.propertyList)
        return r
    }
}

/// String from a NUL-terminated C buffer (invalid UTF-8 is repaired).
func stringFromCBuffer(_ buffer: [CChar]) -> String {
    let bytes = buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
    return String(decoding: bytes, as: UTF8.self)
}
