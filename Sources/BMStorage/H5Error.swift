import CHDF5

/// An error from the HDF5 wrapper: one line naming the file, the object (group /
/// dataset / attribute), what failed and why — the system's reason when libhdf5
/// reports one ("No space left on device"), else libhdf5's innermost message. The
/// whole libhdf5 error stack is kept in `libraryText`, for debugging.
public struct HDF5Error: Error, CustomStringConvertible, Sendable {
    public let message: String
    /// File the operation was on.
    public let path: String
    /// Object inside the file (e.g. "/metrics/loss" or "/model@version"), if any.
    public let object: String?
    /// libhdf5's error stack, outermost first ("" when there was none).
    public let libraryText: String

    public var description: String { message }

    init(path: String, object: String?, action: String, detail: String? = nil, libraryText: String = "") {
        self.path = path
        self.object = object
        self.libraryText = libraryText
        var m = "\(path): \(action) " + (object.map { "'\($0)'" } ?? "the HDF5 file")
        let why = [detail ?? "", Self.reason(libraryText)].filter { !$0.isEmpty }
        if !why.isEmpty { m += ": " + why.joined(separator: "; ") }
        self.message = m
    }

    /// The one reason of a libhdf5 error stack: the system's ("error message =
    /// 'No space left on device'") when a file driver reports one, else the
    /// innermost entry's text without its function name.
    static func reason(_ stack: String) -> String {
        let key = Array("error message = '".utf8), bytes = Array(stack.utf8)
        if bytes.count >= key.count {
            for i in 0...(bytes.count - key.count) where bytes[i..<(i + key.count)].elementsEqual(key) {
                let rest = bytes[(i + key.count)...]
                if let end = rest.firstIndex(of: UInt8(ascii: "'")) { return String(decoding: rest[..<end], as: UTF8.self) }
            }
        }
        // entries are joined by "; " (currentStackText); the innermost is the last
        guard let last = stack.split(separator: ";").map({ $0.drop { $0 == " " } }).last(where: { !$0.isEmpty }) else { return "" }
        let parts = last.split(separator: ":", maxSplits: 1)
        if parts.count == 2, parts[0].hasSuffix("()") { return String(parts[1].drop { $0 == " " }) }
        return String(last)
    }

    /// Text of the calling thread's libhdf5 error stack, innermost last,
    /// e.g. "H5Fopen(): unable to open file; H5FD_sec2_open(): unable to open file: ... No such file or directory".
    static func currentStackText() -> String {
        final class Collector { var lines: [String] = [] }
        let collector = Collector()
        let context = Unmanaged.passUnretained(collector).toOpaque()
        _ = H5Ewalk2(bm_h5e_default(), H5E_WALK_DOWNWARD, { _, entry, client in
            guard let entry, let client else { return 0 }
            let c = Unmanaged<Collector>.fromOpaque(client).takeUnretainedValue()
            let e = entry.pointee
            let function = e.func_name.map { String(cString: $0) } ?? "?"
            var text = e.desc.map { String(cString: $0) } ?? ""
            if text.isEmpty {
                var buffer = [CChar](repeating: 0, count: 256)
                var type = H5E_MINOR
                if H5Eget_msg(e.min_num, &type, &buffer, buffer.count) > 0 {
                    text = stringFromCBuffer(buffer)
                }
            }
            // Some descriptions embed ctime() output, which ends in a newline.
            text = text.split(whereSeparator: \.isNewline).joined(separator: " ")
            c.lines.append("\(function)(): \(text)")
            return 0
        }, context)
        withExtendedLifetime(collector) {}
        return collector.lines.joined(separator: "; ")
    }
}
