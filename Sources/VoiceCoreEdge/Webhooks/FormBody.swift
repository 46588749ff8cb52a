import VoiceCoreEvents

/// An `application/x-www-form-urlencoded` body as the provider sent it: every parameter in order,
/// repeated names kept (Twilio signs each value).
public struct FormBody: Sendable {
    public var parameters: [(name: String, value: String)]

    public init(parameters: [(name: String, value: String)]) {
        self.parameters = parameters
    }

    /// The first value of `name`.
    public subscript(name: String) -> String? {
        parameters.first { $0.name == name }?.value
    }

    /// Every parameter as one map; a repeated name keeps its values joined by commas.
    public var dictionary: [String: String] {
        var result: [String: String] = [:]
        for (name, value) in parameters {
            if let existing = result[name] { result[name] = existing + "," + value } else { result[name] = value }
        }
        return result
    }

    /// Refuses a parameter the platform could not store (``Storable``), naming it: a control
    /// character in a name or value (values may hold tab and line breaks, as free text does), or
    /// a name longer than a line. Every parameter is kept in the command's `provider_fields`.
    public func checkStorable() throws(MessageDecodingError) {
        for (name, value) in parameters {
            try Storable.check(name, name, as: .freeText, maxLength: Storable.lineLength)
            try Storable.check(value, name, as: .freeText)
        }
    }

    /// The body as a provider sends it: `name=value` pairs joined by `&`, everything but
    /// unreserved characters percent-encoded (for tests, benchmarks and the demo).
    public var encoded: String {
        parameters.map { Self.encode($0.name) + "=" + Self.encode($0.value) }.joined(separator: "&")
    }

    private static func encode(_ text: String) -> String {
        var output = ""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
                output.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                output += "%" + String(byte, radix: 16, uppercase: true).leftPaddedWithZero
            }
        }
        return output
    }

    /// Why a body is not a form.
    public struct Malformed: Error, Sendable, Hashable {
        /// The parameter (or `body`) that could not be decoded.
        public var field: String
        public var reason: String
    }

    /// Parses a body: `+` is a space, `%XX` a byte; names and values must be UTF-8.
    public init(parsing body: some Collection<UInt8>) throws(Malformed) {
        // One pass over the bytes with indices (this runs for every webhook): no array of pieces.
        let bytes = Array(body)
        var parameters: [(name: String, value: String)] = []
        parameters.reserveCapacity(16)
        var start = 0
        while start < bytes.count {
            var end = start
            var equals: Int?
            while end < bytes.count, bytes[end] != UInt8(ascii: "&") {
                if equals == nil, bytes[end] == UInt8(ascii: "=") { equals = end }
                end += 1
            }
            if end > start {
                let name = try Self.decode(bytes[start..<(equals ?? end)], field: "body")
                guard !name.isEmpty else { throw Malformed(field: "body", reason: "has a parameter without a name") }
                let value = try equals.map { equals throws(Malformed) in try Self.decode(bytes[(equals + 1)..<end], field: name) } ?? ""
                parameters.append((name, value))
            }
            start = end + 1
        }
        self.parameters = parameters
    }

    /// Percent-decodes one component.
    static func decode(_ bytes: some Collection<UInt8>, field: String) throws(Malformed) -> String {
        // Most components have nothing to decode: validate them as they are, with no copy first.
        if !bytes.contains(where: { $0 == UInt8(ascii: "%") || $0 == UInt8(ascii: "+") }) {
            guard let text = utf8(bytes) else { throw Malformed(field: field, reason: "is not valid UTF-8") }
            return text
        }
        var output: [UInt8] = []
        output.reserveCapacity(bytes.count)
        var index = bytes.startIndex
        func hex(_ c: UInt8) -> UInt8? {
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
            default: nil
            }
        }
        while index != bytes.endIndex {
            let byte = bytes[index]
            switch byte {
            case UInt8(ascii: "+"):
                output.append(UInt8(ascii: " "))
            case UInt8(ascii: "%"):
                let first = bytes.index(after: index)
                guard first != bytes.endIndex, bytes.index(after: first) != bytes.endIndex,
                      let high = hex(bytes[first]), let low = hex(bytes[bytes.index(after: first)])
                else { throw Malformed(field: field, reason: "has a malformed percent-escape") }
                output.append(high << 4 | low)
                index = bytes.index(after: first)
            default:
                output.append(byte)
            }
            index = bytes.index(after: index)
        }
        guard let text = utf8(output) else { throw Malformed(field: field, reason: "is not valid UTF-8") }
        return text
    }

    /// The text of UTF-8 bytes, nil when they are not UTF-8. ASCII (nearly every form value) is
    /// taken as it is: `String(validating:)` is generic in the standard library and looks up type
    /// metadata on every call (1.6 % of the edge's time).
    static func utf8(_ bytes: some Collection<UInt8>) -> String? {
        if bytes.allSatisfy({ $0 < 0x80 }) { return String(decoding: bytes, as: UTF8.self) }
        return String(validating: bytes, as: UTF8.self)
    }
}

private extension String {
    var leftPaddedWithZero: String { count == 1 ? "0" + self : self }
}
