import Logging
import Metrics
import Synchronization
import VoiceCoreEvents
import VoiceCoreExecutors
import VoiceCoreRedis

/// Handling a read: each partition's entries in order, the partitions concurrently, and each entry
/// as ``ConsumerStateMachine`` decides (attempts, retries, outage waits, dead letters).
extension ConsumerGroupRunner {
    // MARK: Handling a read

    enum Outcome {
        case acknowledge
        case deadLettered
        /// Left pending (shutting down mid-retry, or the entry was taken over): not acked here.
        case leavePending
    }

    /// What a partition's batch came to: the entries to acknowledge, and the failure that ended it.
    struct PartitionOutcome: Sendable {
        var stream: String
        var acknowledged: [StreamEntryID]
        var failure: (any Error)?
    }

    /// How far a partition's batch got. `settled`: dead-lettered or taken over by another
    /// consumer, which stays so even when a batch scope's failure makes the batch run again.
    final class PartitionProgress: Sendable {
        private let state = Mutex<(done: Int, acknowledged: [StreamEntryID], settled: Set<StreamEntryID>)>((0, [], []))

        var done: Int { state.withLock { $0.done } }
        var acknowledged: [StreamEntryID] { state.withLock { $0.acknowledged } }
        func isSettled(_ id: StreamEntryID) -> Bool { state.withLock { $0.settled.contains(id) } }
        func passSettled() { state.withLock { $0.done += 1 } }

        func record(_ id: StreamEntryID, _ outcome: Outcome) {
            state.withLock {
                $0.done += 1
                switch outcome {
                case .acknowledge: $0.acknowledged.append(id)
                case .deadLettered, .leavePending: $0.settled.insert(id)
                }
            }
        }

        /// A batch scope failed and applied none of its effects: its entries are all handled again.
        func restart() { state.withLock { $0.done = 0; $0.acknowledged = [] } }
    }

    /// Handles each stream's entries in order, the streams concurrently, and adds what was handled
    /// to `handled`. The acknowledgements are not sent here: they go out ahead of the next read in
    /// its round trip (one round trip per batch instead of two, and none per stream). A stream
    /// whose handling failed still has the entries handled before the failure acknowledged, unless
    /// a batch scope failed (it applied none of its batch's effects); the failure is rethrown.
    func handle(_ batches: [StreamReadResult], fresh: Bool, control: RedisClient,
                        handled: inout [(stream: String, ids: [StreamEntryID])]) async throws {
        guard batches.contains(where: { !$0.entries.isEmpty }) else { return }
        // A small read is handled where the loop runs (the reader's thread: no thread hop, the
        // lowest latency); a large one on the shared pool, so partitions use every core.
        let entries = batches.reduce(0) { $0 + $1.entries.count }
        let executor: (any TaskExecutor)? = entries > Self.inlineEntries ? globalConcurrentExecutor : nil
        let outcomes = await withTaskGroup(of: PartitionOutcome.self) { group in
            for batch in batches where !batch.entries.isEmpty {
                group.addTask(executorPreference: executor) { await self.handlePartition(batch, fresh: fresh, control: control) }
            }
            var outcomes: [PartitionOutcome] = []
            for await outcome in group { outcomes.append(outcome) }
            return outcomes
        }
        for outcome in outcomes where !outcome.acknowledged.isEmpty { handled.append((outcome.stream, outcome.acknowledged)) }
        if !outageRereads.withLock({ $0.isEmpty }) {
            outageRereads.withLock { rereads in
                for outcome in outcomes { for id in outcome.acknowledged { rereads.removeValue(forKey: "\(outcome.stream) \(id)") } }
            }
        }
        if let failure = outcomes.first(where: { $0.failure != nil })?.failure { throw failure }
    }

    /// One partition's batch, inside the batch scope when there is one. Redis or Postgres out (the
    /// batch's publishes or writes, a delivery count): the partition waits for it, its entries
    /// pending, and goes on where it stopped; no delivery is used up.
    func handlePartition(_ batch: StreamReadResult, fresh: Bool, control: RedisClient) async -> PartitionOutcome {
        let progress = PartitionProgress()
        let scope = handlers.batchScope
        // A requeued entry is its origin partition's: the scope is the origin's.
        let partition = configuration.origin(ofRetryStream: batch.stream) ?? batch.stream
        var decision = ConsumerStateMachine.Batch(scoped: scope != nil)
        while true {
            do {
                if let scope {
                    try await scope(partition) { try await self.handleEntries(of: batch, fresh: fresh, control: control, progress: progress) }
                } else {
                    try await handleEntries(of: batch, fresh: fresh, control: control, progress: progress)
                }
                return PartitionOutcome(stream: batch.stream, acknowledged: progress.acknowledged, failure: nil)
            } catch {
                switch decisions.next(&decision, afterFailure: error.isDependencyOutage) {
                case .fail(let restart):
                    if restart { progress.restart() }
                    return PartitionOutcome(stream: batch.stream, acknowledged: progress.acknowledged, failure: error)
                case .waitOutOutage(let pause, let log, let restart):
                    if restart { progress.restart() }
                    let resume = await waitOutOutage(error, stream: batch.stream, entry: batch.entries.first?.id, pause: pause, log: log)
                    guard resume else { return PartitionOutcome(stream: batch.stream, acknowledged: progress.acknowledged, failure: nil) }
                }
            }
        }
    }

    /// The batch's entries not done yet, in order.
    func handleEntries(of batch: StreamReadResult, fresh: Bool, control: RedisClient, progress: PartitionProgress) async throws {
        for entry in batch.entries.dropFirst(progress.done) {
            if progress.isSettled(entry.id) {
                progress.passSettled()
                continue
            }
            let deliveries = fresh ? 1 : try await deliveryCount(batch.stream, entry.id, control)
            let outcome = try await process(entry, stream: batch.stream, deliveries: deliveries, control: control)
            if case .leavePending = outcome, Self.stopping { return }
            progress.record(entry.id, outcome)
        }
    }

    // MARK: Handling an entry

    /// An entry ready for its handler.
    struct PreparedMessage {
        var consumed: ConsumedMessage
        var handler: MessageHandlers.Handler
        var timer: Metrics.Timer
    }

    enum Preparation {
        case ready(PreparedMessage)
        /// Not for a handler: deleted, of a type not handled, or undecodable (with the error).
        case refused(ConsumerStateMachine.EntryEvent, (any Error)?)
    }

    /// Handles one entry as the state machine decides: attempts, retries, outage waits, then an
    /// acknowledgement, a dead letter, or left pending.
    func process(_ entry: StreamEntry, stream: String, deliveries: Int, control: RedisClient) async throws -> Outcome {
        var delivery = ConsumerStateMachine.Entry(deliveries: deliveries)
        let message: PreparedMessage
        switch prepare(entry, stream: stream, deliveries: deliveries) {
        case .ready(let prepared):
            message = prepared
        case .refused(let event, let error):
            return try await conclude(decisions.next(&delivery, after: event), entry, stream: stream, error: error, control: control) ?? .leavePending
        }
        var (event, error) = await attempt(message, deliveries: delivery.deliveries, stream: stream)
        while true {
            let action = decisions.next(&delivery, after: event)
            if let outcome = try await conclude(action, entry, stream: stream, error: error, control: control) { return outcome }
            switch action {
            case .retry(let pause):
                event = try await retry(entry, stream: stream, after: pause, control: control)
            case .waitOutOutage(let pause, let log):
                guard await waitOutOutage(error ?? CancellationError(), stream: stream, entry: entry.id, pause: pause, log: log) else {
                    event = .stopping
                    continue
                }
                (event, error) = await attempt(message, deliveries: delivery.deliveries, stream: stream)
            case .attempt:
                (event, error) = await attempt(message, deliveries: delivery.deliveries, stream: stream)
            case .acknowledge, .skip, .deadLetter, .leavePending:
                continue  // concluded above
            }
        }
    }

    func prepare(_ entry: StreamEntry, stream: String, deliveries: Int) -> Preparation {
        // Deleted (trimmed) while pending: nothing to handle.
        guard let fields = entry.fields else { return .refused(.deleted, nil) }
        // A type this consumer does not handle is skipped before anything is decoded: most
        // consumers read streams that carry many types (every call event), and decoding the ones
        // they ignore was most of their work.
        if let type = fields.first(where: { $0.name == "type" })?.value, !handlers.handles(type) { return .refused(.notHandled, nil) }
        let consumed: ConsumedMessage
        do {
            let envelope = try EventEnvelope(fields: fields.map { EnvelopeField(name: $0.name, value: $0.value) })
            // A requeued entry is its origin's (its partition's state, its stream name), read elsewhere.
            consumed = ConsumedMessage(stream: configuration.origin(ofRetryStream: stream) ?? stream, entryID: entry.id, envelope: envelope,
                                       decoded: try registry.decode(envelope), deliveryCount: deliveries)
        } catch {
            return .refused(.undecodable, error)
        }
        guard let handler = handlers.handler(for: consumed.envelope.type) else { return .refused(.notHandled, nil) }
        return .ready(PreparedMessage(consumed: consumed, handler: handler, timer: metrics.handlerTimer(consumed.envelope.type)))
    }

    /// One call of the handler: what happened, and the error it threw.
    func attempt(_ message: PreparedMessage, deliveries: Int, stream: String) async -> (ConsumerStateMachine.EntryEvent, (any Error)?) {
        var consumed = message.consumed
        consumed.deliveryCount = deliveries
        do {
            let start = ContinuousClock.now
            try await message.handler(consumed)
            message.timer.record(since: start)
            state.withLock { $0.handled += 1 }
            metrics.handled.increment()
            return (.handled, nil)
        } catch where error.isDependencyOutage {
            return (.outage, error)
        } catch {
            state.withLock { $0.failedAttempts += 1 }
            metrics.failed.increment()
            logger.info("handler failed", metadata: [
                "stream": "\(stream)", "entry": "\(consumed.entryID)", "type": "\(consumed.envelope.type)",
                "tenant": "\(consumed.envelope.tenantID)", "delivery": "\(deliveries)", "error": "\(error)",
            ])
            return (.failed, error)
        }
    }

    /// After the retry's pause, re-claims the entry: Redis counts the delivery; if another
    /// consumer took it over meanwhile, it is theirs now.
    func retry(_ entry: StreamEntry, stream: String, after pause: ConsumerStateMachine.Pause, control: RedisClient) async throws -> ConsumerStateMachine.EntryEvent {
        guard await self.pause(for: pause.duration) else { return .stopping }
        let reclaimed = try await control.execute(.xclaim(stream, group: configuration.group, consumer: configuration.consumer, minIdle: .zero, ids: [entry.id]))
        guard !reclaimed.isEmpty else { return .takenOver }
        return .reclaimed(deliveries: try await deliveryCount(stream, entry.id, control))
    }

    /// Carries out an action that ends the entry's handling (`nil` for one that does not).
    func conclude(_ action: ConsumerStateMachine.EntryAction, _ entry: StreamEntry, stream: String, error: (any Error)?,
                          control: RedisClient) async throws -> Outcome? {
        switch action {
        case .acknowledge:
            return .acknowledge
        case .skip:
            state.withLock { $0.skipped += 1 }
            return .acknowledge
        case .deadLetter(let reason, let attempts):
            try await deadLetter(entry, fields: entry.fields ?? [], stream: stream, reason: reason, error: error.map { "\($0)" } ?? reason,
                                 attempts: attempts, control: control)
            return .deadLettered
        case .leavePending:
            return .leavePending
        case .retry, .waitOutOutage, .attempt:
            return nil
        }
    }
}
