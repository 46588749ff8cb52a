import Crypto
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

    // Foundation's UUID(uuidString:) goes through sscanf on Linux: slow on a per-event path. Eight
    // hex digits at a time instead (SWAR: each byte of a 64-bit word is one lane).
    private static func parse(_ text: UnsafeBufferPointer<UInt8>) -> Identifier? {
        guard text.count == 36, let base = text.baseAddress,
              text[8] == 45, text[13] == 45, text[18] == 45, text[23] == 45 else { return nil }
        let raw = UnsafeRawPointer(base)
        func eight(_ offset: Int) -> UInt64 { UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt64.self)) }
        func fours(_ first: Int, _ second: Int) -> UInt64 {
            UInt64(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: first, as: UInt32.self)))
                | UInt64(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: second, as: UInt32.self))) << 32
        }
        // 8-4-4-4-12: the 32 digits as four runs of eight.
        guard let a = hexBytes(eight(0)), let b = hexBytes(fours(9, 14)), let c = hexBytes(fours(19, 24)), let d = hexBytes(eight(28)) else {
            return nil
        }
        var uuid: uuid_t = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        withUnsafeMutableBytes(of: &uuid) { out in
            out.storeBytes(of: a.littleEndian, toByteOffset: 0, as: UInt32.self)
            out.storeBytes(of: b.littleEndian, toByteOffset: 4, as: UInt32.self)
            out.storeBytes(of: c.littleEndian, toByteOffset: 8, as: UInt32.self)
            out.storeBytes(of: d.littleEndian, toByteOffset: 12, as: UInt32.self)
        }
        return Identifier(UUID(uuid: uuid))
    }

    private static let lanes: UInt64 = 0x8080_8080_8080_8080

    /// Eight ASCII hex digits (either case; the first in the lowest byte) as four bytes (the first
    /// in the lowest byte), or nil if any is not a hex digit.
    @inline(__always)
    static func hexBytes(_ v: UInt64) -> UInt32? {
        // Every lane below 0x80, so the additions below cannot carry into the next lane.
        guard v & lanes == 0 else { return nil }
        let isDigit = (v &+ 0x5050_5050_5050_5050) & ~(v &+ 0x4646_4646_4646_4646) & lanes  // 0x30...0x39
        let lower = v | 0x2020_2020_2020_2020
        let isLetter = (lower &+ 0x1F1F_1F1F_1F1F_1F1F) & ~(lower &+ 0x1919_1919_1919_1919) & lanes  // a...f, A...F
        guard isDigit | isLetter == lanes else { return nil }
        var x = (v & 0x0F0F_0F0F_0F0F_0F0F) &+ (isLetter >> 7) &* 9  // the digits' values, one per lane
        x = ((x << 4) | (x >> 8)) & 0x00FF_00FF_00FF_00FF  // two digits per 16-bit lane
        x = (x | (x >> 8)) & 0x0000_FFFF_0000_FFFF
        x = (x | (x >> 16)) & 0xFFFF_FFFF
        return UInt32(truncatingIfNeeded: x)
    }

    /// Four bytes (the first in the lowest byte) as eight lowercase hex digits (the first in the
    /// lowest byte).
    @inline(__always)
    static func hexDigits(_ bytes: UInt32) -> UInt64 {
        var x = UInt64(bytes)
        x = (x | (x << 16)) & 0x0000_FFFF_0000_FFFF
        x = (x | (x << 8)) & 0x00FF_00FF_00FF_00FF  // one byte per 16-bit lane
        let n = ((x >> 4) & 0x000F_000F_000F_000F) | ((x & 0x000F_000F_000F_000F) << 8)  // high digit first
        let letters = ((n &+ 0x0606_0606_0606_0606) >> 4) & 0x0101_0101_0101_0101  // 1 where the digit is 10...15
        return n &+ 0x3030_3030_3030_3030 &+ letters &* 39
    }

    public var description: String {
        String(unsafeUninitializedCapacity: 36) { Self.write(uuid.uuid, to: $0) }
    }

    /// The lowercase text form as UTF-8 bytes.
    public var utf8: [UInt8] {
        // Written on the stack, then copied: `Array(unsafeUninitializedCapacity:)` calls the
        // unspecialized allocator, which looks up the array's metadata at run time (twice the
        // cost of this whole property).
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 36) { buffer in
            Array(UnsafeBufferPointer(rebasing: buffer[..<Self.write(uuid.uuid, to: buffer)]))
        }
    }

    /// Appends the lowercase text form (36 bytes).
    public func append(to buffer: inout [UInt8]) {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 36) { text in
            buffer.append(contentsOf: UnsafeBufferPointer(start: text.baseAddress, count: Self.write(uuid.uuid, to: text)))
        }
    }

    /// Writes the 36 bytes of the lowercase text form at `target`.
    func write(to target: UnsafeMutablePointer<UInt8>) {
        _ = Self.write(uuid.uuid, to: UnsafeMutableBufferPointer(start: target, count: 36))
    }

    /// Writes `8-4-4-4-12` lowercase hex into `out` (at least 36 bytes); returns 36.
    private static func write(_ uuid: uuid_t, to out: UnsafeMutableBufferPointer<UInt8>) -> Int {
        precondition(out.count >= 36)
        let target = UnsafeMutableRawPointer(out.baseAddress!)
        withUnsafeBytes(of: uuid) { raw in
            func word(_ offset: Int) -> UInt32 { UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt32.self)) }
            let a = hexDigits(word(0)), b = hexDigits(word(4)), c = hexDigits(word(8)), d = hexDigits(word(12))
            target.storeBytes(of: a.littleEndian, toByteOffset: 0, as: UInt64.self)
            target.storeBytes(of: UInt8(ascii: "-"), toByteOffset: 8, as: UInt8.self)
            target.storeBytes(of: UInt32(truncatingIfNeeded: b).littleEndian, toByteOffset: 9, as: UInt32.self)
            target.storeBytes(of: UInt8(ascii: "-"), toByteOffset: 13, as: UInt8.self)
            target.storeBytes(of: UInt32(truncatingIfNeeded: b >> 32).littleEndian, toByteOffset: 14, as: UInt32.self)
            target.storeBytes(of: UInt8(ascii: "-"), toByteOffset: 18, as: UInt8.self)
            target.storeBytes(of: UInt32(truncatingIfNeeded: c).littleEndian, toByteOffset: 19, as: UInt32.self)
            target.storeBytes(of: UInt8(ascii: "-"), toByteOffset: 23, as: UInt8.self)
            target.storeBytes(of: UInt32(truncatingIfNeeded: c >> 32).littleEndian, toByteOffset: 24, as: UInt32.self)
            target.storeBytes(of: d.littleEndian, toByteOffset: 28, as: UInt64.self)
        }
        return 36
    }

    public static func < (lhs: Identifier, rhs: Identifier) -> Bool {
        withUnsafeBytes(of: lhs.uuid.uuid) { l in withUnsafeBytes(of: rhs.uuid.uuid) { r in l.lexicographicallyPrecedes(r) } }
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let text = try container.decode(String.self)
        guard let parsed = Identifier(text) else {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: "'\(text.prefix(40))' is not a UUID")
        }
        self = parsed
    }

    public func encode(to encoder: any Encoder) throws {
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
    ///
    /// The edge derives a call id per webhook and consumers a usage id per event: swift-crypto's
    /// SHA-1 hashes the namespace and the name's UTF-8 in place, without an input array.
    public static func v5(namespace: Identifier, name: String) -> Identifier {
        var hash = Insecure.SHA1()
        withUnsafeBytes(of: namespace.uuid.uuid) { hash.update(bufferPointer: $0) }
        var name = name
        name.withUTF8 { hash.update(bufferPointer: UnsafeRawBufferPointer($0)) }
        let digest = hash.finalize()
        var uuid: uuid_t = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        withUnsafeMutableBytes(of: &uuid) { bytes in
            digest.withUnsafeBytes { hashed in bytes.copyMemory(from: UnsafeRawBufferPointer(rebasing: hashed.prefix(16))) }
            bytes[6] = 0x50 | (bytes[6] & 0x0f)
            bytes[8] = 0x80 | (bytes[8] & 0x3f)
        }
        return Identifier(UUID(uuid: uuid))
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
