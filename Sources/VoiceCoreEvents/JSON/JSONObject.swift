import VoiceCoreTime

/// A JSON object read field by field, with typed accessors that name the failing field by its path.
///
/// The document is validated once by ``JSONScanner``; values are read straight from their bytes
/// when asked for. Fields are looked up from a cursor first, because writers (ours and most others)
/// emit fields in the order readers ask for them.
public final class JSONObject {
    private let bytes: [UInt8]
    private let members: [JSONMember]
    private var cursor = 0
    /// The path of this object, `data` or `data.settings.intents[2]`.
    public let path: String

    private init(bytes: [UInt8], members: [JSONMember], path: String) {
        self.bytes = bytes
        self.members = members
        self.path = path
    }

    /// Parses `json`, which must be one object.
    public static func parse(_ json: [UInt8], path: String = "data") throws(MessageDecodingError) -> JSONObject {
        do {
            return JSONObject(bytes: json, members: try JSONScanner.members(of: json), path: path)
        } catch {
            throw .invalid(path, "is not valid JSON at byte \(error.offset): \(error.reason)")
        }
    }

    private func nested(_ span: JSONSpan, path: String) throws(MessageDecodingError) -> JSONObject {
        guard span.kind == .object else { throw .invalid(path, "must be an object, found \(span.kind.name)") }
        do {
            return JSONObject(bytes: bytes, members: try JSONScanner.members(of: bytes, in: span.start..<span.end), path: path)
        } catch {
            throw .invalid(path, "is not valid JSON: \(error.reason)")
        }
    }

    /// The names of the object's members, in document order (to refuse names a reader does not know).
    public var keys: [String] { members.map { text($0.key) } }

    // MARK: Lookup

    /// The value of `name`, or nil when absent or null.
    private func span(_ name: StaticString) -> JSONSpan? {
        name.withUTF8Buffer { wanted in
            bytes.withUnsafeBufferPointer { all in
                let count = members.count
                var index = cursor
                for _ in 0..<count {
                    if index >= count { index = 0 }
                    let member = members[index]
                    if Self.keyMatches(member.key, wanted, all) {
                        cursor = index + 1
                        return member.value.kind == .null ? nil : member.value
                    }
                    index += 1
                }
                return nil
            }
        }
    }

    private static func keyMatches(_ key: JSONSpan, _ wanted: UnsafeBufferPointer<UInt8>, _ all: UnsafeBufferPointer<UInt8>) -> Bool {
        if key.hasEscapes {
            return unescape(UnsafeBufferPointer(rebasing: all[key.start..<key.end])) == String(decoding: wanted, as: UTF8.self)
        }
        guard wanted.count == key.end - key.start else { return false }
        var k = key.start
        for byte in wanted {
            if all[k] != byte { return false }
            k += 1
        }
        return true
    }

    private func required(_ name: StaticString) throws(MessageDecodingError) -> JSONSpan {
        guard let span = span(name) else { throw .missing("\(path).\(name)") }
        return span
    }

    private func expect(_ span: JSONSpan, _ kind: JSONKind, _ name: StaticString, _ what: String) throws(MessageDecodingError) {
        guard span.kind == kind else { throw .invalid("\(path).\(name)", "must be \(what), found \(span.kind.name)") }
    }

    // MARK: Values

    private func text(_ span: JSONSpan) -> String {
        bytes.withUnsafeBufferPointer { all in
            let raw = UnsafeBufferPointer(rebasing: all[span.start..<span.end])
            return span.hasEscapes ? Self.unescape(raw) : String(decoding: raw, as: UTF8.self)
        }
    }

    static func unescape(_ raw: UnsafeBufferPointer<UInt8>) -> String {
        // The scanner validated every escape, so this cannot fail.
        var out: [UInt8] = []
        out.reserveCapacity(raw.count)
        var i = 0
        func hex4() -> UInt32 {
            var value: UInt32 = 0
            for _ in 0..<4 { value = value << 4 | (JSONScanner.hexDigit(raw[i]) ?? 0); i += 1 }
            return value
        }
        while i < raw.count {
            let byte = raw[i]
            i += 1
            guard byte == 92 else { out.append(byte); continue }
            let escaped = raw[i]
            i += 1
            switch escaped {
            case UInt8(ascii: "b"): out.append(8)
            case UInt8(ascii: "f"): out.append(12)
            case UInt8(ascii: "n"): out.append(10)
            case UInt8(ascii: "r"): out.append(13)
            case UInt8(ascii: "t"): out.append(9)
            case UInt8(ascii: "u"):
                var scalar = hex4()
                if (0xD800...0xDBFF).contains(scalar) {
                    i += 2
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (hex4() - 0xDC00)
                }
                out.append(contentsOf: String(Character(Unicode.Scalar(scalar) ?? "\u{FFFD}")).utf8)
            default: out.append(escaped)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    // Each value is read from its span by a `…Value` reader (`name` only names it in errors); the
    // public accessors look the field up once, the optional ones treat absent or null as nil.

    private func stringValue(_ span: JSONSpan, _ name: StaticString) throws(MessageDecodingError) -> String {
        try expect(span, .string, name, "a string")
        return text(span)
    }

    private func int64Value(_ span: JSONSpan, _ name: StaticString) throws(MessageDecodingError) -> Int64 {
        try expect(span, .number, name, "an integer")
        // Digits only (the common case) parse without a String.
        let parsed: Int64? = bytes.withUnsafeBufferPointer { all in
            var value: Int64 = 0
            var i = span.start
            let negative = all[i] == UInt8(ascii: "-")
            if negative { i += 1 }
            while i < span.end {
                let c = all[i]
                guard c >= 48, c <= 57 else { return nil }
                let (m, o1) = value.multipliedReportingOverflow(by: 10)
                let (a, o2) = m.addingReportingOverflow(Int64(c - 48))
                guard !o1, !o2 else { return nil }
                value = a
                i += 1
            }
            return negative ? -value : value
        }
        if let parsed { return parsed }
        // 3.0 or 3e2 are integers in JSON Schema's sense.
        let literal = text(span)
        if let d = Double(literal), d == d.rounded(), let value = Int64(exactly: d) { return value }
        throw .invalid("\(path).\(name)", "must be an integer, found \(literal)")
    }

    private func doubleValue(_ span: JSONSpan, _ name: StaticString) throws(MessageDecodingError) -> Double {
        try expect(span, .number, name, "a number")
        if let value = bytes.withUnsafeBufferPointer({ Self.exactDouble(UnsafeBufferPointer(rebasing: $0[span.start..<span.end])) }) {
            return value
        }
        guard let value = Double(text(span)) else { throw .invalid("\(path).\(name)", "must be a number") }
        return value
    }

    private static let powersOfTen: [Double] = (0...22).map { exponent in (0..<exponent).reduce(1.0) { value, _ in value * 10 } }

    /// Clinger's fast path: a number with at most 15 significant digits and a decimal exponent
    /// within ±22 is one correctly rounded multiplication or division of two exactly representable
    /// doubles, so the result equals `strtod`'s. Anything else is `nil` (the caller uses `Double(_:)`).
    /// The scanner has already checked the JSON number grammar.
    private static func exactDouble(_ text: UnsafeBufferPointer<UInt8>) -> Double? {
        var i = 0
        let negative = text.first == UInt8(ascii: "-")
        if negative { i = 1 }
        var mantissa: UInt64 = 0
        var digits = 0
        var exponent = 0
        while i < text.count, text[i] >= 48, text[i] <= 57 {
            if mantissa != 0 || text[i] != 48 { digits += 1 }
            mantissa = mantissa &* 10 &+ UInt64(text[i] - 48)
            i += 1
        }
        if i < text.count, text[i] == UInt8(ascii: ".") {
            i += 1
            while i < text.count, text[i] >= 48, text[i] <= 57 {
                if mantissa != 0 || text[i] != 48 { digits += 1 }
                mantissa = mantissa &* 10 &+ UInt64(text[i] - 48)
                exponent -= 1
                i += 1
            }
        }
        guard i == text.count, digits <= 15 else { return nil }  // an exponent part, or too many digits
        let value = exponent == 0 ? Double(mantissa) : (exponent >= -22 ? Double(mantissa) / powersOfTen[-exponent] : nil)
        guard let value else { return nil }
        return negative ? -value : value
    }

    private func boolValue(_ span: JSONSpan, _ name: StaticString) throws(MessageDecodingError) -> Bool {
        try expect(span, .bool, name, "true or false")
        return bytes[span.start] == UInt8(ascii: "t")
    }

    private func identifierValue(_ span: JSONSpan, _ name: StaticString) throws(MessageDecodingError) -> Identifier {
        try expect(span, .string, name, "a UUID string")
        let parsed = span.hasEscapes ? Identifier(text(span))
            : bytes.withUnsafeBufferPointer { Identifier(utf8: UnsafeBufferPointer(rebasing: $0[span.start..<span.end])) }
        guard let value = parsed else { throw .invalid("\(path).\(name)", "must be a UUID") }
        return value
    }

    private func timestampValue(_ span: JSONSpan, _ name: StaticString) throws(MessageDecodingError) -> Timestamp {
        try expect(span, .string, name, "an RFC 3339 date-time string")
        let parsed = span.hasEscapes ? Timestamp(rfc3339: text(span)) : Timestamp(rfc3339Bytes: Array(bytes[span.start..<span.end]))
        guard let value = parsed else { throw .invalid("\(path).\(name)", "must be an RFC 3339 date-time") }
        return value
    }

    private func enumerationValue<E: RawRepresentable & CaseIterable>(_ type: E.Type, _ span: JSONSpan, _ name: StaticString) throws(MessageDecodingError) -> E where E.RawValue == String {
        let raw = try stringValue(span, name)
        guard let value = E(rawValue: raw) else {
            throw .invalid("\(path).\(name)", "must be one of \(E.allCases.map { $0.rawValue }.joined(separator: ", ")); found '\(raw.prefix(40))'")
        }
        return value
    }

    public func string(_ name: StaticString) throws(MessageDecodingError) -> String { try stringValue(required(name), name) }
    public func int(_ name: StaticString) throws(MessageDecodingError) -> Int { Int(try int64Value(required(name), name)) }
    public func int64(_ name: StaticString) throws(MessageDecodingError) -> Int64 { try int64Value(required(name), name) }
    public func double(_ name: StaticString) throws(MessageDecodingError) -> Double { try doubleValue(required(name), name) }
    public func bool(_ name: StaticString) throws(MessageDecodingError) -> Bool { try boolValue(required(name), name) }
    public func identifier(_ name: StaticString) throws(MessageDecodingError) -> Identifier { try identifierValue(required(name), name) }
    public func timestamp(_ name: StaticString) throws(MessageDecodingError) -> Timestamp { try timestampValue(required(name), name) }
    public func enumeration<E: RawRepresentable & CaseIterable>(_ type: E.Type, _ name: StaticString) throws(MessageDecodingError) -> E where E.RawValue == String {
        try enumerationValue(type, required(name), name)
    }

    private func elements(_ name: StaticString) throws(MessageDecodingError) -> [JSONSpan] {
        let span = try required(name)
        try expect(span, .array, name, "an array")
        do {
            return try JSONScanner.elements(of: bytes, in: span.start..<span.end)
        } catch {
            throw .invalid("\(path).\(name)", "is not valid JSON: \(error.reason)")
        }
    }

    public func strings(_ name: StaticString) throws(MessageDecodingError) -> [String] {
        var out: [String] = []
        for (i, element) in try elements(name).enumerated() {
            guard element.kind == .string else { throw .invalid("\(path).\(name)[\(i)]", "must be a string, found \(element.kind.name)") }
            out.append(text(element))
        }
        return out
    }

    public func stringMap(_ name: StaticString) throws(MessageDecodingError) -> [String: String] {
        let object = try nested(try required(name), path: "\(path).\(name)")
        var out: [String: String] = [:]
        for member in object.members {
            let key = object.text(member.key)
            guard member.value.kind == .string else { throw .invalid("\(path).\(name).\(key)", "must be a string, found \(member.value.kind.name)") }
            out[key] = object.text(member.value)
        }
        return out
    }

    public func identifiers(_ name: StaticString) throws(MessageDecodingError) -> [Identifier] {
        var out: [Identifier] = []
        for (i, element) in try elements(name).enumerated() {
            guard element.kind == .string, let value = Identifier(text(element)) else {
                throw .invalid("\(path).\(name)[\(i)]", "must be a UUID")
            }
            out.append(value)
        }
        return out
    }

    /// An object of integers (`{"calls": 3}`).
    public func intMap(_ name: StaticString) throws(MessageDecodingError) -> [String: Int] {
        let object = try nested(try required(name), path: "\(path).\(name)")
        var out: [String: Int] = [:]
        for member in object.members {
            let key = object.text(member.key)
            guard member.value.kind == .number, let value = Int(object.text(member.value)) else {
                throw .invalid("\(path).\(name).\(key)", "must be an integer")
            }
            out[key] = value
        }
        return out
    }

    public func object<T: JSONObjectCodable>(_ type: T.Type, _ name: StaticString) throws(MessageDecodingError) -> T {
        try T(json: nested(try required(name), path: "\(path).\(name)"))
    }

    public func objects<T: JSONObjectCodable>(_ type: T.Type, _ name: StaticString) throws(MessageDecodingError) -> [T] {
        var out: [T] = []
        for (i, element) in try elements(name).enumerated() {
            out.append(try T(json: nested(element, path: "\(path).\(name)[\(i)]")))
        }
        return out
    }

    // MARK: Optional (absent or null is nil)

    public func optionalString(_ name: StaticString) throws(MessageDecodingError) -> String? {
        guard let span = span(name) else { return nil }
        return try stringValue(span, name)
    }
    public func optionalInt(_ name: StaticString) throws(MessageDecodingError) -> Int? {
        guard let span = span(name) else { return nil }
        return Int(try int64Value(span, name))
    }
    public func optionalDouble(_ name: StaticString) throws(MessageDecodingError) -> Double? {
        guard let span = span(name) else { return nil }
        return try doubleValue(span, name)
    }
    public func optionalIdentifier(_ name: StaticString) throws(MessageDecodingError) -> Identifier? {
        guard let span = span(name) else { return nil }
        return try identifierValue(span, name)
    }
    /// An optional object: absent or null is nil.
    public func optionalObject<T: JSONObjectCodable>(_ type: T.Type, _ name: StaticString) throws(MessageDecodingError) -> T? {
        guard span(name) != nil else { return nil }
        return try object(type, name)
    }
    /// An optional array of objects: absent or null is nil.
    public func optionalObjects<T: JSONObjectCodable>(_ type: T.Type, _ name: StaticString) throws(MessageDecodingError) -> [T]? {
        guard span(name) != nil else { return nil }
        return try objects(type, name)
    }
    /// An optional array of strings: absent or null is nil.
    public func optionalStrings(_ name: StaticString) throws(MessageDecodingError) -> [String]? {
        guard span(name) != nil else { return nil }
        return try strings(name)
    }
    /// An optional map of strings: absent or null is nil.
    public func optionalStringMap(_ name: StaticString) throws(MessageDecodingError) -> [String: String]? {
        guard span(name) != nil else { return nil }
        return try stringMap(name)
    }
    public func optionalEnumeration<E: RawRepresentable & CaseIterable>(_ type: E.Type, _ name: StaticString) throws(MessageDecodingError) -> E? where E.RawValue == String {
        guard let span = span(name) else { return nil }
        return try enumerationValue(type, span, name)
    }
}
