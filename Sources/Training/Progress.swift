// Training progress on stdout: on a terminal one line redrawn in place (bar, percent, ETA);
// in a log file (SLURM, pipes) a plain line every `every` steps.
import Foundation
import NN
#if canImport(Glibc)
import Glibc
#endif

public final class ProgressReporter {
    public let total: Int
    public let isTerminal: Bool
    public let every: Int
    private let output: (String) -> Void
    private var startTime: Double?
    private var startStep = 0
    private var lastDraw = -Double.infinity
    private var lineOpen = false
    private var lastWidth = 0

    /// `total`: the step count at the end (0 = unknown). `every`: steps between plain lines.
    /// `output` receives the raw text (default: stdout, flushed).
    public init(total: Int, isTerminal: Bool, every: Int,
                output: @escaping (String) -> Void = ProgressReporter.writeStdout) {
        self.total = max(0, total)
        self.isTerminal = isTerminal
        self.every = max(1, every)
        self.output = output
    }

    /// Reports that `step` steps are done (1-based). `acc` is a fraction in [0, 1].
    public func update(step: Int, epoch: Int, loss: Double, acc: Double, lr: Double, imagesPerSecond: Double) {
        let now = monotonicSeconds()
        if startTime == nil { startTime = now; startStep = step - 1 }
        let isLast = total > 0 && step >= total
        let stats = ProgressReporter.stats(epoch: epoch, loss: loss, acc: acc, lr: lr, imagesPerSecond: imagesPerSecond)
        let eta = etaSeconds(step: step, now: now)
        if isTerminal {
            // Redraw at most 10 times a second, but always the last step.
            guard isLast || now - lastDraw >= 0.1 else { return }
            lastDraw = now
            var line = ""
            if total > 0 {
                let frac = min(1, max(0, Double(step) / Double(total)))
                let filled = Int((frac * 24).rounded(.down))
                line += "[" + String(repeating: "=", count: filled)
                    + (filled < 24 ? ">" + String(repeating: " ", count: 23 - filled) : "") + "] "
                line += String(format: "%3d%% %d/%d ", Int(frac * 100), step, total)
            } else {
                line += "step \(step) "
            }
            line += stats
            if let eta { line += " ETA " + ProgressReporter.duration(eta) }
            let pad = max(0, lastWidth - line.count)
            lastWidth = line.count
            output("\r" + line + String(repeating: " ", count: pad))
            lineOpen = true
        } else {
            guard step % every == 0 || isLast else { return }
            var line = total > 0 ? "step \(step)/\(total) " : "step \(step) "
            line += stats
            if let eta { line += " eta " + ProgressReporter.duration(eta) }
            output(line + "\n")
        }
    }

    /// Ends the redrawn line (terminal) so later output starts on a fresh line.
    public func finish() {
        if lineOpen { output("\n"); lineOpen = false }
    }

    /// Writes text to stdout and flushes.
    public static func writeStdout(_ s: String) {
        fputs(s, stdout)
        fflush(stdout)
    }

    public static var stdoutIsTerminal: Bool { isatty(STDOUT_FILENO) != 0 }

    // MARK: Formatting

    private func etaSeconds(step: Int, now: Double) -> Double? {
        guard total > 0, let t0 = startTime else { return nil }
        let done = step - startStep
        guard done > 1, now > t0 else { return nil }
        let perStep = (now - t0) / Double(done - 1 > 0 ? done - 1 : 1)
        let left = Double(max(0, total - step)) * perStep
        return left.isFinite ? left : nil
    }

    static func stats(epoch: Int, loss: Double, acc: Double, lr: Double, imagesPerSecond: Double) -> String {
        func num(_ v: Double, _ fmt: String) -> String { v.isFinite ? String(format: fmt, v) : "\(v)" }
        return "epoch \(epoch) loss \(num(loss, "%.4f")) acc \(num(acc * 100, "%.2f"))% lr \(num(lr, "%.5g")) "
            + "\(num(imagesPerSecond, "%.0f")) img/s"
    }

    static func duration(_ s: Double) -> String {
        let total = Int(s.rounded())
        let h = total / 3600, m = (total % 3600) / 60, sec = total % 60
        return h > 0 ? String(format: "%d:%02d:%02d", h, m, sec) : String(format: "%d:%02d", m, sec)
    }
}
