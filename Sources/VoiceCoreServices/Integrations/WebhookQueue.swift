import Foundation
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCoreTime

/// One outbound webhook delivery waiting in ``WebhookQueue``.
public struct WebhookJob: Sendable, Hashable {
    /// UUIDv5 of the webhook and the event: one delivery per webhook and event.
    public var id: Identifier
    public var tenantID: Identifier
    public var webhookID: Identifier
    public var eventID: Identifier
    public var eventType: String
    public var eventTime: Timestamp
    /// The event's `data` (JSON).
    public var data: [UInt8]
    /// Failed attempts so far.
    public var attempts: Int
    public var lastError: String?

    /// The job as stored in the queue's hash; keys in sorted order. An erasure finds a caller's
    /// jobs by `tenant`, `event_id` and the ids in `data` (``ScheduledJobQueue/webhooks(connection:prefix:)``):
    /// keep those names.
    var json: [UInt8] {
        JSONObjectWriter.object { object in
            object.field("attempts", attempts)
            object.field("data", String(decoding: data, as: UTF8.self))
            object.field("event_id", eventID)
            object.field("event_time", eventTime)
            object.field("event_type", eventType)
            object.field("last_error", lastError)
            object.field("tenant", tenantID)
            object.field("webhook", webhookID)
        }
    }

    init(id: Identifier, tenantID: Identifier, webhookID: Identifier, eventID: Identifier, eventType: String, eventTime: Timestamp, data: [UInt8],
         attempts: Int = 0, lastError: String? = nil) {
        self.id = id
        self.tenantID = tenantID
        self.webhookID = webhookID
        self.eventID = eventID
        self.eventType = eventType
        self.eventTime = eventTime
        self.data = data
        self.attempts = attempts
        self.lastError = lastError
    }

    /// A stored job; nil when it is not one (a job without its attempts counts none).
    init?(id: Identifier, json: [UInt8]) {
        guard let object = try? JSONObject.parse(json),
              let tenant = try? object.identifier("tenant"), let webhook = try? object.identifier("webhook"),
              let event = try? object.identifier("event_id"), let type = try? object.string("event_type"),
              let time = try? object.timestamp("event_time"), let data = try? object.string("data")
        else { return nil }
        self.init(id: id, tenantID: tenant, webhookID: webhook, eventID: event, eventType: type, eventTime: time, data: Array(data.utf8),
                  attempts: (try? object.optionalInt("attempts")) ?? 0, lastError: try? object.optionalString("last_error"))
    }
}

/// Outbound webhook deliveries, durable in Redis, scheduled by time: the bus's
/// ``ScheduledJobQueue`` named `integrations`, one job per webhook and event (``WebhookJob``, as
/// JSON).
///
/// Keys (one hash tag, so every script runs in one Redis Cluster slot): `<prefix>:{integrations}:due`
/// (sorted set: job id → when it may next be attempted, Unix ms), `…:jobs` (hash: job id → job),
/// `…:done:<job id>` (a marker kept a day: an event handled again is not delivered again), and
/// `…:webhook-failures` (a stream: jobs that failed every attempt, with the last error).
///
/// A claimed job is pushed `lease` into the future before it is attempted: a worker that dies
/// mid-attempt leaves it to be attempted again when the lease ends (at-least-once; receivers
/// dedupe by `X-VoiceCore-Delivery`).
///
/// An erased caller's jobs and failure entries are deleted by the erasure
/// (`StreamErasure.deleteWebhookDeliveries`); an attempt that was in flight then ends without
/// writing the job back (``fail(_:error:retryAt:)`` of a job no longer queued changes nothing).
public struct WebhookQueue: Sendable {
    public let prefix: String
    private let queue: ScheduledJobQueue

    public init(connection: BusConnection, prefix: String) {
        self.prefix = prefix
        self.queue = ScheduledJobQueue.webhooks(connection: connection, prefix: prefix)
    }

    /// Jobs that failed every attempt.
    public var failuresStream: String { queue.failuresStream }

    /// Adds a job unless it is queued already or was delivered within the last day.
    @discardableResult
    public func enqueue(_ job: WebhookJob, at time: Timestamp = .now) async throws -> Bool {
        try await queue.enqueue(id: job.id.description, payload: job.json, at: time)
    }

    /// Takes up to `limit` jobs that are due, leasing them for `lease`.
    public func claim(limit: Int, lease: Duration, now: Timestamp = .now) async throws -> [WebhookJob] {
        try await queue.claim(limit: limit, lease: lease, now: now).compactMap { job in
            Identifier(job.id).flatMap { WebhookJob(id: $0, json: job.payload) }
        }
    }

    /// The job was delivered.
    public func complete(_ job: WebhookJob) async throws {
        try await queue.complete(id: job.id.description)
    }

    /// The attempt failed: try again at `retryAt`, or, with no attempt left, record the job in
    /// the failures stream and drop it. A job no longer queued (erased while it was attempted)
    /// stays gone: nothing is rescheduled or recorded.
    public func fail(_ job: WebhookJob, error: String, retryAt: Timestamp?) async throws {
        var job = job
        job.attempts += 1
        job.lastError = error
        let id = job.id.description
        if let retryAt {
            try await queue.reschedule(id: id, payload: job.json, at: retryAt)
        } else {
            let text: [(name: String, value: String)] = [
                ("delivery", id), ("tenantid", job.tenantID.description), ("webhook", job.webhookID.description),
                ("event_id", job.eventID.description), ("event_type", job.eventType), ("attempts", String(job.attempts)), ("last_error", error),
            ]
            var record: [(name: String, value: [UInt8])] = text.map { (name: $0.name, value: Array($0.value.utf8)) }
            record.append((name: "data", value: job.data))
            try await queue.abandon(id: id, record: record)
        }
    }

    /// Jobs waiting (due now or later).
    public func pending() async throws -> Int {
        try await queue.pending()
    }
}
