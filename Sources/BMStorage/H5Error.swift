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

    /// One entry of libhdf5's error stack: the function and its message.
    struct StackEntry { var function: String; var text: String }

    init(path: String, object: String?, action: String, detail: String? = nil, stack: [StackEntry] = []) {
        self.path = path
        self.object = object
        self.libraryText = stack.map { "\($0.function)(): \($0.text)" }.joined(separator: "; ")
        var m = "\(path): \(action) " + (object.map { "'\($0)'" } ?? "the HDF5 file")
        let why = [detail ?? "", Self.reason(stack)].filter { !$0.isEmpty }
        if !why.isEmpty { m += ": " + why.joined(separator: "; ") }
        self.message = m
    }

    /// The one reason of a libhdf5 error stack: the system's ("error message =
    /// 'No space left on device'") when a file driver reports one, else the
    /// innermost entry's text.
    static func reason(_ stack: [StackEntry]) -> String {
        let key = "error message = '"
        for e in stack {
            if let start = e.text.firstRange(of: key), let end = e.text[start.upperBound...].firstIndex(of: "'") {
                return String(e.text[start.upperBound..<end])
            }
        }
        return stack.last?.text ?? ""
    }

    /// The calling thread's libhdf5 error stack, outermost first, e.g.
    /// H5Fopen(): "unable to open file", …, H5FD_sec2_open(): "unable to open file: … No such file or directory".
    static func currentStack() -> [StackEntry] {
        final class Collector { var lines: [StackEntry] = [] }
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
            c.lines.append(StackEntry(function: function, text: text))
            return 0
        }, context)
        withExtendedLifetime(collector) {}
        return collector.lines
    }
}
