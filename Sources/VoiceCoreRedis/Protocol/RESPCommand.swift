/// One Redis command as its argument list; arguments are binary-safe.
///
/// Commands are encoded by ``RESPEncoder`` straight into the request buffer in RESP2 form
/// (`*N\r\n$len\r\narg\r\n…`), the same bytes `redisAppendCommandArgv` would produce, so a
/// pipeline of thousands of commands is one buffer handed to hiredis in one call.
public struct RESPCommand: Sendable, Hashable, CustomStringConvertible {
    public var arguments: [RESPArgument]

    public init(_ arguments: [RESPArgument]) { self.arguments = arguments }
    public init(_ arguments: RESPArgument...) { self.arguments = arguments }

    /// The command name and its first argument only: arguments may carry secrets (AUTH) or payloads.
    public var description: String {
        arguments.prefix(2).map { argument -> String in
            switch argument {
            case .string(let s): return s
            case .bytes(let b): return "<\(b.count) bytes>"
            case .integer(let i): return String(i)
            }
        }.joined(separator: " ")
    }
}

/// One argument of a ``RESPCommand``.
public enum RESPArgument: Sendable, Hashable, ExpressibleByStringLiteral, ExpressibleByIntegerLiteral {
    case string(String)
    case bytes([UInt8])
    case integer(Int)

    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int) { self = .integer(value) }
}

/// Appends commands to a byte buffer in RESP2 wire form.
public struct RESPEncoder: Sendable {
    public private(set) var buffer: [UInt8] = []

    public init(reservingCapacity capacity: Int = 0) {
        buffer.reserveCapacity(capacity)
    }

    public mutating func append(_ command: RESPCommand) {
        appendHeader(UInt8(ascii: "*"), command.arguments.count)
        for argument in command.arguments {
            switch argument {
            case .string(let s):
                var s = s
                s.withUTF8 { appendBulk($0) }
            case .bytes(let b):
                b.withUnsafeBufferPointer { appendBulk($0) }
            case .integer(let i):
                var text = String(i)
                text.withUTF8 { appendBulk($0) }
            }
        }
    }

    public mutating func removeAll() {
        buffer.removeAll(keepingCapacity: true)
    }

    private mutating func appendBulk(_ bytes: UnsafeBufferPointer<UInt8>) {
        appendHeader(UInt8(ascii: "$"), bytes.count)
        buffer.append(contentsOf: bytes)
        buffer.append(13)
        buffer.append(10)
    }

    private mutating func appendHeader(_ marker: UInt8, _ count: Int) {
        buffer.append(marker)
        appendDecimal(count)
        buffer.append(13)
        buffer.append(10)
    }

    private mutating func appendDecimal(_ value: Int) {
        if value < 10 {
            buffer.append(UInt8(ascii: "0") + UInt8(value))
            return
        }
        var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                     UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) =
            (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var v = value
        var count = 0
        withUnsafeMutableBytes(of: &digits) { raw in
            while v > 0 {
                raw[19 - count] = UInt8(ascii: "0") + UInt8(v % 10)
                v /= 10
                count += 1
            }
            buffer.append(contentsOf: raw[(20 - count)...])
        }
    }
}
