/// A Redis command together with the type its reply decodes to.
///
/// Commands are built by static functions (`.xadd(…)`, `.xreadgroup(…)`, `.ping()`) and sent with
/// ``RedisConnection/execute(_:)`` or, many at once, ``RedisConnection/pipeline(_:)``.
public struct RedisCommand<Response: Sendable>: Sendable {
    /// The arguments sent on the wire.
    public let command: RESPCommand
    /// For blocking commands (`BLOCK ms`): how long the server may hold the reply.
    public let blockingTimeout: Duration?
    let decode: @Sendable (RESPValue) throws -> Response
    /// Decodes the hiredis reply in place (large, hot replies); used by single-command `execute`.
    let decodeReply: (@Sendable (ReplyReader) throws -> Response)?

    /// A command with a custom decoder for its reply.
    public init(_ command: RESPCommand, blockingTimeout: Duration? = nil, decode: @escaping @Sendable (RESPValue) throws -> Response) {
        self.command = command
        self.blockingTimeout = blockingTimeout
        self.decode = decode
        self.decodeReply = nil
    }

    init(_ command: RESPCommand, blockingTimeout: Duration? = nil, decodeReply: @escaping @Sendable (ReplyReader) throws -> Response, decode: @escaping @Sendable (RESPValue) throws -> Response) {
        self.command = command
        self.blockingTimeout = blockingTimeout
        self.decode = decode
        self.decodeReply = decodeReply
    }
}

extension RedisCommand where Response == RESPValue {
    /// Any command, with its reply as a raw value.
    public static func raw(_ arguments: RESPArgument...) -> Self {
        RedisCommand(RESPCommand(arguments)) { $0 }
    }

    /// Any command, with its reply as a raw value.
    public static func raw(_ arguments: [RESPArgument]) -> Self {
        RedisCommand(RESPCommand(arguments)) { $0 }
    }
}

extension RedisCommand where Response == String {
    /// `PING` → `PONG`.
    public static func ping() -> Self {
        RedisCommand(RESPCommand("PING")) { try $0.string.orThrow("PING", $0) }
    }

    /// `INFO [section]`: the raw text.
    public static func info(_ section: String? = nil) -> Self {
        RedisCommand(RESPCommand(["INFO"] + (section.map { [.string($0)] } ?? []))) { try $0.string.orThrow("INFO", $0) }
    }

    /// `SCRIPT LOAD script` → the script's SHA1.
    public static func scriptLoad(_ script: String) -> Self {
        RedisCommand(RESPCommand("SCRIPT", "LOAD", .string(script))) { try $0.string.orThrow("SCRIPT LOAD", $0) }
    }
}

extension RedisCommand where Response == Int {
    /// `DEL key…` → the number of keys removed.
    public static func del(_ keys: [String]) -> Self {
        RedisCommand(RESPCommand(["DEL"] + keys.map { .string($0) })) { try $0.int.orThrow("DEL", $0) }
    }

    /// `CLIENT ID` → this connection's id (for `CLIENT KILL ID`).
    public static func clientID() -> Self {
        RedisCommand(RESPCommand("CLIENT", "ID")) { try $0.int.orThrow("CLIENT ID", $0) }
    }
}

extension RedisCommand where Response == RESPValue {
    /// `EVALSHA sha numkeys key… arg…`; the script's reply as a raw value. A `NOSCRIPT` error means
    /// the script must be loaded first (see ``RedisScript``).
    public static func evalsha(_ sha: String, keys: [String], arguments: [RESPArgument]) -> Self {
        RedisCommand(RESPCommand(["EVALSHA", .string(sha), .integer(keys.count)] + keys.map { .string($0) } + arguments)) { $0 }
    }
}

extension Optional {
    func orThrow(_ what: String, _ reply: RESPValue) throws -> Wrapped {
        guard let self else { throw RedisError.unexpected(what, reply) }
        return self
    }
}

/// One page of a `SCAN`.
public struct ScanPage: Sendable, Hashable {
    /// The cursor for the next call; `0` when the scan is complete.
    public var cursor: Int
    public var keys: [String]
}

extension RedisCommand where Response == ScanPage {
    /// `SCAN cursor [MATCH pattern] [COUNT n] [TYPE type]`.
    public static func scan(cursor: Int, match: String? = nil, count: Int? = nil, type: String? = nil) -> Self {
        var args: [RESPArgument] = ["SCAN", .integer(cursor)]
        if let match { args += ["MATCH", .string(match)] }
        if let count { args += ["COUNT", .integer(count)] }
        if let type { args += ["TYPE", .string(type)] }
        return RedisCommand(RESPCommand(args)) { value in
            guard case .array(let parts) = value, parts.count == 2, let cursor = parts[0].int, case .array(let keys) = parts[1] else {
                throw RedisError.unexpected("SCAN", value)
            }
            return ScanPage(cursor: cursor, keys: keys.compactMap(\.string))
        }
    }
}

extension RedisConnection {
    /// Every key matching `pattern` (and of `type`, e.g. `stream`), by `SCAN` until the cursor
    /// returns to 0; keys reported twice by SCAN are listed once. Sorted.
    public func scanAll(match pattern: String, type: String? = nil) throws -> [String] {
        var cursor = 0
        var keys: Set<String> = []
        repeat {
            let page = try execute(.scan(cursor: cursor, match: pattern, count: 1000, type: type))
            keys.formUnion(page.keys)
            cursor = page.cursor
        } while cursor != 0
        return keys.sorted()
    }
}
