import Foundation
#if canImport(Glibc)
import Glibc
#endif
import BMCore
import BMLayers
import BMStorage
import BMTrain
import BMSpec

/// `checkpoint.h5` (docs/checkpoints.md): one dataset per parameter under
/// `model/` with its PyTorch/Zyphra name and shape, AdamW moments under
/// `optimizer/exp_avg/` and `optimizer/exp_avg_sq/` (PyTorch's names), and
/// attributes for the step, the optimizer step, the data generator's state and
/// the resolved spec. Written atomically: temporary file, fsync, rename.
///
/// Integrity: the file starts with a 512-byte header (HDF5's user block, which HDF5
/// and h5py skip) holding the SHA-256 and length of the HDF5 bytes after it. Loading
/// verifies both before libhdf5 parses anything (a damaged file can crash libhdf5),
/// then checks every weight is finite; a damaged file is refused (exit 2).
public enum Checkpoint {
    public static let format = "bmlab-checkpoint-2"
    /// Bytes of the integrity header (HDF5 user block) at the start of the file.
    public static let headerSize = 512
    static let magic = "BMLAB-CHECKPOINT 2"

    public struct State {
        public var step: Int
        public var optimizerStep: Int
        public var dataRNG: [UInt64]
        public var specYAML: String
        public init(step: Int, optimizerStep: Int, dataRNG: [UInt64], specYAML: String) {
            self.step = step; self.optimizerStep = optimizerStep; self.dataRNG = dataRNG; self.specYAML = specYAML
        }
    }

    public static func save(to path: String, model: LanguageModel, optimizer: AdamW?, state: State) throws {
        try AtomicFile.write(to: path) { tmp in
            try writeHDF5(tmp, model: model, optimizer: optimizer, state: state)
            try sealHeader(tmp)
        }
    }

    static func writeHDF5(_ tmp: String, model: LanguageModel, optimizer: AdamW?, state: State) throws {
        let f = try H5File(path: tmp, mode: .create, userBlock: headerSize)
        defer { f.close() }
        try f.setAttribute("format", format)
        try f.setAttribute("toolkit_version", BMLab.version)
        try f.setAttribute("step", state.step)
        try f.setAttribute("optimizer_step", state.optimizerStep)
        try f.setAttribute("data_rng", state.dataRNG.map { Int(Int64(bitPattern: $0)) })
        try f.setAttribute("spec", state.specYAML)
        try f.setAttribute("parameter_names", model.params.params.map(\.name))
        for p in model.params.params {
            try f.write("model/\(p.name)", floats: UnsafeBufferPointer(p.values), shape: p.shape)
            if let o = optimizer {
                try f.write("optimizer/exp_avg/\(p.name)", floats: UnsafeBufferPointer(start: o.m.pointer + p.offset, count: p.count), shape: p.shape)
                try f.write("optimizer/exp_avg_sq/\(p.name)", floats: UnsafeBufferPointer(start: o.v.pointer + p.offset, count: p.count), shape: p.shape)
            }
        }
        try f.closeFile()          // what libhdf5 still buffers is written here, checked
    }

    /// Writes the header: magic, SHA-256 and length of the bytes after it. The file
    /// is fsynced first (which reports the write errors the kernel deferred) and the
    /// hash is taken of the bytes read back from the file, so the header vouches for
    /// what the file holds, not for what the writer meant to write; every read, write
    /// and fsync is checked.
    static func sealHeader(_ path: String) throws {
        func failed(_ what: String) -> BMError { BMError.invalid("\(path): cannot \(what): \(String(cString: strerror(errno)))") }
        let fd = Glibc.open(path, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { throw failed("reopen the checkpoint to seal it") }
        defer { _ = Glibc.close(fd) }
        guard fsync(fd) == 0 else { throw failed("write the checkpoint to the disk (fsync)") }
        let (digest, count) = try hashAfterHeader(fd, path: path)
        guard count > 0 else { throw BMError.invalid("\(path): the checkpoint writer produced no HDF5 data") }
        var header = Array(("\(magic)\nsha256 \(digest) bytes \(count)\n" +
            "# HDF5 starts at byte \(headerSize) (this is its user block). Check: tail -c +\(headerSize + 1) FILE | sha256sum\n").utf8)
        header += [UInt8](repeating: 0, count: headerSize - header.count)
        let written = header.withUnsafeBytes { pwrite(fd, $0.baseAddress, headerSize, 0) }
        guard written == headerSize else { throw written < 0 ? failed("write the checkpoint's header") : BMError.invalid("\(path): cannot write the checkpoint's header: short write") }
        guard fsync(fd) == 0 else { throw failed("write the checkpoint's header to the disk (fsync)") }
    }

    /// SHA-256 and length of the bytes after the header, read with `read` in 1 MiB
    /// pieces (never mapped: a mapped file whose pages cannot be read ends in SIGBUS).
    static func hashAfterHeader(_ fd: Int32, path: String) throws -> (String, Int) {
        guard lseek(fd, off_t(headerSize), SEEK_SET) == off_t(headerSize) else { throw unreadable(path) }
        var hasher = SHA256()
        let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 64)
        defer { chunk.deallocate() }
        var total = 0
        while true {
            let n = read(fd, chunk.baseAddress, chunk.count)
            if n < 0 {
                if errno == EINTR { continue }
                throw unreadable(path)
            }
            if n == 0 { break }
            hasher.update(UnsafeRawBufferPointer(rebasing: chunk[0..<n]))
            total += n
        }
        return (hasher.finalizeHex(), total)
    }

    /// The checkpoint at `path` cannot be read; the reason is `errno`'s.
    static func unreadable(_ path: String) -> BMError {
        BMError.invalid("\(path): cannot read the checkpoint (\(String(cString: strerror(errno)).lowercased()))")
    }

    /// Verifies the header's length and SHA-256 against the file's bytes, before
    /// anything parses it. Throws "damaged" (exit 2) on any mismatch.
    public static func verify(_ path: String) throws {
        func damaged(_ why: String) -> BMError {
            BMError.invalid("\(path): the checkpoint is damaged (\(why)); it cannot be used: restore it from a copy, or retrain")
        }
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw unreadable(path) }
        defer { _ = Glibc.close(fd) }
        var head = [UInt8](repeating: 0, count: headerSize)
        let got = head.withUnsafeMutableBytes { pread(fd, $0.baseAddress, headerSize, 0) }
        guard got >= 0 else { throw unreadable(path) }
        head = Array(head.prefix(got))
        guard head.starts(with: Array(magic.utf8)) else {
            if head.starts(with: Array("\u{89}HDF".utf8)) {
                throw BMError.invalid("\(path): an HDF5 file without a BlackMambaLab checkpoint header (written by another program, or by a toolkit before \(format))")
            }
            throw BMError.invalid("\(path): not a BlackMambaLab checkpoint, or a damaged one (it does not start with '\(magic)')")
        }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw unreadable(path) }
        let size = Int(st.st_size)
        guard size > headerSize else { throw damaged("it is \(size) bytes, shorter than its \(headerSize)-byte header") }
        let text = String(decoding: head.prefix { $0 != 0 }, as: UTF8.self)
        let lines = text.split(separator: "\n")
        guard lines.count >= 2 else { throw damaged("its header is cut short") }
        let f = lines[1].split(separator: " ")
        guard f.count == 4, f[0] == "sha256", f[1].count == 64, f[2] == "bytes", let n = Int(f[3]) else {
            throw damaged("its header's checksum line is unreadable")
        }
        guard n == size - headerSize else { throw damaged("it holds \(size - headerSize) bytes of data, its header says \(n)") }
        let (digest, count) = try hashAfterHeader(fd, path: path)
        guard count == n else { throw damaged("\(count) bytes of data could be read, its header says \(n)") }
        guard digest == f[1] else { throw damaged("its SHA-256 does not match the one in its header") }
    }

    static func open(_ path: String) throws -> H5File {
        guard FileManager.default.fileExists(atPath: path) else { throw BMError.invalid("\(path): no such checkpoint") }
        try verify(path)
        let f: H5File
        do { f = try H5File(path: path, mode: .readOnly) } catch {
            throw BMError.invalid("\(path): not a readable HDF5 checkpoint (\(error))")
        }
        guard (try? f.stringAttribute("format")) == format else {
            f.close()
            throw BMError.invalid("\(path): not a BlackMambaLab checkpoint (attribute 'format' is not '\(format)')")
        }
        return f
    }

    /// Loads parameters (and optimizer moments when `optimizer` is given) into a
    /// model built from the same spec; every name and shape must match.
    @discardableResult
    public static func load(from path: String, into model: LanguageModel, optimizer: AdamW?) throws -> State {
        let c = try OpenedCheckpoint(path)
        defer { c.close() }
        return try c.load(into: model, optimizer: optimizer)
    }
}

/// A checkpoint verified (its SHA-256 computed) once and open for reading: the
/// stored spec first (to build the model), then the weights into that model.
public final class OpenedCheckpoint {
    public let path: String
    let f: H5File

    public init(_ path: String) throws { self.path = path; f = try Checkpoint.open(path) }

    /// The model a checkpoint holds, built from its stored spec, with its weights
    /// (no optimizer state): for evaluation, generation and analysis.
    public static func model(_ path: String) throws -> (spec: ExperimentSpec, model: LanguageModel, state: Checkpoint.State) {
        let ck = try OpenedCheckpoint(path)
        defer { ck.close() }
        let s = try ExperimentSpec.parse(try ck.specYAML(), file: "\(path) (stored spec)")
        let model = try ModelBuilder.build(s)
        let st = try ck.load(into: model, optimizer: nil)
        return (s, model, st)
    }
    public func close() { f.close() }

    /// The resolved spec the run was trained with.
    public func specYAML() throws -> String { try f.stringAttribute("spec") }

    /// Loads parameters (and optimizer moments when `optimizer` is given) into a
    /// model built from the same spec; every name and shape must match.
    @discardableResult
    public func load(into model: LanguageModel, optimizer: AdamW?) throws -> Checkpoint.State {
        let names = try f.stringArrayAttribute("parameter_names")
        let want = model.params.params.map(\.name)
        if names != want {
            let missing = want.filter { !names.contains($0) }, extra = names.filter { !want.contains($0) }
            throw BMError.invalid("\(path): checkpoint does not match the model: " +
                (missing.isEmpty ? "" : "missing \(missing.prefix(3).joined(separator: ", "))\(missing.count > 3 ? " and \(missing.count - 3) more" : "") ") +
                (extra.isEmpty ? "" : "unexpected \(extra.prefix(3).joined(separator: ", "))") +
                (missing.isEmpty && extra.isEmpty ? "parameters in a different order" : ""))
        }
        for p in model.params.params {
            let ds = try f.dataset("model/\(p.name)")
            guard ds.shape == p.shape else {
                throw BMError.invalid("\(path): \(p.name) has shape \(ds.shape) in the checkpoint but \(p.shape) in the model")
            }
            try ds.readFloats(into: p.values)
            if let bad = p.values.firstIndex(where: { !$0.isFinite }) {
                throw BMError.invalid("\(path): the checkpoint holds a non-finite weight (\(p.name)[\(bad)] = \(p.values[bad])); it cannot be used")
            }
            if let o = optimizer {
                let m = UnsafeMutableBufferPointer(start: o.m.pointer + p.offset, count: p.count)
                let v = UnsafeMutableBufferPointer(start: o.v.pointer + p.offset, count: p.count)
                try f.dataset("optimizer/exp_avg/\(p.name)").readFloats(into: m)
                try f.dataset("optimizer/exp_avg_sq/\(p.name)").readFloats(into: v)
                if m.contains(where: { !$0.isFinite }) || v.contains(where: { !$0.isFinite || $0 < 0 }) {
                    throw BMError.invalid("\(path): the checkpoint's optimizer state for \(p.name) is not finite; it cannot be resumed")
                }
            }
        }
        let st = Checkpoint.State(step: try f.intAttribute("step"), optimizerStep: try f.intAttribute("optimizer_step"),
                       dataRNG: try f.intArrayAttribute("data_rng").map { UInt64(bitPattern: Int64($0)) },
                       specYAML: try f.stringAttribute("spec"))
        guard st.dataRNG.count == 4 else { throw BMError.invalid("\(path): attribute data_rng must hold 4 integers") }
        optimizer?.restore(step: st.optimizerStep)
        return st
    }
}
