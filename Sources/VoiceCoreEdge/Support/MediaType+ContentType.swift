import Hummingbird

extension MediaType {
    /// RFC 9457 problem details, the edge's error answers.
    static var applicationProblemJSON: MediaType { MediaType(type: .application, subType: "problem+json") }

    /// The media type of a `Content-Type` value, its parameters left out; nil when it names none.
    ///
    /// Hummingbird's parser reads type and subtype (case-insensitively); blanks around them and
    /// before `;` (RFC 9110 allows them), which it does not accept, are dropped first.
    init?(contentType: String) {
        let utf8 = contentType.utf8
        let end = utf8.firstIndex(of: UInt8(ascii: ";")) ?? utf8.endIndex
        var bytes = utf8[..<end].drop { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") }
        while let last = bytes.last, last == UInt8(ascii: " ") || last == UInt8(ascii: "\t") { bytes = bytes.dropLast() }
        guard let parsed = MediaType(from: String(decoding: bytes, as: UTF8.self)) else { return nil }
        self.init(type: parsed.type, subType: parsed.subType)
    }

    /// The same type and subtype, parameters aside. Unlike `isType(_:)`, a wildcard (`*/*`) in
    /// a request's `Content-Type` matches nothing: a body must say what it is.
    func names(_ other: MediaType) -> Bool {
        type == other.type && subType == other.subType
    }
}
