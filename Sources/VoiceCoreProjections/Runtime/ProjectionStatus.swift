import Metrics
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCorePostgres
import VoiceCoreTime

/// Where a projection stands: its checkpoints against the heads of its streams.
public struct ProjectionStatus: Sendable, Hashable {
    public struct StreamStatus: Sendable, Hashable {
        public var stream: String
        public var checkpoint: StreamEntryID?
        /// The last entry id Redis generated on the stream.
        public var head: StreamEntryID?
        /// Entries after the checkpoint.
        public var gap: Int
        /// `true` when ``gap`` is a lower bound (counted up to a cap).
        public var gapIsLowerBound: Bool
        /// Age of the oldest entry after the checkpoint (from its entry id's time).
        public var oldestUnprojectedSeconds: Double?
    }

    public var projection: String
    public var streams: [StreamStatus]
    /// Rows in `projection_failures` for this projection.
    public var failures: Int

    public var gap: Int { streams.reduce(0) { $0 + $1.gap } }
    public var gapIsLowerBound: Bool { streams.contains(where: \.gapIsLowerBound) }
    public var oldestUnprojectedSeconds: Double? { streams.compactMap(\.oldestUnprojectedSeconds).max() }

    /// Reads the status of each projection: its checkpoints from `db`, where its streams stand
    /// from `streams` (the bus's ``StreamInspector``). `countCap` bounds how many entries are counted
    /// one by one on a stream whose group cannot say its lag (then the gap is a lower bound).
    public static func read(
        _ projections: [any Projection], naming: StreamNaming, streams inspector: StreamInspector, db: PostgresConnection, countCap: Int = 10_000
    ) async throws -> [ProjectionStatus] {
        let rows = try await db.query("SELECT projection, stream, last_entry_id FROM projection_checkpoints")
        var checkpoints: [String: [String: StreamEntryID]] = [:]
        for row in rows {
            checkpoints[try row.decode(String.self, "projection"), default: [:]][try row.decode(String.self, "stream")] =
                StreamEntryID(try row.decode(String.self, "last_entry_id"))
        }
        var failures: [String: Int] = [:]
        for row in try await db.query("SELECT projection, count(*) AS n FROM projection_failures GROUP BY 1") {
            failures[try row.decode(String.self, "projection")] = try row.decode(Int.self, "n")
        }
        let nowMilliseconds = UInt64(max(0, Timestamp.now.millisecondsSinceEpoch))
        var result: [ProjectionStatus] = []
        for projection in projections {
            var streams: [StreamStatus] = []
            for category in projection.categories {
                for stream in naming.streams(category, kind: projection.kind) {
                    let checkpoint = checkpoints[projection.name]?[stream]
                    var status = StreamStatus(stream: stream, checkpoint: checkpoint, head: nil, gap: 0, gapIsLowerBound: false, oldestUnprojectedSeconds: nil)
                    guard let head = try await inspector.head(of: stream) else {
                        streams.append(status)  // no such stream yet
                        continue
                    }
                    status.head = head.lastGeneratedID
                    if let last = head.lastGeneratedID, head.length > 0, checkpoint.map({ last > $0 }) ?? true {
                        if let first = try await inspector.firstEntryID(of: stream, after: checkpoint) {
                            status.oldestUnprojectedSeconds = Double(nowMilliseconds &- min(nowMilliseconds, first.milliseconds)) / 1000
                            // The groups reading for this projection (projector:a+b+…) whose lag Redis knows;
                            // the most advanced one is the one applying it (others are left from earlier runs).
                            // Its lag counts entries not yet delivered; those delivered after the checkpoint
                            // (being applied, not committed: projectors read with NOACK, so they are not
                            // pending) are counted here.
                            let groups = try await inspector.groups(of: stream).compactMap { info -> (lag: Int, delivered: StreamEntryID?)? in
                                guard info.name.hasPrefix("projector:"),
                                      info.name.dropFirst("projector:".count).split(separator: "+").contains(Substring(projection.name)),
                                      let lag = info.lag else { return nil }
                                return (lag, info.lastDeliveredID)
                            }
                            if let group = groups.min(by: { $0.lag < $1.lag }) {
                                var inFlight = (count: 0, capped: false)
                                if let delivered = group.delivered, checkpoint.map({ delivered > $0 }) ?? true {
                                    inFlight = try await inspector.count(stream, after: checkpoint, through: delivered, cap: countCap)
                                }
                                status.gap = group.lag + inFlight.count
                                status.gapIsLowerBound = inFlight.capped
                            } else {
                                let counted = try await inspector.count(stream, after: checkpoint, through: nil, cap: countCap)
                                status.gap = counted.count
                                status.gapIsLowerBound = counted.capped
                            }
                        }
                    }
                    streams.append(status)
                }
            }
            result.append(ProjectionStatus(projection: projection.name, streams: streams, failures: failures[projection.name] ?? 0))
        }
        return result
    }

    /// Records the gap and age as gauges (``ProjectorMetricNames``).
    public func recordMetrics(factory: any MetricsFactory = MetricsSystem.factory) {
        let dimensions = [("projection", projection)]
        Gauge(label: ProjectorMetricNames.gap, dimensions: dimensions, factory: factory).record(gap)
        Gauge(label: ProjectorMetricNames.oldestUnprojected, dimensions: dimensions, factory: factory).record(oldestUnprojectedSeconds ?? 0)
    }
}
