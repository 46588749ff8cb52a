/// A Redis reply, copied out of hiredis' memory so it can outlive the C reply and cross threads.
public enum RESPValue: Sendable, Hashable {
    case simpleString(String)
    case error(String)
    case integer(Int64)
    case bulkString([UInt8])
    /// A nil bulk string or nil array (hiredis reports both the same way in RESP2).
    case null
    case array([RESPValue])

    /// The text of a simple or bulk string (bulk strings decoded as UTF-8).
    public var string: String? {
        switch self {
        case .simpleString(let s): return s
        case .bulkString(let bytes): return String(decoding: bytes, as: UTF8.self)
        default: return nil
        }
    }

    /// The bytes of a bulk or simple string.
    public var bytes: [UInt8]? {
        switch self {
        case .bulkString(let bytes): return bytes
        case .simpleString(let s): return Array(s.utf8)
        default: return nil
        }
    }

    /// An integer reply, or a string reply holding a decimal integer.
    public var int: Int? {
        switch self {
        case .integer(let value): return Int(value)
        case .bulkString, .simpleString: return string.flatMap { Int($0) }
        default: return nil
        }
    }

    /// Whether this is an error reply.
    public var isError: Bool {
        if case .error = self { return true }
        return false
    }

    public var array: [RESPValue]? {
        if case .array(let values) = self { return values }
        return nil
    }

    public var isNull: Bool {
        if case .null = self { return true }
        return false
    }

    /// A short rendering for error messages (long values cut).
    var debugSummary: String {
        switch self {
        case .simpleString(let s): return "+\(s.prefix(60))"
        case .error(let s): return "-\(s.prefix(60))"
        case .integer(let i): return ":\(i)"
        case .bulkString(let b): return "$\(b.count) \"\(String(decoding: b.prefix(60), as: UTF8.self))\""
        case .null: return "(nil)"
        case .array(let values): return "*\(values.count) [" + values.prefix(4).map(\.debugSummary).joined(separator: ", ") + (values.count > 4 ? ", …]" : "]")
        }
    }
}
