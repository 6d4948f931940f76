import CHDF5

/// How to open a file.
public enum H5Mode: Sendable {
    /// Create the file, truncating an existing one.
    case create
    /// Open an existing file for reading.
    case readOnly
    /// Open an existing file for reading and writing.
    case readWrite
}

/// An HDF5 file; also its root group "/".
///
/// SWMR (single writer, multiple readers): with `swmr: true`
/// - `.create` / `.readWrite` use the latest file format (libver bounds
///   latest/latest, required for SWMR). Create all groups, datasets and
///   attributes first, then call `startSWMRWrite()`; from then on only
///   appending to / flushing existing datasets is allowed, and readers such
///   as `h5py.File(path, "r", libver="latest", swmr=True)` can read while the
///   run is still writing (call `flush()` on the datasets to publish rows).
/// - `.readOnly` opens as a SWMR reader (H5F_ACC_SWMR_READ).
/// Without `swmr` the file uses the default (oldest compatible) format and
/// must not be opened by another process while it is being written.
public final class H5File: H5Node {
    public let path: String
    public let mode: H5Mode

    /// `userBlock` (with `.create`): bytes at the start of the file that HDF5 skips
    /// (0, or a power of two ≥ 512), for a header of the writer's own (checkpoints
    /// keep their checksum there).
    public init(path: String, mode: H5Mode, swmr: Bool = false, userBlock: Int = 0) throws {
        let ctx = H5Context(path: path, object: nil)
        let fapl = try ctx.id("cannot create file access property list for") {
            H5Pcreate(bm_h5p_file_access())
        }
        defer { closePlist(fapl) }
        // No OS file lock: libhdf5 1.10+ otherwise locks a file open for writing
        // exclusively, and h5py could not read metrics.h5 while a run writes it
        // (the run flushes at every log step, so a reader sees the last flush).
        try ctx.check("cannot configure file locking for") { H5Pset_file_locking(fapl, false, true) }
        if swmr {
            let latest = H5F_libver_t(rawValue: numericCast(bm_h5f_libver_latest()))
            try ctx.check("cannot select the latest file format for") {
                H5Pset_libver_bounds(fapl, latest, latest)
            }
        }
        let fid: hid_t
        switch mode {
        case .create:
            var fcpl = bm_h5p_default()
            if userBlock > 0 {
                fcpl = try ctx.id("cannot create file creation property list for") { H5Pcreate(bm_h5p_file_create()) }
                try ctx.check("cannot set a user block of \(userBlock) bytes for") { H5Pset_userblock(fcpl, hsize_t(userBlock)) }
            }
            defer { if userBlock > 0 { closePlist(fcpl) } }
            fid = try ctx.id("cannot create") {
                H5Fcreate(path, bm_h5f_acc_trunc(), fcpl, fapl)
            }
        case .readOnly:
            let flags = bm_h5f_acc_rdonly() | (swmr ? bm_h5f_acc_swmr_read() : 0)
            fid = try ctx.id("cannot open (read-only)") { H5Fopen(path, flags, fapl) }
        case .readWrite:
            let flags = bm_h5f_acc_rdwr() | (swmr ? bm_h5f_acc_swmr_write() : 0)
            fid = try ctx.id("cannot open (read-write)") { H5Fopen(path, flags, fapl) }
        }
        self.path = path
        self.mode = mode
        super.init(id: fid, filePath: path, name: "/", closer: H5Fclose)
    }

    /// Writes buffered data and metadata of the whole file to disk.
    public func flush() throws {
        let ctx = H5Context(path: path, object: nil)
        let fid = try openID(ctx)
        try ctx.check("cannot flush") { H5Fflush(fid, H5F_SCOPE_GLOBAL) }
    }

    /// Switches a file opened for writing with `swmr: true` to SWMR writing.
    /// Call after every dataset and attribute has been created.
    public func startSWMRWrite() throws {
        let ctx = H5Context(path: path, object: nil)
        let fid = try openID(ctx)
        try ctx.check("cannot start SWMR writing on") { H5Fstart_swmr_write(fid) }
    }

    /// Number of open libhdf5 objects of this file, the file itself included
    /// (1 when no group, dataset or attribute is open).
    public func openObjectCount() throws -> Int {
        let ctx = H5Context(path: path, object: nil)
        let fid = try openID(ctx)
        return Int(try ctx.check("cannot count open objects of") { H5Fget_obj_count(fid, bm_h5f_obj_all()) })
    }

    /// Closes the file identifier. Idempotent. Errors are not reported: a file that
    /// was written must end with `closeChecked()`.
    public override func close() { super.close() }

    /// Writes everything libhdf5 still buffers (checked), then closes the file
    /// (checked). A writer's last call: data that small datasets and metadata leave
    /// in libhdf5's caches reaches the disk only here, so on a full disk this is
    /// where the write fails. Idempotent.
    public func closeFile() throws {
        guard isOpen else { return }
        do { try flush() } catch { close(); throw error }
        try closeChecked()
    }
}
