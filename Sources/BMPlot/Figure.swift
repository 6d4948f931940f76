import Foundation

/// A figure described as data; `Gnuplot.render` turns it into FIG.gp + FIG.dat +
/// FIG.png (or .svg). Everything is emitted in array order (never by iterating a
/// dictionary), so the same figure gives byte-identical files.
public struct Series: Sendable {
    public var title: String
    public var points: [(Double, Double)]
    /// A shaded band around the line, (low, high) at each point (e.g. min–max over seeds).
    public var band: [(Double, Double)]? = nil
    /// Points only (one dot per seed, say), no line.
    public var dots = false
    /// A mean with its interval drawn as an error bar at x, in the series' colour.
    public var summary: (x: Double, mean: Double, low: Double, high: Double)? = nil
    /// A line in the series' colour drawn with its points, without a key entry (the mean
    /// through one dot per seed, say).
    public var line: [(Double, Double)]? = nil
    public init(_ title: String, _ points: [(Double, Double)], band: [(Double, Double)]? = nil) {
        precondition(band == nil || band!.count == points.count, "a band needs one (low, high) per point")
        self.title = title; self.points = points; self.band = band
    }
}

public struct Panel: Sendable {
    public var title: String
    public var xlabel: String, ylabel: String
    public var logX = false, logY = false
    public var yRange: ClosedRange<Double>? = nil
    /// The x axis' extent (default: fitted to the data).
    public var xRange: ClosedRange<Double>? = nil
    /// Ticks at these x values, labelled with them (default: chosen from the data).
    public var xTics: [Double]? = nil
    /// gnuplot key position, e.g. "top left", "bottom right".
    public var key = "top left"
    /// Tick labels of large numbers in engineering form (120k, 3.5G) so they do not run together.
    public var engineeringX = false
    /// A heatmap's colour scale (fitted to its values unless given), and its tick step.
    public var colourRange: ClosedRange<Double>? = nil
    public var yTickStep: Double? = nil
    /// Named x positions (conditions on a categorical axis) instead of numbers.
    public var xTicLabels: [(Double, String)]? = nil
    public var series: [Series]
    /// A heatmap instead of lines: values[i][j] at (x[i], y[j]).
    public var heatmap: (x: [Double], y: [Double], values: [[Double]], label: String)? = nil
    public init(title: String, xlabel: String, ylabel: String, logX: Bool = false, logY: Bool = false,
                yRange: ClosedRange<Double>? = nil, key: String = "top left", series: [Series]) {
        self.title = title; self.xlabel = xlabel; self.ylabel = ylabel
        self.logX = logX; self.logY = logY; self.yRange = yRange; self.key = key; self.series = series
    }
    public static func heat(title: String, xlabel: String, ylabel: String, x: [Double], y: [Double], values: [[Double]], label: String) -> Panel {
        var p = Panel(title: title, xlabel: xlabel, ylabel: ylabel, series: [])
        p.heatmap = (x, y, values, label)
        return p
    }
}

public struct Figure: Sendable {
    public var name: String
    public var title: String
    public var panels: [Panel]
    /// Pixel size of the PNG (panels side by side).
    public var width: Int, height: Int
    public init(name: String, title: String, panels: [Panel], width: Int? = nil, height: Int = 420) {
        self.name = name; self.title = title; self.panels = panels
        self.width = width ?? 560 * max(1, panels.count); self.height = height
    }
}

public enum FigureFormat: String, Sendable, CaseIterable { case png, svg }
