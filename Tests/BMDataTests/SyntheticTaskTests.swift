import XCTest
import BMCore
@testable import BMTrain
import BMData

final class SyntheticTaskTests: XCTestCase {

    // MARK: helpers

    /// One example from a fresh RNG(seed).
    func gen(_ task: some SequenceTask, seed: UInt64) -> (x: [Int32], y: [Int32]) {
        var rng = RNG(seed: seed)
        return gen(task, &rng)
    }

    func gen(_ task: some SequenceTask, _ rng: inout RNG) -> (x: [Int32], y: [Int32]) {
        var x = [Int32](repeating: 99, count: task.seqLen)
        var y = [Int32](repeating: 99, count: task.seqLen)
        x.withUnsafeMutableBufferPointer { xp in
            y.withUnsafeMutableBufferPointer { yp in
                task.example(&rng, inputs: xp.baseAddress!, targets: yp.baseAddress!)
            }
        }
        return (x, y)
    }

    func assertInvalid(_ make: @autoclosure () throws -> Any, mentions words: [String],
                       file: StaticString = #filePath, line: UInt = #line) {
        do {
            _ = try make()
            XCTFail("expected BMError.invalid mentioning \(words)", file: file, line: line)
        } catch let BMError.invalid(message) {
            for w in words {
                XCTAssertTrue(message.contains(w), "message \"\(message)\" should mention \(w)", file: file, line: line)
            }
        } catch {
            XCTFail("unexpected error \(error)", file: file, line: line)
        }
    }

    /// Checks every MQAR invariant; returns the query positions in key order.
    @discardableResult
    func checkMQAR(_ t: MQARTask, _ x: [Int32], _ y: [Int32], file: StaticString = #filePath, line: UInt = #line) -> [Int] {
        let V = t.vocabSize, k = t.numPairs, C = 2 * k, half = V / 2
        XCTAssertEqual(x.count, t.seqLen, file: file, line: line)
        var keys: [Int32] = [], values: [Int32] = []
        for j in 0..<k {
            keys.append(x[2 * j]); values.append(x[2 * j + 1])
            XCTAssertTrue((1..<Int32(half)).contains(x[2 * j]), "key \(x[2 * j])", file: file, line: line)
            XCTAssertTrue((Int32(half)..<Int32(V)).contains(x[2 * j + 1]), "value \(x[2 * j + 1])", file: file, line: line)
            XCTAssertEqual(y[2 * j], -1, file: file, line: line)
            XCTAssertEqual(y[2 * j + 1], -1, file: file, line: line)
        }
        XCTAssertEqual(Set(keys).count, k, "keys distinct", file: file, line: line)
        XCTAssertEqual(Set(values).count, k, "values distinct", file: file, line: line)
        var queryPos: [Int] = []
        for j in 0..<k {
            let hits = (C..<t.seqLen).filter { x[$0] == keys[j] }
            XCTAssertEqual(hits.count, 1, "key \(keys[j]) queried exactly once", file: file, line: line)
            guard let p = hits.first else { continue }
            XCTAssertEqual((p - C) % 2, 0, "query at even offset", file: file, line: line)
            XCTAssertEqual(y[p], values[j], "target at query = paired value", file: file, line: line)
            queryPos.append(p)
        }
        let qset = Set(queryPos)
        for p in C..<t.seqLen where !qset.contains(p) {
            XCTAssertEqual(x[p], 0, "filler at \(p)", file: file, line: line)
            XCTAssertEqual(y[p], -1, "ignored target at \(p)", file: file, line: line)
        }
        return queryPos
    }

    func checkSelectiveCopy(_ t: SelectiveCopyTask, _ x: [Int32], _ y: [Int32], file: StaticString = #filePath, line: UInt = #line) {
        let V = Int32(t.vocabSize), M = t.numTokens, N = t.seqLen - M
        let data = x[0..<N].filter { $0 != 0 }
        XCTAssertEqual(data.count, M, "exactly numTokens data tokens", file: file, line: line)
        XCTAssertTrue(data.allSatisfy { (1...(V - 2)).contains($0) }, "data in [1, V-2]", file: file, line: line)
        XCTAssertEqual(Array(x[N...]), [Int32](repeating: V - 1, count: M), "markers", file: file, line: line)
        XCTAssertEqual(Array(y[N...]), Array(data), "targets spell the data in order", file: file, line: line)
        XCTAssertEqual(Array(y[0..<N]), [Int32](repeating: -1, count: N), file: file, line: line)
    }

    func checkInduction(_ t: InductionTask, _ x: [Int32], _ y: [Int32], file: StaticString = #filePath, line: UInt = #line) {
        let V = Int32(t.vocabSize), L = t.seqLen, prefix = V - 1
        XCTAssertEqual(x[L - 1], prefix, "ends with the prefix token", file: file, line: line)
        let firstPrefix = x.firstIndex(of: prefix)!
        XCTAssertLessThan(firstPrefix, L - 2, "prefix not in the last two positions", file: file, line: line)
        XCTAssertEqual(x.filter { $0 == prefix }.count, 2, "prefix appears exactly twice", file: file, line: line)
        XCTAssertEqual(y[L - 1], x[firstPrefix + 1], "last target = token after the first prefix", file: file, line: line)
        XCTAssertTrue((1..<prefix).contains(y[L - 1]), file: file, line: line)
        XCTAssertTrue(x.allSatisfy { (1...prefix).contains($0) }, file: file, line: line)
        XCTAssertEqual(Array(y[0..<(L - 1)]), [Int32](repeating: -1, count: L - 1), file: file, line: line)
    }

    // MARK: 1. determinism

    func testSameSeedSameExampleDifferentSeedDiffers() throws {
        let tasks: [any SequenceTask] = [
            try MQARTask(vocabSize: 64, seqLen: 64, numPairs: 4),
            try SelectiveCopyTask(vocabSize: 16, seqLen: 64, numTokens: 8),
            try InductionTask(vocabSize: 16, seqLen: 64),
        ]
        for task in tasks {
            let a = gen(task, seed: 7), b = gen(task, seed: 7), c = gen(task, seed: 8)
            XCTAssertEqual(a.x, b.x, task.name); XCTAssertEqual(a.y, b.y, task.name)
            XCTAssertFalse(a.x == c.x && a.y == c.y, "\(task.name): seeds 7 and 8 gave the same example")
            XCTAssertFalse(a.x.contains(99) || a.y.contains(99), "\(task.name): every position written")
        }
    }

    /// Golden values: pin the exact RNG consumption so data stay bitwise reproducible across refactors.
    func testGoldenExamples() throws {
        let m = gen(try MQARTask(vocabSize: 16, seqLen: 16, numPairs: 2), seed: 1)
        XCTAssertEqual(m.x, GOLDEN_MQAR_X)
        XCTAssertEqual(m.y, GOLDEN_MQAR_Y)
        let s = gen(try SelectiveCopyTask(vocabSize: 8, seqLen: 10, numTokens: 3), seed: 1)
        XCTAssertEqual(s.x, GOLDEN_SC_X)
        XCTAssertEqual(s.y, GOLDEN_SC_Y)
        let i = gen(try InductionTask(vocabSize: 8, seqLen: 8), seed: 1)
        XCTAssertEqual(i.x, GOLDEN_IND_X)
        XCTAssertEqual(i.y, GOLDEN_IND_Y)
    }

    // MARK: 2. structure

    func testMQARInvariants() throws {
        for (V, L, k) in [(64, 64, 4), (128, 128, 8), (8192, 256, 16), (32, 33, 8), (8, 12, 3)] {
            let t = try MQARTask(vocabSize: V, seqLen: L, numPairs: k)
            var rng = RNG(seed: UInt64(V * 1000 + L))
            for _ in 0..<50 { let e = gen(t, &rng); checkMQAR(t, e.x, e.y) }
        }
    }

    /// V=4, L=4, k=1: the only key is 1, the only gap is 0, so the example is [1, v, 1, 0] with v ∈ {2, 3}.
    func testMQARForcedTinyExample() throws {
        let t = try MQARTask(vocabSize: 4, seqLen: 4, numPairs: 1)
        var seen = Set<Int32>()
        for seed in 0..<32 as Range<UInt64> {
            let e = gen(t, seed: seed)
            let v = e.x[1]
            XCTAssertTrue(v == 2 || v == 3)
            XCTAssertEqual(e.x, [1, v, 1, 0])
            XCTAssertEqual(e.y, [-1, -1, v, -1])
            seen.insert(v)
        }
        XCTAssertEqual(seen, [2, 3], "both values occur")
    }

    /// V=6, L=8, k=2: keys are {1, 2}, S = 2, so both gaps are taken: queries at 4 and 6, fillers at 5 and 7.
    func testMQARForcedQueryPositions() throws {
        let t = try MQARTask(vocabSize: 6, seqLen: 8, numPairs: 2)
        var orders = Set<[Int]>()
        for seed in 0..<32 as Range<UInt64> {
            let e = gen(t, seed: seed)
            XCTAssertEqual(Set(e.x[0..<4].enumerated().filter { $0.offset % 2 == 0 }.map(\.element)), [1, 2])
            let q = checkMQAR(t, e.x, e.y)
            XCTAssertEqual(Set(q), [4, 6])
            XCTAssertEqual(e.x[5], 0); XCTAssertEqual(e.x[7], 0)
            orders.insert(q)
        }
        XCTAssertEqual(orders.count, 2, "queries appear in both orders")
    }

    /// p ∝ a·(g+1)^(a−1): a = 0.01 puts queries much earlier than a = 1 (uniform).
    func testMQARPowerLawFavoursShortGaps() throws {
        func meanGap(_ a: Double) throws -> Double {
            let t = try MQARTask(vocabSize: 64, seqLen: 64, numPairs: 4, powerA: a)
            var rng = RNG(seed: 3), sum = 0
            for _ in 0..<400 { let e = gen(t, &rng); sum += checkMQAR(t, e.x, e.y).reduce(0) { $0 + ($1 - 8) / 2 } }
            return Double(sum) / 1600
        }
        let uniform = try meanGap(1), skewed = try meanGap(0.01)
        XCTAssertEqual(uniform, 13.5, accuracy: 1.0)      // mean of 0..<28
        XCTAssertLessThan(skewed, uniform - 3)
    }

    func testSelectiveCopyInvariants() throws {
        for (V, L, M) in [(16, 64, 16), (16, 256, 16), (4, 10, 5), (10, 11, 1)] {
            let t = try SelectiveCopyTask(vocabSize: V, seqLen: L, numTokens: M)
            var rng = RNG(seed: UInt64(L * 31 + M))
            for _ in 0..<50 { let e = gen(t, &rng); checkSelectiveCopy(t, e.x, e.y) }
        }
    }

    /// V=4, L=4, M=2: both data slots are forced, so the example is [d0, d1, 3, 3] → targets [-1, -1, d0, d1].
    func testSelectiveCopyForcedTinyExample() throws {
        let t = try SelectiveCopyTask(vocabSize: 4, seqLen: 4, numTokens: 2)
        var seen = Set<[Int32]>()
        for seed in 0..<64 as Range<UInt64> {
            let e = gen(t, seed: seed)
            let d0 = e.x[0], d1 = e.x[1]
            XCTAssertTrue([1, 2].contains(d0) && [1, 2].contains(d1))
            XCTAssertEqual(e.x, [d0, d1, 3, 3])
            XCTAssertEqual(e.y, [-1, -1, d0, d1])
            seen.insert([d0, d1])
        }
        XCTAssertEqual(seen.count, 4, "all four data pairs occur")
    }

    func testInductionInvariants() throws {
        for (V, L) in [(16, 256), (16, 64), (3, 5), (4, 4)] {
            let t = try InductionTask(vocabSize: V, seqLen: L)
            var rng = RNG(seed: UInt64(V * 100 + L))
            var positions = Set<Int>()
            for _ in 0..<100 {
                let e = gen(t, &rng); checkInduction(t, e.x, e.y)
                positions.insert(e.x.firstIndex(of: Int32(V - 1))!)
            }
            if L <= 5 { XCTAssertEqual(positions, Set(0..<(L - 2)), "every allowed prefix position occurs") }
        }
    }

    /// V=3, L=4: the filler and remembered token can only be 1, the prefix is 2 at p ∈ {0, 1}.
    func testInductionForcedTinyExample() throws {
        let t = try InductionTask(vocabSize: 3, seqLen: 4)
        var seen = Set<[Int32]>()
        for seed in 0..<32 as Range<UInt64> {
            let e = gen(t, seed: seed)
            XCTAssertTrue(e.x == [2, 1, 1, 2] || e.x == [1, 2, 1, 2], "\(e.x)")
            XCTAssertEqual(e.y, [-1, -1, -1, 1])
            seen.insert(e.x)
        }
        XCTAssertEqual(seen, [[2, 1, 1, 2], [1, 2, 1, 2]])
    }

    // MARK: 3. errors

    func testImpossibleParametersThrow() {
        assertInvalid(try MQARTask(vocabSize: 3, seqLen: 16, numPairs: 1), mentions: ["vocabSize"])
        assertInvalid(try MQARTask(vocabSize: 64, seqLen: 16, numPairs: 0), mentions: ["numPairs"])
        assertInvalid(try MQARTask(vocabSize: 64, seqLen: 15, numPairs: 4), mentions: ["seqLen", "numPairs"])
        assertInvalid(try MQARTask(vocabSize: 64, seqLen: 4, numPairs: 3), mentions: ["seqLen", "numPairs"])  // 2k > L
        assertInvalid(try MQARTask(vocabSize: 8, seqLen: 64, numPairs: 4), mentions: ["numPairs", "vocabSize"])  // > V/2 − 1
        assertInvalid(try MQARTask(vocabSize: 64, seqLen: 64, numPairs: 4, powerA: 0), mentions: ["powerA"])
        assertInvalid(try MQARTask(vocabSize: 64, seqLen: 64, numPairs: 4, powerA: .nan), mentions: ["powerA"])

        assertInvalid(try SelectiveCopyTask(vocabSize: 3, seqLen: 16, numTokens: 2), mentions: ["vocabSize"])
        assertInvalid(try SelectiveCopyTask(vocabSize: 16, seqLen: 16, numTokens: 16), mentions: ["numTokens", "seqLen"])
        assertInvalid(try SelectiveCopyTask(vocabSize: 16, seqLen: 16, numTokens: 9), mentions: ["numTokens", "seqLen"])
        assertInvalid(try SelectiveCopyTask(vocabSize: 16, seqLen: 16, numTokens: 0), mentions: ["numTokens"])

        assertInvalid(try InductionTask(vocabSize: 16, seqLen: 3), mentions: ["seqLen"])
        assertInvalid(try InductionTask(vocabSize: 2, seqLen: 16), mentions: ["vocabSize"])

        // boundary cases are accepted
        XCTAssertNoThrow(try MQARTask(vocabSize: 4, seqLen: 4, numPairs: 1))
        XCTAssertNoThrow(try MQARTask(vocabSize: 10, seqLen: 16, numPairs: 4))
        XCTAssertNoThrow(try SelectiveCopyTask(vocabSize: 4, seqLen: 16, numTokens: 8))
        XCTAssertNoThrow(try InductionTask(vocabSize: 3, seqLen: 4))
    }

    // MARK: 4. batch

    func testBatchEqualsRepeatedExample() throws {
        let tasks: [any SequenceTask] = [
            try MQARTask(vocabSize: 64, seqLen: 32, numPairs: 4),
            try SelectiveCopyTask(vocabSize: 16, seqLen: 32, numTokens: 4),
            try InductionTask(vocabSize: 16, seqLen: 32),
        ]
        let B = 5
        for task in tasks {
            let L = task.seqLen
            var r1 = RNG(seed: 42)
            var bx = [Int32](repeating: 99, count: B * L), by = bx
            bx.withUnsafeMutableBufferPointer { xp in
                by.withUnsafeMutableBufferPointer { yp in
                    task.batch(&r1, B: B, inputs: xp.baseAddress!, targets: yp.baseAddress!)
                }
            }
            var r2 = RNG(seed: 42)
            var rows: [(x: [Int32], y: [Int32])] = []
            for b in 0..<B {
                let e = gen(task, &r2)
                rows.append(e)
                XCTAssertEqual(Array(bx[(b * L)..<((b + 1) * L)]), e.x, "\(task.name) row \(b)")
                XCTAssertEqual(Array(by[(b * L)..<((b + 1) * L)]), e.y, "\(task.name) row \(b)")
            }
            XCTAssertEqual(r1.stateArray, r2.stateArray, "\(task.name): same RNG consumption")
            XCTAssertNotEqual(rows[0].x, rows[1].x, "\(task.name): rows differ")
        }
    }
}

// Golden examples (seed 1), each checked by hand against the documented rules:
// MQAR V=16 L=16 k=2: pairs (5→12) (1→11); S = 6; key 1 queried at gap 0 (pos 4), key 5 at gap 2 (pos 8).
private let GOLDEN_MQAR_X: [Int32] = [5, 12, 1, 11, 1, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0]
private let GOLDEN_MQAR_Y: [Int32] = [-1, -1, -1, -1, 11, -1, -1, -1, 12, -1, -1, -1, -1, -1, -1, -1]
// Selective copy V=8 L=10 M=3: data 3 5 1 at sorted slots 0 1 4 of 0..<7, markers 7 at 7..<10.
private let GOLDEN_SC_X: [Int32] = [3, 5, 0, 0, 1, 0, 0, 7, 7, 7]
private let GOLDEN_SC_Y: [Int32] = [-1, -1, -1, -1, -1, -1, -1, 3, 5, 1]
// Induction V=8 L=8: prefix 7 at p = 2, remembered token 3, final prefix at 7.
private let GOLDEN_IND_X: [Int32] = [5, 4, 7, 3, 5, 1, 1, 7]
private let GOLDEN_IND_Y: [Int32] = [-1, -1, -1, -1, -1, -1, -1, 3]
