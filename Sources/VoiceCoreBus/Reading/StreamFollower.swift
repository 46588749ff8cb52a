import Logging
import VoiceCoreEvents
import VoiceCoreExecutors
import VoiceCoreRedis

/// Follows a few streams from where they stood when it started, without a consumer group, so that
/// every process running one sees every event added after its start: a broadcast, where a
/// consumer group hands each entry to one member only. Meant for low-volume streams whose events
/// concern every process, such as the tenants event streams (a `CallerErased` must reach every
/// process that holds something of the erased calls in memory).
///
/// It polls: every `interval`, one `XREAD` per stream after the last entry it saw, all in one
/// pipeline (so on a Redis Cluster each goes to the node of its stream, and no read blocks a
/// connection). An outage is waited out and reading resumes where it stopped: nothing added
/// meanwhile is missed (unless trimmed first). Entries that are not events (no valid envelope)
/// are skipped and logged.
///
/// ```swift
/// let follower = StreamFollower(connection: connection, streams: naming.streams(.tenants, kind: .event))
/// try await follower.run { events in for event in events where event.type == CallerErased.type { … } }
/// ```
public final class StreamFollower: Sendable {
    private let connection: BusConnection
    public let streams: [String]
    private let interval: Duration
    private let count: Int
    private let logger: Logger

    /// - Parameters:
    ///   - interval: how often the streams are read (what it delivers is at most this late).
    ///   - count: entries read per stream per read.
    public init(connection: BusConnection, streams: [String], interval: Duration = .seconds(1), count: Int = 100,
                logger: Logger = Logger(label: "voicecore.bus.follower")) {
        self.connection = connection
        self.streams = streams
        self.interval = interval
        self.count = max(1, count)
        self.logger = logger
    }

    /// Where each stream stands now: its last generated id (`0-0` for a stream not created yet).
    public func heads() async throws -> [String: StreamEntryID] {
        var heads: [String: StreamEntryID] = [:]
        let results = try await connection.client.pipeline(streams.map { RedisCommand<StreamInfo>.xinfoStream($0) })
        for (stream, result) in zip(streams, results) {
            switch result {
            case .success(let info): heads[stream] = info.lastGeneratedID ?? .zero
            case .failure(let error) where error.kind == .server: heads[stream] = .zero  // no such stream yet
            case .failure(let error): throw error
            }
        }
        return heads
    }

    /// Delivers, in each stream's order, the events added after `start` (``heads()`` when nil),
    /// until the task is cancelled. `deliver` is called only with events; one that throws is
    /// logged and its events are not delivered again.
    public func run(from start: [String: StreamEntryID]? = nil, deliver: @Sendable ([EventEnvelope]) async throws -> Void) async throws {
        var schedule = ReconnectSchedule(initial: .milliseconds(100), maximum: .seconds(5))
        var after: [String: StreamEntryID]? = start
        while !Task.isCancelled {
            do {
                if after == nil { after = try await heads() }
                guard var positions = after else { continue }
                var more = false
                let commands = streams.map { stream in
                    RedisCommand<[StreamReadResult]>.xread(streams: [(stream, positions[stream] ?? .zero)], count: count)
                }
                var events: [EventEnvelope] = []
                for result in try await connection.client.pipeline(commands) {
                    for batch in try result.get() {
                        guard let last = batch.entries.last else { continue }
                        positions[batch.stream] = last.id
                        if batch.entries.count >= count { more = true }
                        for entry in batch.entries {
                            guard let fields = entry.fields else { continue }
                            do {
                                events.append(try EventEnvelope(fields: fields.map { EnvelopeField(name: $0.name, value: $0.value) }))
                            } catch {
                                logger.warning("an entry that is not an event was skipped", metadata: ["stream": "\(batch.stream)", "entry": "\(entry.id)", "error": "\(error)"])
                            }
                        }
                    }
                }
                after = positions
                if schedule.failures > 0 { logger.info("following the streams again") }
                schedule.succeeded()
                if !events.isEmpty {
                    do {
                        try await deliver(events)
                    } catch is CancellationError {
                        return
                    } catch {
                        logger.warning("followed events could not be handled", metadata: ["events": "\(events.count)", "error": "\(error)"])
                    }
                }
                if !more { try await Task.sleep(for: interval) }
            } catch is CancellationError {
                return
            } catch {
                schedule.failed(at: .now)
                if schedule.failures == 1 { logger.warning("cannot follow the streams; waiting for Redis", metadata: ["error": "\(error)"]) }
                do { try await Task.sleep(for: schedule.wait(at: .now) ?? .milliseconds(100)) } catch { return }
            }
        }
    }
}
