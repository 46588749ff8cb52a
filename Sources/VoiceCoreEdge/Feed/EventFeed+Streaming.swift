import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import VoiceCoreBus
import VoiceCoreEvents

extension EventFeed {
    /// The `text/event-stream` answer of one connection: subscribes now (so a refusal is a proper
    /// 429 or 503), streams when the server writes the body.
    /// - Parameter resumeAfter: the request's `Last-Event-ID`: what the client saw last.
    func response(tenant: Identifier, types: Set<String>?, resumeAfter: TailPosition?) throws(Problem) -> Response {
        let subscription = try subscribe(tenant: tenant, types: types)
        let headers: HTTPFields = [
            .contentType: "text/event-stream; charset=utf-8", .cacheControl: "no-cache",
            // Proxies (nginx) would otherwise hold events back to fill their buffers.
            HTTPField.Name("X-Accel-Buffering")!: "no",
        ]
        return Response(status: .ok, headers: headers, body: ResponseBody { writer in
            try await self.stream(subscription, resumeAfter: resumeAfter, to: &writer)
        })
    }

    /// Writes the stream until it ends, then closes the connection (by throwing: the response
    /// never ends normally). A client that is too slow has its stuck write cancelled; at shutdown
    /// the client gets a last comment first.
    private func stream(_ subscription: FeedSubscription, resumeAfter: TailPosition?,
                        to writer: inout any ResponseBodyWriter) async throws {
        subscription.markStarted()
        defer { remove(subscription) }
        let sink = ResponseSink(writer)
        let end = await withTaskGroup(of: Void.self, returning: FeedSubscription.End.self) { group in
            group.addTask { await self.pump(subscription, resumeAfter: resumeAfter, into: sink) }
            let end = await subscription.ended()
            if end == .shutdown {
                // Let the last words go out, briefly.
                group.addTask { try? await Task.sleep(for: .seconds(1)) }
                await group.next()
            }
            group.cancelAll()
            return end
        }
        writer = sink.writer
        // The connection is closed, never left open for another request: a stuck write is not
        // waited for, and at shutdown no idle keep-alive connection holds the server's drain.
        throw FeedDisconnect(reason: end)
    }

    /// Writes the catch-up (from `resumeAfter`, or from where the feed stood when the connection
    /// was accepted, up to where it joined the live frames), then every frame the feed queues,
    /// until the subscription ends; a failed write ends it (`closed`).
    private func pump(_ subscription: FeedSubscription, resumeAfter: TailPosition?, into sink: ResponseSink) async {
        do {
            // Reconnect after 2 s; the comment makes the headers and first bytes go out now.
            try await sink.write(ByteBuffer(string: "retry: 2000\n: connected\n\n"))
            guard let joined = await subscription.joined() else { return }
            let start = resumeAfter ?? subscription.from
            if start < joined {
                do {
                    try await catchUp(subscription, from: start, through: joined, resuming: resumeAfter != nil, into: sink)
                } catch let error as RedisError {
                    logger.warning("event feed catch-up failed", metadata: ["tenant": "\(subscription.tenant)", "error": "\(error)"])
                    // A client that is not resuming has no id yet: it gets the point it was accepted
                    // at, so its reconnection resumes from there instead of starting over.
                    let id = resumeAfter == nil ? "id: \(subscription.from)\n" : ""
                    try? await sink.write(ByteBuffer(string: "\(id): cannot read the missed events now (Redis unavailable); reconnect with Last-Event-ID\n\n"))
                    subscription.end(.closed)
                    return
                }
            }
            while true {
                switch await subscription.next() {
                case .frames(let frames):
                    try await sink.write(contentsOf: frames)
                case .ended(.shutdown):
                    try await sink.write(ByteBuffer(string: ": the edge is shutting down; reconnect with Last-Event-ID\n\n"))
                    return
                case .ended:
                    return
                }
            }
        } catch {
            subscription.end(.closed)
        }
    }

    /// The tenant's events after `position` up to `joined`, read from the streams page by page;
    /// a client `resuming` from its `Last-Event-ID` is told first when some may no longer be there.
    private func catchUp(_ subscription: FeedSubscription, from position: TailPosition, through joined: TailPosition,
                         resuming: Bool, into sink: ResponseSink) async throws {
        guard position < joined else { return }
        if resuming, !(try await tail.retainsEverything(after: position)) {
            let notice = JSONObjectWriter.object { json in
                json.field("after", position.description)
                json.field("detail", "events after this id are no longer retained (trimmed or erased): some may have been missed; what is still retained follows")
            }
            var frame = Array("event: missed\ndata: ".utf8)
            frame += notice
            frame += Array("\n\n".utf8)
            try await sink.write(ByteBuffer(bytes: frame))
        }
        var cursor = position
        while cursor < joined, subscription.endReason == nil {
            let page = try await tail.entries(after: cursor, through: joined, count: configuration.catchUpPage)
            let frames = page.entries.lazy.compactMap(EventFrame.init).filter { $0.tenant == subscription.tenant && subscription.wants($0.type) }.map(\.bytes)
            if !frames.isEmpty { try await sink.write(contentsOf: Array(frames)) }
            cursor = page.reached
        }
    }
}

/// The response's body writer, handed to the task that writes it so that a stuck write can be
/// cancelled. `@unchecked Sendable`: one task uses it at a time — the writing child task while the
/// response streams, the handler after that task has ended.
private final class ResponseSink: @unchecked Sendable {
    var writer: any ResponseBodyWriter

    init(_ writer: any ResponseBodyWriter) {
        self.writer = writer
    }

    func write(_ buffer: ByteBuffer) async throws {
        try await writer.write(buffer)
    }

    func write(contentsOf buffers: [ByteBuffer]) async throws {
        try await writer.write(contentsOf: buffers)
    }
}

/// Ends a feed response without its final chunk: the connection is closed.
struct FeedDisconnect: Error, CustomStringConvertible {
    let reason: FeedSubscription.End
    var description: String { "event feed connection ended: \(reason)" }
}
