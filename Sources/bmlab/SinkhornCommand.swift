import ArgumentParser
import Foundation
import BMCore
import BMStorage
import BMStudies
import BMPlot

struct SinkhornCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sinkhorn",
        abstract: "Sinkhorn convergence study: vanilla vs BlackMamba's fast Sinkhorn over tokens, experts and logit scale.")

    @Option(help: "Output directory for sinkhorn.h5 and the figure.") var out = "results/sinkhorn"
    @Option(help: "Token counts T (comma-separated).") var tokens = "1024,4096"
    @Option(help: "Expert counts E (comma-separated).") var experts = "8,16"
    @Option(help: "Logit scales σ (comma-separated).") var sigmas = "0.25,0.5,1,2,4"
    @Option(help: "Seeds per grid point.") var seeds = 2
    @Option(help: "Also study real router logits: an HDF5 file with [T, E] float datasets.") var logits: String?
    @Option(help: "Datasets in --logits to use (comma-separated; default: every 2-D dataset under router_logits/).") var datasets: String?
    @Option(help: "Figure format: png or svg.") var format = "png"

    func validate() throws { require(seeds >= 1, "--seeds must be at least 1, got \(seeds)") }

    func run() throws {
        startBLAS()
        guarded {
            func ints(_ s: String, _ key: String) throws -> [Int] {
                let v = s.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
                guard !v.isEmpty, v.allSatisfy({ ($0 ?? 0) > 0 }) else { throw BMError.invalid("--\(key) must be positive integers separated by commas, got '\(s)'") }
                return v.map { $0! }
            }
            var study = SinkhornStudy()
            study.tokens = try ints(tokens, "tokens")
            study.experts = try ints(experts, "experts")
            let sg = sigmas.split(separator: ",").map { Double($0.trimmingCharacters(in: .whitespaces)) }
            guard !sg.isEmpty, sg.allSatisfy({ ($0 ?? 0) > 0 }) else { throw BMError.invalid("--sigmas must be positive numbers separated by commas, got '\(sigmas)'") }
            study.sigmas = sg.map { $0! }
            guard seeds > 0 else { throw BMError.invalid("--seeds must be at least 1") }
            study.seeds = seeds
            guard let fmt = FigureFormat(rawValue: format) else { throw BMError.invalid("--format must be png or svg, got '\(format)'") }
            var extra: [(name: String, values: [Float], T: Int, E: Int)] = []
            if let path = logits { extra = try loadLogits(path) }
            let tty = isatty(2) != 0
            let rows = study.run(logits: extra) { if tty { FileHandle.standardError.write("\r\u{1B}[K  \($0)".data(using: .utf8)!) } }
            if tty { FileHandle.standardError.write("\r\u{1B}[K".data(using: .utf8)!) }
            print(SinkhornStudy.table(rows), terminator: "")
            try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
            let h5 = (out as NSString).appendingPathComponent("sinkhorn.h5")
            try SinkhornStudy.writeHDF5(rows, to: h5, attributes: [
                "toolkit_version": BMLab.version, "command": CommandLine.arguments.joined(separator: " "),
                "blas_core": BLAS.coreName, "cpu": Machine.cpuModel,
            ])
            let fig = try Gnuplot.render(SinkhornStudy.figure(rows), in: out, format: fmt)
            print("numbers: \(h5)\nfigure:  \(fig)")
        }
    }

    func loadLogits(_ path: String) throws -> [(name: String, values: [Float], T: Int, E: Int)] {
        guard FileManager.default.fileExists(atPath: path) else { throw BMError.invalid("--logits: no file at \(path)") }
        let f = try H5File(path: path, mode: .readOnly)
        defer { f.close() }
        var names: [String]
        if let d = datasets { names = d.split(separator: ",").map(String.init) }
        else {
            guard f.exists("router_logits") else { throw BMError.invalid("\(path): no group 'router_logits'; name datasets with --datasets") }
            names = try f.group("router_logits").children().map { "router_logits/\($0)" }
        }
        return try names.map { n in
            let ds = try f.dataset(n)
            guard ds.shape.count == 2 else { throw BMError.invalid("\(path): dataset '\(n)' has shape \(ds.shape); expected [T, E]") }
            return (n, try ds.readFloats(), ds.shape[0], ds.shape[1])
        }
    }
}
