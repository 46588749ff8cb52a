import VoiceCoreTime

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
        let parts = value.split(separator: "@", omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[0].isEmpty, parts[1].contains("."), !parts[1].hasPrefix("."), !parts[1].hasSuffix("."),
              !value.contains(where: { $0.isWhitespace }) else {
            throw .invalid("data.\(field)", "must be an email address")
        }
    }

    /// Optional contact details: a valid phone and email when present, and at least one of the three.
    static func contactDetails(name: String?, phone: String?, email: String?, missing: String) throws(MessageDecodingError) {
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
