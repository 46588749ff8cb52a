import Foundation
import VoiceCoreTime

/// A Swift type a column's text value can be decoded into.
public protocol PostgresDecodable: Sendable {
    /// Decodes the column's text form, or `nil` for SQL NULL.
    /// - Throws: ``PostgresDecodingFailure`` saying why the text does not fit.
    init(postgresText text: [UInt8]?) throws(PostgresDecodingFailure)
}

/// Why a value could not be decoded; ``PostgresRow`` adds the column and raises a ``PostgresError``.
public struct PostgresDecodingFailure: Error, Sendable {
    public var reason: String
    public init(_ reason: String) { self.reason = reason }

    static let null = PostgresDecodingFailure("is NULL (decode into an Optional to accept NULL)")
}

private func nonNull(_ text: [UInt8]?) throws(PostgresDecodingFailure) -> [UInt8] {
    guard let text else { throw .null }
    return text
}

private func describe(_ text: [UInt8]) -> String {
    "'" + String(decoding: text.prefix(40), as: UTF8.self) + (text.count > 40 ? "…'" : "'")
}

extension String: PostgresDecodable {
    public init(postgresText text: [UInt8]?) throws(PostgresDecodingFailure) {
        self = String(decoding: try nonNull(text), as: UTF8.self)
    }
}

extension Int: PostgresDecodable {
    public init(postgresText text: [UInt8]?) throws(PostgresDecodingFailure) {
        let bytes = try nonNull(text)
        guard let value = Int(String(decoding: bytes, as: UTF8.self)) else { throw PostgresDecodingFailure("\(describe(bytes)) is not an integer") }
        self = value
    }
}

extension Int64: PostgresDecodable {
    public init(postgresText text: [UInt8]?) throws(PostgresDecodingFailure) {
        self = Int64(try Int(postgresText: text))
    }
}

extension Int32: PostgresDecodable {
    public init(postgresText text: [UInt8]?) throws(PostgresDecodingFailure) {
        let bytes = try nonNull(text)
        guard let value = Int32(String(decoding: bytes, as: UTF8.self)) else { throw PostgresDecodingFailure("\(describe(bytes)) is not a 32-bit integer") }
        self = value
    }
}

extension Double: PostgresDecodable {
    public init(postgresText text: [UInt8]?) throws(PostgresDecodingFailure) {
        let bytes = try nonNull(text)
        let string = String(decoding: bytes, as: UTF8.self)
        switch string {
        case "NaN": self = .nan
        case "Infinity": self = .infinity
        case "-Infinity": self = -.infinity
        default:
            guard let value = Double(string) else { throw PostgresDecodingFailure("\(describe(bytes)) is not a number") }
            self = value
        }
    }
}

extension Bool: PostgresDecodable {
    public init(postgresText text: [UInt8]?) throws(PostgresDecodingFailure) {
        let bytes = try nonNull(text)
        switch bytes {
        case [UInt8(ascii: "t")]: self = true
        case [UInt8(ascii: "f")]: self = false
        default: throw PostgresDecodingFailure("\(describe(bytes)) is not a boolean")
        }
    }
}

extension UUID: PostgresDecodable {
    /// Decodes the 8-4-4-4-12 hex form Postgres prints (either case), digit pair by digit pair:
    /// Foundation's `UUID(uuidString:)` goes through sscanf on Linux, which cost a replay a fifth
    /// of its CPU when it decoded two ids a row.
    public init(postgresText text: [UInt8]?) throws(PostgresDecodingFailure) {
        let bytes = try nonNull(text)
        guard bytes.count == 36, bytes[8] == 45, bytes[13] == 45, bytes[18] == 45, bytes[23] == 45 else {
            throw PostgresDecodingFailure("\(describe(bytes)) is not a UUID")
        }
        var uuid: uuid_t = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var i = 0
        do {
            try withUnsafeMutableBytes(of: &uuid) { (out: UnsafeMutableRawBufferPointer) throws(PostgresDecodingFailure) in
                for k in 0..<16 {
                    if i == 8 || i == 13 || i == 18 || i == 23 { i += 1 }
                    out[k] = try hexDigit(bytes[i]) << 4 | hexDigit(bytes[i + 1])
                    i += 2
                }
            }
        } catch {
            throw PostgresDecodingFailure("\(describe(bytes)) is not a UUID")
        }
        self = UUID(uuid: uuid)
    }
}

extension Timestamp: PostgresDecodable {
    /// Decodes `timestamptz` exactly (sessions run with TimeZone UTC and ISO dates).
    public init(postgresText text: [UInt8]?) throws(PostgresDecodingFailure) {
        let bytes = try nonNull(text)
        guard let value = Timestamp(rfc3339Bytes: bytes) else { throw PostgresDecodingFailure("\(describe(bytes)) is not a timestamp with time zone") }
        self = value
    }
}

extension Date: PostgresDecodable {
    /// Decodes `timestamptz`.
    public init(postgresText text: [UInt8]?) throws(PostgresDecodingFailure) {
        self = try Timestamp(postgresText: text).date
    }
}

extension PostgresBytes: PostgresDecodable {
    /// Decodes `bytea` in hex output form (`\x…`, the default since Postgres 9.0).
    public init(postgresText text: [UInt8]?) throws(PostgresDecodingFailure) {
        let bytes = try nonNull(text)
        guard bytes.count >= 2, bytes[0] == UInt8(ascii: "\\"), bytes[1] == UInt8(ascii: "x"), bytes.count % 2 == 0 else {
            throw PostgresDecodingFailure("is not bytea in hex form")
        }
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count - 2) / 2)
        var i = 2
        while i < bytes.count {
            out.append(try hexDigit(bytes[i]) << 4 | hexDigit(bytes[i + 1]))
            i += 2
        }
        self.init(out)
    }
}

extension PostgresJSON: PostgresDecodable {
    /// Decodes `json`/`jsonb` as its text; use ``PostgresJSON/decode(_:)`` for a typed value.
    public init(postgresText text: [UInt8]?) throws(PostgresDecodingFailure) {
        self.init(rawJSON: try nonNull(text))
    }
}

extension Optional: PostgresDecodable where Wrapped: PostgresDecodable {
    public init(postgresText text: [UInt8]?) throws(PostgresDecodingFailure) {
        guard let text else {
            self = .none
            return
        }
        self = .some(try Wrapped(postgresText: text))
    }
}

/// One hex digit's value (either case).
private func hexDigit(_ c: UInt8) throws(PostgresDecodingFailure) -> UInt8 {
    switch c {
    case 48...57: return c - 48
    case 97...102: return c - 87
    case 65...70: return c - 55
    default: throw PostgresDecodingFailure("has a non-hex digit")
    }
}
