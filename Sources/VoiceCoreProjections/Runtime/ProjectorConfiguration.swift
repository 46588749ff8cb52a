import Foundation
import VoiceCoreEvents

/// How a ``ProjectorRunner`` reads and where it stands among other instances.
public struct ProjectorConfiguration: Sendable {
    /// Stream names and partition count (must match the publishers').
    public var naming: StreamNaming
    /// This instance's name, stable across restarts (consumer names are `<instance>-<worker>`).
    public var instance: String
    /// Workers in this instance. Each owns some partitions (for all the runner's projections),
    /// with its own Postgres and Redis connections.
    public var workers: Int
    /// Entries read per stream per `XREADGROUP` (a batch is everything one read returns).
    public var batchSize: Int
    /// How long one read waits for new entries.
    public var block: Duration
    /// The least time from the start of one read of new entries to the start of the next
    /// (``StreamGroupReader/Configuration/readInterval``): under load a worker reads larger
    /// batches, and Redis is spared a blocking read (which registers every partition) after nearly
    /// every entry. An entry on a quiet stream is read at once. 10 ms: rows appear at most that
    /// much later under load; `voicecore up` at 800 webhooks/s used 7–14 % less CPU per webhook
    /// with 5–10 ms here and in the services.
    public var readInterval: Duration?
    /// How often a worker recounts the live workers and takes or gives back partitions.
    public var rebalanceInterval: Duration
    /// Backoff after a transient database error (deadlock, serialization failure), doubling.
    public var retryDelay: Duration
    public var maxRetryDelay: Duration
    /// Testing aid: make the process kill itself (SIGKILL) at a point of the commit protocol.
    public var crashPoint: CrashPoint?

    /// Where ``ProjectorConfiguration/crashPoint`` strikes: after `afterBatches` batches were
    /// committed, in the next batch, at `point`.
    public struct CrashPoint: Sendable, Hashable {
        public enum Point: String, Sendable, Hashable, CaseIterable {
            /// Rows and checkpoint written, COMMIT not sent.
            case beforeCommit = "before-commit"
            /// Committed, before the worker goes on (its in-memory checkpoints not yet advanced).
            case afterCommit = "after-commit"
        }
        public var point: Point
        public var afterBatches: Int

        public init(point: Point, afterBatches: Int) {
            self.point = point
            self.afterBatches = afterBatches
        }

        /// `before-commit:3` or `after-commit:0`.
        public init?(_ text: String) {
            let parts = text.split(separator: ":", maxSplits: 1).map(String.init)
            guard let point = Point(rawValue: parts[0]) else { return nil }
            let batches = parts.count > 1 ? Int(parts[1]) : 0
            guard let batches, batches >= 0 else { return nil }
            self.init(point: point, afterBatches: batches)
        }
    }

    public init(
        naming: StreamNaming = StreamNaming(), instance: String = ProcessInfo.processInfo.hostName,
        workers: Int = 2, batchSize: Int = 250, block: Duration = .milliseconds(250),
        rebalanceInterval: Duration = .seconds(2), readInterval: Duration? = .milliseconds(10)
    ) {
        self.naming = naming
        self.instance = instance
        self.workers = max(1, workers)
        self.batchSize = max(1, batchSize)
        self.block = block
        self.readInterval = readInterval
        self.rebalanceInterval = rebalanceInterval
        self.retryDelay = .milliseconds(50)
        self.maxRetryDelay = .seconds(5)
        self.crashPoint = nil
    }

    /// The consumer group that reads for a set of projections: `projector:` and their names in
    /// order, joined by `+` (e.g. `projector:archive+billing`). One read serves them all.
    public static func group(of projections: [String]) -> String { "projector:" + projections.sorted().joined(separator: "+") }
}

/// A projector refused to start or to go on; the message says why and what to do.
public struct ProjectorError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
