import Foundation
/// Errors a user can act on. Every message names what was wrong and what was expected.
public enum BMError: Error, CustomStringConvertible, Equatable {
    /// Bad input: a spec, option, file or argument. Exit code 2.
    case invalid(String)
    /// The environment is missing something (a library, a program). Exit code 3.
    case system(String)
    /// Training diverged or a numerical invariant broke. Exit code 4.
    case numerical(String)
    /// Stopped by a signal (SIGINT, SIGTERM) after stopping its own workers. Exit code
    /// 128 + the signal (130, 143), as a shell reports a process the signal ended.
    case interrupted(Int32, String)

    public var description: String {
        switch self {
        case .invalid(let m), .system(let m), .numerical(let m): return m
        case .interrupted(_, let m): return m
        }
    }

    /// One readable line for any error: a toolkit error's message, or for a
    /// Foundation error the file it concerns and the system's reason (instead of
    /// `Error Domain=NSCocoaErrorDomain Code=513 …`).
    public static func reason(_ error: Error) -> String {
        if let e = error as? BMError { return e.description }
        let ns = error as NSError
        if ns.domain == NSCocoaErrorDomain || ns.domain == NSPOSIXErrorDomain {
            var parts: [String] = []
            if let path = ns.userInfo[NSFilePathErrorKey] as? String { parts.append(path) }
            if let u = ns.userInfo[NSUnderlyingErrorKey] as? NSError, u.domain == NSPOSIXErrorDomain {
                parts.append(String(cString: strerror(Int32(u.code))).lowercased())
            } else if ns.domain == NSPOSIXErrorDomain {
                parts.append(String(cString: strerror(Int32(ns.code))).lowercased())
            } else {
                switch ns.code {
                case NSFileWriteNoPermissionError, NSFileReadNoPermissionError: parts.append("permission denied")
                case NSFileNoSuchFileError, NSFileReadNoSuchFileError: parts.append("no such file or directory")
                case NSFileWriteOutOfSpaceError: parts.append("no space left on the device")
                case NSFileWriteVolumeReadOnlyError: parts.append("read-only file system")
                default: parts.append(ns.localizedDescription)
                }
            }
            return parts.joined(separator: ": ")
        }
        return "\(error)"
    }

    public var exitCode: Int32 {
        switch self {
        case .invalid: return 2
        case .system: return 3
        case .numerical: return 4
        case .interrupted(let sig, _): return 128 + sig
        }
    }
}

/// The closest candidate to `name` by edit distance, for "did you mean" hints.
public func nearest(_ name: String, in candidates: [String]) -> String? {
    func distance(_ a: [Character], _ b: [Character]) -> Int {
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var prev = Array(0...b.count)
        var cur = [Int](repeating: 0, count: b.count + 1)
        for i in 1...a.count {
            cur[0] = i
            for j in 1...b.count {
                cur[j] = Swift.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            swap(&prev, &cur)
        }
        return prev[b.count]
    }
    let a = Array(name.lowercased())
    var best: (String, Int)?
    for c in candidates {
        let d = distance(a, Array(c.lowercased()))
        if best == nil || d < best!.1 { best = (c, d) }
    }
    guard let (c, d) = best, d <= Swift.max(2, c.count / 2) else { return nil }
    return c
}

/// The entry called `name` among `entries`, or an error naming `context`, the
/// kind of plugin, the nearest valid name and all of them (plugin registries).
public func lookup<Entry>(_ name: String, in entries: [Entry], named: (Entry) -> String, kind: String, context: String) throws -> Entry {
    if let e = entries.first(where: { named($0) == name }) { return e }
    let names = entries.map(named)
    throw BMError.invalid("\(context): unknown \(kind) '\(name)'\(didYouMean(name, in: names)); available: \(names.joined(separator: ", "))")
}

/// " (did you mean 'x'?)" or "".
public func didYouMean(_ name: String, in candidates: [String]) -> String {
    if let n = nearest(name, in: candidates) { return " (did you mean '\(n)'?)" }
    return ""
}
