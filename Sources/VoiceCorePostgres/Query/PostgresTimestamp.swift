import Foundation

/// Converts `timestamptz` text (ISO DateStyle) to and from `Date`, at microsecond precision.
enum PostgresTimestamp {
    /// `2026-11-24T19:46:00.123456Z`.
    static func format(_ date: Date) -> String {
        var bytes: [UInt8] = []
        format(date, into: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Appends `2026-11-24T19:46:00.123456Z` (years 0-9999).
    static func format(_ date: Date, into buffer: inout [UInt8]) {
        let totalMicros = Int64((date.timeIntervalSince1970 * 1_000_000).rounded())
        var seconds = totalMicros / 1_000_000
        var micros = totalMicros % 1_000_000
        if micros < 0 { micros += 1_000_000; seconds -= 1 }
        var days = seconds / 86_400
        var secondOfDay = seconds % 86_400
        if secondOfDay < 0 { secondOfDay += 86_400; days -= 1 }
        let (y, m, d) = civil(fromDays: days)
        func digits(_ value: Int64, _ width: Int) {
            var divisor: Int64 = 1
            for _ in 1..<width { divisor *= 10 }
            var v = value
            while divisor > 0 {
                buffer.append(UInt8(ascii: "0") + UInt8(v / divisor % 10))
                v %= divisor
                divisor /= 10
            }
        }
        digits(y, 4); buffer.append(UInt8(ascii: "-"))
        digits(m, 2); buffer.append(UInt8(ascii: "-"))
        digits(d, 2); buffer.append(UInt8(ascii: "T"))
        digits(secondOfDay / 3600, 2); buffer.append(UInt8(ascii: ":"))
        digits(secondOfDay / 60 % 60, 2); buffer.append(UInt8(ascii: ":"))
        digits(secondOfDay % 60, 2); buffer.append(UInt8(ascii: "."))
        digits(micros, 6); buffer.append(UInt8(ascii: "Z"))
    }

    /// Parses `2026-11-24 19:46:00.123456+00` (also `T`, `Z`, `+05:30`, no fraction).
    static func parse(_ text: [UInt8]) -> Date? {
        var i = 0
        func number(_ width: Int) -> Int64? {
            guard i + width <= text.count else { return nil }
            var value: Int64 = 0
            for _ in 0..<width {
                let c = text[i]
                guard c >= 48, c <= 57 else { return nil }
                value = value * 10 + Int64(c - 48)
                i += 1
            }
            return value
        }
        func expect(_ c: UInt8) -> Bool {
            guard i < text.count, text[i] == c else { return false }
            i += 1
            return true
        }
        guard let year = number(4), expect(UInt8(ascii: "-")), let month = number(2), expect(UInt8(ascii: "-")), let day = number(2) else { return nil }
        guard i < text.count, text[i] == UInt8(ascii: " ") || text[i] == UInt8(ascii: "T") else { return nil }
        i += 1
        guard let hour = number(2), expect(UInt8(ascii: ":")), let minute = number(2), expect(UInt8(ascii: ":")), let second = number(2) else { return nil }
        var micros: Int64 = 0
        if i < text.count, text[i] == UInt8(ascii: ".") {
            i += 1
            var digits = 0
            while i < text.count, text[i] >= 48, text[i] <= 57 {
                if digits < 6 { micros = micros * 10 + Int64(text[i] - 48) }
                digits += 1
                i += 1
            }
            for _ in digits..<max(digits, 6) { micros *= 10 }
        }
        var offsetSeconds: Int64 = 0
        if i < text.count {
            let sign = text[i]
            if sign == UInt8(ascii: "Z") {
                i += 1
            } else if sign == UInt8(ascii: "+") || sign == UInt8(ascii: "-") {
                i += 1
                guard let oh = number(2) else { return nil }
                var om: Int64 = 0, os: Int64 = 0
                if expect(UInt8(ascii: ":")) { guard let v = number(2) else { return nil }; om = v }
                if expect(UInt8(ascii: ":")) { guard let v = number(2) else { return nil }; os = v }
                offsetSeconds = (oh * 3600 + om * 60 + os) * (sign == UInt8(ascii: "-") ? -1 : 1)
            } else {
                return nil
            }
        }
        guard i == text.count else { return nil }
        let days = daysFromCivil(year, month, day)
        let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offsetSeconds
        return Date(timeIntervalSince1970: Double(seconds) + Double(micros) / 1_000_000)
    }

    // Howard Hinnant's civil-calendar algorithms (proleptic Gregorian).
    private static func daysFromCivil(_ y0: Int64, _ m: Int64, _ d: Int64) -> Int64 {
        let y = m <= 2 ? y0 - 1 : y0
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    private static func civil(fromDays z0: Int64) -> (Int64, Int64, Int64) {
        let z = z0 + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let y = yoe + era * 400
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp + (mp < 10 ? 3 : -9)
        return (m <= 2 ? y + 1 : y, m, d)
    }
}
