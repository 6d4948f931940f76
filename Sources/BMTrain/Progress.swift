import Foundation

/// A live progress line on a terminal (step, loss, tokens/s, ETA); without a
/// terminal (a Slurm `.out` file, a sweep's `log.txt`, a pipe) one plain line every
/// `logEvery` steps, written straight to the file descriptor (unbuffered), so a log
/// shows how far a run got even when it is killed.
public final class ProgressLine {
    let total: Int
    let logEvery: Int
    let isTTY: Bool
    let start = Date()
    var lastPrint = Date.distantPast
    public var enabled = true

    public init(total: Int, logEvery: Int = 10, terminal: Bool = isatty(2) != 0) {
        self.total = total; self.logEvery = max(1, logEvery); isTTY = terminal
    }

    public func update(step: Int, loss: Double, tokensPerSecond: Double, extra: String = "", force: Bool = false) {
        guard enabled else { return }
        let now = Date()
        let done = step + 1
        let elapsed = now.timeIntervalSince(start)
        let eta = done > 0 ? elapsed / Double(done) * Double(total - done) : 0
        let line = String(format: "step %d/%d  loss %.4f  %.0f tok/s  ETA %@%@", done, total, loss, tokensPerSecond,
                          ProgressLine.duration(eta), extra.isEmpty ? "" : "  " + extra)
        if isTTY {
            if force || now.timeIntervalSince(lastPrint) > 0.2 || done == total {
                FileHandle.standardError.write(("\r\u{1B}[K" + line + (done == total ? "\n" : "")).data(using: .utf8)!)
                lastPrint = now
            }
        } else if force || done == total || done % logEvery == 0 {
            FileHandle.standardError.write((line + "\n").data(using: .utf8)!)
        }
    }

    public func finish() { if isTTY { FileHandle.standardError.write("\n".data(using: .utf8)!) } }

    public static func duration(_ s: Double) -> String {
        if !s.isFinite { return "?" }
        let t = Int(s.rounded())
        return t >= 3600 ? String(format: "%dh%02dm", t / 3600, t / 60 % 60) : String(format: "%dm%02ds", t / 60, t % 60)
    }
}
