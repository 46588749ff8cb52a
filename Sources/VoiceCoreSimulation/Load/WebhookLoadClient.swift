import NIOCore
import NIOPosix
import Synchronization

/// A lean HTTP/1.1 client for generating webhook load (`voicecore loadgen`): a bounded set of
/// keep-alive connections to one plain-HTTP host, one request in flight on each, requests written
/// as prepared bytes and responses read only as far as their status and length.
///
/// Why not AsyncHTTPClient: a load generator shares this machine's two cores with the system it
/// measures. AsyncHTTPClient's general machinery (header dictionaries, redirects, tracing, its
/// connection-pool state machine) cost the load generator about 1.4 ms of CPU per webhook, taken
/// from `voicecore up`; this client does only what a webhook sender needs (what wrk does).
///
/// A request that fails (refused, reset, closed, no answer within the timeout) throws and its
/// connection is discarded; a new one is opened for the next request. Responses are read by
/// `Content-Length` or chunked encoding; a response with neither, or one that is not HTTP/1.x,
/// closes its connection with an error.
public final class WebhookLoadClient: Sendable {
    /// Why a request got no status: no connection, a broken one, no answer in time, or an answer that is not HTTP/1.x.
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// A prepared request: the whole message, head and body.
    public struct Request: Sendable {
        public var bytes: ByteBuffer

        /// A POST of `body` with the given headers (Host and Content-Length are added).
        public init(post path: String, host: String, headers: [(String, String)], body: String) {
            var head = "POST \(path) HTTP/1.1\r\nHost: \(host)\r\n"
            for (name, value) in headers { head += "\(name): \(value)\r\n" }
            head += "Content-Length: \(body.utf8.count)\r\n\r\n"
            var bytes = ByteBuffer()
            bytes.reserveCapacity(head.utf8.count + body.utf8.count)
            bytes.writeString(head)
            bytes.writeString(body)
            self.bytes = bytes
        }

        /// The POST Twilio would make with `webhook`, to an edge at `host` serving under `pathPrefix`.
        public init(_ webhook: SimulatedWebhook, host: String, pathPrefix: String = "") {
            self.init(post: pathPrefix + webhook.path, host: host, headers: webhook.headers.map { ($0.name, $0.value) }, body: webhook.body)
        }
    }

    private struct State {
        var idle: [any Channel] = []
        var open = 0
        /// Requests waiting for a connection: resumed with one to reuse, or nil to open their own.
        var waiters: [CheckedContinuation<(any Channel)?, Never>] = []
        var closed = false
    }

    public let host: String
    public let port: Int
    public let maximumConnections: Int
    private let group: any EventLoopGroup
    private let state = Mutex(State())

    public init(host: String, port: Int, maximumConnections: Int, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) {
        precondition(maximumConnections > 0)
        self.host = host
        self.port = port
        self.maximumConnections = maximumConnections
        self.group = group
    }

    /// Sends a request on a free connection (opening one while under the bound, else waiting for
    /// one) and returns the response's status code.
    public func send(_ request: Request, timeout: TimeAmount = .seconds(30)) async throws -> Int {
        let channel = try await acquire()
        do {
            let status = try await exchange(request, on: channel, timeout: timeout)
            release(channel)
            return status
        } catch {
            discard(channel)
            throw error
        }
    }

    /// Closes every idle connection; requests in flight finish on theirs, which are then closed.
    public func shutdown() async {
        let idle = state.withLock { state -> [any Channel] in
            state.closed = true
            defer { state.idle = [] }
            return state.idle
        }
        for channel in idle { try? await channel.close() }
    }

    // MARK: Connections

    private enum Acquired {
        case reuse(any Channel)
        case connect
        case wait
    }

    /// A connection for one request: an open one, a new one, or one handed over by a request done with it.
    private func acquire() async throws -> any Channel {
        let channel = try await takeConnection()
        // The server may have closed it while it was idle.
        guard channel.isActive else {
            discard(channel)
            return try await acquire()
        }
        return channel
    }

    private func takeConnection() async throws -> any Channel {
        let acquired = state.withLock { state -> Acquired in
            if let channel = state.idle.popLast() { return .reuse(channel) }
            if state.open < maximumConnections {
                state.open += 1
                return .connect
            }
            return .wait
        }
        switch acquired {
        case .reuse(let channel):
            return channel
        case .connect:
            return try await connect()
        case .wait:
            let handedOver = await withCheckedContinuation { (continuation: CheckedContinuation<(any Channel)?, Never>) in
                state.withLock { state in
                    // A connection may have come free between the two locks.
                    if let channel = state.idle.popLast() {
                        continuation.resume(returning: channel)
                    } else if state.open < maximumConnections {
                        state.open += 1
                        continuation.resume(returning: nil)
                    } else {
                        state.waiters.append(continuation)
                    }
                }
            }
            if let handedOver { return handedOver }
            return try await connect()
        }
    }

    /// Opens a connection whose slot was taken in `state.open`; gives the slot back on failure.
    private func connect() async throws -> any Channel {
        do {
            return try await ClientBootstrap(group: group)
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .connectTimeout(.seconds(5))
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(ResponseHandler()) }
                }
                .connect(host: host, port: port)
                .get()
        } catch {
            freeSlot()
            throw Failure(description: "could not connect to \(host):\(port): \(error)")
        }
    }

    /// A request is done with its connection: to a waiting request, else idle (closed when the
    /// server closed it or the client is shut down).
    private func release(_ channel: any Channel) {
        guard channel.isActive else { return discard(channel) }
        enum Next {
            case handOver(CheckedContinuation<(any Channel)?, Never>)
            case keep
            case close
        }
        let next = state.withLock { state -> Next in
            if !state.waiters.isEmpty { return .handOver(state.waiters.removeFirst()) }
            guard !state.closed else { return .close }
            state.idle.append(channel)
            return .keep
        }
        switch next {
        case .handOver(let waiter): waiter.resume(returning: channel)
        case .keep: break
        case .close: discard(channel)
        }
    }

    private func discard(_ channel: any Channel) {
        channel.close(promise: nil)
        freeSlot()
    }

    /// A connection is gone: a waiting request may open its own in its place.
    private func freeSlot() {
        let next = state.withLock { state -> CheckedContinuation<(any Channel)?, Never>? in
            if !state.waiters.isEmpty { return state.waiters.removeFirst() }  // keeps the slot
            state.open -= 1
            return nil
        }
        next?.resume(returning: nil)
    }

    private func exchange(_ request: Request, on channel: any Channel, timeout: TimeAmount) async throws -> Int {
        let response = channel.eventLoop.makePromise(of: Int.self)
        let deadline = channel.eventLoop.scheduleTask(in: timeout) {
            response.fail(Failure(description: "no response within \(timeout)"))
            channel.close(promise: nil)
        }
        channel.writeAndFlush(Exchange(bytes: request.bytes, response: response)).whenFailure { response.fail($0) }
        defer { deadline.cancel() }
        return try await response.futureResult.get()
    }
}

/// What is written into the pipeline: the request and where its status goes.
private struct Exchange: Sendable {
    var bytes: ByteBuffer
    var response: EventLoopPromise<Int>
}

/// Matches responses to requests in order and reads each one's status, skipping its body.
private final class ResponseHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = Exchange
    typealias OutboundOut = ByteBuffer

    private var waiting = CircularBuffer<EventLoopPromise<Int>>()
    private var buffer = ByteBuffer()

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let exchange = unwrapOutboundIn(data)
        waiting.append(exchange.response)
        context.write(wrapOutboundOut(exchange.bytes), promise: promise)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        buffer.writeBuffer(&bytes)
        do {
            while let (status, closes) = try HTTP1ResponseReader.next(from: &buffer) {
                guard !waiting.isEmpty else { throw WebhookLoadClient.Failure(description: "a response nothing was asked for") }
                let response = waiting.removeFirst()
                if closes {
                    // Closed before the request hears back, so its connection is not reused.
                    context.close(promise: nil)
                    response.succeed(status)
                    return
                }
                response.succeed(status)
            }
            buffer.discardReadBytes()
        } catch {
            fail(error)
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        fail(WebhookLoadClient.Failure(description: "the connection closed"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail(error)
        context.close(promise: nil)
    }

    private func fail(_ error: any Error) {
        while let promise = waiting.popFirst() { promise.fail(error) }
    }
}

/// Reads HTTP/1.x responses from a byte stream, far enough to know each one's status and where it ends.
enum HTTP1ResponseReader {
    /// The next whole response in `buffer` (consumed): its status and whether the server closes
    /// the connection after it. Nil while the response is incomplete (nothing consumed).
    static func next(from buffer: inout ByteBuffer) throws -> (status: Int, closes: Bool)? {
        let view = buffer.readableBytesView
        guard let headEnd = find([13, 10, 13, 10], in: view) else {
            if view.count > 64 * 1024 { throw WebhookLoadClient.Failure(description: "a response head over 64 KiB") }
            return nil
        }
        let head = view[view.startIndex..<headEnd]
        // "HTTP/1.1 200 OK"
        guard head.count >= 12, head.starts(with: "HTTP/1.".utf8) else { throw WebhookLoadClient.Failure(description: "not an HTTP/1.x response") }
        var status = 0
        for byte in head.dropFirst(9).prefix(3) {
            guard (48...57).contains(byte) else { throw WebhookLoadClient.Failure(description: "a malformed status line") }
            status = status * 10 + Int(byte - 48)
        }
        var contentLength: Int?
        var chunked = false
        var closes = false
        for line in head.split(separator: 10).dropFirst() {
            guard let colon = line.firstIndex(of: 58) else { continue }
            let name = String(decoding: line[line.startIndex..<colon], as: UTF8.self).lowercased()
            let value = String(decoding: line[line.index(after: colon)...], as: UTF8.self).trimmingWhitespace().lowercased()
            switch name {
            case "content-length":
                guard let length = Int(value), length >= 0 else { throw WebhookLoadClient.Failure(description: "a malformed Content-Length") }
                contentLength = length
            case "transfer-encoding": chunked = value.contains("chunked")
            case "connection": closes = value.contains("close")
            default: break
            }
        }
        let bodyStart = headEnd + 4
        let end: Int
        if status < 200 || status == 204 || status == 304 {
            end = bodyStart
        } else if chunked {
            guard let chunkedEnd = try endOfChunkedBody(view, from: bodyStart) else { return nil }
            end = chunkedEnd
        } else if let contentLength {
            guard view.endIndex - bodyStart >= contentLength else { return nil }
            end = bodyStart + contentLength
        } else {
            throw WebhookLoadClient.Failure(description: "a response with neither Content-Length nor chunked encoding")
        }
        buffer.moveReaderIndex(forwardBy: end - view.startIndex)
        return (status, closes)
    }

    /// Where a chunked body starting at `start` ends (after the last chunk's CRLF), or nil when incomplete.
    private static func endOfChunkedBody(_ view: ByteBufferView, from start: Int) throws -> Int? {
        var position = start
        while true {
            guard let lineEnd = find([13, 10], in: view[position...]) else { return nil }
            var size = 0
            for byte in view[position..<lineEnd] {
                guard let digit = hexValue(byte) else { break }  // a chunk extension follows
                size = size * 16 + digit
                guard size < 1 << 30 else { throw WebhookLoadClient.Failure(description: "a chunk too large") }
            }
            position = lineEnd + 2
            if size == 0 {
                // Trailers, if any, then the empty line.
                while true {
                    guard let trailerEnd = find([13, 10], in: view[position...]) else { return nil }
                    let empty = trailerEnd == position
                    position = trailerEnd + 2
                    if empty { return position }
                }
            }
            guard view.endIndex - position >= size + 2 else { return nil }
            position += size + 2
        }
    }

    private static func hexValue(_ byte: UInt8) -> Int? {
        switch byte {
        case 48...57: Int(byte - 48)
        case 97...102: Int(byte - 87)
        case 65...70: Int(byte - 55)
        default: nil
        }
    }

    private static func find(_ needle: [UInt8], in haystack: ByteBufferView) -> Int? {
        guard haystack.count >= needle.count else { return nil }
        var index = haystack.startIndex
        let last = haystack.endIndex - needle.count
        while index <= last {
            if haystack[index] == needle[0], haystack[index..<(index + needle.count)].elementsEqual(needle) { return index }
            index += 1
        }
        return nil
    }
}

private extension String {
    func trimmingWhitespace() -> String {
        var scalars = Substring(self)
        while let first = scalars.first, first == " " || first == "\t" || first == "\r" { scalars.removeFirst() }
        while let last = scalars.last, last == " " || last == "\t" || last == "\r" { scalars.removeLast() }
        return String(scalars)
    }
}
