/// What a JSON value is, as the scanner saw it.
enum JSONKind: UInt8, Sendable {
    case null, bool, number, string, array, object

    var name: String {
        switch self {
        case .null: return "null"
        case .bool: return "a boolean"
        case .number: return "a number"
        case .string: return "a string"
        case .array: return "an array"
        case .object: return "an object"
        }
    }
}

/// Where one value lies in the document: no String or tree is built until a field is read.
struct JSONSpan: Sendable {
    /// For strings, the bytes between the quotes; otherwise the whole value.
    var start: Int
    var end: Int
    var kind: JSONKind
    /// A string with escapes needs unescaping when read.
    var hasEscapes: Bool
    /// A string with bytes >= 0x80 (already validated as UTF-8 by the scanner).
    var isASCII: Bool
}

/// One `"key": value` of an object.
struct JSONMember: Sendable {
    var key: JSONSpan
    var value: JSONSpan
}

/// A strict RFC 8259 scanner: one value, no trailing commas, no comments, valid UTF-8, nesting at
/// most 64 deep. It validates the whole document in one pass and records the members of the
/// object it starts at; nested objects are scanned again when read.
struct JSONScanner {
    struct Failure: Error {
        var offset: Int
        var reason: String
    }

    private let bytes: UnsafeBufferPointer<UInt8>
    private var i: Int
    private var depth = 0

    /// Validates `json` (or the part `range` of it) as one object and returns its members.
    static func members(of json: [UInt8], in range: Range<Int>? = nil) throws(Failure) -> [JSONMember] {
        do {
            return try json.withUnsafeBufferPointer { buffer in
                let range = range ?? 0..<buffer.count
                var scanner = JSONScanner(bytes: UnsafeBufferPointer(rebasing: buffer[..<range.upperBound]), start: range.lowerBound)
                scanner.skipWhitespace()
                guard scanner.i < range.upperBound, buffer[scanner.i] == UInt8(ascii: "{") else {
                    let kind = scanner.i < range.upperBound ? (try? scanner.value().kind.name) ?? "not JSON" : "empty"
                    throw Failure(offset: scanner.i, reason: "expected an object, found \(kind)")
                }
                var members: [JSONMember] = []
                members.reserveCapacity(16)
                try scanner.object(collecting: &members, collect: true)
                scanner.skipWhitespace()
                guard scanner.i == range.upperBound else { throw Failure(offset: scanner.i, reason: "unexpected text after the JSON value") }
                return members
            }
        } catch let failure as Failure {
            throw failure
        } catch {
            throw Failure(offset: 0, reason: "\(error)")
        }
    }

    /// Validates `json` as any single value and returns its span (for arrays read element by element).
    static func elements(of json: [UInt8], in range: Range<Int>) throws(Failure) -> [JSONSpan] {
        do {
            return try json.withUnsafeBufferPointer { buffer in
                var scanner = JSONScanner(bytes: UnsafeBufferPointer(rebasing: buffer[..<range.upperBound]), start: range.lowerBound)
                var elements: [JSONSpan] = []
                try scanner.array(collecting: &elements, collect: true)
                return elements
            }
        } catch let failure as Failure {
            throw failure
        } catch {
            throw Failure(offset: 0, reason: "\(error)")
        }
    }

    private init(bytes: UnsafeBufferPointer<UInt8>, start: Int) {
        self.bytes = bytes
        self.i = start
    }

    @inline(__always)
    private mutating func skipWhitespace() {
        if i < bytes.count, bytes[i] > 32 { return }  // compact JSON: nothing to skip
        while i < bytes.count, bytes[i] == 32 || bytes[i] == 9 || bytes[i] == 10 || bytes[i] == 13 { i += 1 }
    }

    private func fail(_ reason: String) -> Failure { Failure(offset: i, reason: reason) }

    private mutating func value() throws(Failure) -> JSONSpan {
        guard i < bytes.count else { throw fail("unexpected end of JSON") }
        let start = i
        switch bytes[i] {
        case UInt8(ascii: "{"):
            var ignored: [JSONMember] = []
            try object(collecting: &ignored, collect: false)
            return JSONSpan(start: start, end: i, kind: .object, hasEscapes: false, isASCII: true)
        case UInt8(ascii: "["):
            var ignored: [JSONSpan] = []
            try array(collecting: &ignored, collect: false)
            return JSONSpan(start: start, end: i, kind: .array, hasEscapes: false, isASCII: true)
        case UInt8(ascii: "\""): return try string()
        case UInt8(ascii: "t"): try literal("true"); return JSONSpan(start: start, end: i, kind: .bool, hasEscapes: false, isASCII: true)
        case UInt8(ascii: "f"): try literal("false"); return JSONSpan(start: start, end: i, kind: .bool, hasEscapes: false, isASCII: true)
        case UInt8(ascii: "n"): try literal("null"); return JSONSpan(start: start, end: i, kind: .null, hasEscapes: false, isASCII: true)
        case UInt8(ascii: "-"), 48...57: try number(); return JSONSpan(start: start, end: i, kind: .number, hasEscapes: false, isASCII: true)
        default: throw fail("unexpected character")
        }
    }

    private mutating func literal(_ word: StaticString) throws(Failure) {
        let count = word.utf8CodeUnitCount
        guard i + count <= bytes.count else { throw fail("unexpected end of JSON") }
        for k in 0..<count where bytes[i + k] != word.utf8Start[k] { throw fail("invalid literal") }
        i += count
    }

    private mutating func object(collecting members: inout [JSONMember], collect: Bool) throws(Failure) {
        depth += 1
        guard depth <= 64 else { throw fail("nesting deeper than 64") }
        defer { depth -= 1 }
        i += 1
        skipWhitespace()
        if i < bytes.count, bytes[i] == UInt8(ascii: "}") { i += 1; return }
        while true {
            skipWhitespace()
            guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") else { throw fail("expected a string key") }
            let key = try string()
            skipWhitespace()
            guard i < bytes.count, bytes[i] == UInt8(ascii: ":") else { throw fail("expected ':'") }
            i += 1
            skipWhitespace()
            let value = try value()
            if collect { members.append(JSONMember(key: key, value: value)) }
            skipWhitespace()
            guard i < bytes.count else { throw fail("unexpected end of JSON") }
            if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
            if bytes[i] == UInt8(ascii: "}") { i += 1; return }
            throw fail("expected ',' or '}'")
        }
    }

    private mutating func array(collecting elements: inout [JSONSpan], collect: Bool) throws(Failure) {
        depth += 1
        guard depth <= 64 else { throw fail("nesting deeper than 64") }
        defer { depth -= 1 }
        guard i < bytes.count, bytes[i] == UInt8(ascii: "[") else { throw fail("expected an array") }
        i += 1
        skipWhitespace()
        if i < bytes.count, bytes[i] == UInt8(ascii: "]") { i += 1; return }
        while true {
            skipWhitespace()
            let element = try value()
            if collect { elements.append(element) }
            skipWhitespace()
            guard i < bytes.count else { throw fail("unexpected end of JSON") }
            if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
            if bytes[i] == UInt8(ascii: "]") { i += 1; return }
            throw fail("expected ',' or ']'")
        }
    }

    private mutating func number() throws(Failure) {
        if bytes[i] == UInt8(ascii: "-") { i += 1 }
        guard i < bytes.count, bytes[i] >= 48, bytes[i] <= 57 else { throw fail("invalid number") }
        if bytes[i] == 48 { i += 1 } else { while i < bytes.count, bytes[i] >= 48, bytes[i] <= 57 { i += 1 } }
        if i < bytes.count, bytes[i] == UInt8(ascii: ".") {
            i += 1
            guard i < bytes.count, bytes[i] >= 48, bytes[i] <= 57 else { throw fail("invalid number") }
            while i < bytes.count, bytes[i] >= 48, bytes[i] <= 57 { i += 1 }
        }
        if i < bytes.count, bytes[i] == UInt8(ascii: "e") || bytes[i] == UInt8(ascii: "E") {
            i += 1
            if i < bytes.count, bytes[i] == UInt8(ascii: "+") || bytes[i] == UInt8(ascii: "-") { i += 1 }
            guard i < bytes.count, bytes[i] >= 48, bytes[i] <= 57 else { throw fail("invalid number") }
            while i < bytes.count, bytes[i] >= 48, bytes[i] <= 57 { i += 1 }
        }
    }

    /// Scans a string, checking escapes and UTF-8; the span covers the bytes between the quotes.
    private mutating func string() throws(Failure) -> JSONSpan {
        i += 1
        let start = i
        var escapes = false
        var ascii = true
        while true {
            // Eight plain ASCII bytes at a time (most of a payload's text), then straight to the
            // first byte that needs a look.
            while i + 8 <= bytes.count {
                let special = Self.specialBytes(UInt64(littleEndian: UnsafeRawPointer(bytes.baseAddress! + i).loadUnaligned(as: UInt64.self)))
                if special == 0 { i += 8; continue }
                i += special.trailingZeroBitCount / 8
                break
            }
            guard i < bytes.count else { throw fail("unterminated string") }
            let byte = bytes[i]
            if byte == UInt8(ascii: "\"") { break }
            if byte < 0x20 { throw fail("control character in a string") }
            if byte == 92 {
                escapes = true
                i += 1
                guard i < bytes.count else { throw fail("unterminated escape") }
                switch bytes[i] {
                case UInt8(ascii: "\""), 92, UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"), UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                    i += 1
                case UInt8(ascii: "u"):
                    i += 1
                    let scalar = try hex4()
                    if (0xD800...0xDBFF).contains(scalar) {
                        guard i + 1 < bytes.count, bytes[i] == 92, bytes[i + 1] == UInt8(ascii: "u") else { throw fail("lone surrogate") }
                        i += 2
                        guard (0xDC00...0xDFFF).contains(try hex4()) else { throw fail("lone surrogate") }
                    } else if (0xDC00...0xDFFF).contains(scalar) {
                        throw fail("lone surrogate")
                    }
                default: throw fail("invalid escape")
                }
                continue
            }
            if byte >= 0x80 { ascii = false }
            i += 1
        }
        let end = i
        i += 1
        if !ascii, String(validating: UnsafeBufferPointer(rebasing: bytes[start..<end]), as: UTF8.self) == nil {
            throw Failure(offset: start, reason: "invalid UTF-8 in a string")
        }
        return JSONSpan(start: start, end: end, kind: .string, hasEscapes: escapes, isASCII: ascii)
    }

    /// The high bit of each of the eight bytes (the first in the lowest) that ends a string or
    /// needs a closer look: `"`, `\\`, a control character, a byte >= 0x80. SWAR: a lane above a
    /// flagged lane may be flagged falsely, but the lowest flagged lane is exact, and 0 means none.
    @inline(__always)
    private static func specialBytes(_ word: UInt64) -> UInt64 {
        let ones: UInt64 = 0x0101_0101_0101_0101, highs: UInt64 = 0x8080_8080_8080_8080
        func hasZeroByte(_ v: UInt64) -> UInt64 { (v &- ones) & ~v & highs }
        let quote = hasZeroByte(word ^ (ones &* 0x22))
        let backslash = hasZeroByte(word ^ (ones &* 0x5C))
        let control = (word &- ones &* 0x20) & ~word & highs
        return quote | backslash | control | (word & highs)
    }

    private mutating func hex4() throws(Failure) -> UInt32 {
        guard i + 4 <= bytes.count else { throw fail("invalid \\u escape") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            guard let digit = Self.hexDigit(bytes[i]) else { throw fail("invalid \\u escape") }
            value = value << 4 | digit
            i += 1
        }
        return value
    }

    static func hexDigit(_ c: UInt8) -> UInt32? {
        switch c {
        case 48...57: return UInt32(c - 48)
        case 97...102: return UInt32(c - 87)
        case 65...70: return UInt32(c - 55)
        default: return nil
        }
    }
}
