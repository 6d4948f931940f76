import Foundation
import Yams
import BMCore
import BMMixers

/// `model.layers` (or `model.pattern` × `model.repeat`) with `model.defaults`: the
/// list of blocks, each a mixer name and its options, resolved once here (defaults
/// filled in, a moe's router resolved, checked against d_model) and kept in the
/// `LayerSpec` for the model builder and the resolved spec.
enum LayerReading {
    /// The most blocks a model may have (layers, or pattern × repeat): checked before the list is built.
    static let maxLayers = 4096

    static func read(_ m: inout SpecReader, width: Int) throws -> [LayerSpec] {
        let src = m.source
        let names = MixerRegistry.names
        func unknown(_ name: String, _ node: SpecNode, _ key: String) -> BMError {
            BMError.invalid("\(src.at(node)): \(key): unknown mixer '\(name)'\(didYouMean(name, in: names)); available: \(names.joined(separator: ", "))")
        }
        // per-mixer defaults: model.defaults.{mixer}: {options}
        var defaults: [String: [String: OptionValue]] = [:]
        if let dn = m.raw("defaults") {
            guard case .map(let entries, _) = dn else { throw m.fail(dn, "defaults", "a mapping from mixer names to options") }
            for (k, v) in entries {
                guard names.contains(k) else { throw unknown(k, v, "model.defaults") }
                guard case .table(let t) = try v.optionValue(at: "model.defaults.\(k)", source: src) else {
                    throw m.fail(v, "defaults.\(k)", "a mapping of options")
                }
                defaults[k] = t
            }
        }
        let layersNode = m.raw("layers"), patternNode = m.raw("pattern")
        let repeatCount = try m.int("repeat", 1, min: 1, max: LayerReading.maxLayers)
        let list: SpecNode
        var expanded: [SpecNode] = []
        switch (layersNode, patternNode) {
        case (let l?, nil):
            list = l
            guard case .list(let items, _) = l else { throw m.fail(l, "layers", "a list of mixers, e.g. [mamba, moe]") }
            expanded = items
        case (nil, let p?):
            list = p
            guard case .list(let items, _) = p else { throw m.fail(p, "pattern", "a list of mixers, e.g. [mamba, moe]") }
            guard items.count * repeatCount <= LayerReading.maxLayers else {
                throw BMError.invalid("\(src.at(p)): model.pattern of \(items.count) × repeat \(repeatCount) makes \(items.count * repeatCount) layers; at most \(LayerReading.maxLayers)")
            }
            for _ in 0..<repeatCount { expanded += items }
        case (_?, _?):
            throw BMError.invalid("\(src.at(m.line)): model: give either 'layers' or 'pattern' (with 'repeat'), not both")
        case (nil, nil):
            throw BMError.invalid("\(src.at(m.line)): model: 'layers' (or 'pattern' with 'repeat') is required, e.g. layers: [mamba, moe]")
        }
        if expanded.isEmpty { throw BMError.invalid("\(src.at(list)): model.layers must not be empty") }
        if expanded.count > LayerReading.maxLayers { throw BMError.invalid("\(src.at(list)): model.layers has \(expanded.count) layers; at most \(LayerReading.maxLayers)") }
        var out: [LayerSpec] = []
        var groups: [String: Int] = [:]          // share group → its first layer
        for (i, item) in expanded.enumerated() {
            let key = "model.layers[\(i)]"
            var name: String, opts: [String: OptionValue] = [:]
            var shared: String? = nil
            switch item {
            case .scalar(let s, _, _): name = s
            case .map(let entries, _):
                guard let mn = entries.first(where: { $0.key == "mixer" }), case .scalar(let s, _, _) = mn.value else {
                    throw BMError.invalid("\(src.at(item)): \(key) needs 'mixer: NAME' (one of \(names.joined(separator: ", ")))")
                }
                name = s
                if let sn = entries.first(where: { $0.key == "shared" }) {
                    guard case .scalar(let g, _, _) = sn.value, !g.isEmpty else {
                        throw BMError.invalid("\(src.at(sn.value)): \(key).shared must be a name (layers with the same name share their parameters)")
                    }
                    shared = g
                }
                for (k, v) in entries where k != "mixer" && k != "shared" { opts[k] = try v.optionValue(at: "\(key).\(k)", source: src) }
            case .list:
                throw BMError.invalid("\(src.at(item)): \(key) must be a mixer name or a mapping with 'mixer'")
            }
            guard names.contains(name) else { throw unknown(name, item, key) }
            var merged = defaults[name] ?? [:]
            for (k, v) in opts { merged[k] = v }
            let resolved = try MixerRegistry.resolve(name, options: merged, width: width, context: "\(src.file): \(key)")
            if let g = shared {
                if let first = groups[g] {
                    let f = out[first]
                    if f.mixer != name {
                        throw BMError.invalid("\(src.at(item)): \(key) is a \(name) layer shared as '\(g)' with model.layers[\(first)], a \(f.mixer) layer: layers that share parameters must be the same mixer")
                    }
                    if let k = Set(f.resolved.values.keys).union(resolved.values.keys).sorted().first(where: { f.resolved.values[$0] != resolved.values[$0] }) {
                        throw BMError.invalid("\(src.at(item)): \(key) shares parameters ('\(g)') with model.layers[\(first)] but its option \(k) differs; layers that share parameters must have the same options")
                    }
                } else {
                    groups[g] = i
                }
            }
            out.append(LayerSpec(mixer: name, options: merged, resolved: resolved, shared: shared))
        }
        return out
    }

    /// The layers of the resolved spec: one flow mapping per block, `mixer` first,
    /// then every option in name order.
    static func resolvedNode(_ layers: [LayerSpec]) -> Node {
        .sequence(.init(layers.map { l in
            var pairs: [(Node, Node)] = [(SpecKeys.scalar("mixer"), SpecKeys.scalar(l.mixer))]
            if let g = l.shared { pairs.append((SpecKeys.scalar("shared"), SpecKeys.scalar(g))) }
            for k in l.resolved.values.keys.sorted() { pairs.append((SpecKeys.scalar(k), SpecKeys.node(l.resolved.values[k]!))) }
            return .mapping(.init(pairs, .implicit, .flow))
        }))
    }
}
