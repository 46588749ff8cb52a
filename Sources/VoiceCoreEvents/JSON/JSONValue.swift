/// Any JSON value as a tree, for a document whose shape is not known in advance: a provider's
/// webhook kept field by field (`data.payload.from`), a JSON callback read as parameters.
///
/// Read with the same strict scanner as ``JSONObject`` (RFC 8259, valid UTF-8, nesting at most 64
/// deep). Typed payloads use ``JSONObject`` instead, which builds no tree.
///
/// ```swift
/// let document = try JSONValue.object(parsing: bytes)
/// let eventType = document["data"]?.object?["event_type"]?.string
/// ```
public enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    /// A number as the document wrote it (`2.50`, `1e3`): JSON numbers have no fixed precision,
    /// so the text is kept and a reader converts it to what it needs.
    case number(String)
    case string(String)
    case array([JSONValue])
    /// An object's members; a name given twice keeps its last value.
    case object([String: JSONValue])

    /// Parses `json`, which must be one object, into its members.
    public static func object(parsing json: [UInt8], path: String = "body") throws(MessageDecodingError) -> [String: JSONValue] {
        do {
            return try members(JSONScanner.members(of: json), in: json)
        } catch {
            throw .invalid(path, "is not valid JSON at byte \(error.offset): \(error.reason)")
        }
    }

    private static func members(_ members: [JSONMember], in json: [UInt8]) throws(JSONScanner.Failure) -> [String: JSONValue] {
        var object: [String: JSONValue] = [:]
        object.reserveCapacity(members.count)
        for member in members {
            object[text(member.key, in: json)] = try value(member.value, in: json)
        }
        return object
    }

    private static func value(_ span: JSONSpan, in json: [UInt8]) throws(JSONScanner.Failure) -> JSONValue {
        switch span.kind {
        case .null: return .null
        case .bool: return .bool(json[span.start] == UInt8(ascii: "t"))
        case .number: return .number(String(decoding: json[span.start..<span.end], as: UTF8.self))
        case .string: return .string(text(span, in: json))
        case .array:
            var elements: [JSONValue] = []
            for element in try JSONScanner.elements(of: json, in: span.start..<span.end) {
                elements.append(try value(element, in: json))
            }
            return .array(elements)
        case .object:
            return .object(try members(JSONScanner.members(of: json, in: span.start..<span.end), in: json))
        }
    }

    private static func text(_ span: JSONSpan, in json: [UInt8]) -> String {
        json.withUnsafeBufferPointer { all in
            let raw = UnsafeBufferPointer(rebasing: all[span.start..<span.end])
            return span.hasEscapes ? JSONObject.unescape(raw) : String(decoding: raw, as: UTF8.self)
        }
    }

    // MARK: Reading

    /// The text of a string, nil for any other value.
    public var string: String? {
        if case .string(let text) = self { text } else { nil }
    }

    /// The members of an object, nil for any other value.
    public var object: [String: JSONValue]? {
        if case .object(let members) = self { members } else { nil }
    }

    /// The value as one line of text: a string as it is, `null` as empty, a boolean or number as
    /// written, an array or object as compact JSON with its keys sorted (equal values, equal text).
    public var text: String {
        switch self {
        case .null: ""
        case .bool(let value): value ? "true" : "false"
        case .number(let literal): literal
        case .string(let text): text
        case .array, .object: String(decoding: jsonText, as: UTF8.self)
        }
    }

    /// The value as compact JSON, object keys sorted.
    public var jsonText: [UInt8] {
        var bytes: [UInt8] = []
        write(to: &bytes)
        return bytes
    }

    private func write(to bytes: inout [UInt8]) {
        switch self {
        case .null: bytes.append(contentsOf: "null".utf8)
        case .bool(let value): bytes.append(contentsOf: (value ? "true" : "false").utf8)
        case .number(let literal): bytes.append(contentsOf: literal.utf8)
        case .string(let text): JSONObjectWriter.appendString(text, to: &bytes)
        case .array(let elements):
            bytes.append(UInt8(ascii: "["))
            for (i, element) in elements.enumerated() {
                if i > 0 { bytes.append(UInt8(ascii: ",")) }
                element.write(to: &bytes)
            }
            bytes.append(UInt8(ascii: "]"))
        case .object(let members):
            bytes.append(UInt8(ascii: "{"))
            for (i, key) in members.keys.sorted().enumerated() {
                if i > 0 { bytes.append(UInt8(ascii: ",")) }
                JSONObjectWriter.appendString(key, to: &bytes)
                bytes.append(UInt8(ascii: ":"))
                members[key]?.write(to: &bytes)
            }
            bytes.append(UInt8(ascii: "}"))
        }
    }
}
