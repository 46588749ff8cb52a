import VoiceCoreEvents
import VoiceCoreRedis

/// How a ``Publisher`` names streams, bounds them and batches writes.
///
/// Retention trims streams as they are written (`XADD … MAXLEN ~` or `MINID ~`): Redis is the
/// transport, Postgres' `event_log` the archive. Defaults keep events for 7 days and commands for
/// 24 hours. An entry trimmed while still pending in a consumer group is reported to that group as
/// deleted (`XAUTOCLAIM`), so retention must exceed the longest outage a consumer may have.
///
/// ```swift
/// var configuration = PublisherConfiguration(source: "/edge/twilio")
/// configuration.retention[.calls] = .maxLength(5_000_000)
/// ```
public struct PublisherConfiguration: Sendable {
    /// How long, or how many, entries a stream keeps.
    public enum Retention: Sendable, Hashable {
        /// Entries newer than this (`MINID`, computed from the clock at each write). Approximate
        /// trimming (the default) removes whole radix-tree nodes only, so a stream may keep up to
        /// about a hundred older entries; `exact` trims precisely (slower).
        case maxAge(Duration, exact: Bool = false)
        /// About this many newest entries (approximate `MAXLEN`); `exact` trims precisely (slower).
        case maxLength(Int, exact: Bool = false)
        /// Never trimmed by the publisher.
        case unbounded
    }

    /// The CloudEvents `source` of what this publisher sends, e.g. `/edge/twilio`.
    public var source: String
    /// Stream names and partitions (must match every other part of the deployment).
    public var naming: StreamNaming
    /// Retention of event streams per category.
    public var eventRetention: [StreamCategory: Retention]
    /// Retention of command streams per category.
    public var commandRetention: [StreamCategory: Retention]
    /// The most XADDs sent in one pipeline; more waiting callers go in the next one.
    public var maxBatch: Int

    public init(
        source: String,
        naming: StreamNaming = StreamNaming(),
        eventRetention: [StreamCategory: Retention] = Dictionary(uniqueKeysWithValues: StreamCategory.allCases.map { ($0, .maxAge(.seconds(7 * 86_400))) }),
        commandRetention: [StreamCategory: Retention] = Dictionary(uniqueKeysWithValues: StreamCategory.allCases.map { ($0, .maxAge(.seconds(86_400))) }),
        maxBatch: Int = 512
    ) {
        self.source = source
        self.naming = naming
        self.eventRetention = eventRetention
        self.commandRetention = commandRetention
        self.maxBatch = max(1, maxBatch)
    }

    /// The trim clause for a stream of this category and kind, at `nowMilliseconds`.
    func trim(_ category: StreamCategory, _ kind: MessageKind, nowMilliseconds: Int64) -> StreamTrim? {
        switch (kind == .event ? eventRetention[category] : commandRetention[category]) ?? .unbounded {
        case .unbounded:
            return nil
        case .maxLength(let count, let exact):
            return .maxLength(count, approximate: !exact)
        case .maxAge(let age, let exact):
            return .minID(StreamEntryID(milliseconds: UInt64(max(0, nowMilliseconds - age.milliseconds))), approximate: !exact)
        }
    }
}
