#if canImport(Glibc)
import Glibc
#endif
import Logging
import Metrics
import VoiceCoreEvents
import VoiceCorePostgres
import VoiceCoreRedis
import VoiceCoreTime

/// One worker of one projection: owns some partitions (advisory locks on its own Postgres
/// connection), reads them with its own Redis connection, applies batches. Lives in one task.
final class ProjectorWorker {
    private let runner: ProjectorRunner
    private let projection: any Projection
    private let configuration: ProjectorConfiguration
    private let redisConfiguration: RedisConfiguration
    private let postgresConfiguration: PostgresConfiguration
    private let registry: MessageRegistry
    private let metrics: ProjectorMetrics
    private let partitionGauge: Gauge
    private var logger: Logger
    let consumer: String
    let group: String

    private var db: PostgresConnection?
    private var redis: RedisConnection?
    /// Advisory lock spaces (first key): partitions, and live workers.
    private var partitionSpace: Int64 = 0
    private var memberSpace: Int64 = 0
    private var memberSlot: Int?
    /// Owned partitions and their streams.
    private var held: [Int: [String]] = [:]
    private var checkpoints: [String: StreamEntryID] = [:]
    private var lastRebalance: ContinuousClock.Instant?

    init(runner: ProjectorRunner, projection: any Projection, index: Int, redis: RedisConfiguration, postgres: PostgresConfiguration,
         registry: MessageRegistry, logger: Logger, metrics: ProjectorMetrics) {
        self.runner = runner
        self.projection = projection
        self.configuration = runner.configuration
        self.consumer = "\(runner.configuration.instance)-\(index)".replacingOccurrences(of: " ", with: "_")
        self.group = ProjectorConfiguration.group(of: projection.name)
        var redisConfiguration = redis
        redisConfiguration.clientName = "vc-projector:\(projection.name):\(consumer)"
        self.redisConfiguration = redisConfiguration
        var postgres = postgres
        postgres.applicationName = "voicecore projector \(projection.name) \(consumer)"
        self.postgresConfiguration = postgres
        self.registry = registry
        self.metrics = metrics
        self.partitionGauge = metrics.partitions(worker: consumer)
        var logger = logger
        logger[metadataKey: "projection"] = "\(projection.name)"
        logger[metadataKey: "worker"] = "\(consumer)"
        self.logger = logger
    }

    // MARK: Loop

    func run(stop: StopSignal) async throws {
        try await connect(stop: stop)
        defer {
            // Closing the session releases every advisory lock this worker holds.
            if let db { Task { await db.close() } }
            partitionGauge.record(0)
        }
        logger.info("projector worker started")
        while !stop.isSet {
            do {
                if held.isEmpty || lastRebalance.map({ ContinuousClock.now - $0 >= configuration.rebalanceInterval }) ?? true {
                    try await rebalance()
                }
                guard let redis, !held.isEmpty else {
                    try? await Task.sleep(for: min(configuration.block, configuration.rebalanceInterval / 4))
                    continue
                }
                let streams = held.keys.sorted().flatMap { held[$0] ?? [] }
                let results = try await redis.execute(.xreadgroup(
                    group: group, consumer: consumer, streams: streams.map { ($0, GroupReadPosition.newEntries) },
                    count: configuration.batchSize, block: configuration.block))
                if results.contains(where: { !$0.entries.isEmpty }) {
                    try await process(results, stop: stop)
                }
            } catch let error as RedisError {
                await recoverRedis(error, stop: stop)
            } catch let error as PostgresError where error.isConnectionFailure {
                await recoverPostgres(error, stop: stop)
            } catch is CancellationError {
                break
            } catch let error as ShutdownDuringBatch {
                _ = error
                break
            }
        }
        logger.info("projector worker stopped", metadata: ["partitions": "\(held.count)"])
    }

    private func connect(stop: StopSignal) async throws {
        db = try await PostgresConnection.connect(postgresConfiguration, logger: logger)
        redis = try await RedisConnection.connect(redisConfiguration, logger: logger)
        try await prepareDatabase()
    }

    /// Lock spaces are per schema and projection, so schemas of one database never collide.
    private func prepareDatabase() async throws {
        guard let db else { return }
        let schema: String
        do {
            schema = try await db.withConnection { db in
                try db.query("SELECT 1 FROM projection_checkpoints, projection_failures LIMIT 0")
                return try db.query("SELECT current_schema() AS schema")[0].decode(String.self, "schema")
            }
        } catch let error as PostgresError where error.sqlState == "42P01" {
            throw ProjectorError("the read-model tables are missing in \(postgresConfiguration.description): run `voicecore migrate up` first (\(error.message))")
        }
        partitionSpace = Int64(StreamNaming.fnv1a32(Array("\(schema)/\(projection.name)".utf8)) & 0x7fff_ffff)
        memberSpace = Int64(StreamNaming.fnv1a32(Array("\(schema)/\(projection.name)/workers".utf8)) & 0x7fff_ffff)
        memberSlot = nil
        held = [:]
        checkpoints = [:]
        partitionGauge.record(0)
    }

    // MARK: Partitions

    /// Joins the live workers, then takes free partitions up to the fair share or gives extras back.
    private func rebalance() async throws {
        guard let db else { return }
        lastRebalance = ContinuousClock.now
        let partitions = configuration.naming.partitions
        let memberSpace = self.memberSpace, partitionSpace = self.partitionSpace, memberSlot = self.memberSlot
        let workers: Int = try await db.withConnection { db in
            if memberSlot == nil {
                for slot in (0..<4096).shuffled().prefix(256) {
                    let taken = try db.query("SELECT pg_try_advisory_lock(\(Int32(memberSpace)), \(Int32(slot))) AS taken")[0].decode(Bool.self, "taken")
                    if taken { return -slot - 1 }
                }
                throw ProjectorError("no free worker slot among 256 tried")
            }
            return try db.query("""
                SELECT count(*) AS workers FROM pg_locks
                WHERE locktype = 'advisory' AND granted AND objsubid = 2
                  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
                  AND classid = \(memberSpace)::int8::oid
                """)[0].decode(Int.self, "workers")
        }
        if workers < 0 {
            self.memberSlot = -workers - 1
            lastRebalance = nil
            return try await rebalance()
        }
        let share = (partitions + max(1, workers) - 1) / max(1, workers)
        if held.count > share {
            for partition in held.keys.sorted().suffix(held.count - share) {
                _ = try await db.query("SELECT pg_advisory_unlock(\(Int32(partitionSpace)), \(Int32(partition)))")
                for stream in held[partition] ?? [] { checkpoints[stream] = nil }
                held[partition] = nil
                logger.info("gave partition back", metadata: ["partition": "\(partition)", "workers": "\(workers)"])
            }
        } else if held.count < share {
            for partition in (0..<partitions).shuffled() where held[partition] == nil {
                let taken = try await db.query("SELECT pg_try_advisory_lock(\(Int32(partitionSpace)), \(Int32(partition))) AS taken")[0].decode(Bool.self, "taken")
                guard taken else { continue }
                do {
                    try await take(partition)
                } catch {
                    _ = try? await db.query("SELECT pg_advisory_unlock(\(Int32(partitionSpace)), \(Int32(partition)))")
                    throw error
                }
                if held.count >= share { break }
            }
        }
        partitionGauge.record(held.count)
        let owned = held.count
        runner.record(projection.name) { $0.partitions = owned }
    }

    /// A newly owned partition: load its checkpoints and move the group back to them.
    private func take(_ partition: Int) async throws {
        guard let db else { return }
        let streams = projection.categories.map { configuration.naming.stream($0, kind: .event, partition: partition) }
        let name = projection.name
        let rows = try await db.query("""
            SELECT stream, last_entry_id FROM projection_checkpoints WHERE projection = \(name) AND stream = ANY(\(streams)::text[])
            """)
        var found: [String: StreamEntryID] = [:]
        for row in rows {
            let text = try row.decode(String.self, "last_entry_id")
            guard let id = StreamEntryID(text) else { throw ProjectorError("checkpoint '\(text)' of \(name) is not a stream entry id") }
            found[try row.decode(String.self, "stream")] = id
        }
        try await position(streams, at: found)
        for stream in streams { checkpoints[stream] = found[stream] }
        held[partition] = streams
        logger.info("took partition", metadata: ["partition": "\(partition)", "checkpoints": "\(found.count)"])
    }

    /// Sets the group of each stream to its checkpoint (creating group and stream when missing) and
    /// acknowledges pending entries at or below it (committed by an owner that died before XACK).
    private func position(_ streams: [String], at checkpoints: [String: StreamEntryID]) async throws {
        guard let redis else { return }
        for stream in streams {
            let start: GroupStart = checkpoints[stream].map { .after($0) } ?? .beginning
            do {
                try await redis.execute(.xgroupCreate(stream, group: group, start: start, makeStream: true))
            } catch let error as RedisError where error.serverCode == "BUSYGROUP" {
                try await redis.execute(.xgroupSetID(stream, group: group, start: start))
            }
            guard let checkpoint = checkpoints[stream] else { continue }
            while true {
                let done = try await redis.execute(.xpending(stream, group: group, from: .zero, to: checkpoint, count: 1000))
                guard !done.isEmpty else { break }
                _ = try await redis.execute(.xack(stream, group: group, ids: done.map(\.id)))
            }
        }
    }

    // MARK: Batches

    struct Failure: Sendable {
        var stream: String
        var entryID: StreamEntryID
        var eventID: Identifier?
        var type: String?
        var error: String
        var fields: [StreamField]
    }

    private func process(_ results: [StreamReadResult], stop: StopSignal) async throws {
        let start = ContinuousClock.now
        var events: [ProjectedEvent] = []
        var failures: [Failure] = []
        var advanced: [String: StreamEntryID] = [:]
        var acknowledge: [(String, [StreamEntryID])] = []
        var passedOver = 0, skipped = 0
        let types = projection.eventTypes
        for result in results where !result.entries.isEmpty {
            acknowledge.append((result.stream, result.entries.map(\.id)))
            let checkpoint = checkpoints[result.stream]
            for entry in result.entries {
                if let checkpoint, entry.id <= checkpoint {
                    skipped += 1
                    continue
                }
                advanced[result.stream] = entry.id
                guard let fields = entry.fields else {
                    passedOver += 1
                    continue
                }
                let envelope: EventEnvelope
                do {
                    envelope = try EventEnvelope(fields: fields.map { EnvelopeField(name: $0.name, value: $0.value) })
                } catch {
                    failures.append(Failure(stream: result.stream, entryID: entry.id, error: "undecodable envelope: \(error)", fields: fields))
                    continue
                }
                guard let types else {
                    events.append(ProjectedEvent(stream: result.stream, entryID: entry.id, envelope: envelope, message: nil))
                    continue
                }
                guard types.contains(envelope.type) else {
                    passedOver += 1
                    continue
                }
                do {
                    switch try registry.decode(envelope) {
                    case .known(_, let message):
                        events.append(ProjectedEvent(stream: result.stream, entryID: entry.id, envelope: envelope, message: message))
                    case .unknown(_, let reason):
                        failures.append(Failure(stream: result.stream, entryID: entry.id, eventID: envelope.id, type: envelope.type,
                                                error: "unknown to this projector (\(reason)); upgrade it, then replay", fields: fields))
                    }
                } catch {
                    failures.append(Failure(stream: result.stream, entryID: entry.id, eventID: envelope.id, type: envelope.type,
                                            error: "undecodable payload: \(error)", fields: fields))
                }
            }
        }
        var applied = events.count
        var rejectedCount = 0
        if !advanced.isEmpty {
            let rejected = try await commit(events, failures: failures, advancing: advanced, stop: stop)
            applied -= rejected
            rejectedCount = rejected
            for (stream, id) in advanced { checkpoints[stream] = id }
            let committedBatches = runner.noteCommitted()
            if configuration.crashPoint?.point == .afterCommit, committedBatches > configuration.crashPoint?.afterBatches ?? .max {
                logger.critical("crash point after-commit reached: killing the process")
                kill(getpid(), SIGKILL)
            }
        }
        if let redis {
            let results = try await redis.pipeline(acknowledge.map { RedisCommand.xack($0.0, group: group, ids: $0.1) })
            for case .failure(let error) in results where error.serverCode != "NOGROUP" { throw error }
        }
        let failed = failures.count + rejectedCount
        let owned = held.count
        runner.record(projection.name) { statistics in
            statistics.applied += applied
            statistics.failed += failed
            statistics.passedOver += passedOver
            statistics.skipped += skipped
            statistics.batches += advanced.isEmpty ? 0 : 1
            statistics.partitions = owned
        }
        metrics.applied.increment(by: applied)
        if failed > 0 { metrics.failed.increment(by: failed) }
        metrics.batch.recordNanoseconds(Int64((ContinuousClock.now - start).nanoseconds))
    }

    /// Applies the batch and writes failures and checkpoints in one transaction. Returns how many
    /// events the database rejected (recorded as failures).
    private func commit(_ events: [ProjectedEvent], failures: [Failure], advancing advanced: [String: StreamEntryID], stop: StopSignal) async throws -> Int {
        guard let db else { throw PostgresError(code: .connectionClosed, message: "no database connection") }
        let projection = self.projection
        let crashBeforeCommit = configuration.crashPoint?.point == .beforeCommit && runner.committedBatches >= configuration.crashPoint?.afterBatches ?? .max
        var isolatingEvents = false
        var delay = configuration.retryDelay
        while true {
            let isolating = isolatingEvents
            do {
                return try await db.withTransaction { db in
                    var rejected: [Failure] = []
                    if isolating {
                        // Event by event: a rejected event rolls back to its savepoint only.
                        for event in events {
                            try db.query("SAVEPOINT projector_event")
                            do {
                                try projection.apply([event], in: db)
                                try db.query("RELEASE SAVEPOINT projector_event")
                            } catch let error as PostgresError where !error.isConnectionFailure && !error.isTransient {
                                try db.query("ROLLBACK TO SAVEPOINT projector_event")
                                rejected.append(Failure(stream: event.stream, entryID: event.entryID, eventID: event.envelope.id, type: event.envelope.type,
                                                        error: "rejected by the database: \(error)", fields: event.envelope.fields.map { StreamField(name: $0.name, value: $0.value) }))
                            }
                        }
                    } else {
                        try projection.apply(events, in: db)
                    }
                    try Self.record(failures + rejected, projection: projection.name, in: db)
                    try Self.writeCheckpoints(advanced, projection: projection.name, in: db)
                    if crashBeforeCommit {
                        // Testing aid (ProjectorConfiguration.crashPoint): die with the transaction open.
                        kill(getpid(), SIGKILL)
                    }
                    return rejected.count
                }
            } catch let error as PostgresError where error.isConnectionFailure {
                throw error
            } catch let error as PostgresError where error.isTransient {
                logger.info("transient database error; retrying the batch", metadata: ["error": "\(error)"])
            } catch {
                if isolatingEvents { throw error }
                logger.warning("the database rejected the batch; applying it event by event to isolate the rejected events", metadata: ["error": "\(error)"])
                isolatingEvents = true
                continue
            }
            if stop.isSet { throw ShutdownDuringBatch() }
            try await Task.sleep(for: delay * Double.random(in: 0.8...1.2))
            delay = min(delay * 2, configuration.maxRetryDelay)
        }
    }

    private static func record(_ failures: [Failure], projection: String, in db: isolated PostgresConnection) throws {
        guard !failures.isEmpty else { return }
        try db.query("""
            INSERT INTO projection_failures (projection, stream, entry_id, event_id, type, error, fields)
            SELECT \(projection), * FROM unnest(\(failures.map(\.stream))::text[], \(failures.map(\.entryID.description))::text[],
                                               \(failures.map(\.eventID))::uuid[], \(failures.map(\.type))::text[],
                                               \(failures.map { String($0.error.prefix(4000)) })::text[],
                                               \(failures.map { PostgresJSON(rawJSON: Self.json($0.fields)) })::jsonb[])
            ON CONFLICT (projection, stream, entry_id) DO NOTHING
            """)
    }

    private static func writeCheckpoints(_ advanced: [String: StreamEntryID], projection: String, in db: isolated PostgresConnection) throws {
        let streams = advanced.keys.sorted()
        try db.query("""
            INSERT INTO projection_checkpoints AS c (projection, stream, last_entry_id, updated_at)
            SELECT \(projection), s, e, now() FROM unnest(\(streams)::text[], \(streams.map { advanced[$0]!.description })::text[]) AS u(s, e)
            ON CONFLICT (projection, stream) DO UPDATE SET last_entry_id = EXCLUDED.last_entry_id, updated_at = now()
            """)
    }

    /// The entry's fields as a JSON object of strings.
    static func json(_ fields: [StreamField]) -> String {
        var out = "{"
        for (index, field) in fields.enumerated() {
            if index > 0 { out += "," }
            out += jsonString(field.name) + ":" + jsonString(String(decoding: field.value, as: UTF8.self))
        }
        return out + "}"
    }

    static func jsonString(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{0}": out += "\\ufffd"
            default:
                if scalar.value < 0x20 {
                    out += "\\u" + String(repeating: "0", count: 4 - String(scalar.value, radix: 16).count) + String(scalar.value, radix: 16)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }

    // MARK: Recovery

    private func recoverRedis(_ error: RedisError, stop: StopSignal) async {
        logger.warning("Redis failed; reconnecting, then moving the groups back to the checkpoints", metadata: ["error": "\(error)"])
        while !stop.isSet {
            do {
                if let redis, await !redis.isConnected { try await redis.reconnect() }
                // Entries read but not committed are pending here and would not be delivered again.
                for streams in held.values {
                    try await position(streams, at: checkpoints.filter { streams.contains($0.key) })
                }
                return
            } catch {
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }

    private func recoverPostgres(_ error: PostgresError, stop: StopSignal) async {
        logger.warning("database connection lost; its partitions are free now, reconnecting", metadata: ["error": "\(error)"])
        held = [:]
        checkpoints = [:]
        memberSlot = nil
        partitionGauge.record(0)
        while !stop.isSet {
            do {
                if let db { try await db.reconnect() }
                try await prepareDatabase()
                lastRebalance = nil
                return
            } catch {
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }
}

/// A shutdown arrived while a batch waited to be retried: it stays pending for the next owner.
struct ShutdownDuringBatch: Error {}

extension PostgresError {
    /// The session is gone (and with it the advisory locks).
    var isConnectionFailure: Bool { code == .connection || code == .connectionClosed || sqlState?.hasPrefix("08") == true || sqlState == "57P01" }
    /// Worth retrying as is: deadlock, serialization failure, lock timeout, out of resources.
    var isTransient: Bool {
        guard let sqlState else { return false }
        return sqlState == "40001" || sqlState == "40P01" || sqlState == "55P03" || sqlState.hasPrefix("53")
    }
}

extension Duration {
    var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}
