import Foundation
import BMCore

/// `bmlab bench compare`: the toolkit against its peers (the PyTorch and JAX/XLA
/// programs of `bench/peers`, docs/performance.md), measured in the same sitting
/// on the machine at hand and interleaved round by round — toolkit, JAX, PyTorch,
/// toolkit, … — so that a slow minute of a noisy machine falls on every side. Each
/// measurement is a fresh process. The ratios are per round (toolkit ÷ peer of the
/// same round), given as their median and range, so their spread is the noise the
/// comparison carries.
public enum CompareBench {
    /// Where `make peers` puts the peers' virtual environments: `$BMLAB_PEERS_ENV`, else
    /// `$XDG_CACHE_HOME/blackmambalab/peers`, else `~/.cache/blackmambalab/peers`
    /// (scripts/peers.sh decides the same way).
    public static var peerEnvironment: String {
        let env = ProcessInfo.processInfo.environment
        if let d = env["BMLAB_PEERS_ENV"], !d.isEmpty { return d }
        let cache = env["XDG_CACHE_HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory() + "/.cache"
        return cache + "/blackmambalab/peers"
    }

    /// One program to measure: how to start it and how to read its figure.
    public struct Contender: Sendable {
        public var name: String
        public var program: String          // run through /usr/bin/env
        public var arguments: [String]
        /// The figure from the program's stdout (tokens/s, or ms/token by context).
        public var read: @Sendable (String) throws -> [String: Double]
        public init(name: String, program: String, arguments: [String], read: @escaping @Sendable (String) throws -> [String: Double]) {
            self.name = name; self.program = program; self.arguments = arguments; self.read = read
        }
    }

    /// Medians and range of one contender's figure over the rounds.
    public struct Figure: Codable, Sendable {
        public var contender: String
        public var key: String              // "tokens_per_s" or "ms_per_token@128"
        public var values: [Double]
        public var median: Double, min: Double, max: Double
        public init(contender: String, key: String, values: [Double]) {
            self.contender = contender; self.key = key; self.values = values
            median = BMCore.median(values); min = values.min() ?? .nan; max = values.max() ?? .nan
        }
    }

    /// A toolkit contender's speed over a peer's, round by round: throughputs (tokens/s)
    /// as toolkit ÷ peer, times (ms/token) as peer ÷ toolkit; > 1 means the toolkit is faster.
    public struct Ratio: Codable, Sendable {
        public var subject: String
        public var peer: String
        public var key: String
        public var perRound: [Double]
        public var median: Double, min: Double, max: Double
        public init(subject: String, peer: String, key: String, perRound: [Double]) {
            self.subject = subject; self.peer = peer; self.key = key; self.perRound = perRound
            median = BMCore.median(perRound); min = perRound.min() ?? .nan; max = perRound.max() ?? .nan
        }
    }

    public struct Result: Codable, Sendable {
        public var cpu: String
        public var rounds: Int
        public var figures: [Figure]
        public var ratios: [Ratio]
        public var skipped: [String]        // peers not found, with the reason
        public var failures: [String]       // a contender that exited non-zero or printed no figure
    }

    /// Training first, then generation by increasing context.
    static func keyOrder(_ a: String, _ b: String) -> Bool {
        func parts(_ k: String) -> (String, Int) {
            let p = k.split(separator: "@")
            return (String(p[0]), p.count > 1 ? Int(p[1]) ?? 0 : 0)
        }
        let x = parts(a), y = parts(b)
        return x.0 != y.0 ? x.0 > y.0 : x.1 < y.1          // "tokens_per_s" before "ms_per_token"
    }

    /// Runs every contender once per round, in order, and collects their figures.
    /// Contenders named `bmlab…` are the toolkit (e.g. `bmlab` and `bmlab-bf16`), the
    /// others peers: each toolkit contender is compared with each peer, and a later
    /// toolkit contender with the first (bf16 against fp32).
    public static func run(_ contenders: [Contender], rounds: Int, skipped: [String] = [],
                           progress: ((String) -> Void)? = nil) -> Result {
        var values: [String: [String: [Double]]] = [:]          // contender → key → per round
        var failures: [String] = []
        var failed = Set<String>()
        for round in 1...max(1, rounds) {
            for c in contenders where !failed.contains(c.name) {
                progress?("round \(round)/\(rounds): \(c.name)")
                do {
                    let r = try Machine.run(c.program, c.arguments)
                    guard r.status == 0 else {
                        let why = r.stderr.split(separator: "\n").last.map(String.init) ?? ""
                        throw BMError.invalid("exit \(r.status)\(why.isEmpty ? "" : ": \(why)")")
                    }
                    for (k, v) in try c.read(r.stdout) { values[c.name, default: [:]][k, default: []].append(v) }
                } catch {
                    failures.append("\(c.name): \(error)")
                    failed.insert(c.name)
                }
            }
        }
        var figures: [Figure] = []
        for c in contenders {
            for (k, v) in (values[c.name] ?? [:]).sorted(by: { keyOrder($0.key, $1.key) }) { figures.append(Figure(contender: c.name, key: k, values: v)) }
        }
        var ratios: [Ratio] = []
        let toolkit = contenders.filter { $0.name.hasPrefix("bmlab") }, peers = contenders.filter { !$0.name.hasPrefix("bmlab") }
        var pairs = toolkit.flatMap { s in peers.map { (s.name, $0.name) } }
        if let first = toolkit.first { pairs += toolkit.dropFirst().map { ($0.name, first.name) } }
        for (subject, peer) in pairs {
            guard let mine = values[subject], let theirs = values[peer] else { continue }
            for (k, a) in mine.sorted(by: { keyOrder($0.key, $1.key) }) {
                guard let b = theirs[k] else { continue }
                let n = Swift.min(a.count, b.count)
                let higherIsBetter = !k.hasPrefix("ms_")
                let per = (0..<n).map { higherIsBetter ? a[$0] / b[$0] : b[$0] / a[$0] }
                if !per.isEmpty { ratios.append(Ratio(subject: subject, peer: peer, key: k, perRound: per)) }
            }
        }
        return Result(cpu: Machine.cpuModel, rounds: rounds, figures: figures, ratios: ratios, skipped: skipped, failures: failures)
    }

    // MARK: reading the programs' outputs

    /// The last line of `text` that is a JSON object.
    public static func lastJSONObject(_ text: String) throws -> [String: Any] {
        for line in text.split(separator: "\n").reversed() where line.hasPrefix("{") {
            if let o = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] { return o }
        }
        throw BMError.invalid("no JSON line in its output")
    }

    static func number(_ o: [String: Any], _ k: String) throws -> Double {
        guard let v = o[k] as? Double ?? (o[k] as? Int).map(Double.init) else { throw BMError.invalid("its JSON has no number '\(k)'") }
        return v
    }

    /// `{"tokens_per_s": …}` (both peers) or `{"tokens_per_second": …}` (the
    /// toolkit's `bench train --json`).
    @Sendable public static func readTokensPerSecond(_ out: String) throws -> [String: Double] {
        let o = try lastJSONObject(out)
        return ["tokens_per_s": try number(o, o["tokens_per_second"] != nil ? "tokens_per_second" : "tokens_per_s")]
    }

    /// The toolkit's `bench generate --json`: a JSON array of points with
    /// `context` and `ms_per_token` (one model).
    @Sendable public static func readToolkitGeneration(_ out: String) throws -> [String: Double] {
        guard let start = out.firstIndex(of: "["),
              let a = try? JSONSerialization.jsonObject(with: Data(out[start...].utf8)) as? [[String: Any]] else {
            throw BMError.invalid("no JSON array in its output")
        }
        var r: [String: Double] = [:]
        for p in a { r["ms_per_token@\(Int(try number(p, "context")))"] = try number(p, "ms_per_token") }
        return r
    }

    /// torch_peer.py generate: `{"per_token_s_at_length": {"128": s, …}}`.
    @Sendable public static func readPeerGeneration(_ out: String) throws -> [String: Double] {
        guard let m = try lastJSONObject(out)["per_token_s_at_length"] as? [String: Any] else {
            throw BMError.invalid("its JSON has no 'per_token_s_at_length'")
        }
        var r: [String: Double] = [:]
        for (k, v) in m { if let s = v as? Double, let c = Int(k) { r["ms_per_token@\(c)"] = s * 1e3 } }
        return r
    }

    // MARK: text

    public static func table(_ r: Result) -> String {
        var out = "CPU: \(r.cpu); \(r.rounds) rounds, interleaved\n"
        for f in r.figures {
            let unit = f.key.hasPrefix("ms_") ? "ms/token" : "tokens/s"
            let what = f.key.hasPrefix("ms_") ? "generate, context \(f.key.split(separator: "@").last ?? "")" : "train"
            out += "  " + f.contender.padding(toLength: 12, withPad: " ", startingAt: 0) + what.padding(toLength: 26, withPad: " ", startingAt: 0)
                + String(format: "median %10.3f %@  (%.3f – %.3f, n = %d)\n", f.median, unit, f.min, f.max, f.values.count)
        }
        if !r.ratios.isEmpty { out += "speed ÷ speed (per round: median, range; > 1: the first is faster):\n" }
        for x in r.ratios {
            let what = x.key.hasPrefix("ms_") ? "generate, context \(x.key.split(separator: "@").last ?? "")" : "train"
            out += "  " + "\(x.subject) vs \(x.peer)".padding(toLength: 24, withPad: " ", startingAt: 0) + what.padding(toLength: 26, withPad: " ", startingAt: 0)
                + String(format: "%6.2f×  (%.2f – %.2f)\n", x.median, x.min, x.max)
        }
        for s in r.skipped { out += "skipped: \(s)\n" }
        for f in r.failures { out += "failed: \(f)\n" }
        return out
    }
}
