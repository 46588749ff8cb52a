import Logging
import ServiceLifecycle
import VoiceCoreExecutors

/// How an ``OutboxRelay`` polls and publishes.
public struct OutboxRelayConfiguration: Sendable {
    /// The pause between passes while the outbox is empty (a relay picks up rows a crashed
    /// process left within this time).
    public var pollInterval: Duration
    /// The longest pause after failed passes (an outage): failures space the passes out from
    /// ``pollInterval`` up to this.
    public var maximumBackoff: Duration
    /// Entries read per query.
    public var batchSize: Int
    /// How long a publish is remembered by its deduplication key: a message published again
    /// within it (a relay that crashed before removing its entry) is not appended again.
    public var deduplicationWindow: Duration

    public init(pollInterval: Duration = .seconds(1), maximumBackoff: Duration = .seconds(15), batchSize: Int = 100,
                deduplicationWindow: Duration = .seconds(86_400)) {
        self.pollInterval = pollInterval
        self.maximumBackoff = max(pollInterval, maximumBackoff)
        self.batchSize = max(1, batchSize)
        self.deduplicationWindow = deduplicationWindow
    }
}

/// Publishes what an ``OutboxSource`` holds to its streams, once in effect, and removes it.
///
/// A change that must reach both Postgres and a stream writes its message to an outbox in the
/// same transaction as the change; this relay publishes it afterwards. Every publish is
/// deduplicated on the message's ``OutboxMessage/deduplicationKey`` (the check and the `XADD` are
/// one script), and an entry is removed only after Redis acknowledged its publish. A crash
/// between the publish and the removal leaves the entry; the next pass publishes it again into
/// the deduplication window, which appends nothing. So each message reaches its stream once,
/// whichever process crashes where, as long as an entry is relayed within
/// ``OutboxRelayConfiguration/deduplicationWindow`` of its first publish.
///
/// Entries are published one after another in their outbox order, each after the one before was
/// acknowledged, and a pass stops at the first failure: a message never overtakes an earlier one
/// (the writer takes care that the outbox order is the commit order of one subject's changes).
/// Several relays may run at once (one per process that writes the outbox): each publishes in
/// order and their repeats are deduplicated.
///
/// As a `Service` it passes every ``OutboxRelayConfiguration/pollInterval``; a failed pass (Redis
/// or Postgres unreachable) is retried with growing pauses, at `info` while it is an outage.
/// Writers also call ``relayPending()`` right after their commit, so a message is normally on its
/// stream before the write returns.
///
/// ```swift
/// let relay = OutboxRelay(source: directory.outbox, publisher: publisher)
/// try await relay.relayPending()            // right after a commit
/// ServiceGroup(services: [relay, …], logger: logger)   // picks up what a crash left behind
/// ```
public final class OutboxRelay: Service, Sendable {
    public let configuration: OutboxRelayConfiguration
    private let source: any OutboxSource
    private let publisher: Publisher
    private let logger: Logger

    public init(source: any OutboxSource, publisher: Publisher, configuration: OutboxRelayConfiguration = OutboxRelayConfiguration(),
                logger: Logger = Logger(label: "voicecore.bus.outbox")) {
        self.source = source
        self.publisher = publisher
        self.configuration = configuration
        self.logger = logger
    }

    /// Publishes every pending entry, oldest first, and removes each published one. Returns how
    /// many were relayed; throws the first failure (what was published before it is removed).
    @discardableResult
    public func relayPending() async throws -> Int {
        var relayed = 0
        while true {
            let entries = try await source.pending(limit: configuration.batchSize)
            var published: [Int64] = []
            do {
                for entry in entries {
                    let message = entry.message
                    _ = try await publisher.publish(message.envelope, category: message.category, kind: message.kind,
                                                    deduplicationKey: message.deduplicationKey, window: configuration.deduplicationWindow)
                    published.append(entry.position)
                }
            } catch {
                // What was published is removed now if possible; if not, the next pass publishes
                // it again, deduplicated.
                if !published.isEmpty { try? await source.remove(published) }
                throw error
            }
            if !published.isEmpty { try await source.remove(published) }
            relayed += published.count
            if entries.count < configuration.batchSize { return relayed }
        }
    }

    public func run() async throws {
        // Nothing to drain: an entry whose publish a shutdown cuts short stays in the outbox.
        await cancelWhenGracefulShutdown {
            var backoff = ReconnectSchedule(initial: self.configuration.pollInterval, maximum: self.configuration.maximumBackoff)
            var inOutage = false
            while !Task.isCancelled {
                let pause: Duration
                do {
                    let relayed = try await self.relayPending()
                    if relayed > 0 { self.logger.debug("outbox relayed", metadata: ["messages": "\(relayed)"]) }
                    if inOutage { self.logger.info("outbox relay resumed") }
                    inOutage = false
                    backoff.succeeded()
                    pause = self.configuration.pollInterval
                } catch {
                    if Task.isCancelled { break }
                    if error.isDependencyOutage {
                        // Said once per outage; the entries wait in the outbox meanwhile.
                        if !inOutage { self.logger.info("outbox relay waits out an outage", metadata: ["error": "\(error)"]) }
                        inOutage = true
                    } else {
                        self.logger.warning("outbox relay pass failed", metadata: ["error": "\(error)"])
                    }
                    backoff.failed(at: .now)
                    pause = backoff.wait(at: .now) ?? self.configuration.pollInterval
                }
                try? await Task.sleep(for: pause)
            }
        }
    }
}
