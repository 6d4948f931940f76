import CHDF5

/// A dataset that grows along axis 0, one or more rows at a time — e.g. a
/// metric logged every step. Chunked, with maximum dimensions
/// [unlimited] + rowShape, and shuffle + gzip when compressed.
public final class AppendableDataset: H5Object {
    /// Shape of one row ([] for scalars).
    public let rowShape: [Int]
    /// Stored element type.
    public let elementType: H5ElementType
    /// Number of rows written so far.
    public private(set) var rows: Int
    private let rowElements: Int

    init(id: hid_t, filePath: String, name: String, type: H5ElementType, rowShape: [Int], rows: Int) {
        self.rowShape = rowShape
        self.elementType = type
        self.rows = rows
        self.rowElements = rowShape.reduce(1, *)
        super.init(id: id, filePath: filePath, name: name, closer: H5Dclose)
    }

    /// Appends one scalar row (rowShape == []), converted to the stored type.
    public func append(_ value: Double) throws {
        var v = value
        try appendRows(&v, elements: 1, rowCount: 1, memType: bm_h5t_native_double())
    }

    /// Appends one scalar row (rowShape == []), converted to the stored type.
    public func append(_ value: Int64) throws {
        var v = value
        try appendRows(&v, elements: 1, rowCount: 1, memType: bm_h5t_native_int64())
    }

    /// Appends one row of `rowShape` elements (row-major).
    public func append(row: [Float]) throws {
        try row.withUnsafeBufferPointer { b throws(HDF5Error) in
            try appendRows(b.baseAddress, elements: b.count, rowCount: 1, memType: bm_h5t_native_float())
        }
    }

    public func append(row: [Int64]) throws {
        try row.withUnsafeBufferPointer { b throws(HDF5Error) in
            try appendRows(b.baseAddress, elements: b.count, rowCount: 1, memType: bm_h5t_native_int64())
        }
    }

    public func append(row: [Double]) throws {
        try row.withUnsafeBufferPointer { b throws(HDF5Error) in
            try appendRows(b.baseAddress, elements: b.count, rowCount: 1, memType: bm_h5t_native_double())
        }
    }

    /// Appends `count` rows stored contiguously in `rows`
    /// (`rows.count == count * rowShape.product`).
    public func append(rows buffer: UnsafeBufferPointer<Float>, count: Int) throws {
        try appendRows(buffer.baseAddress, elements: buffer.count, rowCount: count, memType: bm_h5t_native_float())
    }

    /// Shrinks the dataset to its first `n` rows (0 ≤ n ≤ rows). Used when a
    /// run resumes from a checkpoint older than the last logged rows.
    public func truncate(toRows n: Int) throws {
        let ctx = context()
        let did = try openID(ctx)
        guard n >= 0, n <= rows else {
            throw ctx.error("cannot truncate dataset", "to \(n) rows: it has \(rows)", stack: false)
        }
        let dims = ([n] + rowShape).map { hsize_t($0) }
        try ctx.check("cannot truncate dataset") { H5Dset_extent(did, dims) }
        rows = n
    }

    /// Writes this dataset's buffered rows to the file (what SWMR readers see).
    public func flush() throws {
        let ctx = context()
        let did = try openID(ctx)
        try ctx.check("cannot flush dataset") { H5Dflush(did) }
    }

    // Reading (the whole dataset, shape [rows] + rowShape).
    public var shape: [Int] { [rows] + rowShape }
    public func storageLayout() throws -> H5StorageLayout { try datasetStorageLayout() }
    public func readFloats() throws -> [Float] { try readAll(memType: bm_h5t_native_float(), integerOnly: false) }
    public func readDoubles() throws -> [Double] { try readAll(memType: bm_h5t_native_double(), integerOnly: false) }
    public func readInt64s() throws -> [Int64] { try readAll(memType: bm_h5t_native_int64(), integerOnly: true) }

    private func appendRows(_ data: UnsafeRawPointer?, elements: Int, rowCount: Int, memType: hid_t) throws(HDF5Error) {
        let ctx = context()
        let did = try openID(ctx)
        guard rowCount >= 0, elements == rowCount * rowElements else {
            throw ctx.error("wrong element count for dataset",
                            "\(rowCount) row(s) of shape \(rowShape) need \(rowCount * rowElements) elements, got \(elements)",
                            stack: false)
        }
        if rowCount == 0 { return }
        let newDims = ([rows + rowCount] + rowShape).map { hsize_t($0) }
        try ctx.check("cannot extend dataset") { H5Dset_extent(did, newDims) }
        do {
            let fileSpace = try ctx.id("cannot get dataspace of dataset") { H5Dget_space(did) }
            defer { closeSpace(fileSpace) }
            let start = ([rows] + rowShape.map { _ in 0 }).map { hsize_t($0) }
            let count = ([rowCount] + rowShape).map { hsize_t($0) }
            try ctx.check("cannot select rows of dataset") {
                H5Sselect_hyperslab(fileSpace, H5S_SELECT_SET, start, nil, count, nil)
            }
            let memSpace = try makeDataspace([rowCount] + rowShape, ctx)
            defer { closeSpace(memSpace) }
            try ctx.check("cannot append to dataset") {
                H5Dwrite(did, memType, memSpace, fileSpace, bm_h5p_default(), data)
            }
        } catch {
            // Undo the extension so `rows` and the file agree.
            let oldDims = ([rows] + rowShape).map { hsize_t($0) }
            _ = H5Dset_extent(did, oldDims)
            throw error
        }
        rows += rowCount
    }
}

extension H5Node {
    /// Creates an appendable dataset with 0 rows. `chunkRows` rows form one
    /// chunk; `compression` is the gzip level 0–9 (with the shuffle filter),
    /// nil for none. Intermediate groups of a nested name are created.
    public func createAppendable(_ name: String, type: H5ElementType, rowShape: [Int] = [],
                                 chunkRows: Int = 256, compression: Int? = 4) throws -> AppendableDataset {
        let ctx = context(name)
        let loc = try openID(ctx)
        guard chunkRows > 0, rowShape.allSatisfy({ $0 > 0 }), elementCount(rowShape) != nil else {
            throw ctx.error("invalid layout for dataset",
                            "chunkRows \(chunkRows) and rowShape \(rowShape) must be positive", stack: false)
        }
        if let level = compression, !(0...9).contains(level) {
            throw ctx.error("invalid gzip level for dataset", "\(level) is not in 0...9", stack: false)
        }
        let maxDims = [bm_h5s_unlimited()] + rowShape.map { hsize_t($0) }
        let space = try makeDataspace([0] + rowShape, maxShape: maxDims, ctx)
        defer { closeSpace(space) }
        let dcpl = try ctx.id("cannot create creation property list for") { H5Pcreate(bm_h5p_dataset_create()) }
        defer { closePlist(dcpl) }
        let chunk = ([chunkRows] + rowShape).map { hsize_t($0) }
        try ctx.check("cannot set chunking of dataset") { H5Pset_chunk(dcpl, Int32(chunk.count), chunk) }
        if let level = compression {
            try ctx.check("cannot set shuffle filter of dataset") { H5Pset_shuffle(dcpl) }
            try ctx.check("cannot set gzip filter of dataset") { H5Pset_deflate(dcpl, UInt32(level)) }
        }
        let lcpl = try ctx.id("cannot create link property list for") { H5Pcreate(bm_h5p_link_create()) }
        defer { closePlist(lcpl) }
        try ctx.check("cannot set intermediate-group creation for") { H5Pset_create_intermediate_group(lcpl, 1) }
        let did = try ctx.id("cannot create dataset") {
            H5Dcreate2(loc, name, type.nativeType, space, lcpl, dcpl, bm_h5p_default())
        }
        return AppendableDataset(id: did, filePath: filePath, name: h5Join(self.name, name),
                                 type: type, rowShape: rowShape, rows: 0)
    }

    /// Reopens an appendable dataset (e.g. when a training run resumes);
    /// appends continue after its current last row.
    public func openAppendable(_ name: String) throws -> AppendableDataset {
        let ctx = context(name)
        let loc = try openID(ctx)
        let did = try ctx.id("cannot open dataset") { H5Dopen2(loc, name, bm_h5p_default()) }
        do {
            let space = try ctx.id("cannot get dataspace of dataset") { H5Dget_space(did) }
            defer { closeSpace(space) }
            let shape = try dataspaceShape(space, ctx)
            let maxShape = try dataspaceMaxShape(space, ctx)
            guard !shape.isEmpty, maxShape.first == bm_h5s_unlimited() else {
                throw ctx.error("not an appendable dataset:", "shape \(shape) is not unlimited along axis 0", stack: false)
            }
            let ftype = try ctx.id("cannot get datatype of dataset") { H5Dget_type(did) }
            defer { closeType(ftype) }
            guard let type = H5ElementType(datatype: ftype) else {
                throw ctx.error("unsupported element type of dataset", describeDatatype(ftype), stack: false)
            }
            return AppendableDataset(id: did, filePath: filePath, name: h5Join(self.name, name),
                                     type: type, rowShape: Array(shape.dropFirst()), rows: shape[0])
        } catch {
            H5Dclose(did)
            throw error
        }
    }
}
