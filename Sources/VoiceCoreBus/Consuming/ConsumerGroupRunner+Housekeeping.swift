import Logging
import Metrics
import Synchronization
import VoiceCoreRedis
import VoiceCoreTime

/// Between reads and beside them: dead letters, claims of idle entries and partitions taken over,
/// and entries an operator requeued.
extension ConsumerGroupRunner {
    // MARK: Dead letters

    static let deadLetterScript = RedisScript("""
        local id = redis.call('XADD', KEYS[2], '*', unpack(ARGV, 3))
        redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
        return id
        """)

    /// Moves an entry to its origin's dead-letter stream and acknowledges it where it was read (its
    /// origin, or the group's requeue stream, whose entries name their origin id).
    func deadLetter(_ entry: StreamEntry, fields: [StreamField], stream: String, reason: String, error: String, attempts: Int, control: RedisClient) async throws {
        var arguments: [RESPArgument] = [.string(configuration.group), .string(entry.id.description)]
        let origin = configuration.origin(ofRetryStream: stream) ?? stream
        let originID = origin == stream ? entry.id.description : entry[DeadLetters.originIDField] ?? entry.id.description
        let metadata: [(String, String)] = [
            ("dlq.reason", reason), ("dlq.error", String(error.prefix(2000))), ("dlq.attempts", String(attempts)),
            ("dlq.origin_stream", origin), ("dlq.origin_id", originID), ("dlq.group", configuration.group),
            ("dlq.consumer", configuration.consumer), ("dlq.time", Timestamp.now.rfc3339),
        ]
        for (name, value) in metadata { arguments += [.string(name), .string(value)] }
        for field in fields where field.name != DeadLetters.originIDField { arguments += [.string(field.name), .bytes(field.value)] }
        _ = try await Self.deadLetterScript.run(on: control, keys: [stream, configuration.deadLetterStream(of: origin)], arguments: arguments)
        _ = outageRereads.withLock { $0.removeValue(forKey: "\(stream) \(entry.id)") }
        state.withLock { $0.deadLettered += 1 }
        metrics.deadLettered.increment()
        logger.warning("entry dead-lettered", metadata: ["stream": "\(stream)", "entry": "\(entry.id)", "reason": "\(reason)"])
    }

    // MARK: Between reads: claims and requeues

    /// Carries out housekeeping on `streams` (partitions held), with no read outstanding.
    func perform(_ work: ConsumerStateMachine.Housekeeping, on streams: [String], _ session: Session) async throws {
        switch work {
        case .claimIdle(let minIdle):
            for stream in streams { try await claim(stream, idleAtLeast: minIdle, session) }
        case .handleRequeued:
            try await handleRequeued(in: streams, session)
        }
    }

    /// Handles what an operator requeued for this group (``DeadLetters/requeue(_:ids:maxRequeues:force:)``)
    /// on the partitions it holds: each partition's requeue stream, when it exists, own pending
    /// entries first (a crash mid-handling), then new ones. Called between reads, like the claims,
    /// so a requeued entry is never handled beside its partition's batch.
    func handleRequeued(in streams: [String], _ session: Session) async throws {
        let control = session.control
        let candidates = streams.map(configuration.retryStream(of:))
        guard !candidates.isEmpty else { return }
        let exists = try await control.send(candidates.map { RESPCommand("EXISTS", .string($0)) })
        let present = zip(candidates, exists).filter { $0.1.int == 1 }.map(\.0)
        guard !present.isEmpty else { return }
        for fresh in [false, true] {
            while true {
                let position: GroupReadPosition = fresh ? .newEntries : .pending(after: .zero)
                let batches: [StreamReadResult]
                do {
                    batches = try await control.readGroup(group: configuration.group, consumer: configuration.consumer,
                                                          streams: present.map { ($0, position) }, count: configuration.batchSize, block: nil)
                } catch let error as RedisError where error.serverCode == "NOGROUP" {
                    return  // deleted meanwhile; the next requeue creates it again
                }
                try await handleAcknowledgingAtOnce(batches, fresh: fresh, session)
                // Own pending entries are read once (those left pending stay so until the next pass).
                if !fresh || !batches.contains(where: { $0.entries.count >= configuration.batchSize }) || Self.stopping { break }
            }
        }
    }

    /// Claims (XAUTOCLAIM) and handles every entry of `stream` pending at least `minIdle`: at zero,
    /// a partition just leased (a previous owner's unfinished work, older than anything new); at
    /// ``ConsumerConfiguration/claimIdle``, entries of other (presumably dead) consumers.
    func claim(_ stream: String, idleAtLeast minIdle: Duration, _ session: Session) async throws {
        var start = StreamEntryID.zero
        repeat {
            let result: AutoClaimResult
            do {
                result = try await session.control.execute(.xautoclaim(stream, group: configuration.group, consumer: configuration.consumer,
                                                                        minIdle: minIdle, start: start, count: configuration.batchSize))
            } catch let error as RedisError where error.serverCode == "NOGROUP" {
                try await ensureGroups(session.control)
                return
            }
            if !result.entries.isEmpty {
                state.withLock { $0.claimed += result.entries.count }
                metrics.claimed.increment(by: result.entries.count)
                logger.info("claimed pending entries", metadata: ["stream": "\(stream)", "count": "\(result.entries.count)"])
                try await handleAcknowledgingAtOnce([StreamReadResult(stream: stream, entries: result.entries)], fresh: false, session)
            }
            start = result.nextStart
        } while start != .zero
    }

    /// Handles entries read outside the reader (claims, requeues) and acknowledges them at once
    /// (also those handled before a failure).
    func handleAcknowledgingAtOnce(_ batches: [StreamReadResult], fresh: Bool, _ session: Session) async throws {
        var handled: [(stream: String, ids: [StreamEntryID])] = []
        do {
            try await handleRenewing(batches, fresh: fresh, session, handled: &handled)
        } catch {
            try? await session.control.acknowledge(group: configuration.group, handled)
            throw error
        }
        try await session.control.acknowledge(group: configuration.group, handled)
    }
}
