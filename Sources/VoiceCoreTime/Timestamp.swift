import Foundation

/// An instant in UTC with microsecond precision, exact (unlike `Date`, a `Double`).
///
/// Its text form is RFC 3339 in UTC with six fraction digits, `2026-11-24T19:46:00.123456Z`: the
/// `time` of every event envelope and the form Postgres `timestamptz` accepts.
///
/// ```swift
/// let now = Timestamp.now
/// let text = now.rfc3339                      // "2026-11-24T19:46:00.123456Z"
/// let again = Timestamp(rfc3339: text)        // == now
/// ```
public struct Timestamp: Sendable, Hashable, Comparable, Codable, CustomStringConvertible {
    /// Microseconds since 1970-01-01T00:00:00Z.
    public var microsecondsSinceEpoch: Int64

    public init(microsecondsSinceEpoch: Int64) {
        self.microsecondsSinceEpoch = microsecondsSinceEpoch
    }

    /// The nearest microsecond to `date`.
    public init(_ date: Date) {
        microsecondsSinceEpoch = Int64((date.timeIntervalSince1970 * 1_000_000).rounded())
    }

    /// The current time.
    public static var now: Timestamp {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return Timestamp(microsecondsSinceEpoch: Int64(spec.tv_sec) * 1_000_000 + Int64(spec.tv_nsec) / 1000)
    }

    /// Milliseconds since the epoch (the time part of UUIDv7 and of Redis stream ids).
    public var millisecondsSinceEpoch: Int64 {
        microsecondsSinceEpoch >= 0 ? microsecondsSinceEpoch / 1000 : (microsecondsSinceEpoch - 999) / 1000
    }

    public var date: Date { Date(timeIntervalSince1970: Double(microsecondsSinceEpoch) / 1_000_000) }

    public static func < (lhs: Timestamp, rhs: Timestamp) -> Bool {
        lhs.microsecondsSinceEpoch < rhs.microsecondsSinceEpoch
    }

    public func adding(microseconds: Int64) -> Timestamp {
        Timestamp(microsecondsSinceEpoch: microsecondsSinceEpoch + microseconds)
    }

    public var description: String { rfc3339 }

    // MARK: RFC 3339

    /// `YYYY-MM-DDTHH:MM:SS.ffffffZ` (years 0000–9999).
    public var rfc3339: String {
        String(unsafeUninitializedCapacity: Self.rfc3339Length) { out in
            writeRFC3339(to: out.baseAddress!)
            return Self.rfc3339Length
        }
    }

    /// The length of the RFC 3339 text: `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
    public static let rfc3339Length = 27

    /// Appends the RFC 3339 text without building a String.
    public func appendRFC3339(to buffer: inout [UInt8]) {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: Self.rfc3339Length) { out in
            writeRFC3339(to: out.baseAddress!)
            buffer.append(contentsOf: UnsafeBufferPointer(out))
        }
    }

    /// The RFC 3339 text as UTF-8 bytes.
    public var rfc3339Bytes: [UInt8] {
        // Written on the stack, then copied: `Array(unsafeUninitializedCapacity:)` calls the
        // unspecialized allocator, which looks up the array's metadata at run time.
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: Self.rfc3339Length) { out in
            writeRFC3339(to: out.baseAddress!)
            return Array(UnsafeBufferPointer(out))
        }
    }

    /// Writes the ``rfc3339Length`` bytes of the RFC 3339 text at `out`.
    public func writeRFC3339(to out: UnsafeMutablePointer<UInt8>) {
        var seconds = microsecondsSinceEpoch / 1_000_000
        var micros = microsecondsSinceEpoch % 1_000_000
        if micros < 0 { micros += 1_000_000; seconds -= 1 }
        var days = seconds / 86_400
        var secondOfDay = seconds % 86_400
        if secondOfDay < 0 { secondOfDay += 86_400; days -= 1 }
        let (y, m, d) = Self.civil(fromDays: days)
        func put(_ value: Int64, at offset: Int, width: Int) {
            var v = value
            var k = offset + width - 1
            while k >= offset {
                out[k] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: v % 10)
                v /= 10
                k -= 1
            }
        }
        put(y, at: 0, width: 4); out[4] = UInt8(ascii: "-")
        put(m, at: 5, width: 2); out[7] = UInt8(ascii: "-")
        put(d, at: 8, width: 2); out[10] = UInt8(ascii: "T")
        put(secondOfDay / 3600, at: 11, width: 2); out[13] = UInt8(ascii: ":")
        put(secondOfDay / 60 % 60, at: 14, width: 2); out[16] = UInt8(ascii: ":")
        put(secondOfDay % 60, at: 17, width: 2); out[19] = UInt8(ascii: ".")
        put(micros, at: 20, width: 6); out[26] = UInt8(ascii: "Z")
    }

    /// Parses RFC 3339 / ISO 8601 date-times: `2026-11-24T19:46:00Z`, `…:00.5+01:30`, and the
    /// Postgres form with a space and a short offset (`2026-11-24 19:46:00.123456+00`).
    /// Fractions beyond microseconds are truncated. `nil` when the text is not such a time.
    public init?(rfc3339 text: String) {
        var text = text
        guard let parsed = text.withUTF8({ Self.parse($0) }) else { return nil }
        self = parsed
    }

    /// Parses the UTF-8 bytes of a date-time (see ``init(rfc3339:)``).
    public init?(rfc3339Bytes bytes: [UInt8]) {
        guard let parsed = bytes.withUnsafeBufferPointer({ Self.parse($0) }) else { return nil }
        self = parsed
    }

    /// The instant of a civil date and time at a UTC offset (`offsetSeconds` east of UTC), nil
    /// when a field is out of range.
    public init?(year: Int, month: Int, day: Int, hour: Int, minute: Int, second: Int, microsecond: Int = 0, offsetSeconds: Int = 0) {
        guard (1...12).contains(month), (1...31).contains(day), (0..<24).contains(hour), (0..<60).contains(minute), (0..<61).contains(second),
              (0..<1_000_000).contains(microsecond) else { return nil }
        let days = Self.daysFromCivil(Int64(year), Int64(month), Int64(day))
        let seconds = days * 86_400 + Int64(hour * 3600 + minute * 60 + second - offsetSeconds)
        self.init(microsecondsSinceEpoch: seconds * 1_000_000 + Int64(microsecond))
    }

    private static func parse(_ text: UnsafeBufferPointer<UInt8>) -> Timestamp? {
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
        guard let year = number(4), expect(UInt8(ascii: "-")), let month = number(2), expect(UInt8(ascii: "-")), let day = number(2),
              (1...12).contains(month), (1...31).contains(day) else { return nil }
        guard i < text.count, text[i] == UInt8(ascii: " ") || text[i] == UInt8(ascii: "T") || text[i] == UInt8(ascii: "t") else { return nil }
        i += 1
        guard let hour = number(2), expect(UInt8(ascii: ":")), let minute = number(2), expect(UInt8(ascii: ":")), let second = number(2),
              hour < 24, minute < 60, second < 61 else { return nil }
        var micros: Int64 = 0
        if i < text.count, text[i] == UInt8(ascii: ".") {
            i += 1
            var digits = 0
            while i < text.count, text[i] >= 48, text[i] <= 57 {
                if digits < 6 { micros = micros * 10 + Int64(text[i] - 48) }
                digits += 1
                i += 1
            }
            guard digits > 0 else { return nil }
            for _ in digits..<max(digits, 6) { micros *= 10 }
        }
        var offsetSeconds: Int64 = 0
        guard i < text.count else { return nil }
        let sign = text[i]
        if sign == UInt8(ascii: "Z") || sign == UInt8(ascii: "z") {
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
        guard i == text.count else { return nil }
        let days = daysFromCivil(year, month, day)
        let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offsetSeconds
        return Timestamp(microsecondsSinceEpoch: seconds * 1_000_000 + micros)
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

    // MARK: Codable (as its RFC 3339 text)

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let text = try container.decode(String.self)
        guard let parsed = Timestamp(rfc3339: text) else {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: "'\(text)' is not an RFC 3339 date-time")
        }
        self = parsed
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rfc3339)
    }
}
