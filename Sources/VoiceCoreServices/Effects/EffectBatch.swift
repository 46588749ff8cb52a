import Synchronization
import VoiceCoreBus
import VoiceCoreEvents

/// The effects of one partition's batch, applied together when it ends: first every publish (one
/// group of deduplicated publishes, in order), then every state write (one pipeline), then the
/// runner acknowledges the entries. Until then the state lives in the stores' memory, so later
/// messages of the batch see it. If anything fails, the memory of the written states is dropped
/// and nothing is acknowledged: the messages are handled again from the state in Redis, and the
/// publishes already made are deduplicated.
final class EffectBatch: Sendable {
    @TaskLocal static var current: EffectBatch?

    private struct Publish: Sendable {
        var envelope: EventEnvelope
        var category: StreamCategory
        var kind: MessageKind
        var key: String
    }

    private struct Write: Sendable {
        var store: StateStore
        var key: String
        var fields: [String: String]
    }

    private let effects = Mutex<(publishes: [Publish], writes: [Write])>(([], []))

    func publish(_ envelope: EventEnvelope, category: StreamCategory, kind: MessageKind, key: String) {
        effects.withLock { $0.publishes.append(Publish(envelope: envelope, category: category, kind: kind, key: key)) }
    }

    func write(_ store: StateStore, key: String, fields: [String: String]) {
        effects.withLock { $0.writes.append(Write(store: store, key: key, fields: fields)) }
    }

    /// The scope a service installs with `MessageHandlers.aroundPartitionBatch`.
    static func scope(publisher: Publisher) -> PartitionBatchScope {
        { _, body in
            let batch = EffectBatch()
            do {
                try await EffectBatch.$current.withValue(batch) { try await body() }
                try await batch.apply(publisher)
            } catch {
                batch.discard()
                throw error
            }
        }
    }

    private func apply(_ publisher: Publisher) async throws {
        let (publishes, writes) = effects.withLock { ($0.publishes, $0.writes) }
        let results = await publisher.publish(deduplicated: publishes.map { ($0.envelope, $0.category, $0.kind, $0.key) })
        for result in results {
            if case .failure(let error) = result {
                throw error as? RedisError ?? RedisError(kind: .unexpectedReply, message: "a publish of the batch failed: \(error)")
            }
        }
        // Writes of one store go out as one pipeline.
        var byStore: [ObjectIdentifier: (StateStore, [(String, [String: String])])] = [:]
        for write in writes { byStore[ObjectIdentifier(write.store), default: (write.store, [])].1.append((write.key, write.fields)) }
        for (store, items) in byStore.values { try await store.persist(items) }
        for write in writes { write.store.settled(write.key) }
    }

    private func discard() {
        for write in effects.withLock({ $0.writes }) { write.store.forget(write.key) }
    }
}
