import VoiceCoreRedis
import VoiceCoreTime

/// Durable jobs run at a time of their own, with retries: enqueued once per id, claimed when due
/// under a lease, then completed, rescheduled, or (out of attempts) recorded in a failures stream.
/// Outbound webhook deliveries are one use: a consumer enqueues a job per delivery and moves on,
/// and a worker claims due jobs, attempts them, and reschedules a failure with a backoff.
///
/// Keys, all under `<prefix>:{<name>}` (one hash tag, so every script runs in one Redis Cluster
/// slot): `…:due` (sorted set: job id → when it may next be claimed, Unix ms), `…:jobs` (hash: job
/// id → payload), `…:leases` (sorted set: job id → when the attempt claimed under it ends at the
/// latest, Unix ms; removed when the attempt ends), `…:done:<job id>` (a marker kept a day after
/// completion: the same job enqueued again within it is not run again), and the failures stream
/// ``failuresStream``.
///
/// A claimed job is pushed `lease` into the future before it is handed out: a worker that dies
/// mid-attempt leaves it to be claimed again when the lease ends (at least once; whatever a job
/// does must tolerate a repeat).
///
/// A job removed while it is attempted (``remove(where:)``: an erased caller's data) stays
/// removed: ``reschedule(id:payload:at:)`` and ``abandon(id:record:)`` change nothing for a job that
/// is no longer queued, so the attempt's outcome cannot write its payload back, and
/// ``waitForAttempts(of:)`` waits until the attempts in flight have ended.
///
/// ```swift
/// let queue = ScheduledJobQueue(connection: connection, prefix: "vc", name: "integrations", failures: "webhook-failures")
/// try await queue.enqueue(id: delivery.description, payload: body)
/// for job in try await queue.claim(limit: 32, lease: .seconds(60)) {
///     do { try await attempt(job); try await queue.complete(id: job.id) }
///     catch { try await queue.reschedule(id: job.id, payload: job.payload, at: .now + .seconds(5)) }
/// }
/// ```
public struct ScheduledJobQueue: Sendable {
    /// A job handed out by ``claim(limit:lease:now:)``.
    public struct Job: Sendable, Hashable {
        public var id: String
        public var payload: [UInt8]

        public init(id: String, payload: [UInt8]) {
            self.id = id
            self.payload = payload
        }
    }

    private let connection: BusConnection
    /// `<prefix>:{<name>}`: what every key of the queue starts with.
    public let namespace: String
    /// Jobs given up on (``abandon(id:record:)``), one entry each.
    public let failuresStream: String

    /// - Parameters:
    ///   - prefix: the deployment's key prefix (``StreamNaming/prefix``).
    ///   - name: the queue's name, its hash tag.
    ///   - failures: the failures stream's name under the queue's namespace.
    public init(connection: BusConnection, prefix: String, name: String, failures: String) {
        self.connection = connection
        self.namespace = "\(prefix):{\(name)}"
        self.failuresStream = "\(namespace):\(failures)"
    }

    var dueKey: String { "\(namespace):due" }
    var jobsKey: String { "\(namespace):jobs" }
    var leasesKey: String { "\(namespace):leases" }
    func doneKey(_ id: String) -> String { "\(namespace):done:\(id)" }

    /// How long a completed job's id is remembered (``enqueue(id:payload:at:)`` refuses it meanwhile).
    public static let completedMemory: Duration = .seconds(86_400)
    /// The failures stream keeps about this many entries (`MAXLEN ~`).
    public static let failuresKept = 100_000

    static let enqueueScript = RedisScript("""
        if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
        if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2]) == 0 then return 0 end
        redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
        return 1
        """)

    static let claimScript = RedisScript("""
        -- leases that ended (their worker died mid-attempt) are no attempt in flight any more
        redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. ARGV[1])
        local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
        local out = {}
        for _, id in ipairs(ids) do
          local job = redis.call('HGET', KEYS[2], id)
          if job then
            redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[2]), id)
            redis.call('ZADD', KEYS[3], tonumber(ARGV[1]) + tonumber(ARGV[2]), id)
            table.insert(out, id)
            table.insert(out, job)
          else
            redis.call('ZREM', KEYS[1], id)
          end
        end
        return out
        """)

    /// Adds a job due at `time`, unless a job with this id is queued already or was completed
    /// within ``completedMemory``. Returns whether it was added.
    @discardableResult
    public func enqueue(id: String, payload: [UInt8], at time: Timestamp = .now) async throws -> Bool {
        let reply = try await Self.enqueueScript.run(
            on: connection.client, keys: [dueKey, jobsKey, doneKey(id)],
            arguments: [.string(id), .bytes(payload), .string(String(time.millisecondsSinceEpoch))])
        return reply.int == 1
    }

    /// Takes up to `limit` jobs due at `now`, earliest first, each leased for `lease` (due again
    /// then, unless completed, rescheduled or abandoned before).
    public func claim(limit: Int, lease: Duration, now: Timestamp = .now) async throws -> [Job] {
        let reply = try await Self.claimScript.run(
            on: connection.client, keys: [dueKey, jobsKey, leasesKey],
            arguments: [.string(String(now.millisecondsSinceEpoch)), .string(String(Int64(lease / .milliseconds(1)))), .string(String(limit))])
        let items = reply.array ?? []
        var jobs: [Job] = []
        var index = 0
        while index + 1 < items.count {
            if let id = items[index].string, let payload = items[index + 1].bytes { jobs.append(Job(id: id, payload: payload)) }
            index += 2
        }
        return jobs
    }

    /// The job is done: it leaves the queue, and its id is remembered for ``completedMemory``.
    public func complete(id: String) async throws {
        try check(try await connection.client.send([
            RESPCommand(["ZREM", .string(dueKey), .string(id)]),
            RESPCommand(["HDEL", .string(jobsKey), .string(id)]),
            RESPCommand(["ZREM", .string(leasesKey), .string(id)]),
            RESPCommand(["SET", .string(doneKey(id)), "1", "EX", .string(String(Self.completedMemory.components.seconds))]),
        ]))
    }

    /// ARGV: job id, payload, due time (ms). Only a job still queued is rescheduled.
    static let rescheduleScript = RedisScript("""
        redis.call('ZREM', KEYS[3], ARGV[1])
        if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 then return 0 end
        redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
        redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
        return 1
        """)

    /// KEYS: due, jobs, leases, failures stream; ARGV: job id, entries kept, then field, value, ….
    /// Only a job still queued is recorded as a failure.
    static let abandonScript = RedisScript("""
        redis.call('ZREM', KEYS[3], ARGV[1])
        if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 then
          redis.call('ZREM', KEYS[1], ARGV[1])
          return 0
        end
        redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[2], '*', unpack(ARGV, 3))
        redis.call('ZREM', KEYS[1], ARGV[1])
        redis.call('HDEL', KEYS[2], ARGV[1])
        return 1
        """)

    /// The attempt failed and another is due at `time`, with `payload` (the job's, updated: its
    /// attempts, its last error) in place of the job's. A job no longer queued (removed by
    /// ``remove(where:)`` while it was attempted, or completed by another worker after its lease
    /// ran out) is left gone.
    /// - Returns: whether the job was still queued and is rescheduled.
    @discardableResult
    public func reschedule(id: String, payload: [UInt8], at time: Timestamp) async throws -> Bool {
        let reply = try await Self.rescheduleScript.run(
            on: connection.client, keys: [dueKey, jobsKey, leasesKey],
            arguments: [.string(id), .bytes(payload), .string(String(time.millisecondsSinceEpoch))])
        return reply.int == 1
    }

    /// Gives the job up: `record` (field names and values) is added to ``failuresStream`` and the
    /// job leaves the queue (its id is not remembered: it may be enqueued again). A job no longer
    /// queued (see ``reschedule(id:payload:at:)``) records nothing.
    /// - Returns: whether the job was still queued and is recorded.
    @discardableResult
    public func abandon(id: String, record: [(name: String, value: [UInt8])]) async throws -> Bool {
        var arguments: [RESPArgument] = [.string(id), .string(String(Self.failuresKept))]
        for field in record {
            arguments.append(.string(field.name))
            arguments.append(.bytes(field.value))
        }
        let reply = try await Self.abandonScript.run(on: connection.client, keys: [dueKey, jobsKey, leasesKey, failuresStream], arguments: arguments)
        return reply.int == 1
    }

    // MARK: Removing jobs (erasure)

    /// Jobs read per `HSCAN` page by ``remove(where:)``.
    private static let scanPage = 500

    /// Removes, job by job, every queued job `matches` accepts (read with `HSCAN`, so a large queue
    /// is read in pages, never in one reply), whether due, waiting for a retry or attempted now. An
    /// attempt in flight cannot bring its job back (see the type's discussion); its request may
    /// still be on its way: ``waitForAttempts(of:)`` waits for it to end.
    /// - Returns: the ids removed.
    public func remove(where matches: @Sendable (Job) -> Bool) async throws -> [String] {
        var removed: [String] = []
        var cursor = "0"
        repeat {
            let reply = try await connection.client.send("HSCAN", .string(jobsKey), .string(cursor), "COUNT", .integer(Self.scanPage))
            guard let parts = reply.array, parts.count == 2, let next = parts[0].string, let items = parts[1].array else {
                throw RedisError(kind: .unexpectedReply, message: "HSCAN \(jobsKey) answered \(reply)")
            }
            var doomed: [String] = []
            var index = 0
            while index + 1 < items.count {
                if let id = items[index].string, let payload = items[index + 1].bytes, matches(Job(id: id, payload: payload)) { doomed.append(id) }
                index += 2
            }
            if !doomed.isEmpty {
                var commands: [RESPCommand] = []
                for id in doomed {
                    commands.append(RESPCommand(["HDEL", .string(jobsKey), .string(id)]))
                    commands.append(RESPCommand(["ZREM", .string(dueKey), .string(id)]))
                }
                let replies = try await connection.client.send(commands)
                try check(replies)
                for (offset, id) in doomed.enumerated() where replies[offset * 2].int == 1 { removed.append(id) }
            }
            cursor = next
        } while cursor != "0"
        return removed
    }

    /// The jobs removed (``remove(where:)``) whose attempt is still in flight: leased, and no longer
    /// queued. A removal interrupted before it waited for them finds them here.
    public func removedJobsBeingAttempted() async throws -> [String] {
        let now = Timestamp.now.millisecondsSinceEpoch
        let leased = try await connection.client.execute(.raw(["ZRANGEBYSCORE", .string(leasesKey), .string(String(now)), "+inf"])).array?
            .compactMap(\.string) ?? []
        guard !leased.isEmpty else { return [] }
        let queued = try await connection.client.execute(.raw(["HMGET", .string(jobsKey)] + leased.map { RESPArgument.string($0) })).array ?? []
        return zip(leased, queued).filter { $0.1.string == nil && $0.1.bytes == nil }.map(\.0)
    }

    /// Waits until no attempt of these jobs is in flight: each was completed, rescheduled or
    /// abandoned since it was claimed, or its lease ran out (its worker died). Bounded by the
    /// longest lease now held, plus `grace` for clocks that differ between hosts.
    public func waitForAttempts(of ids: [String], grace: Duration = .seconds(2)) async throws {
        guard !ids.isEmpty else { return }
        var waiting = ids
        var deadline: ContinuousClock.Instant?
        while true {
            let scores = try await connection.client.execute(.raw(["ZMSCORE", .string(leasesKey)] + waiting.map { RESPArgument.string($0) }))
            guard let values = scores.array, values.count == waiting.count else {
                throw RedisError(kind: .unexpectedReply, message: "ZMSCORE \(leasesKey) answered \(scores)")
            }
            let now = Timestamp.now.millisecondsSinceEpoch
            var latest: Int64 = 0
            var stillLeased: [String] = []
            for (id, value) in zip(waiting, values) {
                guard let text = value.string, let until = Double(text).map({ Int64($0) }), until >= now else { continue }
                stillLeased.append(id)
                latest = max(latest, until)
            }
            guard !stillLeased.isEmpty else { return }
            if deadline == nil { deadline = .now + .milliseconds(latest - now) + grace }
            if let deadline, ContinuousClock.now >= deadline { return }
            waiting = stillLeased
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    /// Jobs waiting, due now or later (claimed ones included until they end).
    public func pending() async throws -> Int {
        try await connection.client.send("ZCARD", .string(dueKey)).int ?? 0
    }

    private func check(_ replies: [RESPValue]) throws {
        for reply in replies { if case .error(let message) = reply { throw RedisError.server(message) } }
    }
}

extension ScheduledJobQueue {
    /// The outbound webhook deliveries (the integrations service's queue, `<prefix>:{integrations}`,
    /// failures in `…:webhook-failures`): named here, in one place, because an erasure removes the
    /// deliveries of an erased caller (``StreamErasure/deleteWebhookDeliveries(tenant:events:subjects:)``).
    ///
    /// Each job's payload is a JSON object naming at least `tenant` (the tenant id) and `event_id`
    /// (the event delivered), with the event's `data` as a JSON string under `data`; each failure
    /// entry has the fields `tenantid`, `event_id` and `data`.
    public static func webhooks(connection: BusConnection, prefix: String) -> ScheduledJobQueue {
        ScheduledJobQueue(connection: connection, prefix: prefix, name: "integrations", failures: "webhook-failures")
    }
}
