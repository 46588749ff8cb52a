import CHiredis
import Foundation
import Logging
import VoiceCoreExecutors

/// One connection to Redis over hiredis, owned by an actor that runs on a thread of its own.
///
/// Every hiredis call blocks, so every call runs on the connection's ``DedicatedThreadExecutor``
/// and never on Swift's cooperative pool: a consumer blocked in `XREADGROUP BLOCK` delays no other
/// task. Replies are copied into ``RESPValue`` before hiredis frees them; no C pointer leaves
/// this type.
///
/// ```swift
/// let redis = try await RedisConnection.connect(try RedisConfiguration(url: "redis://127.0.0.1:16379"))
/// let id = try await redis.execute(.xadd("vc:{p00}:calls", fields: [("type", "demo")]))
/// ```
///
/// When the socket fails, every command in flight fails with ``RedisError/Kind/connection`` or
/// ``RedisError/Kind/timeout``: it is never resent, since Redis may already have applied it. The
/// next command connects again by itself (AUTH, SELECT and the client name first), on the
/// ``ReconnectSchedule`` every connection of VoiceCore shares: while Redis stays unreachable,
/// attempts are spaced out with backoff and jitter, and commands in between fail at once with
/// ``RedisError/Kind/connection`` saying when the next attempt is due. Every holder of a
/// connection (publishers, state stores, queues, readers) recovers this way, with no code of its
/// own. Only ``close()`` stops it: a closed connection fails with
/// ``RedisError/Kind/connectionClosed`` until ``reconnect(maxAttempts:)``.
public actor RedisConnection {
    public nonisolated let configuration: RedisConfiguration
    private let logger: Logger
    private nonisolated let executor: DedicatedThreadExecutor

    public nonisolated var unownedExecutor: UnownedSerialExecutor {
        executor.asUnownedSerialExecutor()
    }

    /// The connection's thread as a task executor: code that calls this connection in a tight
    /// loop runs inside `withTaskExecutorPreference(connection.taskExecutor) { … }` to avoid a
    /// thread hop per call.
    public nonisolated var taskExecutor: any TaskExecutor { executor }

    // Touched only on `executor`'s thread (actor isolation) and in deinit.
    nonisolated(unsafe) private var context: UnsafeMutablePointer<redisContext>?
    private var encoder = RESPEncoder(reservingCapacity: 4096)
    private var currentTimeout: Duration?
    /// When a broken connection may connect again (see the type's documentation).
    private var schedule = ReconnectSchedule()
    /// The last failed attempt's error, repeated (with the wait) until the next attempt.
    private var lastConnectError: RedisError?
    /// Set by ``close()``: the owner closed it; nothing reconnects until ``reconnect(maxAttempts:)``.
    private var closedByOwner = false

    /// `true` while the connection is usable.
    public var isConnected: Bool { context != nil }

    private init(configuration: RedisConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
        self.executor = DedicatedThreadExecutor(name: Self.threadName(configuration.clientName))
    }

    /// The connection thread's name, from the client name, so `top -H` and perf tell the threads
    /// apart: `rd:` and the role (`vc-consumer:ai:…:reader` → `rd:ai.reader`,
    /// `vc-service:ai-publisher:…` → `rd:ai-publisher`, `vc-projector:<instance>-0` →
    /// `rd:<instance>-0`), cut to Linux's 15 bytes; `vc-redis` without a client name.
    static func threadName(_ clientName: String?) -> String {
        guard let clientName else { return "vc-redis" }
        let parts = clientName.split(separator: ":")
        let role: Substring
        switch parts.first {
        case "vc-consumer" where parts.count >= 4: role = "\(parts[1].prefix(5)).\(parts[parts.count - 1])"
        case "vc-service" where parts.count >= 2, "vc-projector" where parts.count >= 2: role = parts[1]
        default: role = parts.last ?? "redis"
        }
        return String(decoding: "rd:\(role)".utf8.prefix(15), as: UTF8.self)
    }

    deinit {
        if let context { vc_redis_free(context) }
        executor.shutdown()
    }

    /// Connects, authenticates and selects the database.
    /// - Throws: ``RedisError`` of kind `connection` (with the endpoint and the cause),
    ///   `timeout`, or `server` (for example a wrong password: `WRONGPASS`).
    public static func connect(
        _ configuration: RedisConfiguration,
        logger: Logger = Logger(label: "voicecore.redis")
    ) async throws -> RedisConnection {
        let connection = RedisConnection(configuration: configuration, logger: logger)
        try await connection.open()
        return connection
    }

    /// Closes the broken or open connection and connects again: up to `maxAttempts` attempts,
    /// spaced by the connection's ``ReconnectSchedule`` (the one reconnect policy of both clients).
    public func reconnect(maxAttempts: Int = 5) async throws {
        closeContext()
        closedByOwner = false
        schedule.succeeded()
        var attempt = 1
        while true {
            if let wait = schedule.wait(at: .now) { try await Task.sleep(for: wait) }
            do {
                try open()
                schedule.succeeded()
                lastConnectError = nil
                logger.info("reconnected to Redis", metadata: ["redis.endpoint": "\(configuration.endpoint)", "attempt": "\(attempt)"])
                return
            } catch let error as RedisError {
                schedule.failed(at: .now)
                lastConnectError = error
                guard error.kind == .connection || error.kind == .timeout, attempt < maxAttempts else { throw error }
                logger.info("Redis reconnect failed; retrying", metadata: ["redis.endpoint": "\(configuration.endpoint)", "attempt": "\(attempt)", "error": "\(error.message)"])
                attempt += 1
            }
        }
    }

    /// Connects again when the connection is closed (once, no retries); does nothing while it is
    /// open. A caller that shares the connection uses this instead of ``reconnect(maxAttempts:)``
    /// so that two of them never replace each other's fresh connection.
    public func reconnectIfClosed() throws {
        guard context == nil else { return }
        if closedByOwner {
            closedByOwner = false
            try open()
        } else {
            // Broken: on the shared schedule, so a node that is down is not dialled per command.
            _ = try liveContext()
        }
    }

    /// Closes the connection. Later commands fail with `connectionClosed` until `reconnect()`.
    public func close() {
        closedByOwner = true
        closeContext()
    }

    /// The open connection, or a new one when the last broke and the schedule allows an attempt.
    private func liveContext() throws -> UnsafeMutablePointer<redisContext> {
        if let context { return context }
        if closedByOwner {
            throw RedisError(kind: .connectionClosed, message: "the connection was closed; call reconnect()", endpoint: endpointText)
        }
        let now = ContinuousClock.now
        if let wait = schedule.wait(at: now) {
            let cause = lastConnectError.map { ": \($0.message)" } ?? ""
            throw RedisError(kind: lastConnectError?.kind ?? .connection,
                             message: "Redis is unreachable\(cause); next attempt in \(wait.milliseconds) ms",
                             serverCode: lastConnectError?.serverCode, endpoint: endpointText)
        }
        do {
            try open()
        } catch let error as RedisError {
            schedule.failed(at: now)
            if schedule.failures == 1 || schedule.failures % 20 == 0 {
                logger.warning("Redis unreachable; reconnecting with backoff", metadata: [
                    "redis.endpoint": "\(configuration.endpoint)", "attempts": "\(schedule.failures)", "error": "\(error.message)",
                ])
            }
            lastConnectError = error
            throw error
        }
        if schedule.failures > 0 {
            logger.info("reconnected to Redis", metadata: ["redis.endpoint": "\(configuration.endpoint)", "attempts": "\(schedule.failures + 1)"])
        }
        schedule.succeeded()
        lastConnectError = nil
        guard let context else {
            throw RedisError(kind: .connection, message: "the connection closed while opening", endpoint: endpointText)
        }
        return context
    }

    // MARK: Commands

    /// Sends `preceding` (replies returned as values, error replies included) and then `command`
    /// in one round trip, e.g. the acknowledgements of the last batch ahead of the next read.
    /// - Throws: ``RedisError`` when the connection fails or `command` gets an error reply.
    public func execute<Response>(_ command: RedisCommand<Response>, after preceding: [RESPCommand]) throws -> ([RESPValue], Response) {
        if preceding.isEmpty { return ([], try execute(command)) }
        if let decodeReply = command.decodeReply {
            return try roundTrip(after: preceding, command.command, timeout: command.blockingTimeout, decodeReply)
        }
        let replies = try roundTrip(preceding + [command.command], timeout: command.blockingTimeout)
        if case .error(let message) = replies[replies.count - 1] { throw RedisError.server(message, endpoint: endpointText) }
        return (Array(replies.dropLast()), try command.decode(replies[replies.count - 1]))
    }

    /// Sends one typed command and decodes its reply. A server error reply throws.
    public func execute<Response>(_ command: RedisCommand<Response>) throws -> Response {
        if let decodeReply = command.decodeReply {
            return try roundTrip(command.command, timeout: command.blockingTimeout, decodeReply)
        }
        let reply = try roundTrip([command.command], timeout: command.blockingTimeout)[0]
        if case .error(let message) = reply { throw RedisError.server(message, endpoint: endpointText) }
        return try command.decode(reply)
    }

    /// Sends several typed commands in one round trip and returns their decoded replies in order.
    /// The first server error reply throws (after all replies were read, so the connection stays
    /// in step).
    public func execute<each Response>(_ commands: repeat RedisCommand<each Response>) throws -> sending (repeat each Response) {
        var list: [RESPCommand] = []
        var timeout: Duration?
        for command in repeat each commands {
            list.append(command.command)
            if let t = command.blockingTimeout { timeout = max(timeout ?? t, t) }
        }
        let replies = try roundTrip(list, timeout: timeout)
        var index = 0
        func next<R>(_ command: RedisCommand<R>) throws -> R {
            let reply = replies[index]
            index += 1
            if case .error(let message) = reply { throw RedisError.server(message, endpoint: endpointText) }
            return try command.decode(reply)
        }
        return (repeat try next(each commands))
    }

    /// Sends many commands of one type in one round trip (a pipeline) and returns each result in
    /// order. A server error for one command is that command's failure; a connection error throws.
    public func pipeline<Response>(_ commands: [RedisCommand<Response>]) throws -> [Result<Response, RedisError>] {
        // A plain loop: key paths and `map` in this generic context cost a metadata lookup per element.
        var wire: [RESPCommand] = []
        wire.reserveCapacity(commands.count)
        var block: Duration?
        for index in commands.indices {
            wire.append(commands[index].command)
            if let t = commands[index].blockingTimeout { block = max(block ?? t, t) }
        }
        let replies = try roundTrip(wire, timeout: block)
        var results: [Result<Response, RedisError>] = []
        results.reserveCapacity(replies.count)
        for index in replies.indices {
            let reply = replies[index]
            let command = commands[index]
            if case .error(let message) = reply {
                results.append(.failure(.server(message, endpoint: endpointText)))
                continue
            }
            do {
                results.append(.success(try command.decode(reply)))
            } catch let error as RedisError {
                results.append(.failure(error))
            }
        }
        return results
    }

    /// Sends raw commands in one round trip; replies come back as values, error replies included.
    public func send(_ commands: [RESPCommand], blockingFor block: Duration? = nil) throws -> [RESPValue] {
        try roundTrip(commands, timeout: block)
    }

    /// Sends one raw command; an error reply throws.
    @discardableResult
    public func send(_ arguments: RESPArgument...) throws -> RESPValue {
        let reply = try roundTrip([RESPCommand(arguments)], timeout: nil)[0]
        if case .error(let message) = reply { throw RedisError.server(message, endpoint: endpointText) }
        return reply
    }

    // MARK: hiredis

    private var endpointText: String { configuration.endpoint.description }

    private func open() throws {
        closeContext()
        let timeout = Self.timeval(configuration.connectTimeout)
        let opened: UnsafeMutablePointer<redisContext>?
        switch configuration.endpoint {
        case .tcp(let host, let port):
            opened = redisConnectWithTimeout(host, Int32(port), timeout)
        case .unix(let path):
            opened = redisConnectUnixWithTimeout(path, timeout)
        }
        guard let opened else {
            throw RedisError(kind: .connection, message: "could not allocate a hiredis context", endpoint: endpointText)
        }
        if opened.pointee.err != 0 {
            let cause = Self.errorText(opened)
            redisFree(opened)
            throw RedisError(kind: .connection, message: "cannot connect to \(endpointText): \(cause)", endpoint: endpointText)
        }
        if configuration.keepAlive, case .tcp = configuration.endpoint {
            _ = redisEnableKeepAlive(opened)
        }
        // Replies come from an arena released before each read (see the shim): never freeReplyObject.
        guard vc_reply_arena_install(opened) == 0 else {
            redisFree(opened)
            throw RedisError(kind: .connection, message: "could not allocate a reply arena", endpoint: endpointText)
        }
        context = opened
        currentTimeout = nil
        setTimeout(configuration.commandTimeout)

        let handshake = configuration.handshake
        if !handshake.isEmpty {
            let replies = try roundTrip(handshake, timeout: nil)
            for (command, reply) in zip(handshake, replies) {
                if case .error(let message) = reply {
                    closeContext()
                    throw RedisError.handshake(command, failedWith: message, endpoint: endpointText)
                }
            }
        }
    }

    private func closeContext() {
        if let context {
            vc_redis_free(context)
            self.context = nil
        }
    }

    /// Writes all commands, then reads one reply per command. Any I/O failure closes the
    /// connection and fails the whole batch: the caller cannot know which commands were applied.
    private func roundTrip(_ commands: [RESPCommand], timeout block: Duration?) throws -> [RESPValue] {
        if commands.isEmpty { return [] }
        let context = try liveContext()
        // A blocking read must be allowed to wait longer than its BLOCK time, or a quiet stream
        // would look like a dead server.
        let timeout = block.map { configuration.commandTimeout + $0 } ?? configuration.commandTimeout
        setTimeout(timeout)

        encoder.removeAll()
        for command in commands { encoder.append(command) }
        let appended = encoder.buffer.withUnsafeBufferPointer { raw in
            raw.withMemoryRebound(to: CChar.self) { chars in
                redisAppendFormattedCommand(context, chars.baseAddress, chars.count)
            }
        }
        guard appended == REDIS_OK else { throw failure(context, during: commands) }

        var replies: [RESPValue] = []
        replies.reserveCapacity(commands.count)
        for _ in 0..<commands.count {
            var raw: UnsafeMutableRawPointer?
            vc_reply_arena_reset(context)
            guard redisGetReply(context, &raw) == REDIS_OK, let raw else {
                throw failure(context, during: commands)
            }
            replies.append(Self.value(of: raw.assumingMemoryBound(to: redisReply.self)))
        }
        return replies
    }

    /// One command whose reply is decoded in place, before hiredis frees it.
    private func roundTrip<Response>(_ command: RESPCommand, timeout block: Duration?, _ decode: (ReplyReader) throws -> Response) throws -> Response {
        try roundTrip(after: [], command, timeout: block, decode).1
    }

    /// `preceding` and then `command` in one round trip: the preceding replies as values (error
    /// replies too), then `command`'s reply decoded in place.
    private func roundTrip<Response>(after preceding: [RESPCommand], _ command: RESPCommand, timeout block: Duration?,
                                     _ decode: (ReplyReader) throws -> Response) throws -> ([RESPValue], Response) {
        let context = try liveContext()
        setTimeout(block.map { configuration.commandTimeout + $0 } ?? configuration.commandTimeout)
        encoder.removeAll()
        for earlier in preceding { encoder.append(earlier) }
        encoder.append(command)
        let appended = encoder.buffer.withUnsafeBufferPointer { raw in
            raw.withMemoryRebound(to: CChar.self) { redisAppendFormattedCommand(context, $0.baseAddress, $0.count) }
        }
        guard appended == REDIS_OK else { throw failure(context, during: preceding + [command]) }
        var earlierReplies: [RESPValue] = []
        earlierReplies.reserveCapacity(preceding.count)
        for _ in preceding.indices {
            var raw: UnsafeMutableRawPointer?
            vc_reply_arena_reset(context)
            guard redisGetReply(context, &raw) == REDIS_OK, let raw else { throw failure(context, during: preceding + [command]) }
            earlierReplies.append(Self.value(of: raw.assumingMemoryBound(to: redisReply.self)))
        }
        return (earlierReplies, try readDecoded(command, context, decode))
    }

    private func readDecoded<Response>(_ command: RESPCommand, _ context: UnsafeMutablePointer<redisContext>,
                                       _ decode: (ReplyReader) throws -> Response) throws -> Response {
        var raw: UnsafeMutableRawPointer?
        vc_reply_arena_reset(context)
        guard redisGetReply(context, &raw) == REDIS_OK, let raw else { throw failure(context, during: [command]) }
        let reply = raw.assumingMemoryBound(to: redisReply.self)
        // Only an error reply is converted to a value: the point of decoding in place is not
        // building the tree of a large reply.
        if reply.pointee.type == REDIS_REPLY_ERROR, case .error(let message) = Self.value(of: reply) {
            throw RedisError.server(message, endpoint: endpointText)
        }
        return try decode(ReplyReader(reply: reply))
    }

    private func failure(_ context: UnsafeMutablePointer<redisContext>, during commands: [RESPCommand]) -> RedisError {
        let code = context.pointee.err
        let cause = Self.errorText(context)
        closeContext()
        let what = commands.count == 1 ? "'\(commands[0])'" : "a pipeline of \(commands.count) commands (first: '\(commands[0])')"
        if code == REDIS_ERR_IO && (cause.contains("temporarily unavailable") || cause.contains("timed out")) {
            return RedisError(kind: .timeout, message: "no reply to \(what) within the command timeout; the connection was closed", endpoint: endpointText)
        }
        if code == REDIS_ERR_EOF {
            return RedisError(kind: .connection, message: "the server closed the connection during \(what)", endpoint: endpointText)
        }
        return RedisError(kind: .connection, message: "\(cause) during \(what); the connection was closed", endpoint: endpointText)
    }

    private func setTimeout(_ timeout: Duration) {
        guard let context, currentTimeout != timeout else { return }
        _ = redisSetTimeout(context, Self.timeval(timeout))
        currentTimeout = timeout
    }

    private static func timeval(_ duration: Duration) -> Glibc.timeval {
        let (seconds, attoseconds) = duration.components
        return Glibc.timeval(tv_sec: Int(seconds), tv_usec: Int(attoseconds / 1_000_000_000_000))
    }

    private static func errorText(_ context: UnsafeMutablePointer<redisContext>) -> String {
        var buffer = [CChar](repeating: 0, count: 129)
        vc_redis_errstr(context, &buffer, buffer.count)
        let text = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return text.isEmpty ? "unknown error" : text
    }

    static func value(of reply: UnsafeMutablePointer<redisReply>) -> RESPValue {
        let r = reply.pointee
        switch r.type {
        case REDIS_REPLY_STRING:
            return .bulkString(bytes(r.str, r.len))
        case REDIS_REPLY_STATUS:
            return .simpleString(String(decoding: bytes(r.str, r.len), as: UTF8.self))
        case REDIS_REPLY_ERROR:
            return .error(String(decoding: bytes(r.str, r.len), as: UTF8.self))
        case REDIS_REPLY_INTEGER:
            return .integer(r.integer)
        case REDIS_REPLY_ARRAY:
            var values: [RESPValue] = []
            values.reserveCapacity(r.elements)
            for i in 0..<r.elements {
                if let element = r.element[i] { values.append(value(of: element)) } else { values.append(.null) }
            }
            return .array(values)
        default:
            return .null
        }
    }

    private static func bytes(_ pointer: UnsafeMutablePointer<CChar>?, _ length: Int) -> [UInt8] {
        guard let pointer, length > 0 else { return [] }
        return pointer.withMemoryRebound(to: UInt8.self, capacity: length) {
            Array(UnsafeBufferPointer(start: $0, count: length))
        }
    }
}
