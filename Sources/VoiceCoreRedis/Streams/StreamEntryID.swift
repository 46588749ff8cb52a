/// A stream entry id, `<milliseconds>-<sequence>`, ordered as Redis orders them.
public struct StreamEntryID: Sendable, Hashable, Comparable, CustomStringConvertible, LosslessStringConvertible {
    public var milliseconds: UInt64
    public var sequence: UInt64

    public init(milliseconds: UInt64, sequence: UInt64 = 0) {
        self.milliseconds = milliseconds
        self.sequence = sequence
    }

    /// Parses `1700000000000-3`, or `1700000000000` (sequence 0).
    public init?(_ text: String) {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 1 || parts.count == 2, let ms = UInt64(parts[0]) else { return nil }
        let seq: UInt64
        if parts.count == 2 {
            guard let s = UInt64(parts[1]) else { return nil }
            seq = s
        } else {
            seq = 0
        }
        self.init(milliseconds: ms, sequence: seq)
    }

    /// `0-0`, below every real entry.
    public static let zero = StreamEntryID(milliseconds: 0, sequence: 0)

    /// The id right after this one (for exclusive ranges).
    public var successor: StreamEntryID {
        sequence == .max ? StreamEntryID(milliseconds: milliseconds + 1, sequence: 0) : StreamEntryID(milliseconds: milliseconds, sequence: sequence + 1)
    }

    public var description: String { "\(milliseconds)-\(sequence)" }

    public static func < (lhs: StreamEntryID, rhs: StreamEntryID) -> Bool {
        (lhs.milliseconds, lhs.sequence) < (rhs.milliseconds, rhs.sequence)
    }

    /// Parses the ASCII bytes of an id (`1700000000000-3`).
    public init?(ascii bytes: [UInt8]) {
        guard let id = bytes.withUnsafeBufferPointer({ StreamEntryID(ascii: $0) }) else { return nil }
        self = id
    }

    /// Parses the ASCII bytes of an id without building a String (ids arrive once per entry).
    init?(ascii bytes: UnsafeBufferPointer<UInt8>) {
        var ms: UInt64 = 0, seq: UInt64 = 0
        var seenDash = false, digits = 0
        for byte in bytes {
            if byte == UInt8(ascii: "-") {
                guard !seenDash, digits > 0 else { return nil }
                seenDash = true
                digits = 0
                continue
            }
            guard byte >= 48, byte <= 57 else { return nil }
            let (value, overflow) = (seenDash ? seq : ms).multipliedReportingOverflow(by: 10)
            let (sum, overflow2) = value.addingReportingOverflow(UInt64(byte - 48))
            guard !overflow, !overflow2 else { return nil }
            if seenDash { seq = sum } else { ms = sum }
            digits += 1
        }
        guard digits > 0 else { return nil }
        self.init(milliseconds: ms, sequence: seq)
    }

    static func decode(_ value: RESPValue, _ what: String) throws -> StreamEntryID {
        let parsed: StreamEntryID?
        switch value {
        case .bulkString(let bytes): parsed = StreamEntryID(ascii: bytes)
        case .simpleString(let text): parsed = StreamEntryID(text)
        default: parsed = nil
        }
        guard let parsed else { throw RedisError.unexpected("\(what) (entry id)", value) }
        return parsed
    }
}
