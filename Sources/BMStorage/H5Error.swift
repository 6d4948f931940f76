import CHDF5

/// An error from the HDF5 wrapper. `message` names the file, the object
/// (group / dataset / attribute) and includes libhdf5's own error text.
public struct HDF5Error: Error, CustomStringConvertible, Sendable {
    public let message: String
    /// File the operation was on.
    public let path: String
    /// Object inside the file (e.g. "/metrics/loss" or "/model@version"), if any.
    public let object: String?

    public var description: String { message }

    init(path: String, object: String?, action: String, detail: String? = nil, libraryText: String = "") {
        self.path = path
        self.object = object
        var m: String
        if let object {
            m = "HDF5: \(action) '\(object)' in file '\(path)'"
        } else {
            m = "HDF5: \(action) file '\(path)'"
        }
        if let detail, !detail.isEmpty { m += ": \(detail)" }
        if !libraryText.isEmpty { m += " [libhdf5: \(libraryText)]" }
        self.message = m
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
