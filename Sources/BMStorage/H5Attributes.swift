import CHDF5
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Attributes, available on every object (file, group, dataset, appendable
// dataset). Strings are stored as variable-length UTF-8 (h5py reads them as
// `str`), integers as int64, reals as float64. Setting an attribute that
// already exists replaces it (whatever its old type or shape).

extension H5Object {

    // MARK: Writing

    public func setAttribute(_ name: String, _ value: String) throws {
        try setAttribute(name, [value], scalar: true)
    }

    public func setAttribute(_ name: String, _ value: Int) throws {
        var v = Int64(value)
        try writeAttribute(name, type: bm_h5t_native_int64(), shape: [], count: 1, &v)
    }

    public func setAttribute(_ name: String, _ value: Double) throws {
        var v = value
        try writeAttribute(name, type: bm_h5t_native_double(), shape: [], count: 1, &v)
    }

    /// A 1-D array of variable-length UTF-8 strings.
    public func setAttribute(_ name: String, _ value: [String]) throws {
        try setAttribute(name, value, scalar: false)
    }

    public func setAttribute(_ name: String, _ value: [Double]) throws {
        try value.withUnsafeBufferPointer { b throws(HDF5Error) in
            try writeAttribute(name, type: bm_h5t_native_double(), shape: [b.count], count: b.count, b.baseAddress)
        }
    }

    /// Stored as int64.
    public func setAttribute(_ name: String, _ value: [Int]) throws {
        let v = value.map { Int64($0) }
        try v.withUnsafeBufferPointer { b throws(HDF5Error) in
            try writeAttribute(name, type: bm_h5t_native_int64(), shape: [b.count], count: b.count, b.baseAddress)
        }
    }

    // MARK: Reading

    /// A scalar (or one-element) string attribute, variable or fixed length.
    public func stringAttribute(_ name: String) throws -> String {
        let values = try stringArrayAttribute(name)
        guard values.count == 1 else {
            throw attributeContext(name).error("expected one string in", "it holds \(values.count)", stack: false)
        }
        return values[0]
    }

    /// A scalar (or one-element) integer attribute of any integer type.
    public func intAttribute(_ name: String) throws -> Int {
        let v = try readNumericAttribute(name, as: Int64.self, memType: bm_h5t_native_int64(), integerOnly: true)
        guard v.count == 1 else {
            throw attributeContext(name).error("expected one integer in", "it holds \(v.count)", stack: false)
        }
        return Int(v[0])
    }

    /// A scalar (or one-element) numeric attribute, converted to Double.
    public func doubleAttribute(_ name: String) throws -> Double {
        let v = try doubleArrayAttribute(name)
        guard v.count == 1 else {
            throw attributeContext(name).error("expected one number in", "it holds \(v.count)", stack: false)
        }
        return v[0]
    }

    /// All elements of a string attribute (scalar → one element).
    public func stringArrayAttribute(_ name: String) throws -> [String] {
        let ctx = attributeContext(name)
        return try withAttribute(name) { aid, type, space, count throws(HDF5Error) in
            guard H5Tget_class(type) == H5T_STRING else {
                throw ctx.error("wrong type for", "expected a string, found \(describeDatatype(type))", stack: false)
            }
            return try readStrings(aid, type: type, count: count, ctx)
        }
    }

    /// All elements of a numeric attribute, converted to Double.
    public func doubleArrayAttribute(_ name: String) throws -> [Double] {
        try readNumericAttribute(name, as: Double.self, memType: bm_h5t_native_double(), integerOnly: false)
    }

    /// All elements of an integer attribute.
    public func intArrayAttribute(_ name: String) throws -> [Int] {
        try readNumericAttribute(name, as: Int64.self, memType: bm_h5t_native_int64(), integerOnly: true).map { Int($0) }
    }

    /// Whether the attribute exists (false on a closed object).
    public func hasAttribute(_ name: String) -> Bool {
        guard isOpen else { return false }
        H5Runtime.prepare()
        return H5Aexists(id, name) > 0
    }

    public func removeAttribute(_ name: String) throws {
        let ctx = attributeContext(name)
        let loc = try openID(ctx)
        try ctx.check("cannot delete") { H5Adelete(loc, name) }
    }

    /// Names of all attributes, sorted.
    public func attributeNames() throws -> [String] {
        let ctx = context()
        let loc = try openID(ctx)
        final class Names { var list: [String] = [] }
        let names = Names()
        try withExtendedLifetime(names) { () throws(HDF5Error) in
            let client = Unmanaged.passUnretained(names).toOpaque()
            try ctx.check("cannot list attributes of") {
                H5Aiterate2(loc, H5_INDEX_NAME, H5_ITER_INC, nil, { _, name, _, client in
                    guard let name, let client else { return -1 }
                    Unmanaged<Names>.fromOpaque(client).takeUnretainedValue().list.append(String(cString: name))
                    return 0
                }, client)
            }
        }
        return names.list.sorted()
    }

    // MARK: Internals

    func attributeContext(_ attribute: String) -> H5Context {
        H5Context(path: filePath, object: "\(name)@\(attribute)")
    }

    private func setAttribute(_ name: String, _ value: [String], scalar: Bool) throws(HDF5Error) {
        let ctx = attributeContext(name)
        let type = try makeUTF8StringType(ctx)
        defer { closeType(type) }
        // strdup'ed copies stay valid for the duration of the write.
        let pointers: [UnsafeMutablePointer<CChar>?] = value.map { strdup($0) }
        defer { pointers.forEach { free($0) } }
        try pointers.withUnsafeBufferPointer { b throws(HDF5Error) in
            try writeAttribute(name, type: type, shape: scalar ? [] : [b.count], count: b.count,
                               UnsafeRawPointer(b.baseAddress))
        }
    }

    /// Creates (replacing any existing) attribute and writes `count` elements of `type`.
    private func writeAttribute(_ attribute: String, type: hid_t, shape: [Int], count: Int,
                                _ data: UnsafeRawPointer?) throws(HDF5Error) {
        let ctx = attributeContext(attribute)
        let loc = try openID(ctx)
        if try ctx.truth("cannot look up", { H5Aexists(loc, attribute) }) {
            try ctx.check("cannot replace") { H5Adelete(loc, attribute) }
        }
        let space = try makeDataspace(shape, ctx)
        defer { closeSpace(space) }
        let aid = try ctx.id("cannot create attribute") {
            H5Acreate2(loc, attribute, type, space, bm_h5p_default(), bm_h5p_default())
        }
        defer { H5Aclose(aid) }
        if count > 0 {
            try ctx.check("cannot write attribute") { H5Awrite(aid, type, data) }
        }
    }

    /// Opens the attribute, its datatype and dataspace for `body`, closing them after.
    private func withAttribute<R>(_ attribute: String,
                                  _ body: (hid_t, hid_t, hid_t, Int) throws(HDF5Error) -> R) throws(HDF5Error) -> R {
        let ctx = attributeContext(attribute)
        let loc = try openID(ctx)
        guard try ctx.truth("cannot look up", { H5Aexists(loc, attribute) }) else {
            throw ctx.error("no such attribute", stack: false)
        }
        let aid = try ctx.id("cannot open attribute") { H5Aopen(loc, attribute, bm_h5p_default()) }
        defer { H5Aclose(aid) }
        let type = try ctx.id("cannot get datatype of attribute") { H5Aget_type(aid) }
        defer { closeType(type) }
        let space = try ctx.id("cannot get dataspace of attribute") { H5Aget_space(aid) }
        defer { closeSpace(space) }
        let count = Int(try ctx.check("cannot get size of attribute") { H5Sget_simple_extent_npoints(space) })
        return try body(aid, type, space, count)
    }

    private func readNumericAttribute<T>(_ attribute: String, as: T.Type, memType: hid_t,
                                         integerOnly: Bool) throws(HDF5Error) -> [T] {
        let ctx = attributeContext(attribute)
        return try withAttribute(attribute) { aid, type, _, count throws(HDF5Error) -> [T] in
            let cls = H5Tget_class(type)
            guard cls == H5T_INTEGER || (!integerOnly && cls == H5T_FLOAT) else {
                throw ctx.error("wrong type for",
                                "expected \(integerOnly ? "an integer" : "a number"), found \(describeDatatype(type))",
                                stack: false)
            }
            if count == 0 { return [] }
            return try [T](unsafeUninitializedCapacity: count) { buffer, initialized throws(HDF5Error) in
                try ctx.check("cannot read attribute") { H5Aread(aid, memType, buffer.baseAddress) }
                initialized = count
            }
        }
    }

    private func readStrings(_ aid: hid_t, type: hid_t, count: Int, _ ctx: H5Context) throws(HDF5Error) -> [String] {
        if count == 0 { return [] }
        if H5Tis_variable_str(type) > 0 {
            let memType = try ctx.id("cannot copy string type of") { H5Tcopy(bm_h5t_c_s1()) }
            defer { closeType(memType) }
            try ctx.check("cannot set string type of") { H5Tset_size(memType, bm_h5t_variable()) }
            try ctx.check("cannot set character set of") { H5Tset_cset(memType, H5Tget_cset(type)) }
            var pointers = [UnsafeMutablePointer<CChar>?](repeating: nil, count: count)
            defer { pointers.forEach { if let p = $0 { H5free_memory(p) } } }
            try ctx.check("cannot read attribute") { H5Aread(aid, memType, &pointers) }
            return pointers.map { $0.map { String(cString: $0) } ?? "" }
        } else {
            let size = H5Tget_size(type)
            guard size > 0 else { throw ctx.error("cannot get string size of") }
            let memType = try ctx.id("cannot copy string type of") { H5Tcopy(type) }
            defer { closeType(memType) }
            var bytes = [UInt8](repeating: 0, count: size * count)
            try ctx.check("cannot read attribute") { H5Aread(aid, memType, &bytes) }
            let spacePadded = H5Tget_strpad(type) == H5T_STR_SPACEPAD
            return (0..<count).map { i in
                var s = bytes[(i * size)..<((i + 1) * size)]
                if let nul = s.firstIndex(of: 0) { s = s[..<nul] }
                if spacePadded { while s.last == 0x20 { s = s.dropLast() } }
                return String(decoding: s, as: UTF8.self)
            }
        }
    }
}

/// A variable-length UTF-8 string datatype (caller closes).
func makeUTF8StringType(_ ctx: H5Context) throws(HDF5Error) -> hid_t {
    let type = try ctx.id("cannot copy string type for") { H5Tcopy(bm_h5t_c_s1()) }
    do {
        try ctx.check("cannot make variable-length string type for") { H5Tset_size(type, bm_h5t_variable()) }
        try ctx.check("cannot set UTF-8 character set for") { H5Tset_cset(type, H5T_CSET_UTF8) }
    } catch {
        closeType(type)
        throw error
    }
    return type
}
