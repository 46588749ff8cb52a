import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// A Server-Sent Events client on one HTTP/1.1 connection (NIO), for the feed's benchmark and
/// tests: it opens `GET path`, reads the answer's status and headers, then parses the body into
/// events and comments as they arrive. Parsing happens on the connection's event loop; a
/// thousand of them cost a few threads, not a thousand.
///
/// With `reading: false` it stops reading after the head (and asks for a small receive buffer):
/// a client that has stalled, for testing what the server does about one.
///
/// ```swift
/// let client = try await EventStreamClient.connect(host: "127.0.0.1", port: 8080, path: "/v1/events",
///                                                  headers: [("Authorization", "Bearer \(key)")], group: group)
/// while let item = await client.next(within: .seconds(5)) { … }
/// ```
public final class EventStreamClient: Sendable {
    /// One thing the stream said.
    public enum Item: Sendable, Equatable {
        /// An event: its `event:` type, `id:` and `data:` lines (joined by newlines).
        case event(type: String?, id: String?, data: String)
        /// A comment line (`: text`), such as a heartbeat.
        case comment(String)
        /// The server ended the response or closed the connection.
        case closed
    }

    /// Connecting or the answer's head failed.
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// The answer's status code.
    public let status: Int
    /// The answer's headers.
    public let headers: [(name: String, value: String)]
    /// The answer's body when it is not an event stream (a problem document), once ``next(within:)``
    /// said the stream closed.
    public var body: String { buffer.state.withLock { $0.plainBody } }

    private let channel: any Channel
    private let buffer: ItemBuffer

    private init(status: Int, headers: [(name: String, value: String)], channel: any Channel, buffer: ItemBuffer) {
        self.status = status
        self.headers = headers
        self.channel = channel
        self.buffer = buffer
    }

    /// Opens the stream; returns once the answer's head arrived (any status).
    /// - Parameter onItem: also called with each item, on the connection's event loop (the
    ///   benchmark's receipt time).
    public static func connect(host: String = "127.0.0.1", port: Int, path: String, headers: [(String, String)] = [],
                               group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton, reading: Bool = true,
                               onItem: (@Sendable (Item) -> Void)? = nil) async throws -> EventStreamClient {
        let buffer = ItemBuffer()
        var bootstrap = ClientBootstrap(group: group)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connectTimeout(.seconds(10))
        if !reading { bootstrap = bootstrap.channelOption(.socketOption(.so_rcvbuf), value: 4096) }
        let channel = try await bootstrap.channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHTTPClientHandlers()
                try channel.pipeline.syncOperations.addHandler(EventStreamHandler(buffer: buffer, reading: reading, onItem: onItem,
                                                                                  head: channel.eventLoop.makePromise()))
            }
        }.connect(host: host, port: port).get()
        let handler = try await channel.pipeline.handler(type: EventStreamHandler.self).get()
        var head = HTTPRequestHead(version: .http1_1, method: .GET, uri: path)
        head.headers.add(name: "Host", value: "\(host):\(port)")
        head.headers.add(name: "Accept", value: "text/event-stream")
        for (name, value) in headers { head.headers.add(name: name, value: value) }
        channel.write(HTTPClientRequestPart.head(head), promise: nil)
        try await channel.writeAndFlush(HTTPClientRequestPart.end(nil)).get()
        let response = try await handler.head.futureResult.get()
        return EventStreamClient(status: Int(response.status.code), headers: response.headers.map { ($0.name, $0.value) },
                                 channel: channel, buffer: buffer)
    }

    /// The next item, waiting up to `timeout`; nil when none came in time, and after `closed`.
    public func next(within timeout: Duration) async -> Item? {
        await withCheckedContinuation { (continuation: CheckedContinuation<Item?, Never>) in
            let ready: Item?? = buffer.state.withLock { state in
                if state.next < state.items.count {
                    state.next += 1
                    return .some(state.items[state.next - 1])
                }
                if state.closed { return .some(nil) }
                state.waiter = continuation
                state.waiterNumber += 1
                return nil
            }
            if let ready {
                continuation.resume(returning: ready)
                return
            }
            let number = buffer.state.withLock { $0.waiterNumber }
            let nanoseconds = timeout.components.seconds * 1_000_000_000 + timeout.components.attoseconds / 1_000_000_000
            channel.eventLoop.scheduleTask(in: .nanoseconds(nanoseconds)) { [buffer] in
                let waiter: CheckedContinuation<Item?, Never>? = buffer.state.withLock { state in
                    guard state.waiterNumber == number, let waiter = state.waiter else { return nil }
                    state.waiter = nil
                    return waiter
                }
                waiter?.resume(returning: nil)
            }
        }
    }

    /// The events (not comments) that come within `timeout` of each other, until `count` arrived
    /// or the stream closed. Comments (heartbeats) do not extend the wait: on a stream whose
    /// heartbeat is shorter than `timeout`, waiting for an event that never comes still ends.
    public func events(_ count: Int, within timeout: Duration) async -> [(type: String?, id: String?, data: String)] {
        var events: [(type: String?, id: String?, data: String)] = []
        var deadline = ContinuousClock.now + timeout
        while events.count < count {
            let left = deadline - ContinuousClock.now
            guard left > .zero, let item = await next(within: left) else { break }
            if case .event(let type, let id, let data) = item {
                events.append((type, id, data))
                deadline = ContinuousClock.now + timeout
            }
        }
        return events
    }

    /// Starts reading a client made with `reading: false`.
    public func resumeReading() {
        let channel = self.channel
        channel.setOption(.autoRead, value: true).whenSuccess { channel.read() }
    }

    /// Closes the connection.
    public func close() async {
        try? await channel.close()
    }

    /// Whether the connection is closed (by the server or here).
    public var isClosed: Bool {
        !channel.isActive
    }
}

/// Items parsed and not yet taken, shared by the connection's handler and its client.
private final class ItemBuffer: Sendable {
    struct State {
        var items: [EventStreamClient.Item] = []
        var next = 0
        var waiter: CheckedContinuation<EventStreamClient.Item?, Never>?
        var waiterNumber = 0
        var closed = false
        var plainBody = ""
    }

    let state = Mutex(State())

    func deliver(_ item: EventStreamClient.Item) {
        let waiter: CheckedContinuation<EventStreamClient.Item?, Never>? = state.withLock { state in
            if state.closed { return nil }
            if item == .closed { state.closed = true }
            if item != .closed { state.items.append(item) }
            guard let waiter = state.waiter else { return nil }
            state.waiter = nil
            if item != .closed { state.next += 1 }
            return waiter
        }
        waiter?.resume(returning: item == .closed ? nil : item)
    }
}

/// Parses the answer on the event loop: the head, then `text/event-stream` lines into items.
private final class EventStreamHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPClientResponsePart

    let head: EventLoopPromise<HTTPResponseHead>
    private let buffer: ItemBuffer
    private let reading: Bool
    private let onItem: (@Sendable (EventStreamClient.Item) -> Void)?
    private var isEventStream = false
    private var line: [UInt8] = []
    private var type: String?
    private var id: String?
    private var data: [String] = []
    private var plain: [UInt8] = []
    private var answered = false

    init(buffer: ItemBuffer, reading: Bool, onItem: (@Sendable (EventStreamClient.Item) -> Void)?, head: EventLoopPromise<HTTPResponseHead>) {
        self.buffer = buffer
        self.reading = reading
        self.onItem = onItem
        self.head = head
    }

    func channelRead(context: ChannelHandlerContext, data part: NIOAny) {
        switch unwrapInboundIn(part) {
        case .head(let response):
            isEventStream = response.headers["Content-Type"].first?.hasPrefix("text/event-stream") ?? false
            if !reading { context.channel.setOption(.autoRead, value: false).whenComplete { _ in } }
            answered = true
            head.succeed(response)
        case .body(let bytes):
            if isEventStream {
                for byte in bytes.readableBytesView { consume(byte) }
            } else {
                plain.append(contentsOf: bytes.readableBytesView)
            }
        case .end:
            finish(context: context)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !answered {
            answered = true
            head.fail(EventStreamClient.Failure(description: "the connection closed before an answer"))
        }
        finish(context: context)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if !answered {
            answered = true
            head.fail(error)
        }
        context.close(promise: nil)
    }

    private func finish(context: ChannelHandlerContext) {
        if !plain.isEmpty {
            let text = String(decoding: plain, as: UTF8.self)
            buffer.state.withLock { $0.plainBody = text }
            plain = []
        }
        emit(.closed)
    }

    private func emit(_ item: EventStreamClient.Item) {
        onItem?(item)
        buffer.deliver(item)
    }

    /// One byte of the stream: lines end with LF; a blank line ends an event.
    private func consume(_ byte: UInt8) {
        guard byte == UInt8(ascii: "\n") else {
            if byte != UInt8(ascii: "\r") { line.append(byte) }
            return
        }
        defer { line.removeAll(keepingCapacity: true) }
        if line.isEmpty {
            if !data.isEmpty || type != nil { emit(.event(type: type, id: id, data: data.joined(separator: "\n"))) }
            type = nil
            id = nil
            data = []
            return
        }
        let text = String(decoding: line, as: UTF8.self)
        if text.hasPrefix(":") {
            let comment = text.dropFirst()
            emit(.comment(String(comment.hasPrefix(" ") ? comment.dropFirst() : comment)))
            return
        }
        let (field, value): (Substring, Substring)
        if let colon = text.firstIndex(of: ":") {
            field = text[..<colon]
            let rest = text[text.index(after: colon)...]
            value = rest.hasPrefix(" ") ? rest.dropFirst() : rest
        } else {
            field = Substring(text)
            value = ""
        }
        switch field {
        case "event": type = String(value)
        case "id": id = String(value)
        case "data": data.append(String(value))
        default: break  // retry: and unknown fields
        }
    }
}
