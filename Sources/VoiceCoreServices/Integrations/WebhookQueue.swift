import Foundation
import VoiceCoreEvents
import VoiceCoreRedis
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

    /// The job as stored in the queue's hash; keys in sorted order.
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

/// Outbound webhook deliveries, durable in Redis, scheduled by time.
///
/// Keys (one hash tag, so every script runs in one Redis Cluster slot): `<prefix>:{integrations}:due`
/// (sorted set: job id → when it may next be attempted, Unix ms), `…:jobs` (hash: job id → job),
/// `…:done:<job id>` (a marker kept a day: an event handled again is not delivered again), and
/// `…:webhook-failures` (a stream: jobs that failed every attempt, with the last error).
///
/// A claimed job is pushed `lease` into the future before it is attempted: a worker that dies
/// mid-attempt leaves it to be attempted again when the lease ends (at-least-once; receivers
/// dedupe by `X-VoiceCore-Delivery`).
public struct WebhookQueue: Sendable {
    public let prefix: String
    let connection: RedisClient

    public init(connection: RedisClient, prefix: String) {
        self.connection = connection
        self.prefix = prefix
    }

    var dueKey: String { "\(prefix):{integrations}:due" }
    var jobsKey: String { "\(prefix):{integrations}:jobs" }
    func doneKey(_ id: Identifier) -> String { "\(prefix):{integrations}:done:\(id)" }
    /// Jobs that failed every attempt.
    public var failuresStream: String { "\(prefix):{integrations}:webhook-failures" }

    static let enqueueScript = RedisScript("""
        if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
        if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2]) == 0 then return 0 end
        redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
        return 1
        """)

    static let claimScript = RedisScript("""
        local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
        local out = {}
        for _, id in ipairs(ids) do
          local job = redis.call('HGET', KEYS[2], id)
          if job then
            redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[2]), id)
            table.insert(out, id)
            table.insert(out, job)
          else
            redis.call('ZREM', KEYS[1], id)
          end
        end
        return out
        """)

    /// Adds a job unless it is queued already or was delivered within the last day.
    @discardableResult
    public func enqueue(_ job: WebhookJob, at time: Timestamp = .now) async throws -> Bool {
        let reply = try await Self.enqueueScript.run(
            on: connection, keys: [dueKey, jobsKey, doneKey(job.id)],
            arguments: [.string(job.id.description), .bytes(job.json), .string(String(time.millisecondsSinceEpoch))])
        return reply.int == 1
    }

    /// Takes up to `limit` jobs that are due, leasing them for `lease`.
    public func claim(limit: Int, lease: Duration, now: Timestamp = .now) async throws -> [WebhookJob] {
        let reply = try await Self.claimScript.run(
            on: connection, keys: [dueKey, jobsKey],
            arguments: [.string(String(now.millisecondsSinceEpoch)), .string(String(Int64(lease / .milliseconds(1)))), .string(String(limit))])
        let items = reply.array ?? []
        var jobs: [WebhookJob] = []
        var index = 0
        while index + 1 < items.count {
            if let id = items[index].string.flatMap(Identifier.init), let bytes = items[index + 1].bytes, let job = WebhookJob(id: id, json: bytes) {
                jobs.append(job)
            }
            index += 2
        }
        return jobs
    }

    /// The job was delivered.
    public func complete(_ job: WebhookJob) async throws {
        try check(try await connection.send([
            RESPCommand(["ZREM", .string(dueKey), .string(job.id.description)]),
            RESPCommand(["HDEL", .string(jobsKey), .string(job.id.description)]),
            RESPCommand(["SET", .string(doneKey(job.id)), "1", "EX", "86400"]),
        ]))
    }

    /// The attempt failed: try again at `retryAt`, or, with no attempt left, record the job in
    /// the failures stream and drop it.
    public func fail(_ job: WebhookJob, error: String, retryAt: Timestamp?) async throws {
        var job = job
        job.attempts += 1
        job.lastError = error
        let id = job.id.description
        if let retryAt {
            try check(try await connection.send([
                RESPCommand(["HSET", .string(jobsKey), .string(id), .bytes(job.json)]),
                RESPCommand(["ZADD", .string(dueKey), .string(String(retryAt.millisecondsSinceEpoch)), .string(id)]),
            ]))
        } else {
            try check(try await connection.send([
                RESPCommand(["XADD", .string(failuresStream), "MAXLEN", "~", "100000", "*", "delivery", .string(id),
                             "tenantid", .string(job.tenantID.description), "webhook", .string(job.webhookID.description),
                             "event_id", .string(job.eventID.description), "event_type", .string(job.eventType),
                             "attempts", .string(String(job.attempts)), "last_error", .string(error), "data", .bytes(job.data)]),
                RESPCommand(["ZREM", .string(dueKey), .string(id)]),
                RESPCommand(["HDEL", .string(jobsKey), .string(id)]),
            ]))
        }
    }

    /// Jobs waiting (due now or later).
    public func pending() async throws -> Int {
        try await connection.send("ZCARD", .string(dueKey)).int ?? 0
    }

    private func check(_ replies: [RESPValue]) throws {
        for reply in replies { if case .error(let message) = reply { throw RedisError.server(message) } }
    }
}
