import VoiceCoreTime

/// What the platform can store: the limits every value must meet before it is published, so that
/// nothing accepted at the edge is refused later by a projection.
///
/// The read models are Postgres `text`, `integer` and `json`/`jsonb` columns
/// (`database/migrations`). Postgres refuses a NUL in `text` (SQLSTATE 22021) and `\u0000` in
/// `jsonb` (22P05), and an `integer` above 2,147,483,647 (22003). A value past those limits was
/// answered 2xx, published, and then refused by the projection, so its call or lead never got a
/// row. The edge checks its input against these limits before it publishes (400 or 422 naming the
/// field) and each command's `validate()` applies them again, so no path publishes a command the
/// read models cannot hold.
///
/// Beyond what Postgres refuses, stored text carries no other C0 control character — nothing we
/// store needs one, and they hide in logs and exports — except tab, line feed and carriage return
/// in free text (transcripts, notes). Identifiers and one-line text have documented lengths that
/// hold every provider's ids with room to spare:
///
/// | kind | limit | examples |
/// |---|---|---|
/// | ``Text/identifier`` | 1–128 characters, no spaces | `CallSid` (34), Telnyx `call_control_id` (about 80), API secrets |
/// | ``Text/line`` | 200 characters | a contact's or tenant's name, a time zone |
/// | ``Text/freeText`` | the field's own limit | transcript text (10,000), lead notes (5,000) |
/// | integer | 0–2,147,483,647 (Postgres `integer`) | durations, transcript sequences, rate limits |
///
/// ```swift
/// try Storable.check(callSid, "CallSid", as: .identifier)
/// try Storable.check(duration, "CallDuration")
/// ```
public enum Storable {
    /// How a string is used, which decides what it may contain.
    public enum Text: Sendable {
        /// An id from a provider or tenant: printable, no spaces, at most ``identifierLength``.
        case identifier
        /// One line of text: no control characters, at most ``lineLength`` unless a field says otherwise.
        case line
        /// Text a person wrote or said: tab, line feed and carriage return allowed, no other control character.
        case freeText
    }

    /// Twilio SIDs are 34 characters, Telnyx call control ids about 80.
    public static let identifierLength = 128
    public static let lineLength = 200
    /// RFC 5321's longest address; it also fits the unique index on `lower(email)` (an index entry
    /// holds at most 2,704 bytes, SQLSTATE 54000 past it).
    public static let emailLength = 254
    /// The largest Postgres `integer`.
    public static let integerMaximum = Int(Int32.max)

    /// Refuses text the platform cannot store or does not accept for its kind; nil passes.
    /// - Parameters:
    ///   - field: named in the error as given (`data.provider_call_id`, `CallSid`, `body.name`).
    ///   - maxLength: characters (Unicode scalars, as JSON Schema counts); defaults to the kind's.
    public static func check(_ value: String?, _ field: String, as kind: Text, maxLength: Int? = nil) throws(MessageDecodingError) {
        guard let value else { return }
        // This runs for every field of every webhook: bytes, not scalars. A C0 control or a space
        // is one UTF-8 byte that never occurs inside a multi-byte sequence.
        let utf8 = value.utf8
        for byte in utf8 where byte <= 0x20 {
            if byte == 0x20 {
                if kind == .identifier { throw .invalid(field, "must not contain spaces") }
            } else if kind != .freeText || (byte != 0x09 && byte != 0x0A && byte != 0x0D) {
                throw .invalid(field, "must not contain \(byte == 0 ? "a NUL" : "a control character") (U+\(hex4(UInt32(byte))))")
            }
        }
        if kind == .identifier, utf8.isEmpty { throw .invalid(field, "must not be empty") }
        let limit = maxLength ?? (kind == .identifier ? identifierLength : kind == .line ? lineLength : Int.max)
        // At most `limit` bytes means at most `limit` scalars: only long text is counted.
        if utf8.count > limit, value.unicodeScalars.count > limit { throw .invalid(field, "must be at most \(limit) characters") }
    }

    /// Refuses an integer outside `range`, by default what a Postgres `integer` column holds
    /// (never negative: no count or duration is).
    public static func check<Value: BinaryInteger>(_ value: Value?, _ field: String, in range: ClosedRange<Int> = 0...integerMaximum) throws(MessageDecodingError) {
        guard let value else { return }
        guard let exact = Int(exactly: value), range.contains(exact) else {
            throw .invalid(field, "must be between \(range.lowerBound) and \(range.upperBound)")
        }
    }

    /// Every name and value of a provider's field map (kept as sent): free text, names one line long.
    public static func check(fields: [String: String], prefix: String = "") throws(MessageDecodingError) {
        for (name, value) in fields {
            try check(name, prefix + name, as: .freeText, maxLength: lineLength)
            try check(value, prefix + name, as: .freeText)
        }
    }

    private static func hex4(_ code: UInt32) -> String {
        let digits = String(code, radix: 16, uppercase: true)
        return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }
}

/// Checks shared by the payload types; each mirrors a JSON Schema keyword in `schemas/`.
enum Check {
    /// E.164: `+` then 2 to 15 digits, the first not 0 (`^\+[1-9][0-9]{1,14}$`).
    static func e164(_ value: String, _ field: String) throws(MessageDecodingError) {
        let bytes = Array(value.utf8)
        guard bytes.count >= 3, bytes.count <= 16, bytes[0] == UInt8(ascii: "+"), bytes[1] != UInt8(ascii: "0"),
              bytes.dropFirst().allSatisfy({ $0 >= 48 && $0 <= 57 }) else {
            throw .invalid("data.\(field)", "must be an E.164 phone number like +14155550123")
        }
    }

    static func e164(_ value: String?, _ field: String) throws(MessageDecodingError) {
        if let value { try e164(value, field) }
    }

    /// A deliberately simple email shape (`local@domain.tld`), as the schema's `format: email`.
    static func email(_ value: String?, _ field: String) throws(MessageDecodingError) {
        guard let value else { return }
        try Storable.check(value, "data.\(field)", as: .line, maxLength: Storable.emailLength)
        let parts = value.split(separator: "@", omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[0].isEmpty, parts[1].contains("."), !parts[1].hasPrefix("."), !parts[1].hasSuffix("."),
              !value.contains(where: { $0.isWhitespace }) else {
            throw .invalid("data.\(field)", "must be an email address")
        }
    }

    /// Optional contact details: a storable name, a valid phone and email when present, and at
    /// least one of the three.
    static func contactDetails(name: String?, phone: String?, email: String?, missing: String) throws(MessageDecodingError) {
        try Storable.check(name, "data.name", as: .line)
        try e164(phone, "phone")
        try Check.email(email, "email")
        if phone == nil && email == nil && name == nil { throw .invalid("data", missing) }
    }

    static func range<T: Comparable>(_ value: T, _ bounds: ClosedRange<T>, _ field: String) throws(MessageDecodingError) {
        guard bounds.contains(value) else { throw .invalid("data.\(field)", "must be between \(bounds.lowerBound) and \(bounds.upperBound)") }
    }

    static func nonNegative<T: Comparable & Numeric>(_ value: T?, _ field: String) throws(MessageDecodingError) {
        if let value, value < 0 { throw .invalid("data.\(field)", "must not be negative") }
    }

    static func notEmpty(_ value: String, _ field: String) throws(MessageDecodingError) {
        if value.isEmpty { throw .invalid("data.\(field)", "must not be empty") }
    }

    /// JSON Schema's `maxLength` counts code points; a string of at most `limit` UTF-8 bytes has at
    /// most that many, so only long strings are counted (grapheme counting would cost per event).
    static func maxLength(_ value: String?, _ limit: Int, _ field: String) throws(MessageDecodingError) {
        guard let value, value.utf8.count > limit else { return }
        if value.unicodeScalars.count > limit { throw .invalid("data.\(field)", "must be at most \(limit) characters") }
    }

    /// `HH:MM`, 00:00 to 24:00. `path` is the field's full path (it sits in nested settings).
    static func clockTime(_ value: String, path: String) throws(MessageDecodingError) {
        let parts = value.split(separator: ":")
        guard value.count == 5, parts.count == 2, let h = Int(parts[0]), let m = Int(parts[1]), (0...24).contains(h), (0...59).contains(m), h < 24 || m == 0 else {
            throw .invalid(path, "must be a time of day like 09:30")
        }
    }
}
