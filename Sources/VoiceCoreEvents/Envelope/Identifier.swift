import Foundation
import Synchronization
import VoiceCoreTime

/// A UUID as the wire contract writes it: lowercase, hyphenated (`0193a1b2-…`).
///
/// Event ids are UUIDv7 (time-ordered, ``Identifier/v7(at:)``); call ids are UUIDv5 derived from the
/// provider's call id (``Identifier/v5(namespace:name:)``), so anyone can compute them.
public struct Identifier: Sendable, Hashable, Comparable, Codable, CustomStringConvertible {
    public var uuid: UUID

    public init(_ uuid: UUID) { self.uuid = uuid }

    /// A UUID written in the source (a namespace, a constant). An invalid literal is a programming
    /// error and stops the program with the literal in the message.
    init(literal: StaticString) {
        guard let parsed = Identifier("\(literal)") else { preconditionFailure("invalid UUID literal \(literal)") }
        self = parsed
    }

    /// Parses a UUID in either case (`8-4-4-4-12` hex digits).
    public init?(_ text: String) {
        var text = text
        guard let parsed = text.withUTF8({ Self.parse($0) }) else { return nil }
        self = parsed
    }

    /// Parses the UTF-8 bytes of a UUID.
    public init?(utf8 bytes: [UInt8]) {
        guard let parsed = bytes.withUnsafeBufferPointer({ Self.parse($0) }) else { return nil }
        self = parsed
    }

    init?(utf8 bytes: UnsafeBufferPointer<UInt8>) {
        guard let parsed = Self.parse(bytes) else { return nil }
        self = parsed
    }

    // Foundation's UUID(uuidString:) goes through sscanf on Linux: slow on a per-event path.
    private static func parse(_ text: UnsafeBufferPointer<UInt8>) -> Identifier? {
        guard text.count == 36, text[8] == 45, text[13] == 45, text[18] == 45, text[23] == 45 else { return nil }
        var uuid: uuid_t = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var invalid: UInt8 = 0
        withUnsafeMutableBytes(of: &uuid) { out in
            hexTable.withUnsafeBufferPointer { table in
                for index in 0..<16 {
                    let offset = Int(byteOffsets[index])
                    let high = table[Int(text[offset])], low = table[Int(text[offset + 1])]
                    invalid |= (high | low) & 0xF0
                    out[index] = high << 4 | low
                }
            }
        }
        return invalid == 0 ? Identifier(UUID(uuid: uuid)) : nil
    }

    /// Where each of the 16 bytes starts in `8-4-4-4-12` text.
    private static let byteOffsets: [Int] = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34]

    /// Hex digit values; 0xFF for anything else.
    private static let hexTable: [UInt8] = (0..<256).map { c in
        switch c {
        case 48...57: return UInt8(c - 48)
        case 97...102: return UInt8(c - 87)
        case 65...70: return UInt8(c - 55)
        default: return 0xFF
        }
    }

    public var description: String {
        String(unsafeUninitializedCapacity: 36) { Self.write(uuid.uuid, to: $0) }
    }

    /// The lowercase text form as UTF-8 bytes.
    public var utf8: [UInt8] {
        [UInt8](unsafeUninitializedCapacity: 36) { buffer, count in count = Self.write(uuid.uuid, to: buffer) }
    }

    /// Appends the lowercase text form (36 bytes).
    public func append(to buffer: inout [UInt8]) {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 36) { text in
            buffer.append(contentsOf: UnsafeBufferPointer(start: text.baseAddress, count: Self.write(uuid.uuid, to: text)))
        }
    }

    /// Writes `8-4-4-4-12` lowercase hex into `out` (at least 36 bytes); returns 36.
    private static func write(_ uuid: uuid_t, to out: UnsafeMutableBufferPointer<UInt8>) -> Int {
        withUnsafeBytes(of: uuid) { raw in
            var o = 0
            for i in 0..<16 {
                if i == 4 || i == 6 || i == 8 || i == 10 { out[o] = UInt8(ascii: "-"); o += 1 }
                let byte = raw[i]
                out[o] = hexDigit(byte >> 4)
                out[o + 1] = hexDigit(byte & 0x0f)
                o += 2
            }
            return o
        }
    }

    @inline(__always)
    private static func hexDigit(_ nibble: UInt8) -> UInt8 {
        nibble < 10 ? 48 + nibble : 87 + nibble
    }

    public static func < (lhs: Identifier, rhs: Identifier) -> Bool {
        withUnsafeBytes(of: lhs.uuid.uuid) { l in withUnsafeBytes(of: rhs.uuid.uuid) { r in l.lexicographicallyPrecedes(r) } }
    }

    public init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        let text = try container.decode(String.self)
        guard let parsed = Identifier(text) else {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: "'\(text.prefix(40))' is not a UUID")
        }
        self = parsed
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }

    // MARK: UUIDv7

    /// The last UUIDv7 time and counter, and a PRNG for the random bits (seeded from the system;
    /// one `getrandom` per id would be a syscall per event). Ids need uniqueness, not secrecy.
    private struct V7State {
        var milliseconds: Int64 = 0
        var counter: UInt16 = 0
        var random = Xoshiro256StarStar()
    }

    private static let v7State = Mutex(V7State())

    /// A new UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then a 12-bit counter that keeps ids
    /// made in the same millisecond by this process in order, then 62 random bits.
    public static func v7(at time: Timestamp = .now) -> Identifier {
        var ms = time.millisecondsSinceEpoch
        let (counter, tail): (UInt16, UInt64) = v7State.withLock { state in
            let start = UInt16(truncatingIfNeeded: state.random.next()) & 0x01ff
            if ms <= state.milliseconds {
                // Same (or an earlier, after a clock step back) millisecond: count up from the last id.
                ms = state.milliseconds
                if state.counter >= 0x0fff {
                    ms += 1
                    state.milliseconds = ms
                    state.counter = start
                } else {
                    state.counter += 1
                }
            } else {
                // Start low in a new millisecond, leaving room to count up.
                state.milliseconds = ms
                state.counter = start
            }
            return (state.counter, state.random.next())
        }
        // Built in place: no heap array per id.
        var uuid: uuid_t = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        withUnsafeMutableBytes(of: &uuid) { bytes in
            for i in 0..<6 { bytes[i] = UInt8(truncatingIfNeeded: ms >> (40 - 8 * i)) }
            bytes[6] = 0x70 | UInt8(counter >> 8)
            bytes[7] = UInt8(truncatingIfNeeded: counter)
            for i in 8..<16 { bytes[i] = UInt8(truncatingIfNeeded: tail >> (8 * (15 - i))) }
            bytes[8] = 0x80 | (bytes[8] & 0x3f)
        }
        return Identifier(UUID(uuid: uuid))
    }

    /// The Unix milliseconds of a UUIDv7.
    public var v7Milliseconds: Int64 {
        withUnsafeBytes(of: uuid.uuid) { raw in raw.prefix(6).reduce(Int64(0)) { $0 << 8 | Int64($1) } }
    }

    // MARK: UUIDv5

    /// A name-based UUIDv5 (RFC 9562: SHA-1 of namespace and name), reproducible in any language
    /// (`uuid.uuid5(namespace, name)` in Python).
    public static func v5(namespace: Identifier, name: String) -> Identifier {
        var input = withUnsafeBytes(of: namespace.uuid.uuid) { Array($0) }
        input.append(contentsOf: name.utf8)
        var bytes = Array(SHA1.digest(input).prefix(16))
        bytes[6] = 0x50 | (bytes[6] & 0x0f)
        bytes[8] = 0x80 | (bytes[8] & 0x3f)
        return Identifier(bytes: bytes)
    }

    private init(bytes: [UInt8]) {
        uuid = UUID(uuid: (bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
                           bytes[8], bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15]))
    }
}

/// xoshiro256** (Blackman and Vigna), seeded from the system generator.
struct Xoshiro256StarStar: RandomNumberGenerator {
    private var s: (UInt64, UInt64, UInt64, UInt64)

    init() {
        var system = SystemRandomNumberGenerator()
        s = (system.next(), system.next(), system.next(), system.next())
        if s == (0, 0, 0, 0) { s.0 = 1 }
    }

    mutating func next() -> UInt64 {
        let result = rotl(s.1 &* 5, 7) &* 9
        let t = s.1 << 17
        s.2 ^= s.0
        s.3 ^= s.1
        s.1 ^= s.2
        s.0 ^= s.3
        s.2 ^= t
        s.3 = rotl(s.3, 45)
        return result
    }

    private func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }
}
