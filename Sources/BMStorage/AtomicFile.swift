#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An error of `AtomicFile` itself (the body's own errors are rethrown unchanged).
public struct AtomicFileError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public var description: String { message }
}

/// Replaces a file all at once, so readers (and a crash) see either the old
/// or the complete new file, never a partial one.
public enum AtomicFile {
    /// Runs `body(tmpPath)` that writes a complete file at tmpPath (same
    /// directory, name ".NAME.tmp-PID"), then fsyncs the file, renames over
    /// `path`, and fsyncs the directory. On any error the temporary file is
    /// removed and `path` is untouched. `body` must have closed the file
    /// (e.g. `H5File.close()`) before it returns.
    public static func write(to path: String, _ body: (String) throws -> Void) throws {
        let (directory, fileName) = split(path)
        guard !fileName.isEmpty else {
            throw AtomicFileError(message: "AtomicFile: '\(path)' names no file")
        }
        let tmp = directory + "/." + fileName + ".tmp-\(getpid())"
        unlink(tmp)   // a leftover from a crashed run with the same pid
        do {
            try body(tmp)
            let code = fsyncPath(tmp, flags: O_RDONLY)
            guard code == 0 else {
                throw AtomicFileError(message: "AtomicFile: cannot fsync temporary file '\(tmp)' for '\(path)': \(describe(code))")
            }
            guard rename(tmp, path) == 0 else {
                throw AtomicFileError(message: "AtomicFile: cannot rename '\(tmp)' to '\(path)': \(describe(errno))")
            }
        } catch {
            unlink(tmp)
            throw error
        }
        // The new file is in place; make the rename itself durable. Some
        // file systems refuse fsync on directories (EINVAL): that is fine.
        let code = fsyncPath(directory, flags: O_RDONLY | O_DIRECTORY)
        if code != 0 && code != EINVAL {
            throw AtomicFileError(message: "AtomicFile: cannot fsync directory '\(directory)' after renaming '\(path)': \(describe(code))")
        }
    }

    /// Writes an HDF5 file atomically: creates it at the temporary path,
    /// runs `body`, closes it, then renames as `write(to:_:)` does.
    public static func writeHDF5(to path: String, swmr: Bool = false, _ body: (H5File) throws -> Void) throws {
        try write(to: path) { tmp in
            let file = try H5File(path: tmp, mode: .create, swmr: swmr)
            defer { file.close() }
            try body(file)
            try file.closeFile()
        }
    }

    private static func split(_ path: String) -> (directory: String, name: String) {
        guard let slash = path.lastIndex(of: "/") else { return (".", path) }
        let dir = String(path[..<slash])
        return (dir.isEmpty ? "/" : dir, String(path[path.index(after: slash)...]))
    }

    /// Opens `path`, fsyncs and closes it; returns 0 or the errno.
    private static func fsyncPath(_ path: String, flags: Int32) -> Int32 {
        let fd = open(path, flags)
        guard fd >= 0 else { return errno }
        let code = fsync(fd) == 0 ? 0 : errno
        _ = close(fd)
        return code
    }

    private static func describe(_ code: Int32) -> String { String(cString: strerror(code)) }

}

extension H5File {
    /// Creates the HDF5 file at `path` atomically: `body` fills a new file at a
    /// temporary path, which is closed and then renamed over `path` (AtomicFile).
    public static func createAtomically(_ path: String, _ body: (H5File) throws -> Void) throws {
        try AtomicFile.write(to: path) { tmp in
            let f = try H5File(path: tmp, mode: .create)
            defer { f.close() }
            try body(f)
            try f.closeFile()
        }
    }
}
