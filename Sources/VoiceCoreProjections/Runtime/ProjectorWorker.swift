import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Logging
import Metrics
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCorePostgres
import VoiceCoreTime

/// One worker of a runner: owns some partitions (for every projection of the runner: advisory
/// locks on its own Postgres connection), reads them once through its own bus reader
/// (``StreamGroupReader``, NOACK, the next batch read ahead), and applies each batch to every
/// projection in one transaction. Lives in one task.
final class ProjectorWorker {
    private let runner: ProjectorRunner
    private let projections: [any Projection]
    private let configuration: ProjectorConfiguration
    private let redisConfiguration: RedisConfiguration
    private let postgresConfiguration: PostgresConfiguration
    private let registry: MessageRegistry
    private let metrics: [String: ProjectorMetrics]
    private var logger: Logger
    let consumer: String
    let group: String
    /// A category's event or command streams (``Projection/kind``).
    struct StreamSource: Hashable {
        var category: StreamCategory
        var kind: MessageKind
    }

    /// Which projections read each source, and the sources read, in a fixed order.
    private let readers: [StreamSource: [Int]]
    private let sources: [StreamSource]

    private var db: PostgresConnection?
    private var reader: StreamGroupReader?
    /// Advisory lock spaces (first key): one per projection for partitions, one for live workers.
    private var partitionSpaces: [Int64] = []
    private var memberSpace: Int64 = 0
    private var memberSlot: Int?
    /// Owned partitions and their streams.
    private var held: [Int: [String]] = [:]
    private var streamSource: [String: StreamSource] = [:]
    /// Checkpoint per projection (index) and stream.
    private var checkpoints: [[String: StreamEntryID]]
    private var lastRebalance: ContinuousClock.Instant?
    /// Set once this worker has joined and waited for its siblings (at its first rebalance).
    private var hasJoined = false

    init(runner: ProjectorRunner, index: Int, redis: RedisConfiguration, postgres: PostgresConfiguration,
         registry: MessageRegistry, logger: Logger, metrics: [String: ProjectorMetrics]) {
        self.runner = runner
        self.projections = runner.projections
        self.configuration = runner.configuration
        self.consumer = "\(runner.configuration.instance)-\(index)".replacingOccurrences(of: " ", with: "_")
        self.group = runner.group
        self.redisConfiguration = redis
        var postgres = postgres
        postgres.applicationName = "voicecore projector \(consumer)"
        self.postgresConfiguration = postgres
        self.registry = registry
        self.metrics = metrics
        var readers: [StreamSource: [Int]] = [:]
        for (index, projection) in runner.projections.enumerated() {
            for category in projection.categories { readers[StreamSource(category: category, kind: projection.kind), default: []].append(index) }
        }
        self.readers = readers
        self.sources = [MessageKind.event, .command].flatMap { kind in
            StreamCategory.allCases.map { StreamSource(category: $0, kind: kind) }.filter { readers[$0] != nil }
        }
        self.checkpoints = Array(repeating: [:], count: runner.projections.count)
        var logger = logger
        logger[metadataKey: "worker"] = "\(consumer)"
        self.logger = logger
    }

    // MARK: Loop

    func run(stop: StopSignal) async throws {
        try await connect()
        defer {
            // Closing the session releases every advisory lock this worker holds.
            if let db { Task { await db.close() } }
            runner.setPartitions(of: consumer, 0)
        }
        logger.info("projector worker started", metadata: ["projections": "\(projections.map(\.name).joined(separator: ","))"])
        while !stop.isSet {
            do {
                try await readAndApply(stop: stop)
            } catch let error as RedisError {
                await reader?.dropReadAhead()
                await recoverRedis(error, stop: stop)
            } catch let error as PostgresError where error.isConnectionFailure {
                await reader?.dropReadAhead()
                await recoverPostgres(error, stop: stop)
            } catch is CancellationError {
                break
            } catch is ShutdownDuringBatch {
                break
            }
        }
        // What it read and did not commit is delivered again to the next owner (from the checkpoint).
        await reader?.dropReadAhead()
        logger.info("projector worker stopped", metadata: ["partitions": "\(held.count)"])
    }

    /// One turn: collects the batch read ahead, rebalances when due, then applies the next batch of
    /// the partitions held. The next batch is read (without blocking) while this one is applied:
    /// Redis and the reply's parsing work while Postgres does. It is always collected before the
    /// partitions change hands (a rebalance, a recovery, the end), so no read of this worker lands
    /// after another owner moved a group; entries it read for a partition given back are dropped,
    /// and the new owner, moving the group back to the checkpoint, is delivered them again.
    private func readAndApply(stop: StopSignal) async throws {
        let ahead = try await reader?.collectReadAhead()
        if held.isEmpty || lastRebalance.map({ ContinuousClock.now - $0 >= configuration.rebalanceInterval }) ?? true {
            try await rebalance()
        }
        guard let reader, !held.isEmpty else {
            try? await Task.sleep(for: min(configuration.block, configuration.rebalanceInterval / 4))
            return
        }
        reader.own(held.keys.sorted().flatMap { held[$0] ?? [] })
        let read = try await reader.read(continuing: ahead)
        guard read.hasEntries else { return }
        reader.startReadAhead(after: read)
        try await process(read.batches, stop: stop)
    }

    private func connect() async throws {
        // The session holds this worker's advisory locks: a lost one must be noticed and
        // recovered from (partitions dropped), never replaced silently.
        var configuration = postgresConfiguration
        configuration.reconnectsAutomatically = false
        db = try await PostgresConnection.connect(configuration, logger: logger)
        reader = try await StreamGroupReader.connect(
            redisConfiguration, clientName: "vc-projector:\(consumer)",
            configuration: StreamGroupReader.Configuration(group: group, consumer: consumer, batchSize: self.configuration.batchSize,
                                                           block: self.configuration.block, readInterval: self.configuration.readInterval,
                                                           noAck: true, readAheadAfter: 0),
            logger: logger)
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
        partitionSpaces = projections.map { Self.lockSpace("\(schema)/\($0.name)") }
        memberSpace = Self.lockSpace("\(schema)/\(group)/workers")
        memberSlot = nil
        held = [:]
        checkpoints = Array(repeating: [:], count: projections.count)
        runner.setPartitions(of: consumer, 0)
    }

    static func lockSpace(_ name: String) -> Int64 {
        Int64(StreamNaming.fnv1a32(Array(name.utf8)) & 0x7fff_ffff)
    }

    // MARK: Partitions

    /// Joins the live workers, then takes free partitions up to the fair share or gives extras back.
    private func rebalance() async throws {
        guard let db else { return }
        lastRebalance = ContinuousClock.now
        let partitions = configuration.naming.partitions
        let memberSpace = self.memberSpace
        if memberSlot == nil {
            memberSlot = try await db.withConnection { db in
                for slot in (0..<4096).shuffled().prefix(256) {
                    let taken = try db.query("SELECT pg_try_advisory_lock(\(Int32(memberSpace)), \(Int32(slot))) AS taken")[0].decode(Bool.self, "taken")
                    if taken { return slot }
                }
                throw ProjectorError("no free worker slot among 256 tried")
            }
            if !hasJoined {
                // Counted by the others before anyone takes partitions (see ProjectorRunner).
                hasJoined = true
                runner.noteJoined()
                await runner.siblingsJoined(within: .seconds(1))
            }
        }
        let workers = try await db.query("""
            SELECT count(*) AS workers FROM pg_locks
            WHERE locktype = 'advisory' AND granted AND objsubid = 2
              AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
              AND classid = \(memberSpace)::int8::oid
            """)[0].decode(Int.self, "workers")
        let share = (partitions + max(1, workers) - 1) / max(1, workers)
        if held.count > share {
            for partition in held.keys.sorted().suffix(held.count - share) {
                try await unlock(partition, projections: projections.indices)
                for stream in held[partition] ?? [] {
                    for index in projections.indices { checkpoints[index][stream] = nil }
                }
                held[partition] = nil
                logger.info("gave partition back", metadata: ["partition": "\(partition)", "workers": "\(workers)"])
            }
        } else if held.count < share {
            for partition in (0..<partitions).shuffled() where held[partition] == nil {
                // A partition is taken for every projection of this runner, or not at all.
                var locked: [Int] = []
                for index in projections.indices {
                    let space = partitionSpaces[index]
                    let taken = try await db.query("SELECT pg_try_advisory_lock(\(Int32(space)), \(Int32(partition))) AS taken")[0].decode(Bool.self, "taken")
                    guard taken else { break }
                    locked.append(index)
                }
                guard locked.count == projections.count else {
                    try await unlock(partition, projections: locked)
                    continue
                }
                do {
                    try await take(partition)
                } catch {
                    try? await unlock(partition, projections: projections.indices)
                    throw error
                }
                if held.count >= share { break }
            }
        }
        runner.setPartitions(of: consumer, held.count)
    }

    private func unlock(_ partition: Int, projections indices: some Sequence<Int>) async throws {
        guard let db else { return }
        for index in indices {
            _ = try await db.query("SELECT pg_advisory_unlock(\(Int32(partitionSpaces[index])), \(Int32(partition)))")
        }
    }

    /// A newly owned partition: load its checkpoints and move the group back to them.
    private func take(_ partition: Int) async throws {
        guard let db else { return }
        var streams: [String] = []
        for source in sources {
            let stream = configuration.naming.stream(source.category, kind: source.kind, partition: partition)
            streams.append(stream)
            streamSource[stream] = source
        }
        let names = projections.map(\.name)
        let rows = try await db.query("""
            SELECT projection, stream, last_entry_id FROM projection_checkpoints
            WHERE projection = ANY(\(names)::text[]) AND stream = ANY(\(streams)::text[])
            """)
        var found = Array(repeating: [String: StreamEntryID](), count: projections.count)
        for row in rows {
            let text = try row.decode(String.self, "last_entry_id")
            let name = try row.decode(String.self, "projection")
            guard let id = StreamEntryID(text), let index = names.firstIndex(of: name) else { throw ProjectorError("checkpoint '\(text)' of \(name) is not a stream entry id") }
            found[index][try row.decode(String.self, "stream")] = id
        }
        try await position(streams, checkpoints: found)
        for index in projections.indices {
            for stream in streams { checkpoints[index][stream] = found[index][stream] }
        }
        held[partition] = streams
        logger.info("took partition", metadata: ["partition": "\(partition)"])
    }

    /// Where the group must deliver from on a stream: after the least checkpoint of the
    /// projections reading it (from the start when one of them has none).
    private func groupPosition(_ stream: String, _ checkpoints: [[String: StreamEntryID]]) -> StreamEntryID? {
        guard let source = streamSource[stream], let indices = readers[source] else { return nil }
        var least: StreamEntryID?
        for index in indices {
            guard let checkpoint = checkpoints[index][stream] else { return nil }
            least = least.map { min($0, checkpoint) } ?? checkpoint
        }
        return least
    }

    /// Sets the group of each stream to its position (creating group and stream when missing).
    /// Workers read with NOACK, so nothing becomes pending; entries left pending by a projector of
    /// an earlier version (which acknowledged after commit) at or below the position are
    /// acknowledged here, so they do not linger in the group.
    private func position(_ streams: [String], checkpoints: [[String: StreamEntryID]]) async throws {
        guard let reader else { return }
        for stream in streams { try await reader.moveGroup(on: stream, after: groupPosition(stream, checkpoints)) }
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

    /// What one batch means for one projection.
    struct Share: Sendable {
        var events: [ProjectedEvent] = []
        var failures: [Failure] = []
        var advanced: [String: StreamEntryID] = [:]
        var passedOver = 0
        var skipped = 0
    }

    private func process(_ results: [StreamReadResult], stop: StopSignal) async throws {
        let start = ContinuousClock.now
        var shares = Array(repeating: Share(), count: projections.count)
        let wantsAll = projections.map { $0.eventTypes == nil }
        let types = projections.map(\.eventTypes)
        for result in results where !result.entries.isEmpty {
            guard let source = streamSource[result.stream], let indices = readers[source] else { continue }
            for entry in result.entries {
                // The projections that have not applied this entry yet.
                var due: [Int] = []
                for index in indices {
                    if let checkpoint = checkpoints[index][result.stream], entry.id <= checkpoint {
                        shares[index].skipped += 1
                    } else {
                        shares[index].advanced[result.stream] = entry.id
                        due.append(index)
                    }
                }
                guard !due.isEmpty else { continue }
                guard let fields = entry.fields else {
                    for index in due { shares[index].passedOver += 1 }
                    continue
                }
                // Passed over before decoding when no due projection reads this type.
                let type = fields.first(where: { $0.name == "type" }).map { String(decoding: $0.value, as: UTF8.self) }
                let readers = due.filter { index in wantsAll[index] || (type.map { types[index]?.contains($0) ?? false } ?? true) }
                for index in due where !readers.contains(index) { shares[index].passedOver += 1 }
                guard !readers.isEmpty else { continue }
                let envelope: EventEnvelope
                do {
                    envelope = try EventEnvelope(fields: fields.map { EnvelopeField(name: $0.name, value: $0.value) })
                } catch {
                    for index in readers {
                        shares[index].failures.append(Failure(stream: result.stream, entryID: entry.id, error: "undecodable envelope: \(error)", fields: fields))
                    }
                    continue
                }
                // Decoded once for the typed readers; one event shared by all of them.
                let decoded: Result<DecodedMessage, MessageDecodingError>? = readers.allSatisfy({ wantsAll[$0] }) ? nil
                    : Result { () throws(MessageDecodingError) in try registry.decode(envelope) }
                let message: (any Message)?
                if case .success(.known(_, let known)) = decoded { message = known } else { message = nil }
                let event = ProjectedEvent(stream: result.stream, entryID: entry.id, envelope: envelope, message: message)
                for index in readers {
                    if wantsAll[index] {
                        shares[index].events.append(event)
                        continue
                    }
                    switch decoded! {
                    case .success(.known):
                        shares[index].events.append(event)
                    case .success(.unknown(_, let reason)):
                        shares[index].failures.append(Failure(stream: result.stream, entryID: entry.id, eventID: envelope.id, type: envelope.type,
                                                              error: "unknown to this projector (\(reason)); upgrade it, then replay", fields: fields))
                    case .failure(let error):
                        shares[index].failures.append(Failure(stream: result.stream, entryID: entry.id, eventID: envelope.id, type: envelope.type,
                                                              error: "undecodable payload: \(error)", fields: fields))
                    }
                }
            }
        }
        var rejected = Array(repeating: 0, count: projections.count)
        if shares.contains(where: { !$0.advanced.isEmpty }) {
            rejected = try await commit(shares, stop: stop)
            for index in projections.indices {
                for (stream, id) in shares[index].advanced { checkpoints[index][stream] = id }
            }
            let committedBatches = runner.noteCommitted()
            if configuration.crashPoint?.point == .afterCommit, committedBatches > configuration.crashPoint?.afterBatches ?? .max {
                logger.critical("crash point after-commit reached: killing the process")
                kill(getpid(), SIGKILL)
            }
        }
        let elapsed = Int64((ContinuousClock.now - start).nanoseconds)
        for (index, projection) in projections.enumerated() {
            let share = shares[index]
            let applied = share.events.count - rejected[index]
            let failed = share.failures.count + rejected[index]
            runner.record(projection.name) { statistics in
                statistics.applied += applied
                statistics.failed += failed
                statistics.passedOver += share.passedOver
                statistics.skipped += share.skipped
                statistics.batches += share.advanced.isEmpty ? 0 : 1
            }
            guard let metrics = metrics[projection.name], !share.advanced.isEmpty else { continue }
            metrics.applied.increment(by: applied)
            if failed > 0 { metrics.failed.increment(by: failed) }
            metrics.batch.recordNanoseconds(elapsed)
        }
    }

    /// Applies the batch to every projection and writes failures and checkpoints, in one
    /// transaction. First as a whole, with no savepoints: the usual case, in the fewest round trips
    /// (a batch of a few events, as under a steady stream, is a handful of statements). When the
    /// database refuses a statement (a constraint, a bad value), that transaction is rolled back and
    /// the batch applied again with each projection's batch, and then each of its events, behind a
    /// savepoint, so only the refused events are left out. Returns the refused count per projection.
    private func commit(_ shares: [Share], stop: StopSignal) async throws -> [Int] {
        guard let db else { throw PostgresError(code: .connectionClosed, message: "no database connection") }
        let projections = self.projections
        let crashBeforeCommit = configuration.crashPoint?.point == .beforeCommit && runner.committedBatches >= configuration.crashPoint?.afterBatches ?? .max
        let logger = self.logger
        var delay = configuration.retryDelay
        var checkpoints: [(projection: String, stream: String, entryID: StreamEntryID)] = []
        for (index, projection) in projections.enumerated() {
            for (stream, id) in shares[index].advanced.sorted(by: { $0.key < $1.key }) { checkpoints.append((projection.name, stream, id)) }
        }
        var isolating = false
        while true {
            do {
                let isolating = isolating, checkpoints = checkpoints
                return try await db.withTransaction(deferringWrites: !isolating) { db in
                    // The checkpoints first: a rebuild's swap locks them before the tables it
                    // replaces, so both take their locks in the same order and never deadlock.
                    try Self.writeCheckpoints(checkpoints, in: db)
                    var rejectedCounts = Array(repeating: 0, count: projections.count)
                    var failures: [(projection: String, failure: Failure)] = []
                    for (index, projection) in projections.enumerated() {
                        let share = shares[index]
                        for failure in share.failures { failures.append((projection.name, failure)) }
                        guard !share.events.isEmpty else { continue }
                        guard isolating else {
                            try projection.apply(share.events, in: db)
                            continue
                        }
                        let rejected = try projection.applyIsolatingRefusals(share.events, in: db) { error in
                            logger.warning("the database rejected a batch; applying it event by event", metadata: ["projection": "\(projection.name)", "error": "\(error)"])
                        }
                        for (event, error) in rejected {
                            failures.append((projection.name, Failure(stream: event.stream, entryID: event.entryID, eventID: event.envelope.id, type: event.envelope.type,
                                                                      error: "rejected by the database: \(error)", fields: event.envelope.fields.map { StreamField(name: $0.name, value: $0.value) })))
                        }
                        rejectedCounts[index] = rejected.count
                    }
                    try Self.record(failures, in: db)
                    if crashBeforeCommit {
                        // Testing aid (ProjectorConfiguration.crashPoint): die with the transaction open.
                        kill(getpid(), SIGKILL)
                    }
                    return rejectedCounts
                }
            } catch let error as PostgresError where error.isTransient {
                logger.info("transient database error; retrying the batch", metadata: ["error": "\(error)"])
            } catch let error where !isolating && !endsProjectionTransaction(error) {
                // Refused as a whole (rolled back): at once again, each projection's events isolated.
                logger.info("the database refused a statement of the batch; applying it again with each projection's events isolated", metadata: ["error": "\(error)"])
                isolating = true
                continue
            }
            if stop.isSet { throw ShutdownDuringBatch() }
            try await Task.sleep(for: delay * Double.random(in: 0.8...1.2))
            delay = min(delay * 2, configuration.maxRetryDelay)
        }
    }

    /// All projections' failures of a batch, in one statement.
    private static func record(_ failures: [(projection: String, failure: Failure)], in db: isolated PostgresConnection) throws {
        guard !failures.isEmpty else { return }
        let rows = failures.map(\.failure)
        try db.write("""
            INSERT INTO projection_failures (projection, stream, entry_id, event_id, type, error, fields)
            SELECT * FROM unnest(\(failures.map(\.projection))::text[], \(rows.map(\.stream))::text[], \(rows.map(\.entryID.description))::text[],
                                 \(rows.map(\.eventID))::uuid[], \(rows.map(\.type))::text[],
                                 \(rows.map { String($0.error.prefix(4000)) })::text[],
                                 \(rows.map { PostgresJSON(rawJSON: Self.json($0.fields)) })::jsonb[])
            ON CONFLICT (projection, stream, entry_id) DO NOTHING
            """)
    }

    /// All projections' checkpoints of a batch, in one statement (in key order).
    private static func writeCheckpoints(_ checkpoints: [(projection: String, stream: String, entryID: StreamEntryID)], in db: isolated PostgresConnection) throws {
        guard !checkpoints.isEmpty else { return }
        try db.write("""
            INSERT INTO projection_checkpoints AS c (projection, stream, last_entry_id, updated_at)
            SELECT p, s, e, now() FROM unnest(\(checkpoints.map(\.projection))::text[], \(checkpoints.map(\.stream))::text[],
                                              \(checkpoints.map(\.entryID.description))::text[]) AS u(p, s, e)
            ON CONFLICT (projection, stream) DO UPDATE SET last_entry_id = EXCLUDED.last_entry_id, updated_at = now()
            """)
    }

    /// The entry's fields as a JSON object of strings (NUL, which jsonb refuses, becomes U+FFFD).
    static func json(_ fields: [StreamField]) -> [UInt8] {
        var out: [UInt8] = [UInt8(ascii: "{")]
        for (index, field) in fields.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            JSONObjectWriter.appendString(field.name, to: &out)
            out.append(UInt8(ascii: ":"))
            JSONObjectWriter.appendString(String(decoding: field.value, as: UTF8.self).replacingOccurrences(of: "\u{0}", with: "\u{FFFD}"), to: &out)
        }
        out.append(UInt8(ascii: "}"))
        return out
    }

    // MARK: Recovery

    private func recoverRedis(_ error: RedisError, stop: StopSignal) async {
        logger.warning("Redis failed; reconnecting, then moving the groups back to the checkpoints", metadata: ["error": "\(error)"])
        while !stop.isSet {
            do {
                // The Redis connection reconnects by itself at the first command.
                // Entries read but not committed would not be delivered again: back to the checkpoints.
                for streams in held.values { try await position(streams, checkpoints: checkpoints) }
                return
            } catch {
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }

    private func recoverPostgres(_ error: PostgresError, stop: StopSignal) async {
        logger.warning("database connection lost; its partitions are free now, reconnecting", metadata: ["error": "\(error)"])
        held = [:]
        memberSlot = nil
        runner.setPartitions(of: consumer, 0)
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

/// A shutdown arrived while a batch waited to be retried: the next owner reads it again from the checkpoint.
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
