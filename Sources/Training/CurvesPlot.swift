// curves.svg: a self-contained SVG with two panels, loss and accuracy, each with train and
// test curves, axes with tick labels and a legend. Non-finite points are dropped; empty
// series and single points are drawn without dividing by zero.
import Foundation

public enum CurvesPlot {
    static let panelWidth = 480.0, height = 360.0
    static let left = 64.0, right = 16.0, top = 34.0, bottom = 52.0
    static let trainColor = "#1f77b4", testColor = "#d62728"
    static let axisColor = "#444444", gridColor = "#e4e4e4", greyColor = "#888888"

    public static func svg(trainLoss: [(x: Double, y: Double)], testLoss: [(Double, Double)],
                           trainAcc: [(Double, Double)], testAcc: [(Double, Double)],
                           xLabel: String) -> String {
        let width = 2 * panelWidth
        var out = """
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" \
        viewBox="0 0 \(Int(width)) \(Int(height))" font-family="Helvetica, Arial, sans-serif" font-size="12">
        <rect x="0" y="0" width="\(Int(width))" height="\(Int(height))" fill="white"/>

        """
        out += panel(title: "loss", x0: 0, train: trainLoss.map { ($0.x, $0.y) }, test: testLoss,
                     xLabel: xLabel, isAccuracy: false)
        out += panel(title: "accuracy", x0: panelWidth, train: trainAcc, test: testAcc,
                     xLabel: xLabel, isAccuracy: true)
        out += "</svg>\n"
        return out
    }

    /// Writes the SVG to `path` (through a temporary file and rename).
    public static func write(to path: String, trainLoss: [(x: Double, y: Double)], testLoss: [(Double, Double)],
                             trainAcc: [(Double, Double)], testAcc: [(Double, Double)], xLabel: String) throws {
        let text = svg(trainLoss: trainLoss, testLoss: testLoss, trainAcc: trainAcc, testAcc: testAcc, xLabel: xLabel)
        try text.write(toFile: path, atomically: true, encoding: .utf8)
    }

    // MARK: Drawing

    private static func panel(title: String, x0: Double, train: [(Double, Double)], test: [(Double, Double)],
                              xLabel: String, isAccuracy: Bool) -> String {
        let train = train.filter { $0.0.isFinite && $0.1.isFinite }
        let test = test.filter { $0.0.isFinite && $0.1.isFinite }
        let all = train + test
        let plotL = x0 + left, plotR = x0 + panelWidth - right
        let plotT = top, plotB = height - bottom
        var s = "<g>\n"
        s += text(x0 + panelWidth / 2, 20, title, anchor: "middle", extra: #" font-size="14" font-weight="bold""#)
        s += #"<rect x="\#(f(plotL))" y="\#(f(plotT))" width="\#(f(plotR - plotL))" height="\#(f(plotB - plotT))" fill="none" stroke="\#(axisColor)"/>"# + "\n"
        s += text((plotL + plotR) / 2, height - 12, xLabel, anchor: "middle")

        guard !all.isEmpty else {
            s += text((plotL + plotR) / 2, (plotT + plotB) / 2, "no data", anchor: "middle", extra: " fill=\"\(greyColor)\"")
            return s + "</g>\n"
        }

        var (xLo, xHi) = (all.map(\.0).min()!, all.map(\.0).max()!)
        var (yLo, yHi) = (all.map(\.1).min()!, all.map(\.1).max()!)
        if isAccuracy && yLo >= 0 && yHi <= 1 { (yLo, yHi) = (0, 1) } else { yLo = min(yLo, 0) }
        (xLo, xHi) = widen(xLo, xHi)
        (yLo, yHi) = widen(yLo, yHi)
        let xTicks = ticks(xLo, xHi), yTicks = ticks(yLo, yHi)
        xLo = min(xLo, xTicks.values.first ?? xLo); xHi = max(xHi, xTicks.values.last ?? xHi)
        yLo = min(yLo, yTicks.values.first ?? yLo); yHi = max(yHi, yTicks.values.last ?? yHi)

        func px(_ x: Double) -> Double { plotL + (x - xLo) / (xHi - xLo) * (plotR - plotL) }
        func py(_ y: Double) -> Double { plotB - (y - yLo) / (yHi - yLo) * (plotB - plotT) }

        for t in yTicks.values {
            let y = py(t)
            s += #"<line x1="\#(f(plotL))" y1="\#(f(y))" x2="\#(f(plotR))" y2="\#(f(y))" stroke="\#(gridColor)"/>"# + "\n"
            s += text(plotL - 6, y + 4, label(t, yTicks.step), anchor: "end")
        }
        for t in xTicks.values {
            let x = px(t)
            s += #"<line x1="\#(f(x))" y1="\#(f(plotB))" x2="\#(f(x))" y2="\#(f(plotB + 5))" stroke="\#(axisColor)"/>"# + "\n"
            s += text(x, plotB + 18, label(t, xTicks.step), anchor: "middle")
        }

        for (series, color, name) in [(train, trainColor, "train"), (test, testColor, "test")] where !series.isEmpty {
            let sorted = series.sorted { $0.0 < $1.0 }
            let points = sorted.map { "\(f(px($0.0))),\(f(py($0.1)))" }.joined(separator: " ")
            s += #"<polyline fill="none" stroke="\#(color)" stroke-width="1.8" points="\#(points)"><title>\#(name) \#(title)</title></polyline>"# + "\n"
            if sorted.count <= 30 {
                for p in sorted {
                    s += #"<circle cx="\#(f(px(p.0)))" cy="\#(f(py(p.1)))" r="2.5" fill="\#(color)"/>"# + "\n"
                }
            }
        }

        // Legend, top right inside the plot area.
        var ly = plotT + 16
        for (series, color, name) in [(train, trainColor, "train"), (test, testColor, "test")] where !series.isEmpty {
            let lx = plotR - 70
            s += #"<line x1="\#(f(lx))" y1="\#(f(ly - 4))" x2="\#(f(lx + 18))" y2="\#(f(ly - 4))" stroke="\#(color)" stroke-width="2.5"/>"# + "\n"
            s += text(lx + 24, ly, name, anchor: "start")
            ly += 16
        }
        return s + "</g>\n"
    }

    /// A non-empty range around [lo, hi].
    static func widen(_ lo: Double, _ hi: Double) -> (Double, Double) {
        if hi > lo { return (lo, hi) }
        let pad = lo == 0 ? 1 : abs(lo) * 0.1
        return (lo - pad, hi + pad)
    }

    /// About five "nice" ticks (1, 2, 5 x 10^k apart) covering [lo, hi].
    static func ticks(_ lo: Double, _ hi: Double) -> (values: [Double], step: Double) {
        let range = hi - lo
        guard range > 0, range.isFinite else { return ([lo], 1) }
        let rough = range / 5
        let mag = pow(10, (log10(rough)).rounded(.down))
        let frac = rough / mag
        let step = (frac < 1.5 ? 1 : frac < 3.5 ? 2 : frac < 7.5 ? 5 : 10) * mag
        let first = (lo / step).rounded(.down), last = (hi / step).rounded(.up)
        guard last - first < 100 else { return ([lo, hi], range) }
        return (stride(from: first, through: last, by: 1).map { $0 * step }, step)
    }

    static func label(_ v: Double, _ step: Double) -> String {
        guard v.isFinite else { return "" }
        let v = Swift.abs(v) < Swift.abs(step) * 1e-6 ? 0 : v
        let decimals = max(0, min(8, Int(-(log10(step)).rounded(.down))))
        let abs = Swift.abs(v)
        if abs >= 1e6 || (abs > 0 && abs < 1e-4) { return String(format: "%.2g", v) }
        let s = String(format: "%.\(decimals)f", v)
        return s == "-0" ? "0" : s
    }

    static func text(_ x: Double, _ y: Double, _ s: String, anchor: String, extra: String = "") -> String {
        #"<text x="\#(f(x))" y="\#(f(y))" text-anchor="\#(anchor)"\#(extra)>\#(escape(s))</text>"# + "\n"
    }

    static func f(_ v: Double) -> String { v.isFinite ? String(format: "%.2f", v) : "0" }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}
