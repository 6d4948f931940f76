import Foundation
import BMCore

/// A run directory belongs to one process: `bmlab train` and every sweep worker hold an
/// advisory lock (`flock`) on DIR/.bmlab.lock while they write into the run. A second
/// process is refused with the holder's PID and command; the kernel releases the lock
/// when its holder ends however it ends, so a lock is never stale — a file left by a
/// process that is gone is taken over, with a note naming it.
public final class RunLock {
    public static let fileName = ".bmlab.lock"
    private let fd: Int32
    /// The previous holder's PID and command, when it left the file and is gone.
    public let takenOverFrom: String?

    public init(directory: String) throws {
        let path = (directory as NSString).appendingPathComponent(RunLock.fileName)
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw BMError.invalid("\(path): cannot open the run's lock file (\(String(cString: strerror(errno))))")
        }
        let previous = RunLock.read(fd)
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let why = errno
            close(fd)
            if why == EWOULDBLOCK {
                throw BMError.invalid("\(directory) is in use by another bmlab process (\(previous.isEmpty ? "holder unknown" : previous)); wait for it to end, or choose another --out")
            }
            throw BMError.invalid("\(path): cannot lock the run (\(String(cString: strerror(why))))")
        }
        takenOverFrom = previous.isEmpty ? nil : previous
        let me = "PID \(getpid()): \(CommandLine.arguments.map { ($0 as NSString).lastPathComponent == "bmlab" ? "bmlab" : $0 }.joined(separator: " "))"
        _ = ftruncate(fd, 0)
        _ = me.withCString { pwrite(fd, $0, strlen($0), 0) }
    }

    /// A holder that ends normally empties the file, so only a holder that was killed
    /// leaves its line behind (for the next one's note); closing releases the lock.
    deinit { _ = ftruncate(fd, 0); close(fd) }

    /// The holder's line: "PID 1234: bmlab train …".
    private static func read(_ fd: Int32) -> String {
        var buf = [UInt8](repeating: 0, count: 1024)
        let n = pread(fd, &buf, buf.count, 0)
        return n > 0 ? String(decoding: buf[0..<n], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) : ""
    }
}
