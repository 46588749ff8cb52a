import Foundation

/// The geometry of the *Now* page's 30-day chart, an inline `<svg>` the template draws: one bar
/// per day of the tenant's (answered at the bottom, not answered stacked on top), its height in
/// proportion to the busiest day, a `<title>` per bar and a description of the whole for screen
/// readers. Computed here, so the page needs no script and no library to show it.
enum ConsoleChart {
    /// The drawing's coordinate system (`viewBox`); the SVG scales to its box.
    static let width = 720.0, height = 220.0
    static let left = 44.0, right = 712.0, top = 14.0, baseline = 190.0

    /// The template's `chart`: `bars` (x, width, the two stacked heights and their y, a label),
    /// `ticks` (a few day labels under the axis), the axis and its maximum, and the texts.
    static func daily(_ days: [ConsoleRecord], from: String, to: String) -> [String: Any] {
        let maximum = max(1, days.map { $0.int("calls") ?? 0 }.max() ?? 0)
        let slot = (right - left) / Double(max(1, days.count))
        let barWidth = slot * 0.72
        let plotHeight = baseline - top
        var bars: [[String: Any]] = []
        for (index, day) in days.enumerated() {
            let calls = day.int("calls") ?? 0, answered = min(day.int("answered") ?? 0, calls)
            let other = calls - answered
            let answeredHeight = Double(answered) / Double(maximum) * plotHeight
            let otherHeight = Double(other) / Double(maximum) * plotHeight
            let date = day.string("day") ?? ""
            bars.append([
                "day": date,
                "x": number(left + Double(index) * slot + (slot - barWidth) / 2),
                "width": number(barWidth),
                "answeredY": number(baseline - answeredHeight),
                "answeredHeight": number(answeredHeight),
                "otherY": number(baseline - answeredHeight - otherHeight),
                "otherHeight": number(otherHeight),
                "label": "\(ConsoleFormat.date(isoDate: date)): \(calls) \(calls == 1 ? "call" : "calls"), \(answered) answered, "
                    + "\(day.int("missed") ?? 0) missed, \(day.int("leads") ?? 0) \(day.int("leads") == 1 ? "lead" : "leads")",
            ])
        }
        // A label under the first bar, every seventh, and the last.
        var tickIndexes = Array(stride(from: 0, to: days.count, by: 7))
        if let last = days.indices.last, tickIndexes.last.map({ last - $0 >= 4 }) ?? true { tickIndexes.append(last) }
        let ticks: [[String: Any]] = tickIndexes.map { index in
            let date = days[index].string("day") ?? ""
            return ["x": number(left + (Double(index) + 0.5) * slot), "y": number(baseline + 16), "text": shortDate(date)]
        }
        return [
            "width": number(width), "height": number(height),
            "left": number(left), "right": number(right), "baseline": number(baseline),
            "labelX": number(left - 6), "topLabelY": number(top + 4),
            "maximum": String(maximum),
            "from": ConsoleFormat.date(isoDate: from), "to": ConsoleFormat.date(isoDate: to),
            "bars": bars, "ticks": ticks,
            "description": description(days),
        ]
    }

    /// What the chart shows, in words.
    static func description(_ days: [ConsoleRecord]) -> String {
        let calls = days.reduce(0) { $0 + ($1.int("calls") ?? 0) }
        let answered = days.reduce(0) { $0 + ($1.int("answered") ?? 0) }
        var text = "\(days.count) days: \(calls) calls, \(answered) answered."
        if let busiest = days.max(by: { ($0.int("calls") ?? 0) < ($1.int("calls") ?? 0) }), let most = busiest.int("calls"), most > 0 {
            text += " The busiest day was \(ConsoleFormat.date(isoDate: busiest.string("day") ?? "")) with \(most) \(most == 1 ? "call" : "calls")."
        }
        return text
    }

    /// "7 Dec" of `2026-12-07`.
    static func shortDate(_ isoDate: String) -> String {
        let full = ConsoleFormat.date(isoDate: isoDate).split(separator: " ")
        return full.count == 3 ? "\(full[0]) \(full[1])" : isoDate
    }

    /// A coordinate with one decimal, as SVG attributes take it.
    static func number(_ value: Double) -> String {
        String(format: "%.1f", value)
    }
}
