import Foundation

/// A file read with `pread`, never mapped: a mapped page that cannot be read (a file
/// truncated under the reader, an I/O error) is a SIGBUS, a read is an error with a
/// message. Readers fetch only the bytes they need (a header, one tensor).
public final class ReadOnlyFile {
    public let path: String
    public let size: Int
    private let fd: Int32

    /// Opens without blocking (a FIFO at the path would block `open` forever) and
    /// refuses anything but a regular file.
    public init(path: String) throws {
        self.path = path
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw BMError.invalid("\(path): cannot open: \(String(cString: strerror(errno)))") }
        var st = stat()
        guard fstat(fd, &st) == 0 else { close(fd); throw BMError.invalid("\(path): cannot stat: \(String(cString: strerror(errno)))") }
        guard (st.st_mode & S_IFMT) == S_IFREG else { close(fd); throw BMError.invalid("\(path): not a regular file") }
        size = Int(st.st_size)
    }
    deinit { close(fd) }

    /// `count` bytes at `offset` (both checked against the file's size).
    public func read(at offset: Int, count: Int) throws -> [UInt8] {
        guard offset >= 0, count >= 0, offset <= size, count <= size - offset else {
            throw BMError.invalid("\(path): \(count) bytes at offset \(offset) lie outside the \(size)-byte file")
        }
        var out = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let n = out.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + done, count - done, off_t(offset + done)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw BMError.invalid("\(path): cannot read \(count) bytes at offset \(offset): \(String(cString: strerror(errno)))")
            }
            if n == 0 { throw BMError.invalid("\(path): the file ended at byte \(offset + done) (it shrank while being read?)") }
            done += n
        }
        return out
    }

    /// A whole small file (a config, an index, a tokenizer), refused above `limit` bytes.
    public static func contents(_ path: String, limit: Int = 1 << 30) throws -> [UInt8] {
        let f = try ReadOnlyFile(path: path)
        guard f.size <= limit else { throw BMError.invalid("\(path): \(f.size) bytes, more than the \(limit) a file of this kind may have") }
        return try f.read(at: 0, count: f.size)
    }
}
