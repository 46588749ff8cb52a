import Logging
import NIOCore
import NIOPosix

/// A connection to a single Redis server that lives on one NIO event loop: the edge's handlers
/// send their commands on the loop that handles the request, and the replies resume them there.
/// ``EventLoopRedisTransport`` holds one per loop.
///
/// The ``RedisConnection`` blocks in hiredis on a thread of its own. At the edge that cost a
/// thread hop each way per pipeline and kept a third thread runnable beside the two event loops
/// on a 2-core machine: handlers waited in convoys and the machine idled at 12–14 % while
/// callbacks queued. Here the socket is NIO's and the loop's own; hiredis still reads the
/// protocol (``RESPReplyParser``), and commands are encoded by ``RESPEncoder`` as everywhere else.
///
/// Commands sent during one tick of the loop go out as one write (a pipeline) at the end of that
/// tick. Replies come back in order. Guarantees, as for ``RedisConnection``:
/// - a command whose reply did not arrive (the socket failed, or no reply within the command
///   timeout) fails with ``RedisError/Kind/connection`` or ``RedisError/Kind/timeout``: its
///   outcome is unknown and the caller must not report it as done. The connection is closed.
/// - a command is never sent twice. Commands not yet written when the socket fails go out on the
///   next connection.
/// - the next command reconnects; after a failed attempt, commands fail at once for
///   ``reconnectDelay`` (no connection attempt per request while Redis is down).
///
/// Every method must be called on ``loop``; its state is touched only there.
final class EventLoopRedisConnection: @unchecked Sendable {
    let loop: any EventLoop
    let configuration: RedisConfiguration
    /// How long commands fail fast after a failed connection attempt.
    let reconnectDelay: TimeAmount
    private let logger: Logger

    private enum State {
        case idle
        case connecting
        case open(any Channel)
        /// The last attempt failed; commands fail with this error until `until`.
        case coolingDown(until: NIODeadline, RedisError)
        case closed
    }

    private struct Waiter {
        /// Nil for a handshake command, whose reply is checked here.
        var promise: EventLoopPromise<RESPValue>?
        var handshake: RESPCommand?
        var sentAt: NIODeadline
    }

    private var state = State.idle
    /// Encoded commands not yet written, and their callers.
    private var encoder = RESPEncoder(reservingCapacity: 16 * 1024)
    private var queued: [EventLoopPromise<RESPValue>] = []
    /// Written commands in order, waiting for their replies.
    private var inFlight = CircularBuffer<Waiter>()
    private var flushScheduled = false
    private var timeoutCheck: Scheduled<Void>?
    private var parser = RESPReplyParser()

    init(loop: any EventLoop, configuration: RedisConfiguration, reconnectDelay: TimeAmount = .milliseconds(250),
         logger: Logger = Logger(label: "voicecore.edge.redis")) {
        self.loop = loop
        self.configuration = configuration
        self.reconnectDelay = reconnectDelay
        self.logger = logger
    }

    private var endpoint: String { configuration.endpoint.description }

    /// Sends a command in the loop's next pipeline; the future holds its reply (an error reply is
    /// a value, as in ``RedisConnection/send(_:blockingFor:)``) and completes on ``loop``.
    func send(_ command: RESPCommand) -> EventLoopFuture<RESPValue> {
        loop.preconditionInEventLoop()
        switch state {
        case .closed:
            return loop.makeFailedFuture(RedisError(kind: .connectionClosed, message: "the edge's Redis connection is shut down", endpoint: endpoint))
        case .coolingDown(let until, let error) where NIODeadline.now() < until:
            return loop.makeFailedFuture(error)
        default:
            break
        }
        let promise = loop.makePromise(of: RESPValue.self)
        encoder.append(command)
        queued.append(promise)
        if !flushScheduled {
            flushScheduled = true
            // After every handler of this tick had its turn: one write for all of them.
            loop.execute { self.flush() }
        }
        return promise.futureResult
    }

    /// Closes the connection; what is queued or in flight fails. Later commands fail.
    func close() {
        loop.preconditionInEventLoop()
        let error = RedisError(kind: .connectionClosed, message: "the edge's Redis connection was shut down", endpoint: endpoint)
        if case .open(let channel) = state { channel.close(promise: nil) }
        state = .closed
        failInFlight(error)
        failQueued(error)
    }

    // MARK: Writing

    private func flush() {
        flushScheduled = false
        guard !queued.isEmpty else { return }
        switch state {
        case .open(let channel):
            write(on: channel)
        case .connecting, .closed:
            return
        case .idle, .coolingDown:
            connect()
        }
    }

    private func write(on channel: any Channel) {
        let now = NIODeadline.now()
        var buffer = channel.allocator.buffer(capacity: encoder.buffer.count)
        buffer.writeBytes(encoder.buffer)
        encoder.removeAll()
        for promise in queued { inFlight.append(Waiter(promise: promise, sentAt: now)) }
        queued.removeAll(keepingCapacity: true)
        channel.writeAndFlush(buffer, promise: nil)
        armTimeout()
    }

    private func connect() {
        state = .connecting
        parser = RESPReplyParser()
        let bootstrap = ClientBootstrap(group: loop)
            .connectTimeout(Self.timeAmount(configuration.connectTimeout))
            .channelOption(.socketOption(.so_keepalive), value: configuration.keepAlive ? 1 : 0)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ReplyHandler(connection: self, channel: channel))
                }
            }
        let connecting: EventLoopFuture<any Channel>
        switch configuration.endpoint {
        case .tcp(let host, let port):
            connecting = bootstrap.channelOption(.socketOption(.tcp_nodelay), value: 1).connect(host: host, port: port)
        case .unix(let path):
            connecting = bootstrap.connect(unixDomainSocketPath: path)
        }
        connecting.whenComplete { result in
            guard case .connecting = self.state else {
                // Closed meanwhile.
                if case .success(let channel) = result { channel.close(promise: nil) }
                return
            }
            switch result {
            case .success(let channel):
                self.state = .open(channel)
                self.sendHandshake(on: channel)
                if !self.queued.isEmpty { self.write(on: channel) }
            case .failure(let failure):
                // NIO wraps the socket's error in one per address tried: the last one says why.
                let cause = (failure as? NIOConnectionError)?.connectionErrors.last.map { "\($0.error)" } ?? "\(failure)"
                let error = RedisError(kind: .connection, message: "cannot connect to \(self.endpoint): \(cause)", endpoint: self.endpoint)
                self.logger.warning("Redis unreachable", metadata: ["redis.endpoint": "\(self.endpoint)", "error": "\(cause)"])
                self.state = .coolingDown(until: .now() + self.reconnectDelay, error)
                self.failQueued(error)
            }
        }
    }

    /// AUTH, SELECT and CLIENT SETNAME go first on a new connection, ahead of what is queued.
    private func sendHandshake(on channel: any Channel) {
        let handshake = configuration.handshake
        guard !handshake.isEmpty else { return }
        var encoder = RESPEncoder()
        let now = NIODeadline.now()
        for command in handshake {
            encoder.append(command)
            inFlight.append(Waiter(promise: nil, handshake: command, sentAt: now))
        }
        var buffer = channel.allocator.buffer(capacity: encoder.buffer.count)
        buffer.writeBytes(encoder.buffer)
        channel.writeAndFlush(buffer, promise: nil)
        armTimeout()
    }

    // MARK: Reading

    fileprivate func received(_ buffer: ByteBuffer, on channel: any Channel) {
        guard case .open(let current) = state, current === channel else { return }
        do {
            try buffer.withUnsafeReadableBytes { try parser.feed($0) }
            while let reply = try parser.next() {
                guard let waiter = inFlight.popFirst() else {
                    throw RedisError(kind: .unexpectedReply, message: "a reply from \(endpoint) that no command asked for")
                }
                if let promise = waiter.promise {
                    promise.succeed(reply)
                } else if case .error(let message) = reply, let command = waiter.handshake {
                    // A wrong password stays wrong: wait before trying again, as after a failed connect.
                    let error = RedisError.handshake(command, failedWith: message, endpoint: endpoint)
                    logger.error("Redis refused the connection's set-up", metadata: ["redis.endpoint": "\(endpoint)", "error": "\(error)"])
                    drop(channel, failing: error, coolingDown: true)
                    return
                }
            }
        } catch let error as RedisError {
            logger.warning("Redis connection dropped", metadata: ["redis.endpoint": "\(endpoint)", "error": "\(error)"])
            drop(channel, failing: error)
            return
        } catch {
            drop(channel, failing: RedisError(kind: .unexpectedReply, message: "\(error)", endpoint: endpoint))
            return
        }
        if inFlight.isEmpty {
            timeoutCheck?.cancel()
            timeoutCheck = nil
        }
    }

    fileprivate func closed(_ channel: any Channel) {
        guard case .open(let current) = state, current === channel else { return }
        drop(channel, failing: RedisError(kind: .connection, message: "the connection to \(endpoint) closed with commands in flight; their outcome is unknown",
                                          endpoint: endpoint))
    }

    /// Closes `channel` and fails what it carried; what is queued goes out on the next connection
    /// (or fails now, when `coolingDown`).
    private func drop(_ channel: any Channel, failing error: RedisError, coolingDown: Bool = false) {
        state = coolingDown ? .coolingDown(until: .now() + reconnectDelay, error) : .idle
        channel.close(promise: nil)
        failInFlight(error)
        if coolingDown { failQueued(error) }
        if !queued.isEmpty, !flushScheduled {
            flushScheduled = true
            loop.execute { self.flush() }
        }
    }

    // MARK: Timeouts

    private func armTimeout() {
        guard timeoutCheck == nil, let oldest = inFlight.first else { return }
        let timeout = Self.timeAmount(configuration.commandTimeout)
        timeoutCheck = loop.scheduleTask(deadline: oldest.sentAt + timeout) { self.checkTimeout() }
    }

    private func checkTimeout() {
        timeoutCheck = nil
        guard let oldest = inFlight.first else { return }
        if oldest.sentAt + Self.timeAmount(configuration.commandTimeout) <= .now(), case .open(let channel) = state {
            let error = RedisError(kind: .timeout, message: "no reply from \(endpoint) within \(configuration.commandTimeout); the connection was closed",
                                   endpoint: endpoint)
            logger.warning("Redis did not answer in time", metadata: ["redis.endpoint": "\(endpoint)", "commands": "\(inFlight.count)"])
            drop(channel, failing: error)
        } else {
            armTimeout()
        }
    }

    private func failInFlight(_ error: RedisError) {
        timeoutCheck?.cancel()
        timeoutCheck = nil
        while let waiter = inFlight.popFirst() { waiter.promise?.fail(error) }
    }

    private func failQueued(_ error: RedisError) {
        let failing = queued
        queued.removeAll()
        encoder.removeAll()
        for promise in failing { promise.fail(error) }
    }

    private static func timeAmount(_ duration: Duration) -> TimeAmount {
        let (seconds, attoseconds) = duration.components
        return .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }

    /// Hands the socket's bytes and its closing to the connection.
    private final class ReplyHandler: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        let connection: EventLoopRedisConnection
        let channel: any Channel

        init(connection: EventLoopRedisConnection, channel: any Channel) {
            self.connection = connection
            self.channel = channel
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            connection.received(unwrapInboundIn(data), on: channel)
        }

        func channelInactive(context: ChannelHandlerContext) {
            connection.closed(channel)
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            context.close(promise: nil)
        }
    }
}
