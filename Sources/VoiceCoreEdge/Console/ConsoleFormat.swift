import Foundation
import VoiceCoreTime

/// How the console writes times, durations, money and shares for people (English, as the rest of
/// the console).
enum ConsoleFormat {
    /// "7 Dec 2026, 14:05" in `timeZone`, from an RFC 3339 date-time as the read models answer
    /// it; the text itself when it does not parse (never an invented time).
    static func dateTime(rfc3339 text: String, timeZone: TimeZone) -> String {
        guard let timestamp = Timestamp(rfc3339: text) else { return text }
        return dateTime(timestamp.date, timeZone: timeZone)
    }

    /// "7 Dec 2026, 14:05" in `timeZone`.
    static func dateTime(_ date: Date, timeZone: TimeZone) -> String {
        let parts = calendar(timeZone).dateComponents([.year, .month, .day, .hour, .minute], from: date)
        return "\(day(parts)), \(twoDigits(parts.hour ?? 0)):\(twoDigits(parts.minute ?? 0))"
    }

    /// "14:05:09" in `timeZone`, for events of one day (a call's timeline).
    static func time(rfc3339 text: String, timeZone: TimeZone) -> String {
        guard let timestamp = Timestamp(rfc3339: text) else { return text }
        let parts = calendar(timeZone).dateComponents([.hour, .minute, .second], from: timestamp.date)
        return "\(twoDigits(parts.hour ?? 0)):\(twoDigits(parts.minute ?? 0)):\(twoDigits(parts.second ?? 0))"
    }

    /// "7 Dec 2026" for a calendar date `YYYY-MM-DD` (a business day of the read models); the
    /// text itself when it is not one.
    static func date(isoDate text: String) -> String {
        let fields = text.split(separator: "-")
        guard fields.count == 3, let year = Int(fields[0]), let month = Int(fields[1]), let day = Int(fields[2]), (1...12).contains(month) else { return text }
        return "\(day) \(monthNames[month - 1]) \(year)"
    }

    /// "3 min 12 s", "1 h 04 min", "45 s"; a negative count is "0 s".
    static func duration(seconds: Int) -> String {
        let seconds = max(0, seconds)
        if seconds < 60 { return "\(seconds) s" }
        if seconds < 3600 { return "\(seconds / 60) min \(seconds % 60) s" }
        return "\(seconds / 3600) h \(twoDigits(seconds % 3600 / 60)) min"
    }

    /// "$12.34", "€0.05", "−$3.00"; another currency as "12.34 CHF". `minor`: cents (the
    /// currency's hundredth).
    static func money(minor: Int, currency: String) -> String {
        let sign = minor < 0 ? "−" : ""
        let magnitude = minor.magnitude
        let amount = "\(grouped(Int(magnitude / 100))).\(twoDigits(Int(magnitude % 100)))"
        switch currency.uppercased() {
        case "USD": return "\(sign)$\(amount)"
        case "EUR": return "\(sign)€\(amount)"
        case "GBP": return "\(sign)£\(amount)"
        default: return "\(sign)\(amount) \(currency.uppercased())"
        }
    }

    /// "42%" for 0.42 (rounded to whole percent, or `digits` decimals); "–" for a share of nothing.
    static func percent(_ fraction: Double, digits: Int = 0) -> String {
        guard fraction.isFinite else { return "–" }
        return String(format: "%.\(max(0, digits))f%%", fraction * 100)
    }

    /// `part` of `whole` as a percentage; "–" when `whole` is 0.
    static func percent(_ part: Int, of whole: Int, digits: Int = 0) -> String {
        guard whole != 0 else { return "–" }
        return percent(Double(part) / Double(whole), digits: digits)
    }

    /// "12,345".
    static func grouped(_ number: Int) -> String {
        let digits = String(number.magnitude)
        var result = ""
        for (index, character) in digits.enumerated() {
            if index > 0, (digits.count - index) % 3 == 0 { result.append(",") }
            result.append(character)
        }
        return (number < 0 ? "−" : "") + result
    }

    // MARK: Parts

    private static let monthNames = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    private static func calendar(_ timeZone: TimeZone) -> Calendar {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        return calendar
    }

    private static func day(_ parts: DateComponents) -> String {
        "\(parts.day ?? 1) \(monthNames[max(1, min(12, parts.month ?? 1)) - 1]) \(parts.year ?? 1970)"
    }

    private static func twoDigits(_ value: Int) -> String {
        value < 10 ? "0\(value)" : "\(value)"
    }
}
