import Foundation
import VoiceCoreEvents
import VoiceCoreRedis

/// What a ``ConsumerGroupRunner`` reads and how it treats failures.
///
/// ```swift
/// var configuration = ConsumerConfiguration(group: "billing", streams: naming.streams(.calls, kind: .event))
/// configuration.maxDeliveries = 5
/// ```
public struct ConsumerConfiguration: Sendable {
    /// The consumer group (one per service: all its instances share it).
    public var group: String
    /// This instance's name in the group; stable across restarts so it resumes its own pending
    /// entries. Defaults to `<hostname>-<group>`.
    public var consumer: String
    /// The streams read (usually every partition of some categories).
    public var streams: [String]
    /// Where a group that does not exist yet starts.
    public var start: GroupStart
    /// Entries read per stream per `XREADGROUP`.
    public var batchSize: Int
    /// How long one read waits for new entries.
    public var block: Duration
    /// The least time from the start of one read of new entries to the start of the next; `nil`
    /// reads again at once. Each read of many partitions costs Redis (and this process) about the
    /// same whatever it returns, and a busy stream would otherwise wake the consumer for nearly
    /// every entry: a consumer whose entries can wait this long (the platform's billing and CRM)
    /// reads a busy stream in fewer, larger batches. An entry arriving on a quiet stream is read at
    /// once (the blocking read is already waiting); a backlog is read without pause.
    public var readInterval: Duration?
    /// Deliveries (counted by Redis) after which a failing entry goes to the dead-letter stream.
    public var maxDeliveries: Int
    /// First retry delay; doubles per attempt with ±20 % jitter, up to `maxRetryDelay`.
    public var retryDelay: Duration
    public var maxRetryDelay: Duration
    /// Entries pending longer than this at another consumer are taken over (it is presumed dead).
    public var claimIdle: Duration
    /// How often to look for such entries.
    public var claimInterval: Duration
    /// Partition leases (see ``ConsumerGroupRunner``): each stream is read by one member of the
    /// group at a time, so a call's events are handled in order even with several members. A lease
    /// lives this long without renewal (renewed every third of it). `nil` reads every stream with
    /// no lease: only for a group with a single member, or handlers that do not need order.
    public var leaseTTL: Duration?

    public init(
        group: String, streams: [String], consumer: String? = nil, start: GroupStart = .beginning,
        batchSize: Int = 256, block: Duration = .seconds(2), maxDeliveries: Int = 5,
        retryDelay: Duration = .milliseconds(100), maxRetryDelay: Duration = .seconds(10),
        claimIdle: Duration = .seconds(30), claimInterval: Duration = .seconds(5), leaseTTL: Duration? = .seconds(10),
        readInterval: Duration? = nil
    ) {
        self.group = group
        self.streams = streams
        self.consumer = consumer ?? "\(ProcessInfo.processInfo.hostName)-\(group)"
        self.start = start
        self.batchSize = max(1, batchSize)
        self.block = block
        self.maxDeliveries = max(1, maxDeliveries)
        self.retryDelay = retryDelay
        self.maxRetryDelay = maxRetryDelay
        self.claimIdle = claimIdle
        self.claimInterval = claimInterval
        self.leaseTTL = leaseTTL
        self.readInterval = readInterval
    }

    /// The dead-letter stream of `stream` for this group: `<stream>:dlq:<group>`, in the same
    /// Redis Cluster slot as its origin (same hash tag), so moving an entry there and acknowledging
    /// it at its origin is one atomic script.
    public func deadLetterStream(of stream: String) -> String { "\(stream):dlq:\(group)" }

    /// The requeue stream of `stream` for this group: `<stream>:retry:<group>`, where
    /// ``DeadLetters/requeue(_:ids:maxRequeues:force:)`` puts this group's dead letters back.
    /// Only this group reads it, so a requeue reaches no other group; same hash tag as its origin.
    public func retryStream(of stream: String) -> String { Self.retryStream(of: stream, group: group) }

    static func retryStream(of stream: String, group: String) -> String { "\(stream):retry:\(group)" }

    /// The origin of a requeue stream of this group (`nil` for any other stream).
    func origin(ofRetryStream stream: String) -> String? {
        let suffix = ":retry:\(group)"
        return stream.hasSuffix(suffix) ? String(stream.dropLast(suffix.count)) : nil
    }
}
