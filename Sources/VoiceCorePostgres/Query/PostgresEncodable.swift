import Foundation
import VoiceCoreTime

/// A Swift value that can be sent to Postgres as a parameter or in a COPY row, in text format.
public protocol PostgresEncodable: Sendable {
    /// The parameter type sent with the statement.
    static var postgresType: PostgresDataType { get }
    /// Appends the value's Postgres text form.
    func encodePostgresText(into buffer: inout [UInt8])
    /// `true` for SQL NULL (only `Optional.none`).
    var isPostgresNull: Bool { get }
}

extension PostgresEncodable {
    public var isPostgresNull: Bool { false }
}

/// A value that can be an element of a Postgres array parameter (`unnest($1::bigint[])`).
public protocol PostgresArrayElement: PostgresEncodable {
    static var postgresArrayType: PostgresDataType { get }
}

/// A value that also has Postgres' binary form: the bytes the type's `recv` function reads (what
/// `COPY … (FORMAT binary)` and binary parameters carry). The server then skips parsing text: for
/// uuid, timestamptz and float8 values, and for array literals, that parsing is most of what it
/// does with a parameter.
///
/// A parameter whose ``PostgresEncodable/postgresType`` is a definite type (not `unspecified`)
/// travels in binary. A `String` parameter stays text, so the server can still infer its type
/// (`varchar`, an enum, `jsonb`); an array of strings is `text[]` and travels in binary.
public protocol PostgresBinaryEncodable: PostgresEncodable {
    /// The type whose binary form ``encodePostgresBinary(into:)`` writes (an array's element type).
    static var postgresBinaryType: PostgresDataType { get }
    /// Appends the value's binary form (never called for NULL).
    func encodePostgresBinary(into buffer: inout [UInt8])
}

extension PostgresBinaryEncodable {
    public static var postgresBinaryType: PostgresDataType { postgresType }
}

extension FixedWidthInteger {
    /// Appends the integer in network byte order.
    @inline(__always)
    func appendBigEndian(to buffer: inout [UInt8]) {
        withUnsafeBytes(of: bigEndian) { buffer.append(contentsOf: $0) }
    }
}

extension String: PostgresArrayElement {
    // Unspecified lets `text`, `varchar`, `jsonb` or an enum column accept a string parameter.
    public static var postgresType: PostgresDataType { .unspecified }
    public static var postgresArrayType: PostgresDataType { .textArray }
    public func encodePostgresText(into buffer: inout [UInt8]) { buffer.append(contentsOf: utf8) }
}

extension String: PostgresBinaryEncodable {
    public static var postgresBinaryType: PostgresDataType { .text }
    public func encodePostgresBinary(into buffer: inout [UInt8]) { buffer.append(contentsOf: utf8) }
}

extension Substring: PostgresBinaryEncodable {
    public static var postgresType: PostgresDataType { .unspecified }
    public static var postgresBinaryType: PostgresDataType { .text }
    public func encodePostgresText(into buffer: inout [UInt8]) { buffer.append(contentsOf: utf8) }
    public func encodePostgresBinary(into buffer: inout [UInt8]) { buffer.append(contentsOf: utf8) }
}

extension Int: PostgresArrayElement, PostgresBinaryEncodable {
    public static var postgresType: PostgresDataType { .int8 }
    public static var postgresArrayType: PostgresDataType { .int8Array }
    public func encodePostgresText(into buffer: inout [UInt8]) { appendDecimal(Int64(self), to: &buffer) }
    public func encodePostgresBinary(into buffer: inout [UInt8]) { Int64(self).appendBigEndian(to: &buffer) }
}

extension Int64: PostgresArrayElement, PostgresBinaryEncodable {
    public static var postgresType: PostgresDataType { .int8 }
    public static var postgresArrayType: PostgresDataType { .int8Array }
    public func encodePostgresText(into buffer: inout [UInt8]) { appendDecimal(self, to: &buffer) }
    public func encodePostgresBinary(into buffer: inout [UInt8]) { appendBigEndian(to: &buffer) }
}

/// Appends the decimal digits of `value` without building a String.
func appendDecimal(_ value: Int64, to buffer: inout [UInt8]) {
    if value < 0 { buffer.append(UInt8(ascii: "-")) }
    appendPostgresDecimal(value.magnitude, to: &buffer)
}

/// Appends the decimal digits of `value` without building a String (for a type's text form).
public func appendPostgresDecimal(_ value: UInt64, to buffer: inout [UInt8]) {
    var value = value
    let start = buffer.count
    repeat {
        buffer.append(UInt8(ascii: "0") + UInt8(value % 10))
        value /= 10
    } while value > 0
    buffer[start...].reverse()
}

extension Int32: PostgresArrayElement, PostgresBinaryEncodable {
    public static var postgresType: PostgresDataType { .int4 }
    public static var postgresArrayType: PostgresDataType { .int4Array }
    public func encodePostgresText(into buffer: inout [UInt8]) { appendDecimal(Int64(self), to: &buffer) }
    public func encodePostgresBinary(into buffer: inout [UInt8]) { appendBigEndian(to: &buffer) }
}

extension Double: PostgresArrayElement, PostgresBinaryEncodable {
    public static var postgresType: PostgresDataType { .float8 }
    public static var postgresArrayType: PostgresDataType { .float8Array }
    public func encodePostgresText(into buffer: inout [UInt8]) {
        if isNaN { buffer.append(contentsOf: "NaN".utf8) }
        else if self == .infinity { buffer.append(contentsOf: "Infinity".utf8) }
        else if self == -.infinity { buffer.append(contentsOf: "-Infinity".utf8) }
        else { buffer.append(contentsOf: "\(self)".utf8) }
    }
    /// The IEEE 754 bits, exactly (no decimal round trip).
    public func encodePostgresBinary(into buffer: inout [UInt8]) { bitPattern.appendBigEndian(to: &buffer) }
}

extension Bool: PostgresArrayElement, PostgresBinaryEncodable {
    public static var postgresType: PostgresDataType { .bool }
    public static var postgresArrayType: PostgresDataType { .boolArray }
    public func encodePostgresText(into buffer: inout [UInt8]) { buffer.append(self ? UInt8(ascii: "t") : UInt8(ascii: "f")) }
    public func encodePostgresBinary(into buffer: inout [UInt8]) { buffer.append(self ? 1 : 0) }
}

extension UUID: PostgresArrayElement, PostgresBinaryEncodable {
    public static var postgresType: PostgresDataType { .uuid }
    public static var postgresArrayType: PostgresDataType { .uuidArray }
    public func encodePostgresText(into buffer: inout [UInt8]) {
        // Hex straight from the 16 bytes: `uuidString.lowercased()` costs two allocations per value.
        let digits: StaticString = "0123456789abcdef"
        withUnsafeBytes(of: uuid) { raw in
            digits.withUTF8Buffer { hex in
                for (i, byte) in raw.enumerated() {
                    if i == 4 || i == 6 || i == 8 || i == 10 { buffer.append(UInt8(ascii: "-")) }
                    buffer.append(hex[Int(byte >> 4)])
                    buffer.append(hex[Int(byte & 0x0f)])
                }
            }
        }
    }
    /// The 16 bytes as they are.
    public func encodePostgresBinary(into buffer: inout [UInt8]) {
        withUnsafeBytes(of: uuid) { buffer.append(contentsOf: $0) }
    }
}

extension Date: PostgresArrayElement, PostgresBinaryEncodable {
    public static var postgresType: PostgresDataType { .timestamptz }
    public static var postgresArrayType: PostgresDataType { .timestamptzArray }
    /// RFC 3339 in UTC with microseconds, the precision of `timestamptz`.
    public func encodePostgresText(into buffer: inout [UInt8]) {
        Timestamp(self).appendRFC3339(to: &buffer)
    }
    public func encodePostgresBinary(into buffer: inout [UInt8]) {
        Timestamp(self).encodePostgresBinary(into: &buffer)
    }
}

extension Timestamp: PostgresArrayElement, PostgresBinaryEncodable {
    public static var postgresType: PostgresDataType { .timestamptz }
    public static var postgresArrayType: PostgresDataType { .timestamptzArray }
    /// RFC 3339 in UTC with microseconds: exact, as `timestamptz` stores microseconds.
    public func encodePostgresText(into buffer: inout [UInt8]) {
        appendRFC3339(to: &buffer)
    }
    /// Microseconds since 2000-01-01 00:00 UTC, Postgres' epoch (`timestamptz` is that count).
    public func encodePostgresBinary(into buffer: inout [UInt8]) {
        (microsecondsSinceEpoch &- Self.postgresEpochMicroseconds).appendBigEndian(to: &buffer)
    }
    /// 2000-01-01 00:00 UTC in microseconds since the Unix epoch.
    static let postgresEpochMicroseconds: Int64 = 946_684_800_000_000
}

/// Raw bytes sent as `bytea`.
public struct PostgresBytes: PostgresBinaryEncodable, Hashable {
    public var bytes: [UInt8]
    public init(_ bytes: [UInt8]) { self.bytes = bytes }
    public static var postgresType: PostgresDataType { .bytea }
    public func encodePostgresText(into buffer: inout [UInt8]) {
        let hex: [UInt8] = Array("0123456789abcdef".utf8)
        buffer.reserveCapacity(buffer.count + 2 + bytes.count * 2)
        buffer.append(UInt8(ascii: "\\"))
        buffer.append(UInt8(ascii: "x"))
        for byte in bytes {
            buffer.append(hex[Int(byte >> 4)])
            buffer.append(hex[Int(byte & 0x0f)])
        }
    }
    public func encodePostgresBinary(into buffer: inout [UInt8]) { buffer.append(contentsOf: bytes) }
}

extension Data: PostgresBinaryEncodable {
    public static var postgresType: PostgresDataType { .bytea }
    public func encodePostgresText(into buffer: inout [UInt8]) { PostgresBytes(Array(self)).encodePostgresText(into: &buffer) }
    public func encodePostgresBinary(into buffer: inout [UInt8]) { buffer.append(contentsOf: self) }
}

/// A JSON document sent as `jsonb`: either an `Encodable` value or JSON text you already have.
public struct PostgresJSON: PostgresArrayElement, PostgresBinaryEncodable, Hashable {
    /// The JSON text (UTF-8).
    public var json: [UInt8]

    /// JSON text that is already serialised (it is not validated here; Postgres validates it).
    public init(rawJSON: [UInt8]) { self.json = rawJSON }
    public init(rawJSON: String) { self.json = Array(rawJSON.utf8) }

    /// Encodes a value with `JSONEncoder` (sorted keys, so equal values give equal text).
    public init<Value: Encodable>(_ value: Value) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        self.json = Array(try encoder.encode(value))
    }

    /// Decodes the JSON into a `Decodable` value.
    public func decode<Value: Decodable>(_ type: Value.Type) throws -> Value {
        try JSONDecoder().decode(type, from: Data(json))
    }

    public static var postgresType: PostgresDataType { .jsonb }
    public static var postgresArrayType: PostgresDataType { .jsonbArray }
    public func encodePostgresText(into buffer: inout [UInt8]) { buffer.append(contentsOf: json) }
    /// jsonb's binary form: a format version (1), then the JSON text, which the server parses.
    public func encodePostgresBinary(into buffer: inout [UInt8]) {
        buffer.append(1)
        buffer.append(contentsOf: json)
    }
}

/// JSON text for a `json` column or parameter: Postgres checks it and keeps it byte for byte as
/// written (a ``PostgresJSON`` parameter is `jsonb`, parsed and printed anew).
public struct PostgresJSONText: PostgresArrayElement, PostgresBinaryEncodable, Hashable {
    /// The JSON text (UTF-8).
    public var json: [UInt8]

    public init(rawJSON: [UInt8]) { self.json = rawJSON }

    public static var postgresType: PostgresDataType { .json }
    public static var postgresArrayType: PostgresDataType { .jsonArray }
    public func encodePostgresText(into buffer: inout [UInt8]) { buffer.append(contentsOf: json) }
    /// json's binary form is its text (which the server checks).
    public func encodePostgresBinary(into buffer: inout [UInt8]) { buffer.append(contentsOf: json) }
}

extension Optional: PostgresEncodable where Wrapped: PostgresEncodable {
    public static var postgresType: PostgresDataType { Wrapped.postgresType }
    public var isPostgresNull: Bool { self == nil }
    public func encodePostgresText(into buffer: inout [UInt8]) {
        if let self { self.encodePostgresText(into: &buffer) }
    }
}

extension Optional: PostgresArrayElement where Wrapped: PostgresArrayElement {
    public static var postgresArrayType: PostgresDataType { Wrapped.postgresArrayType }
}

extension Optional: PostgresBinaryEncodable where Wrapped: PostgresBinaryEncodable {
    public static var postgresBinaryType: PostgresDataType { Wrapped.postgresBinaryType }
    public func encodePostgresBinary(into buffer: inout [UInt8]) {
        if let self { self.encodePostgresBinary(into: &buffer) }
    }
}

/// Arrays are sent as Postgres array literals (`{"a","b",NULL}`), so a whole batch can be one
/// parameter: `INSERT … SELECT * FROM unnest($1::bigint[], $2::text[])`.
extension Array: PostgresEncodable where Element: PostgresArrayElement {
    public static var postgresType: PostgresDataType { Element.postgresArrayType }
    public func encodePostgresText(into buffer: inout [UInt8]) {
        let quote = UInt8(ascii: "\""), backslash = UInt8(ascii: "\\")
        buffer.reserveCapacity(buffer.count + 2 + count * 24)
        buffer.append(UInt8(ascii: "{"))
        var element: [UInt8] = []
        for index in indices {
            if index > 0 { buffer.append(UInt8(ascii: ",")) }
            let value = self[index]
            if value.isPostgresNull {
                buffer.append(contentsOf: "NULL".utf8)
                continue
            }
            element.removeAll(keepingCapacity: true)
            value.encodePostgresText(into: &element)
            // Every element quoted; quotes and backslashes inside escaped, the runs between
            // them appended at once.
            buffer.append(quote)
            element.withUnsafeBufferPointer { bytes in
                var start = 0
                for position in bytes.indices where bytes[position] == quote || bytes[position] == backslash {
                    buffer.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[start..<position]))
                    buffer.append(backslash)
                    start = position
                }
                buffer.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[start...]))
            }
            buffer.append(quote)
        }
        buffer.append(UInt8(ascii: "}"))
    }
}

/// Arrays in binary: one dimension, a lower bound of 1, the element type, then each element as
/// its length and binary form (length -1 for NULL). Nothing for the server to unquote or parse.
extension Array: PostgresBinaryEncodable where Element: PostgresArrayElement & PostgresBinaryEncodable {
    public static var postgresBinaryType: PostgresDataType { Element.postgresArrayType }
    public func encodePostgresBinary(into buffer: inout [UInt8]) {
        Int32(isEmpty ? 0 : 1).appendBigEndian(to: &buffer)
        let flagsAt = buffer.count
        Int32(0).appendBigEndian(to: &buffer)
        Element.postgresBinaryType.rawValue.appendBigEndian(to: &buffer)
        guard !isEmpty else { return }
        Int32(count).appendBigEndian(to: &buffer)
        Int32(1).appendBigEndian(to: &buffer)
        var hasNulls = false
        for value in self {
            if value.isPostgresNull { hasNulls = true }
            appendBinaryField(value, to: &buffer)
        }
        // The header's "has NULLs" flag, known only now (one pass over the elements).
        if hasNulls { buffer[flagsAt + 3] = 1 }
    }
}

/// A length-prefixed binary value (length -1 for NULL), as array elements and binary COPY fields
/// are written.
@inline(__always)
func appendBinaryField(_ value: some PostgresBinaryEncodable, to buffer: inout [UInt8]) {
    if value.isPostgresNull {
        Int32(-1).appendBigEndian(to: &buffer)
        return
    }
    let lengthAt = buffer.count
    // A placeholder for the length (no array literal: that would allocate per value).
    Int32(0).appendBigEndian(to: &buffer)
    value.encodePostgresBinary(into: &buffer)
    let length = UInt32(buffer.count - lengthAt - 4)
    buffer[lengthAt] = UInt8(truncatingIfNeeded: length >> 24)
    buffer[lengthAt + 1] = UInt8(truncatingIfNeeded: length >> 16)
    buffer[lengthAt + 2] = UInt8(truncatingIfNeeded: length >> 8)
    buffer[lengthAt + 3] = UInt8(truncatingIfNeeded: length)
}
