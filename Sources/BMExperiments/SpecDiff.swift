import Foundation

/// The first difference between two resolved specs (the YAML `ExperimentSpec.resolvedYAML`
/// writes), named by its key path: what a resumed run or a reused sweep run reports
/// when the spec it was started with is not the one asked for now.
public enum SpecDiff {
    /// nil when the specs are the same (comments and blank lines aside); else
    /// e.g. "train.steps is 2 in the stored spec but 4 now".
    public static func firstDifference(stored: String, now: String) -> String? {
        let a = lines(stored), b = lines(now)
        for i in 0..<max(a.count, b.count) {
            let x = i < a.count ? a[i] : nil, y = i < b.count ? b[i] : nil
            if x?.text == y?.text { continue }
            let path = (x ?? y)!.path
            func value(_ l: Line?) -> String { l.map { $0.value.isEmpty ? "(a section)" : $0.value } ?? "absent" }
            return "\(path) is \(value(x)) in the stored spec but \(value(y)) now"
        }
        return nil
    }

    struct Line { var text: String; var path: String; var value: String }

    /// Lines with their dotted key path, from indentation (two spaces a level;
    /// list items `- …` numbered under their key).
    static func lines(_ yaml: String) -> [Line] {
        var out: [Line] = []
        var stack: [(indent: Int, key: String)] = []
        var itemIndex: [String: Int] = [:]
        for raw in yaml.split(separator: "\n", omittingEmptySubsequences: true) {
            let t = raw.trimmingCharacters(in: .whitespaces)
            if t.isEmpty || t.hasPrefix("#") { continue }
            let indent = raw.prefix { $0 == " " }.count
            while let last = stack.last, last.indent >= indent { stack.removeLast() }
            let parent = stack.map(\.key).joined(separator: ".")
            if t.hasPrefix("- ") {
                let k = itemIndex[parent, default: 0]
                itemIndex[parent] = k + 1
                out.append(Line(text: t, path: "\(parent)[\(k)]", value: String(t.dropFirst(2))))
                continue
            }
            let parts = t.split(separator: ":", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            let key = parts[0]
            var value = parts.count > 1 ? parts[1] : ""
            if let hash = value.range(of: "  #") { value = String(value[..<hash.lowerBound]) }
            let path = parent.isEmpty ? key : "\(parent).\(key)"
            out.append(Line(text: t, path: path, value: value))
            if value.isEmpty { stack.append((indent, key)) }
        }
        return out
    }
}
