import Foundation
import BMCore
import BMLayers
import BMStorage
import BMTrain

/// `checkpoint.h5` (docs/checkpoints.md): one dataset per parameter under
/// `model/` with its PyTorch/Zyphra name and shape, AdamW moments under
/// `optimizer/exp_avg/` and `optimizer/exp_avg_sq/` (PyTorch's names), and
/// attributes for the step, the optimizer step, the data generator's state and
/// the resolved spec. Written atomically: temporary file, fsync, rename.
public enum Checkpoint {
    public static let format = "bmlab-checkpoint-1"

    public struct State {
        public var step: Int
        public var optimizerStep: Int
        public var dataRNG: [UInt64]
        public var specYAML: String
    }

    public static func save(to path: String, model: LanguageModel, optimizer: AdamW?, state: State) throws {
        try AtomicFile.write(to: path) { tmp in
            let f = try H5File(path: tmp, mode: .create)
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
        }
    }

    /// Reads the resolved spec stored in a checkpoint (to rebuild its model).
    public static func spec(at path: String) throws -> String {
        let f = try open(path)
        defer { f.close() }
        return try f.stringAttribute("spec")
    }

    static func open(_ path: String) throws -> H5File {
        guard FileManager.default.fileExists(atPath: path) else { throw BMError.invalid("\(path): no such checkpoint") }
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
        let f = try open(path)
        defer { f.close() }
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
            if let o = optimizer {
                try f.dataset("optimizer/exp_avg/\(p.name)").readFloats(into: UnsafeMutableBufferPointer(start: o.m.pointer + p.offset, count: p.count))
                try f.dataset("optimizer/exp_avg_sq/\(p.name)").readFloats(into: UnsafeMutableBufferPointer(start: o.v.pointer + p.offset, count: p.count))
            }
        }
        let st = State(step: try f.intAttribute("step"), optimizerStep: try f.intAttribute("optimizer_step"),
                       dataRNG: try f.intArrayAttribute("data_rng").map { UInt64(bitPattern: Int64($0)) },
                       specYAML: try f.stringAttribute("spec"))
        guard st.dataRNG.count == 4 else { throw BMError.invalid("\(path): attribute data_rng must hold 4 integers") }
        optimizer?.restore(step: st.optimizerStep)
        return st
    }
}
