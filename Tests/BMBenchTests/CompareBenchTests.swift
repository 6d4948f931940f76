import XCTest
import Foundation
@testable import BMCore
@testable import BMBench

/// `bench compare`'s bookkeeping with stand-in programs (shell one-liners that print
/// what the real ones print): interleaving, per-round ratios, reading each format,
/// and a contender that fails.
final class CompareBenchTests: XCTestCase {
    func tempDir() throws -> String {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("bmlab-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: d) }
        return d
    }

    /// A program that prints `values[k]` on its k-th run (k counted in a file) and logs its name.
    func stub(_ dir: String, _ name: String, _ lines: [String]) -> CompareBench.Contender {
        let script = """
        n=$(cat \(dir)/\(name).n 2>/dev/null || echo 0); echo $((n+1)) > \(dir)/\(name).n; echo \(name) >> \(dir)/order
        case $n in \(lines.enumerated().map { "\($0.offset)) echo '\($0.element)';;" }.joined(separator: " ")) esac
        """
        return .init(name: name, program: "sh", arguments: ["-c", script], read: CompareBench.readTokensPerSecond)
    }

    func testRoundsAreInterleavedAndRatiosArePerRound() throws {
        let dir = try tempDir()
        let me = stub(dir, "bmlab", [#"{"tokens_per_second": 3000}"#, #"{"tokens_per_second": 2000}"#, #"{"tokens_per_second": 2500}"#])
        let jax = stub(dir, "jax", [#"{"tokens_per_s": 1000}"#, #"{"tokens_per_s": 1000}"#, #"{"tokens_per_s": 500}"#])
        let r = CompareBench.run([me, jax], rounds: 3)
        XCTAssertEqual(try String(contentsOfFile: dir + "/order", encoding: .utf8), "bmlab\njax\nbmlab\njax\nbmlab\njax\n")
        let mine = try XCTUnwrap(r.figures.first { $0.contender == "bmlab" })
        XCTAssertEqual(mine.values, [3000, 2000, 2500])
        XCTAssertEqual(mine.median, 2500)
        XCTAssertEqual(mine.min, 2000); XCTAssertEqual(mine.max, 3000)
        let ratio = try XCTUnwrap(r.ratios.first)
        XCTAssertEqual(ratio.peer, "jax")
        XCTAssertEqual(ratio.perRound, [3, 2, 5])       // round by round, not median ÷ median (2.5)
        XCTAssertEqual(ratio.median, 3)
        XCTAssertTrue(r.failures.isEmpty)
        XCTAssertTrue(CompareBench.table(r).contains("vs jax"))
    }

    func testGenerationRatiosArePeerTimeOverToolkitTime() throws {
        let toolkit = #"[{"model": "bench-small", "context": 128, "ms_per_token": 0.5, "state_bytes": 1, "resident_mib": 1}, {"model": "bench-small", "context": 1024, "ms_per_token": 0.6, "state_bytes": 1, "resident_mib": 1}]"#
        let a = try CompareBench.readToolkitGeneration("batch 1 …\n" + toolkit)
        XCTAssertEqual(a, ["ms_per_token@128": 0.5, "ms_per_token@1024": 0.6])
        let b = try CompareBench.readPeerGeneration(#"{"arch": "blackmamba", "per_token_s_at_length": {"128": 0.004, "1024": 0.0048}}"#)
        XCTAssertEqual(b["ms_per_token@128"]!, 4, accuracy: 1e-12)
        let me = CompareBench.Contender(name: "bmlab", program: "sh", arguments: ["-c", "echo '\(toolkit)'"], read: CompareBench.readToolkitGeneration)
        let peer = CompareBench.Contender(name: "pytorch", program: "sh",
                                          arguments: ["-c", #"echo '{"per_token_s_at_length": {"128": 0.004, "1024": 0.0048}}'"#],
                                          read: CompareBench.readPeerGeneration)
        let half = #"[{"context": 128, "ms_per_token": 0.25}, {"context": 1024, "ms_per_token": 0.3}]"#
        let bf16 = CompareBench.Contender(name: "bmlab-bf16", program: "sh", arguments: ["-c", "echo '\(half)'"], read: CompareBench.readToolkitGeneration)
        let r = CompareBench.run([me, bf16, peer], rounds: 2)
        func ratio(_ s: String, _ p: String, _ k: String) throws -> Double {
            try XCTUnwrap(r.ratios.first { $0.subject == s && $0.peer == p && $0.key == k }, "\(s) vs \(p) \(k)").median
        }
        XCTAssertEqual(try ratio("bmlab", "pytorch", "ms_per_token@128"), 8, accuracy: 1e-9)   // 4 ms ÷ 0.5 ms: 8× faster
        XCTAssertEqual(try ratio("bmlab", "pytorch", "ms_per_token@1024"), 8, accuracy: 1e-9)
        XCTAssertEqual(try ratio("bmlab-bf16", "pytorch", "ms_per_token@128"), 16, accuracy: 1e-9)
        XCTAssertEqual(try ratio("bmlab-bf16", "bmlab", "ms_per_token@128"), 2, accuracy: 1e-9)   // bf16 against fp32
        XCTAssertEqual(r.ratios.count, 6)
        XCTAssertEqual(r.figures.first { $0.contender == "bmlab" }?.key, "ms_per_token@128")       // contexts in increasing order
    }

    func testAFailingContenderIsReportedAndNotRetried() throws {
        let dir = try tempDir()
        let me = stub(dir, "bmlab", [#"{"tokens_per_s": 10}"#, #"{"tokens_per_s": 10}"#])
        let bad = CompareBench.Contender(name: "torch", program: "sh", arguments: ["-c", "echo $0 >> \(dir)/bad; echo 'ModuleNotFoundError: torch' >&2; exit 1"],
                                         read: CompareBench.readTokensPerSecond)
        let silent = CompareBench.Contender(name: "quiet", program: "sh", arguments: ["-c", "echo hello"], read: CompareBench.readTokensPerSecond)
        let r = CompareBench.run([me, bad, silent], rounds: 2)
        XCTAssertEqual(r.failures.count, 2)
        XCTAssertTrue(r.failures[0].contains("torch") && r.failures[0].contains("exit 1: ModuleNotFoundError: torch"), r.failures[0])
        XCTAssertTrue(r.failures[1].contains("no JSON line"), r.failures[1])
        XCTAssertEqual(try String(contentsOfFile: dir + "/bad", encoding: .utf8).split(separator: "\n").count, 1)   // not rerun in round 2
        XCTAssertEqual(r.figures.first { $0.contender == "bmlab" }?.values.count, 2)
        XCTAssertTrue(r.ratios.isEmpty)
    }
}
