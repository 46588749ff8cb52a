import VoiceCoreRedis
import VoiceCoreTime

/// Durable jobs run at a time of their own, with retries: enqueued once per id, claimed when due
/// under a lease, then completed, rescheduled, or (out of attempts) recorded in a failures stream.
/// Outbound webhook deliveries are one use: a consumer enqueues a job per delivery and moves on,
/// and a worker claims due jobs, attempts them, and reschedules a failure with a backoff.
///
/// Keys, all under `<prefix>:{<name>}` (one hash tag, so every script runs in one Redis Cluster
/// slot): `…:due` (sorted set: job id → when it may next be claimed, Unix ms), `…:jobs` (hash: job
/// id → payload), `…:done:<job id>` (a marker kept a day after completion: the same job enqueued
/// again within it is not run again), and the failures stream ``failuresStream``.
///
/// A claimed job is pushed `lease` into the future before it is handed out: a worker that dies
/// mid-attempt leaves it to be claimed again when the lease ends (at least once; whatever a job
/// does must tolerate a repeat).
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
            on: connection.client, keys: [dueKey, jobsKey],
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
            RESPCommand(["SET", .string(doneKey(id)), "1", "EX", .string(String(Self.completedMemory.components.seconds))]),
        ]))
    }

    /// The attempt failed and another is due at `time`, with `payload` (the job's, updated: its
    /// attempts, its last error) in place of the job's.
    public func reschedule(id: String, payload: [UInt8], at time: Timestamp) async throws {
        try check(try await connection.client.send([
            RESPCommand(["HSET", .string(jobsKey), .string(id), .bytes(payload)]),
            RESPCommand(["ZADD", .string(dueKey), .string(String(time.millisecondsSinceEpoch)), .string(id)]),
        ]))
    }

    /// Gives the job up: `record` (field names and values) is added to ``failuresStream`` and the
    /// job leaves the queue (its id is not remembered: it may be enqueued again).
    public func abandon(id: String, record: [(name: String, value: [UInt8])]) async throws {
        var xadd: [RESPArgument] = ["XADD", .string(failuresStream), "MAXLEN", "~", .string(String(Self.failuresKept)), "*"]
        for field in record {
            xadd.append(.string(field.name))
            xadd.append(.bytes(field.value))
        }
        try check(try await connection.client.send([
            RESPCommand(xadd),
            RESPCommand(["ZREM", .string(dueKey), .string(id)]),
            RESPCommand(["HDEL", .string(jobsKey), .string(id)]),
        ]))
    }

    /// Jobs waiting, due now or later (claimed ones included until they end).
    public func pending() async throws -> Int {
        try await connection.client.send("ZCARD", .string(dueKey)).int ?? 0
    }

    private func check(_ replies: [RESPValue]) throws {
        for reply in replies { if case .error(let message) = reply { throw RedisError.server(message) } }
    }
}
