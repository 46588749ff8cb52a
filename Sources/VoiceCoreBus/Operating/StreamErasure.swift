import Foundation
import Logging
import VoiceCoreEvents
import VoiceCoreRedis
import VoiceCoreTime

/// A position on a stream: the entry an erasure waits for every reader to have processed.
public struct StreamMark: Sendable, Hashable, Codable {
    public var stream: String
    /// A stream entry id (`<ms>-<seq>`).
    public var entry: String

    public init(stream: String, entry: String) {
        self.stream = stream
        self.entry = entry
    }
}

/// A request ``StreamErasure`` cannot carry out as asked.
public struct StreamErasureError: Error, Sendable, CustomStringConvertible {
    public var description: String

    init(_ description: String) {
        self.description = description
    }
}

/// Everything an erasure does in Redis: the streams a caller's entries live on and where they
/// end, whether every reader has processed them, deleting them (commands, events, dead letters,
/// requeued entries), the caller's claims in the CRM contact index, the calls' per-service state
/// and the outbound webhook deliveries queued or failed with the caller's data, and having Redis
/// rewrite what it keeps on disk so the deleted entries leave it.
///
/// Every call is idempotent: run again after a crash, it finds nothing more to delete and
/// finishes what the first left undone.
///
/// ## Why deleted entries need more than `XDEL`
/// `XDEL` only flags an entry deleted inside its radix-tree node (a listpack of up to 100
/// entries); the bytes stay in memory until every entry of the node is gone, and an RDB snapshot
/// or an AOF rewrite with an RDB preamble (Redis' default) writes the node as it is, deleted
/// entries included. So every stream an erasure deleted from is *compacted*: copied entry by
/// entry (the live ones only) beside itself in the same hash slot, page by page in short Lua
/// steps, and swapped in by one atomic script that copies what arrived meanwhile and carries
/// over the stream's last id, counters, consumer groups (last-delivered id, entries read),
/// consumers and pending entries (owner, idle time, delivery count). A stream that lost entries
/// to another deletion or a trim while it was copied is copied again. Which streams still need
/// it is kept in Redis (`<prefix>:erasure:uncompacted`), so a crash between the delete and the
/// compaction is finished by the next call of ``deleteEntries(tenant:subjects:streams:types:from:to:)``,
/// ``deleteDeadLetters(tenant:subjects:)`` or ``rewritePersistence()``. Costs: while a stream is
/// compacted its copy doubles its memory, and its consumers look freshly seen (Redis has no way
/// to set a consumer's idle time), which restarts the retention trimmer's abandonment clock for
/// those groups.
///
/// Single server and Redis Cluster alike: stream commands go to the node of their key (a
/// stream and its copy share the `{pNN}` hash tag), key scans and persistence visit every node.
///
/// ```swift
/// let erasure = StreamErasure(connection: connection, naming: naming, readers: [checkpoints])
/// let streams = erasure.streams(tenant: tenant, subject: callID.description, categories: [.calls, .conversations])
/// let marks = try await erasure.heads(of: streams)
/// while let behind = try await erasure.firstReaderBehind(marks) { logger.info("waiting for \(behind)"); try await Task.sleep(for: .seconds(1)) }
/// let deleted = try await erasure.deleteEntries(tenant: tenant, subjects: [callID.description], streams: streams)
/// let persisted = try await erasure.rewritePersistence()
/// ```
public final class StreamErasure: Sendable {
    private let connection: BusConnection
    private let naming: StreamNaming
    private let retention: RetentionConfiguration
    private let readers: [any ReaderProgressSource]
    private let logger: Logger
    /// How long ``rewritePersistence()`` waits for one node's rewrite or snapshot.
    private let persistenceTimeout: Duration

    /// - Parameters:
    ///   - retention: what decides whether a consumer group is abandoned and which groups keep
    ///     their progress elsewhere, as the ``RetentionTrimmer`` of the deployment is configured.
    ///   - readers: the sources of progress kept outside Redis (the projector's checkpoints),
    ///     as the trimmer gets them.
    public init(connection: BusConnection, naming: StreamNaming, retention: RetentionConfiguration? = nil,
                readers: [any ReaderProgressSource] = [], persistenceTimeout: Duration = .seconds(3600),
                logger: Logger = Logger(label: "voicecore.bus.erasure")) {
        self.connection = connection
        self.naming = naming
        self.retention = retention ?? RetentionConfiguration(naming: naming)
        self.readers = readers
        self.persistenceTimeout = persistenceTimeout
        self.logger = logger
    }

    private var client: RedisClient { connection.client }

    // MARK: Where a subject's entries are

    /// The streams a subject's entries live on: its partition's command and event streams of the
    /// categories given (commands first within each category).
    public func streams(tenant: Identifier, subject: String, categories: [StreamCategory]) -> [String] {
        let partition = naming.partition(tenant: tenant, subject: subject)
        return categories.flatMap { category in
            [naming.stream(category, kind: .command, partition: partition), naming.stream(category, kind: .event, partition: partition)]
        }
    }

    /// The last-generated id of each stream now (`XINFO STREAM`); a stream that does not exist
    /// (nothing was ever published there) is skipped.
    public func heads(of streams: [String]) async throws -> [StreamMark] {
        var marks: [StreamMark] = []
        for stream in Self.unique(streams) {
            guard let info = try await streamInfo(stream), let last = info.lastGeneratedID else { continue }
            marks.append(StreamMark(stream: stream, entry: last.description))
        }
        return marks
    }

    /// `nil` when every reader of each mark's stream has processed it: a consumer group has
    /// delivered it and has nothing pending at or below it; a group that keeps its progress
    /// elsewhere (the projector) has it checkpointed, as its ``ReaderProgressSource`` says. Else a
    /// short text naming the first reader behind (`group crm on vc:{p03}:calls`). A group the
    /// retention trimmer considers abandoned (no consumer seen for
    /// ``RetentionConfiguration/abandonAfter`` with entries left) holds nothing back here either,
    /// so an erasure cannot wait forever for a reader that is gone.
    /// - Throws: ``StreamErasureError`` for a mark whose entry is not a stream id; what a
    ///   progress source throws (the wait must not be decided on a guess).
    public func firstReaderBehind(_ marks: [StreamMark]) async throws -> String? {
        guard !marks.isEmpty else { return nil }
        var parsed: [(stream: String, entry: StreamEntryID)] = []
        for mark in marks {
            guard let entry = StreamEntryID(mark.entry) else { throw StreamErasureError("the mark on \(mark.stream) is not a stream entry id: \(mark.entry)") }
            parsed.append((mark.stream, entry))
        }
        var progress: [(source: any ReaderProgressSource, reading: ReaderProgress)] = []
        for reader in readers { progress.append((reader, try await reader.progress())) }
        let consumerless = try await RetentionTrimmer.consumerlessSince(connection: client, configuration: retention)
        // A mark at 0-0 is a stream nothing was ever added to (made by a group's MKSTREAM): there is
        // nothing a reader could still have to process there, checkpoint or not.
        for (stream, entry) in parsed where entry > .zero {
            guard let status = try await StreamRetentionStatus.read(stream, retention: .unbounded, connection: client, configuration: retention,
                                                                    progress: progress, consumerlessSince: consumerless) else { continue }
            for reader in status.readers where !reader.abandoned {
                // `keepsFrom` is the first entry the reader still needs.
                guard let needs = StreamEntryID(reader.keepsFrom), needs > entry else {
                    return "group \(reader.group) on \(stream)"
                }
            }
        }
        return nil
    }

    // MARK: Deleting entries

    /// Entries read and deleted per page.
    private static let pageSize = 1000

    /// Deletes (`XDEL`) the entries of `streams` whose `tenantid` is `tenant` and whose `subject`
    /// is one of `subjects` (and, when `types` is given, whose `type` is one of them), reading
    /// each stream in pages of 1,000 (`XRANGE`), between `from` and `to` (entry times, inclusive)
    /// when given; then compacts the streams it deleted from (see the type's discussion).
    /// - Returns: how many entries it deleted.
    public func deleteEntries(tenant: Identifier, subjects: Set<String>, streams: [String], types: Set<String>? = nil,
                              from: Timestamp? = nil, to: Timestamp? = nil) async throws -> Int {
        guard !subjects.isEmpty else { return 0 }
        if let from, let to, to < from { throw StreamErasureError("the time window ends (\(to.rfc3339)) before it starts (\(from.rfc3339))") }
        let start = from.map { StreamEntryID(milliseconds: UInt64(max(0, $0.millisecondsSinceEpoch))) }
        let end = to.map { StreamEntryID(milliseconds: UInt64(max(0, $0.millisecondsSinceEpoch)), sequence: UInt64.max) }
        let matches = Self.matcher(tenant: tenant, subjects: subjects, types: types)
        var deleted = 0
        for stream in Self.unique(streams) {
            deleted += try await delete(in: stream, from: start, to: end, where: matches)
        }
        return deleted
    }

    /// Deletes the dead letters (`<stream>:dlq:<group>`) and the entries requeued from them
    /// (`<stream>:retry:<group>`) whose original `tenantid` is `tenant` and `subject` one of
    /// `subjects`, on every stream of the deployment's prefix; compacts the streams it deleted from.
    /// - Returns: how many entries it deleted.
    public func deleteDeadLetters(tenant: Identifier, subjects: Set<String>) async throws -> Int {
        guard !subjects.isEmpty else { return 0 }
        let matches = Self.matcher(tenant: tenant, subjects: subjects, types: nil)
        var streams: [String] = []
        for pattern in ["\(naming.prefix):*:dlq:*", "\(naming.prefix):*:retry:*"] {
            streams += try await client.scanAll(match: pattern, type: "stream").filter { !$0.hasSuffix(Self.copySuffix) }
        }
        var deleted = 0
        for stream in Self.unique(streams) {
            deleted += try await delete(in: stream, from: nil, to: nil, where: matches)
        }
        return deleted
    }

    private static func matcher(tenant: Identifier, subjects: Set<String>, types: Set<String>?) -> @Sendable (StreamEntry) -> Bool {
        let tenantText = tenant.description
        return { entry in
            guard entry["tenantid"]?.lowercased() == tenantText, let subject = entry["subject"], subjects.contains(subject) else { return false }
            guard let types else { return true }
            return entry["type"].map(types.contains) ?? false
        }
    }

    /// Deletes the matching entries of one stream, page by page, then compacts it when it deleted
    /// something (or an earlier call did and did not get to compact it).
    private func delete(in stream: String, from start: StreamEntryID?, to end: StreamEntryID?, where matches: (StreamEntry) -> Bool) async throws -> Int {
        var deleted = 0
        var position = start ?? .zero
        while true {
            let page = try await client.execute(.xrange(stream, from: position, to: end, count: Self.pageSize))
            let doomed = page.filter { !$0.isDeleted && matches($0) }.map(\.id)
            if !doomed.isEmpty {
                // Noted before the delete: a crash after it still leaves the stream to compact.
                _ = try await client.send("SADD", .string(uncompactedKey), .string(stream))
                deleted += try await client.execute(.xdel(stream, ids: doomed))
            }
            guard page.count == Self.pageSize, let last = page.last else { break }
            position = last.id.successor
        }
        let leftUncompacted = try await client.send("SISMEMBER", .string(uncompactedKey), .string(stream)).int == 1
        if deleted > 0 || leftUncompacted { try await compact(stream) }
        return deleted
    }

    // MARK: Compaction

    /// The set of streams deleted from and not compacted yet.
    var uncompactedKey: String { "\(naming.prefix):erasure:uncompacted" }

    /// The copy of a stream being compacted: beside it, in its hash slot.
    static let copySuffix = ":compacting"

    /// Entries copied per script run (one short pause of Redis each).
    private static let copyPage = 500

    /// How long a copy left by a crashed compaction lives (each page renews it).
    private static let copyLifetimeMilliseconds = 3_600_000

    /// Copies the live entries after ARGV[1] (`-` from the start), up to ARGV[2], to KEYS[2];
    /// returns the last id copied, or an empty string when there were none.
    private static let copyScript = RedisScript("""
        local entries = redis.call('XRANGE', KEYS[1], ARGV[1], '+', 'COUNT', tonumber(ARGV[2]))
        for _, entry in ipairs(entries) do redis.call('XADD', KEYS[2], entry[1], unpack(entry[2])) end
        if #entries == 0 then return '' end
        redis.call('PEXPIRE', KEYS[2], ARGV[3])
        return entries[#entries][1]
        """)

    /// Copies what arrived after ARGV[1], checks the copy holds exactly the stream's entries
    /// (else `changed`: something was deleted meanwhile), carries the stream's counters, groups,
    /// consumers and pending entries over and puts the copy in its place.
    private static let swapScript = RedisScript("""
        local function field(list, name)
          for i = 1, #list - 1, 2 do if list[i] == name then return list[i + 1] end end
          return nil
        end
        if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('DEL', KEYS[2]) return 'gone' end
        local start = '-'
        if ARGV[1] ~= '' then start = '(' .. ARGV[1] end
        for _, entry in ipairs(redis.call('XRANGE', KEYS[1], start, '+')) do redis.call('XADD', KEYS[2], entry[1], unpack(entry[2])) end
        local info = redis.call('XINFO', 'STREAM', KEYS[1])
        local length = tonumber(field(info, 'length'))
        if length == 0 then
          -- every node of an empty stream is freed: nothing deleted is left in it
          redis.call('DEL', KEYS[2])
          return 'empty'
        end
        -- what the stream lost to a trim while it was copied goes from the copy too
        redis.call('XTRIM', KEYS[2], 'MINID', '=', field(info, 'first-entry')[1])
        if redis.call('XLEN', KEYS[2]) ~= length then
          redis.call('DEL', KEYS[2])
          return 'changed'
        end
        redis.call('XSETID', KEYS[2], field(info, 'last-generated-id'), 'ENTRIESADDED', field(info, 'entries-added'),
                   'MAXDELETEDID', field(info, 'max-deleted-entry-id'))
        for _, group in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
          local name = field(group, 'name')
          local read = field(group, 'entries-read')
          if read then
            redis.call('XGROUP', 'CREATE', KEYS[2], name, field(group, 'last-delivered-id'), 'ENTRIESREAD', read)
          else
            redis.call('XGROUP', 'CREATE', KEYS[2], name, field(group, 'last-delivered-id'))
          end
          for _, consumer in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], name)) do
            redis.call('XGROUP', 'CREATECONSUMER', KEYS[2], name, field(consumer, 'name'))
          end
          local from = '-'
          while true do
            local pending = redis.call('XPENDING', KEYS[1], name, from, '+', 1000)
            for _, item in ipairs(pending) do
              redis.call('XCLAIM', KEYS[2], name, item[2], 0, item[1], 'IDLE', item[3], 'RETRYCOUNT', item[4], 'FORCE', 'JUSTID')
            end
            if #pending < 1000 then break end
            from = '(' .. pending[#pending][1]
          end
        end
        redis.call('RENAME', KEYS[2], KEYS[1])
        redis.call('PERSIST', KEYS[1])
        return 'compacted'
        """)

    /// Rewrites `stream` without the bytes of its deleted entries (see the type's discussion),
    /// then takes it off the set of streams to compact.
    func compact(_ stream: String) async throws {
        let copy = stream + Self.copySuffix
        var outcome = ""
        for _ in 0..<5 {
            _ = try await client.execute(.del([copy]))
            var last = ""
            while true {
                let reply = try await Self.copyScript.run(on: client, keys: [stream, copy],
                                                          arguments: [.string(last.isEmpty ? "-" : "(" + last), .integer(Self.copyPage),
                                                                      .integer(Self.copyLifetimeMilliseconds)])
                guard let copied = reply.string, !copied.isEmpty else { break }
                last = copied
            }
            outcome = try await Self.swapScript.run(on: client, keys: [stream, copy], arguments: [.string(last)]).string ?? ""
            if outcome != "changed" { break }
            logger.info("stream changed while it was compacted; copying it again", metadata: ["stream": "\(stream)"])
        }
        guard outcome != "changed" else {
            throw StreamErasureError("\(stream) kept losing entries while it was compacted (5 attempts); try again")
        }
        _ = try await client.send("SREM", .string(uncompactedKey), .string(stream))
        logger.debug("stream compacted", metadata: ["stream": "\(stream)", "outcome": "\(outcome)"])
    }

    // MARK: Outbound webhook deliveries

    /// What ``deleteWebhookDeliveries(tenant:events:subjects:)`` removed.
    public struct WebhookDeliveries: Sendable, Hashable {
        /// Deliveries waiting in the queue (due, waiting for a retry, or being attempted).
        public var jobs: Int
        /// Entries of the failures stream (deliveries given up on).
        public var failures: Int
    }

    /// Deletes the outbound webhook deliveries of `tenant` (``ScheduledJobQueue/webhooks(connection:prefix:)``)
    /// that carry an erased caller's data: a queued job or a failure entry whose event is one of
    /// `events` (the ids of the caller's archived events), or whose event's data names one of
    /// `subjects` as its `call_id`, `lead_id` or `contact_id` (an event the archive may not hold yet).
    ///
    /// Order matters, so that a delivery attempted meanwhile cannot bring the data back: the jobs
    /// go first (an attempt ending after that reschedules or records nothing, see
    /// ``ScheduledJobQueue``), then it waits until the attempts of those jobs in flight have ended
    /// (at most their lease), so no request with the data is still on its way when the erasure
    /// goes on to announce itself; then the failure entries go, and the failures stream is
    /// compacted like every stream deleted from.
    public func deleteWebhookDeliveries(tenant: Identifier, events: Set<Identifier>, subjects: Set<String>) async throws -> WebhookDeliveries {
        guard !events.isEmpty || !subjects.isEmpty else { return WebhookDeliveries(jobs: 0, failures: 0) }
        let queue = ScheduledJobQueue.webhooks(connection: connection, prefix: naming.prefix)
        let tenantText = tenant.description
        let eventTexts = Set(events.map(\.description))
        @Sendable func concerned(event: String?, data: [UInt8]?) -> Bool {
            if let event, eventTexts.contains(event.lowercased()) { return true }
            guard !subjects.isEmpty, let data, let object = try? JSONValue.object(parsing: data) else { return false }
            return ["call_id", "lead_id", "contact_id"].contains { object[$0]?.string.map(subjects.contains) ?? false }
        }
        let removed = try await queue.remove { job in
            guard let object = try? JSONValue.object(parsing: job.payload), object["tenant"]?.string?.lowercased() == tenantText else { return false }
            return concerned(event: object["event_id"]?.string, data: object["data"]?.string.map { Array($0.utf8) })
        }
        // With those of jobs an earlier, interrupted run removed.
        try await queue.waitForAttempts(of: Array(Set(removed + (try await queue.removedJobsBeingAttempted()))))
        let failures = try await delete(in: queue.failuresStream, from: nil, to: nil) { entry in
            guard entry["tenantid"]?.lowercased() == tenantText else { return false }
            return concerned(event: entry["event_id"], data: entry.fields?.first(where: { $0.name == "data" })?.value)
        }
        return WebhookDeliveries(jobs: removed.count, failures: failures)
    }

    // MARK: Redis state beside the streams

    /// Removes from a tenant's CRM contact index (``ClaimIndex/contactIndexKey(prefix:tenant:)``)
    /// everything about these contacts: the phones and e-mail addresses they claimed (`p:`,
    /// `e:`, any claim kind), their own fields (`c:`, `cp:`, `ce:`), and the aliases (`a:`)
    /// pointing at them or named by them. A claim is removed only while it still points at the
    /// contact, so one taken meanwhile by someone else stays. Afterwards a call from the erased
    /// number makes a new contact.
    /// - Returns: how many fields it removed.
    public func forgetContacts(tenant: Identifier, contacts: Set<Identifier>) async throws -> Int {
        guard !contacts.isEmpty else { return 0 }
        let key = ClaimIndex.contactIndexKey(prefix: naming.prefix, tenant: tenant)
        let owners = Set(contacts.map(\.description))
        var doomed: [(field: String, owner: String?)] = []  // owner nil: the field is the contact's own
        var cursor = "0"
        repeat {
            let reply = try await client.send("HSCAN", .string(key), .string(cursor), "COUNT", 1000)
            guard let parts = reply.array, parts.count == 2, let next = parts[0].string, let items = parts[1].array else {
                throw RedisError(kind: .unexpectedReply, message: "HSCAN \(key) answered \(reply)")
            }
            var index = 0
            while index + 1 < items.count {
                if let field = items[index].string, let value = items[index + 1].string, let separator = field.firstIndex(of: ":") {
                    let kind = field[..<separator], rest = String(field[field.index(after: separator)...])
                    if kind.hasPrefix("c") {
                        if owners.contains(rest) { doomed.append((field, nil)) }
                    } else if kind == "a", owners.contains(rest) {
                        doomed.append((field, nil))
                    } else if owners.contains(value) {
                        doomed.append((field, value))
                    }
                }
                index += 2
            }
            cursor = next
        } while cursor != "0"
        var removed = 0
        for start in stride(from: 0, to: doomed.count, by: 500) {
            var arguments: [RESPArgument] = []
            for item in doomed[start..<min(start + 500, doomed.count)] { arguments += [.string(item.field), .string(item.owner ?? "")] }
            removed += try await Self.forgetScript.run(on: client, keys: [key], arguments: arguments).int ?? 0
        }
        return removed
    }

    /// ARGV: field, expected owner (empty: remove whatever it holds), …; returns fields removed.
    private static let forgetScript = RedisScript("""
        local removed = 0
        for i = 1, #ARGV - 1, 2 do
          if ARGV[i + 1] == '' or redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
            removed = removed + redis.call('HDEL', KEYS[1], ARGV[i])
          end
        end
        return removed
        """)

    /// Deletes every service's state of these calls (``EntityStateStore`` keys
    /// `<stream>:state:<owner>:<call>` on any stream of the call's partition): one `SCAN` pass
    /// over every node (`MATCH` on the state keys), then `DEL`.
    /// - Returns: how many keys it deleted.
    public func deleteEntityState(tenant: Identifier, calls: Set<Identifier>) async throws -> Int {
        guard !calls.isEmpty else { return 0 }
        // A call's state sits on its own partition's streams: the tag checks the tenant too.
        var partitionTag: [String: String] = [:]
        for call in calls {
            let sample = naming.stream(.calls, kind: .event, partition: naming.partition(tenant: tenant, subject: call.description))
            partitionTag[call.description] = String(sample.prefix(while: { $0 != "}" })) + "}:"
        }
        let keys = try await client.scanAll(match: "\(naming.prefix):*:state:*").filter { key in
            guard let separator = key.lastIndex(of: ":"), let tag = partitionTag[String(key[key.index(after: separator)...])] else { return false }
            return key.hasPrefix(tag)
        }
        var deleted = 0
        for start in stride(from: 0, to: keys.count, by: 500) {
            let batch = keys[start..<min(start + 500, keys.count)].map { RedisCommand<Int>.del([$0]) }
            for result in try await client.pipeline(batch) { deleted += try result.get() }
        }
        return deleted
    }

    // MARK: Persistence

    /// Has every node write its data anew so that deleted entries and keys leave its disk: first
    /// compacts the streams a deletion left uncompacted, waits (`WAIT`) until every replica has
    /// applied that, then, on every node (each master and the replicas its `INFO replication`
    /// lists), `BGREWRITEAOF` where `appendonly` is on (a rewrite already running may have started
    /// before the deletions: it is waited for and another asked for) and `BGSAVE` where RDB
    /// snapshots are configured (`save`), each waited for until done and checked `ok`.
    /// - Returns: one line per node saying what it did, e.g.
    ///   `127.0.0.1:6379: AOF rewritten; no RDB snapshots configured` or `…: AOF is off; …`.
    /// - Throws: when a node (a replica too: it must be reachable at the address it announces)
    ///   cannot be reached, a replica has not caught up within 10 s, or a rewrite or snapshot
    ///   failed or did not end within the time given at init. Calling it again is safe.
    public func rewritePersistence() async throws -> String {
        let pending = try await client.send("SMEMBERS", .string(uncompactedKey)).array?.compactMap(\.string) ?? []
        for stream in pending.sorted() { try await compact(stream) }
        var report: [String] = []
        // Every master and its replicas, as the masters see them now (a cluster's slot map may
        // predate a replica). A replica rewritten before it has applied the deletions would write
        // them to its disk again: WAIT until every one has.
        var nodes: [RedisConfiguration.Endpoint] = []
        for master in client.masters {
            nodes.append(master)
            let replicas = Self.replicas(in: try await info("replication", of: master))
            guard !replicas.isEmpty else { continue }
            let acknowledged = try await client.send(["WAIT", .integer(replicas.count), .integer(10_000)], to: master).int ?? 0
            guard acknowledged >= replicas.count else {
                throw StreamErasureError("\(acknowledged) of the \(replicas.count) replicas of \(master) applied the deletions within 10 s; try again")
            }
            nodes += replicas
        }
        for node in Self.unique(nodes) {
            var done: [String] = []
            var info = try await persistenceInfo(node)
            if info["aof_enabled"] == "1" {
                try await run(["BGREWRITEAOF"], on: node, busy: ["aof_rewrite_in_progress", "aof_rewrite_scheduled"])
                info = try await persistenceInfo(node)
                guard info["aof_last_bgrewrite_status"] == "ok" else {
                    throw StreamErasureError("the AOF rewrite on \(node) failed (aof_last_bgrewrite_status: \(info["aof_last_bgrewrite_status"] ?? "?"))")
                }
                done.append("AOF rewritten")
            } else {
                done.append("AOF is off")
            }
            switch try await snapshotsConfigured(node) {
            case true?:
                try await run(["BGSAVE"], on: node, busy: ["rdb_bgsave_in_progress"])
                info = try await persistenceInfo(node)
                guard info["rdb_last_bgsave_status"] == "ok" else {
                    throw StreamErasureError("the RDB snapshot on \(node) failed (rdb_last_bgsave_status: \(info["rdb_last_bgsave_status"] ?? "?"))")
                }
                done.append("RDB snapshot written")
            case false?:
                done.append("no RDB snapshots configured")
            case nil:
                done.append("RDB snapshots unknown (CONFIG GET refused); none written")
            }
            report.append("\(node): " + done.joined(separator: "; "))
        }
        logger.info("persistence rewritten after an erasure", metadata: ["nodes": "\(report.joined(separator: " | "))"])
        return report.joined(separator: "\n")
    }

    /// Sends a background command and waits until the node has finished it. While the same kind
    /// of work is already running (it may have started before the deletions), waits for that and
    /// asks again.
    private func run(_ command: [RESPArgument], on node: RedisConfiguration.Endpoint, busy fields: [String]) async throws {
        let deadline = ContinuousClock.now + persistenceTimeout
        while true {
            let reply = try await client.send(command, to: node)
            guard case .error(let message) = reply else { break }
            // "already in progress", or a BGSAVE refused during an AOF rewrite: wait, then again.
            guard message.localizedCaseInsensitiveContains("in progress") else {
                throw RedisError.server(message, endpoint: node.description)
            }
            try await waitUntilIdle(node, deadline: deadline)
        }
        try await waitUntilIdle(node, deadline: deadline)
    }

    /// Waits until no rewrite or snapshot runs or is scheduled on `node`.
    private func waitUntilIdle(_ node: RedisConfiguration.Endpoint, deadline: ContinuousClock.Instant) async throws {
        let busy = ["aof_rewrite_in_progress", "aof_rewrite_scheduled", "rdb_bgsave_in_progress"]
        while true {
            let info = try await persistenceInfo(node)
            if busy.allSatisfy({ (info[$0] ?? "0") == "0" }) { return }
            guard ContinuousClock.now < deadline else {
                throw StreamErasureError("\(node) was still rewriting or saving after \(persistenceTimeout)")
            }
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    /// `INFO persistence` as fields.
    private func persistenceInfo(_ node: RedisConfiguration.Endpoint) async throws -> [String: String] {
        try await info("persistence", of: node)
    }

    /// One `INFO` section of `node` as fields.
    private func info(_ section: String, of node: RedisConfiguration.Endpoint) async throws -> [String: String] {
        let reply = try await client.send(["INFO", .string(section)], to: node)
        if case .error(let message) = reply { throw RedisError.server(message, endpoint: node.description) }
        guard let text = reply.string else { throw RedisError(kind: .unexpectedReply, message: "INFO \(section) on \(node) answered \(reply)") }
        var fields: [String: String] = [:]
        for line in text.split(whereSeparator: \.isNewline) {
            guard let colon = line.firstIndex(of: ":") else { continue }
            fields[String(line[..<colon])] = String(line[line.index(after: colon)...]).trimmingCharacters(in: .whitespaces)
        }
        return fields
    }

    /// The replicas an `INFO replication` reply lists (`slave0:ip=…,port=…,state=…`).
    static func replicas(in info: [String: String]) -> [RedisConfiguration.Endpoint] {
        info.filter { $0.key.hasPrefix("slave") && $0.key.dropFirst(5).allSatisfy(\.isNumber) }.sorted { $0.key < $1.key }.compactMap { _, value in
            var fields: [String: String] = [:]
            for pair in value.split(separator: ",") {
                let parts = pair.split(separator: "=", maxSplits: 1)
                if parts.count == 2 { fields[String(parts[0])] = String(parts[1]) }
            }
            guard let host = fields["ip"], let port = fields["port"].flatMap({ Int($0) }) else { return nil }
            return .tcp(host: host, port: port)
        }
    }

    /// Whether `save` names any snapshot points; `nil` when the node refuses `CONFIG GET`
    /// (managed services rename it).
    private func snapshotsConfigured(_ node: RedisConfiguration.Endpoint) async throws -> Bool? {
        let reply = try await client.send(["CONFIG", "GET", "save"], to: node)
        guard let items = reply.array else { return nil }
        guard items.count >= 2, let value = items[1].string else { return false }
        return !value.trimmingCharacters(in: .whitespaces).isEmpty
    }

    // MARK: Helpers

    private func streamInfo(_ stream: String) async throws -> StreamInfo? {
        do {
            return try await client.execute(.xinfoStream(stream))
        } catch let error as RedisError where error.kind == .server {
            return nil  // no such key
        }
    }

    private static func unique<Element: Hashable>(_ items: [Element]) -> [Element] {
        var seen = Set<Element>()
        return items.filter { seen.insert($0).inserted }
    }
}
