/// SHA-1, for name-based UUIDv5 only (RFC 9562 defines v5 with it); not used for security.
///
/// Blocks are compressed straight from the message and a 128-byte tail on the stack: the edge
/// derives a call id and consumers check a usage id per event, so the digest allocates nothing
/// but its result.
public enum SHA1 {
    /// The 20-byte digest.
    public static func digest(_ message: [UInt8]) -> [UInt8] {
        var state = State()
        message.withUnsafeBufferPointer { bytes in
            let full = bytes.count / 64
            if let base = bytes.baseAddress {
                for block in 0..<full { state.compress(base + block * 64) }
            }
            // What is left, 0x80, zeros, then the message's length in bits: one or two blocks.
            withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 128) { tail in
                tail.initialize(repeating: 0)
                let rest = bytes.count - full * 64
                for i in 0..<rest { tail[i] = bytes[full * 64 + i] }
                tail[rest] = 0x80
                let blocks = rest < 56 ? 1 : 2
                let bitLength = UInt64(bytes.count) &* 8
                for i in 0..<8 { tail[blocks * 64 - 1 - i] = UInt8(truncatingIfNeeded: bitLength >> UInt64(8 * i)) }
                for block in 0..<blocks { state.compress(tail.baseAddress! + block * 64) }
            }
        }
        var out: [UInt8] = []
        out.reserveCapacity(20)
        for word in [state.h0, state.h1, state.h2, state.h3, state.h4] {
            out.append(UInt8(truncatingIfNeeded: word >> 24))
            out.append(UInt8(truncatingIfNeeded: word >> 16))
            out.append(UInt8(truncatingIfNeeded: word >> 8))
            out.append(UInt8(truncatingIfNeeded: word))
        }
        return out
    }

    /// The digest as 40 lowercase hex digits.
    public static func hex(_ message: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        return String(decoding: digest(message).flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 0x0f)]] }, as: UTF8.self)
    }

    private struct State {
        var h0: UInt32 = 0x67452301, h1: UInt32 = 0xEFCDAB89, h2: UInt32 = 0x98BADCFE, h3: UInt32 = 0x10325476, h4: UInt32 = 0xC3D2E1F0

        /// One 64-byte block.
        mutating func compress(_ block: UnsafePointer<UInt8>) {
            withUnsafeTemporaryAllocation(of: UInt32.self, capacity: 80) { w in
                for i in 0..<16 {
                    w[i] = UInt32(block[4 * i]) << 24 | UInt32(block[4 * i + 1]) << 16 | UInt32(block[4 * i + 2]) << 8 | UInt32(block[4 * i + 3])
                }
                for i in 16..<80 {
                    let x = w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]
                    w[i] = (x << 1) | (x >> 31)
                }
                var a = h0, b = h1, c = h2, d = h3, e = h4
                @inline(__always) func round(_ f: UInt32, _ k: UInt32, _ word: UInt32) {
                    let temp = ((a << 5) | (a >> 27)) &+ f &+ e &+ k &+ word
                    e = d; d = c; c = (b << 30) | (b >> 2); b = a; a = temp
                }
                for i in 0..<20 { round((b & c) | (~b & d), 0x5A827999, w[i]) }
                for i in 20..<40 { round(b ^ c ^ d, 0x6ED9EBA1, w[i]) }
                for i in 40..<60 { round((b & c) | (b & d) | (c & d), 0x8F1BBCDC, w[i]) }
                for i in 60..<80 { round(b ^ c ^ d, 0xCA62C1D6, w[i]) }
                h0 = h0 &+ a; h1 = h1 &+ b; h2 = h2 &+ c; h3 = h3 &+ d; h4 = h4 &+ e
            }
        }
    }
}
