import CHDF5

/// How a dataset is stored: chunking and filters (compression).
public struct H5StorageLayout: Equatable, Sendable {
    /// Chunk dimensions, nil for contiguous / compact storage.
    public var chunkShape: [Int]?
    /// Filter names in pipeline order as libhdf5 reports them, e.g. ["shuffle", "deflate"].
    public var filters: [String]
    /// gzip level when the deflate filter is present.
    public var deflateLevel: Int?
    /// Maximum dimensions; nil entries are unlimited.
    public var maxShape: [Int?]
    /// Bytes the data occupies in the file (after compression).
    public var storedBytes: Int
}

/// An open dataset of numbers, any rank, readable with conversion.
public final class H5Dataset: H5Object {
    init(id: hid_t, filePath: String, name: String) {
        super.init(id: id, filePath: filePath, name: name, closer: H5Dclose)
    }

    /// Current dimensions ([] for a scalar; [] too if the dataset was closed).
    public var shape: [Int] { (try? datasetShape()) ?? [] }

    /// Number of elements (product of `shape`).
    public var count: Int { shape.reduce(1, *) }

    /// Stored element type; throws for types outside `H5ElementType`.
    public var elementType: H5ElementType { get throws { try datasetElementType() } }

    public func storageLayout() throws -> H5StorageLayout { try datasetStorageLayout() }

    /// All elements in row-major order, converted from the stored numeric type.
    public func readFloats() throws -> [Float] {
        try readAll(memType: bm_h5t_native_float(), integerOnly: false)
    }

    /// Reads all elements into `buffer`, whose count must equal `count`.
    public func readFloats(into buffer: UnsafeMutableBufferPointer<Float>) throws {
        try readInto(UnsafeMutableRawPointer(buffer.baseAddress), count: buffer.count,
                     memType: bm_h5t_native_float(), integerOnly: false)
    }

    public func readDoubles() throws -> [Double] {
        try readAll(memType: bm_h5t_native_double(), integerOnly: false)
    }

    /// Integer datasets only (reading floats as integers is refused).
    public func readInt64s() throws -> [Int64] {
        try readAll(memType: bm_h5t_native_int64(), integerOnly: true)
    }

    /// Integer datasets only; values out of range are clamped by libhdf5.
    public func readInt32s() throws -> [Int32] {
        try readAll(memType: bm_h5t_native_int32(), integerOnly: true)
    }

    /// Integer datasets only; values out of range are clamped by libhdf5.
    public func readUInt16s() throws -> [UInt16] {
        try readAll(memType: bm_h5t_native_uint16(), integerOnly: true)
    }

    /// For SWMR readers: reloads the dataset's metadata so `shape` and reads
    /// see rows appended by the writer since the file was opened.
    public func refresh() throws {
        let ctx = context()
        let did = try openID(ctx)
        try ctx.check("cannot refresh dataset") { H5Drefresh(did) }
    }
}

// MARK: - Writing fixed datasets

extension H5Node {
    /// Writes a dataset of `shape` (row-major; [] = scalar). Intermediate
    /// groups of a nested name are created. An existing dataset of the same
    /// type and shape is overwritten in place; one of another type or shape
    /// is unlinked and recreated (its space inside the file is not reclaimed).
    public func write(_ name: String, floats: UnsafeBufferPointer<Float>, shape: [Int]) throws {
        try writeDataset(name, type: .float32, shape: shape, count: floats.count, UnsafeRawPointer(floats.baseAddress))
    }

    public func write(_ name: String, floats: [Float], shape: [Int]) throws {
        try floats.withUnsafeBufferPointer { b in try write(name, floats: b, shape: shape) }
    }

    public func write(_ name: String, doubles: [Double], shape: [Int]) throws {
        try doubles.withUnsafeBufferPointer { b throws(HDF5Error) in
            try writeDataset(name, type: .float64, shape: shape, count: b.count, UnsafeRawPointer(b.baseAddress))
        }
    }

    public func write(_ name: String, ints: [Int64], shape: [Int]) throws {
        try ints.withUnsafeBufferPointer { b throws(HDF5Error) in
            try writeDataset(name, type: .int64, shape: shape, count: b.count, UnsafeRawPointer(b.baseAddress))
        }
    }

    public func write(_ name: String, int32s: [Int32], shape: [Int]) throws {
        try int32s.withUnsafeBufferPointer { b throws(HDF5Error) in
            try writeDataset(name, type: .int32, shape: shape, count: b.count, UnsafeRawPointer(b.baseAddress))
        }
    }

    public func write(_ name: String, uint16s: [UInt16], shape: [Int]) throws {
        try uint16s.withUnsafeBufferPointer { b throws(HDF5Error) in
            try writeDataset(name, type: .uint16, shape: shape, count: b.count, UnsafeRawPointer(b.baseAddress))
        }
    }

    /// Opens an existing dataset for reading.
    public func dataset(_ name: String) throws -> H5Dataset {
        let ctx = context(name)
        let loc = try openID(ctx)
        let did = try ctx.id("cannot open dataset") { H5Dopen2(loc, name, bm_h5p_default()) }
        return H5Dataset(id: did, filePath: filePath, name: h5Join(self.name, name))
    }

    private func writeDataset(_ name: String, type: H5ElementType, shape: [Int], count: Int,
                              _ data: UnsafeRawPointer?) throws(HDF5Error) {
        let ctx = context(name)
        let loc = try openID(ctx)
        guard let expected = elementCount(shape) else {
            throw ctx.error("invalid shape \(shape) for dataset", stack: false)
        }
        guard expected == count else {
            throw ctx.error("wrong element count for dataset",
                            "shape \(shape) needs \(expected) elements, got \(count)", stack: false)
        }
        var did: hid_t = -1
        defer { if did >= 0 { H5Dclose(did) } }
        if exists(name) {
            let existing = try ctx.id("cannot open existing dataset") { H5Dopen2(loc, name, bm_h5p_default()) }
            let sameLayout = (try? H5Dataset.matches(existing, type: type, shape: shape, ctx)) ?? false
            if sameLayout {
                did = existing
            } else {
                H5Dclose(existing)
                try ctx.check("cannot unlink existing dataset") { H5Ldelete(loc, name, bm_h5p_default()) }
            }
        }
        if did < 0 {
            let space = try makeDataspace(shape, ctx)
            defer { closeSpace(space) }
            let lcpl = try ctx.id("cannot create link property list for") { H5Pcreate(bm_h5p_link_create()) }
            defer { closePlist(lcpl) }
            try ctx.check("cannot set intermediate-group creation for") { H5Pset_create_intermediate_group(lcpl, 1) }
            did = try ctx.id("cannot create dataset") {
                H5Dcreate2(loc, name, type.nativeType, space, lcpl, bm_h5p_default(), bm_h5p_default())
            }
        }
        if count > 0 {
            let d = did
            try ctx.check("cannot write dataset") {
                H5Dwrite(d, type.nativeType, bm_h5s_all(), bm_h5s_all(), bm_h5p_default(), data)
            }
        }
    }
}

extension H5Dataset {
    /// Whether the open dataset `did` has exactly this element type and shape.
    static func matches(_ did: hid_t, type: H5ElementType, shape: [Int], _ ctx: H5Context) throws(HDF5Error) -> Bool {
        let ftype = try ctx.id("cannot get datatype of dataset") { H5Dget_type(did) }
        defer { closeType(ftype) }
        let space = try ctx.id("cannot get dataspace of dataset") { H5Dget_space(did) }
        defer { closeSpace(space) }
        guard H5ElementType(datatype: ftype) == type else { return false }
        return try dataspaceShape(space, ctx) == shape
    }
}

// MARK: - Reading helpers shared by H5Dataset and AppendableDataset

extension H5Object {
    func datasetShape() throws(HDF5Error) -> [Int] {
        let ctx = context()
        let did = try openID(ctx)
        let space = try ctx.id("cannot get dataspace of dataset") { H5Dget_space(did) }
        defer { closeSpace(space) }
        return try dataspaceShape(space, ctx)
    }

    func datasetElementType() throws(HDF5Error) -> H5ElementType {
        let ctx = context()
        let did = try openID(ctx)
        let type = try ctx.id("cannot get datatype of dataset") { H5Dget_type(did) }
        defer { closeType(type) }
        guard let t = H5ElementType(datatype: type) else {
            throw ctx.error("unsupported element type of dataset", describeDatatype(type), stack: false)
        }
        return t
    }

    func datasetStorageLayout() throws(HDF5Error) -> H5StorageLayout {
        let ctx = context()
        let did = try openID(ctx)
        let dcpl = try ctx.id("cannot get creation properties of dataset") { H5Dget_create_plist(did) }
        defer { closePlist(dcpl) }
        let space = try ctx.id("cannot get dataspace of dataset") { H5Dget_space(did) }
        defer { closeSpace(space) }
        let maxShape = try dataspaceMaxShape(space, ctx).map { $0 == bm_h5s_unlimited() ? nil : Int($0) }
        var layout = H5StorageLayout(chunkShape: nil, filters: [], deflateLevel: nil, maxShape: maxShape,
                                     storedBytes: Int(H5Dget_storage_size(did)))
        if H5Pget_layout(dcpl) == H5D_CHUNKED {
            var dims = [hsize_t](repeating: 0, count: 32)
            let rank = try ctx.check("cannot get chunk shape of dataset") { H5Pget_chunk(dcpl, 32, &dims) }
            layout.chunkShape = dims.prefix(Int(rank)).map { Int($0) }
        }
        let n = try ctx.check("cannot count filters of dataset") { H5Pget_nfilters(dcpl) }
        for i in 0..<UInt32(n) {
            var flags: UInt32 = 0
            var nValues = 8
            var values = [UInt32](repeating: 0, count: 8)
            var nameBuffer = [CChar](repeating: 0, count: 64)
            var config: UInt32 = 0
            let filter = try ctx.check("cannot get filter #\(i) of dataset") {
                H5Pget_filter2(dcpl, i, &flags, &nValues, &values, nameBuffer.count, &nameBuffer, &config)
            }
            layout.filters.append(stringFromCBuffer(nameBuffer))
            if filter == H5Z_FILTER_DEFLATE, nValues > 0 { layout.deflateLevel = Int(values[0]) }
        }
        return layout
    }

    /// Reads the whole dataset converted to `memType`.
    func readAll<T>(memType: hid_t, integerOnly: Bool) throws(HDF5Error) -> [T] {
        let n = try datasetShape().reduce(1, *)
        return try [T](unsafeUninitializedCapacity: n) { buffer, initialized throws(HDF5Error) in
            try readInto(UnsafeMutableRawPointer(buffer.baseAddress), count: n, memType: memType, integerOnly: integerOnly)
            initialized = n
        }
    }

    /// Reads the whole dataset into `buffer` of `count` elements of `memType`.
    func readInto(_ buffer: UnsafeMutableRawPointer?, count: Int, memType: hid_t, integerOnly: Bool) throws(HDF5Error) {
        let ctx = context()
        let did = try openID(ctx)
        let ftype = try ctx.id("cannot get datatype of dataset") { H5Dget_type(did) }
        defer { closeType(ftype) }
        let cls = H5Tget_class(ftype)
        guard cls == H5T_INTEGER || (!integerOnly && cls == H5T_FLOAT) else {
            throw ctx.error("wrong type for dataset",
                            "cannot read \(describeDatatype(ftype)) as \(integerOnly ? "integers" : "numbers")",
                            stack: false)
        }
        let space = try ctx.id("cannot get dataspace of dataset") { H5Dget_space(did) }
        defer { closeSpace(space) }
        let shape = try dataspaceShape(space, ctx)
        let stored = shape.reduce(1, *)
        guard stored == count else {
            throw ctx.error("wrong element count for dataset",
                            "expected \(stored) elements (shape \(shape)), buffer holds \(count)", stack: false)
        }
        if count == 0 { return }
        try ctx.check("cannot read dataset") {
            H5Dread(did, memType, bm_h5s_all(), bm_h5s_all(), bm_h5p_default(), buffer)
        }
    }
}
