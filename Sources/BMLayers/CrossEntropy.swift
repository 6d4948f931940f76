import Foundation
import BMCore

/// Softmax cross-entropy over a vocabulary, mean over the positions whose
/// target is not `ignoreIndex`.
public struct CrossEntropy {
    public let vocab: Int
    public let ignoreIndex: Int32
    public init(vocab: Int, ignoreIndex: Int32 = -1) { self.vocab = vocab; self.ignoreIndex = ignoreIndex }

    public struct Result {
        public var loss: Double          // mean over counted positions
        public var counted: Int          // positions not ignored
        public var correct: Int          // argmax == target among counted
    }

    /// logits: [T, V], targets: [T]. Writes dlogits = (softmax − onehot)/counted · scale
    /// when `dlogits` is given (ignored rows get 0). `logits` and `dlogits` may alias.
    public func forwardBackward(logits: UnsafePointer<Float>, targets: UnsafePointer<Int32>, T: Int,
                                dlogits: UnsafeMutablePointer<Float>?, scale: Float = 1) -> Result {
        var counted = 0
        for t in 0..<T where targets[t] != ignoreIndex { counted += 1 }
        var loss = 0.0, correct = 0
        let V = vocab
        let inv = counted > 0 ? scale / Float(counted) : 0
        for t in 0..<T {
            let row = logits + t * V
            let target = targets[t]
            if target == ignoreIndex {
                if let d = dlogits { (d + t * V).update(repeating: 0, count: V) }
                continue
            }
            precondition(target >= 0 && Int(target) < V, "target \(target) outside vocabulary [0, \(V))")
            var m = row[0], arg = 0
            for v in 1..<V where row[v] > m { m = row[v]; arg = v }
            if arg == Int(target) { correct += 1 }
            let targetLogit = Double(row[Int(target)])     // read before dlogits may overwrite the row
            var s: Float = 0
            if let d = dlogits {
                let dr = d + t * V
                mapSIMD(row, dr, V) { vexp($0 - m) }
                for v in 0..<V { s += dr[v] }
                let lse = log(Double(s)) + Double(m)
                loss += lse - targetLogit
                let k = inv / s
                for v in 0..<V { dr[v] *= k }
                dr[Int(target)] -= inv
            } else {
                for v in 0..<V { s += exp(row[v] - m) }
                loss += log(Double(s)) + Double(m) - targetLogit
            }
        }
        return Result(loss: counted > 0 ? loss / Double(counted) : 0, counted: counted, correct: correct)
    }
}
