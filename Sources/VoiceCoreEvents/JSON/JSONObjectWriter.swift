import VoiceCoreTime

/// A type with a hand-written JSON object form (the payload types and their parts).
///
/// Hand-written rather than `Codable`: Codable's containers, boxes and dynamic casts made a
/// TranscriptChunk round trip cost about 10 µs even with a custom encoder; writing fields straight
/// into bytes and reading them from a parsed tree costs a fraction of that.
public protocol JSONObjectCodable: Sendable {
    /// Writes the object's fields (the writer adds the braces).
    func writeJSON(to object: inout JSONObjectWriter)
    /// Reads the object; errors name the field by its path.
    init(json object: JSONObject) throws(MessageDecodingError)
}

/// Writes one JSON object field by field. Optional fields that are `nil` are left out.
public struct JSONObjectWriter {
    var bytes: [UInt8]
    private var empty = true

    private init(reservingCapacity capacity: Int) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    /// The finished object.
    static func encode(_ value: some JSONObjectCodable) -> [UInt8] {
        var writer = JSONObjectWriter(reservingCapacity: 256)
        writer.bytes.append(UInt8(ascii: "{"))
        value.writeJSON(to: &writer)
        writer.bytes.append(UInt8(ascii: "}"))
        return writer.bytes
    }

    /// One object written by `build`, e.g. an HTTP answer:
    /// `JSONObjectWriter.object { $0.field("command_id", id) }`.
    public static func object(_ build: (inout JSONObjectWriter) -> Void) -> [UInt8] {
        var writer = JSONObjectWriter(reservingCapacity: 128)
        writer.bytes.append(UInt8(ascii: "{"))
        build(&writer)
        writer.bytes.append(UInt8(ascii: "}"))
        return writer.bytes
    }

    private mutating func key(_ name: StaticString) {
        if empty { empty = false } else { bytes.append(UInt8(ascii: ",")) }
        bytes.append(UInt8(ascii: "\""))
        name.withUTF8Buffer { bytes.append(contentsOf: $0) }
        bytes.append(UInt8(ascii: "\""))
        bytes.append(UInt8(ascii: ":"))
    }

    public mutating func field(_ name: StaticString, _ value: String) {
        key(name)
        Self.appendString(value, to: &bytes)
    }

    public mutating func field(_ name: StaticString, _ value: Int) {
        key(name)
        Self.appendInteger(Int64(value), to: &bytes)
    }

    public mutating func field(_ name: StaticString, _ value: Int64) {
        key(name)
        Self.appendInteger(value, to: &bytes)
    }

    /// Integral values are written without a fraction (`3`, not `3.0`); non-finite values cannot
    /// reach here (validation rejects them).
    public mutating func field(_ name: StaticString, _ value: Double) {
        key(name)
        if value == value.rounded(), abs(value) < 1e15 {
            Self.appendInteger(Int64(value), to: &bytes)
        } else if value.isFinite {
            bytes.append(contentsOf: value.description.utf8)
        } else {
            bytes.append(contentsOf: "null".utf8)
        }
    }

    public mutating func field(_ name: StaticString, _ value: Bool) {
        key(name)
        bytes.append(contentsOf: (value ? "true" : "false").utf8)
    }

    public mutating func field(_ name: StaticString, _ value: Identifier) {
        key(name)
        bytes.append(UInt8(ascii: "\""))
        value.append(to: &bytes)
        bytes.append(UInt8(ascii: "\""))
    }

    public mutating func field(_ name: StaticString, _ value: Timestamp) {
        key(name)
        bytes.append(UInt8(ascii: "\""))
        value.appendRFC3339(to: &bytes)
        bytes.append(UInt8(ascii: "\""))
    }

    public mutating func field<E: RawRepresentable>(_ name: StaticString, _ value: E) where E.RawValue == String {
        field(name, value.rawValue)
    }

    public mutating func field(_ name: StaticString, _ value: [String]) {
        key(name)
        bytes.append(UInt8(ascii: "["))
        for (i, element) in value.enumerated() {
            if i > 0 { bytes.append(UInt8(ascii: ",")) }
            Self.appendString(element, to: &bytes)
        }
        bytes.append(UInt8(ascii: "]"))
    }

    /// An object of strings, keys in sorted order so equal maps give equal bytes.
    public mutating func field(_ name: StaticString, _ value: [String: String]) {
        key(name)
        bytes.append(UInt8(ascii: "{"))
        for (i, entry) in value.sorted(by: { $0.key < $1.key }).enumerated() {
            if i > 0 { bytes.append(UInt8(ascii: ",")) }
            Self.appendString(entry.key, to: &bytes)
            bytes.append(UInt8(ascii: ":"))
            Self.appendString(entry.value, to: &bytes)
        }
        bytes.append(UInt8(ascii: "}"))
    }

    public mutating func field(_ name: StaticString, _ value: some JSONObjectCodable) {
        key(name)
        appendObject(value)
    }

    public mutating func field(_ name: StaticString, _ value: [some JSONObjectCodable]) {
        key(name)
        bytes.append(UInt8(ascii: "["))
        for (i, element) in value.enumerated() {
            if i > 0 { bytes.append(UInt8(ascii: ",")) }
            appendObject(element)
        }
        bytes.append(UInt8(ascii: "]"))
    }

    private mutating func appendObject(_ value: some JSONObjectCodable) {
        // The nested writer borrows this writer's buffer, so the object is written in place.
        var nested = JSONObjectWriter(reservingCapacity: 0)
        swap(&nested.bytes, &bytes)
        nested.bytes.append(UInt8(ascii: "{"))
        value.writeJSON(to: &nested)
        nested.bytes.append(UInt8(ascii: "}"))
        swap(&nested.bytes, &bytes)
    }

    // Optionals: absent when nil.
    public mutating func field(_ name: StaticString, _ value: String?) { if let value { field(name, value) } }
    public mutating func field(_ name: StaticString, _ value: Int?) { if let value { field(name, value) } }
    public mutating func field(_ name: StaticString, _ value: Double?) { if let value { field(name, value) } }
    public mutating func field(_ name: StaticString, _ value: Identifier?) { if let value { field(name, value) } }
    public mutating func field(_ name: StaticString, _ value: Timestamp?) { if let value { field(name, value) } }

    /// Appends `value` as a JSON string literal (quoted and escaped).
    public static func appendString(_ value: String, to bytes: inout [UInt8]) {
        var value = value
        value.withUTF8 { utf8 in
            bytes.append(UInt8(ascii: "\""))
            var plainUntil = 0
            while plainUntil < utf8.count {
                let byte = utf8[plainUntil]
                if byte == UInt8(ascii: "\"") || byte == 92 || byte < 0x20 { break }
                plainUntil += 1
            }
            bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[..<plainUntil]))
            if plainUntil < utf8.count { appendEscaped(UnsafeBufferPointer(rebasing: utf8[plainUntil...]), to: &bytes) }
            bytes.append(UInt8(ascii: "\""))
        }
    }

    private static func appendEscaped(_ utf8: UnsafeBufferPointer<UInt8>, to bytes: inout [UInt8]) {
        for byte in utf8 {
            switch byte {
            case UInt8(ascii: "\""): bytes.append(92); bytes.append(UInt8(ascii: "\""))
            case 92: bytes.append(92); bytes.append(92)
            case 10: bytes.append(92); bytes.append(UInt8(ascii: "n"))
            case 13: bytes.append(92); bytes.append(UInt8(ascii: "r"))
            case 9: bytes.append(92); bytes.append(UInt8(ascii: "t"))
            case 0..<0x20:
                let hex: [UInt8] = Array("0123456789abcdef".utf8)
                bytes.append(contentsOf: [92, UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"), hex[Int(byte >> 4)], hex[Int(byte & 0xf)]])
            default: bytes.append(byte)
            }
        }
    }

    static func appendInteger(_ value: Int64, to bytes: inout [UInt8]) {
        // Digits are written backwards into a stack buffer, then appended at once.
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 20) { digits in
            var magnitude = value.magnitude
            var start = 20
            repeat {
                start -= 1
                digits[start] = UInt8(ascii: "0") + UInt8(truncatingIfNeeded: magnitude % 10)
                magnitude /= 10
            } while magnitude > 0
            if value < 0 { bytes.append(UInt8(ascii: "-")) }
            bytes.append(contentsOf: UnsafeBufferPointer(rebasing: digits[start..<20]))
        }
    }
}
