import Foundation
import VoiceCoreEvents
import VoiceCoreRedis

/// How long, or how many, entries a stream keeps once every reader has processed them.
///
/// Retention is an upper bound, never a reason to drop an entry a reader still needs: the
/// ``RetentionTrimmer`` trims below whichever comes first, the retention point or what every
/// registered reader has processed.
public enum StreamRetention: Sendable, Hashable, CustomStringConvertible {
    /// Entries newer than this. Approximate trimming (the default) removes whole radix-tree nodes
    /// only, so a stream may keep up to about a hundred older entries; `exact` trims precisely.
    case maxAge(Duration, exact: Bool = false)
    /// About this many newest entries; `exact` trims precisely.
    case maxLength(Int, exact: Bool = false)
    /// Never trimmed.
    case unbounded

    public var description: String {
        switch self {
        case .maxAge(let age, _): "age \(age.components.seconds) s"
        case .maxLength(let count, _): "length \(count)"
        case .unbounded: "unbounded"
        }
    }

    var isExact: Bool {
        switch self {
        case .maxAge(_, let exact), .maxLength(_, let exact): exact
        case .unbounded: false
        }
    }
}

/// What the ``RetentionTrimmer`` keeps, how often it trims, and when it gives up on a reader.
///
/// Defaults keep events for 7 days and commands for 24 hours *after every reader processed them*,
/// check every minute, and stop waiting for a consumer group that has entries left to process but
/// none of whose consumers has been seen (read or claimed, `XINFO CONSUMERS` idle) for 7 days. Environment (read by
/// ``fromEnvironment(naming:environment:)``): `VOICECORE_RETENTION_ABANDON_AFTER_SECONDS`,
/// `VOICECORE_RETENTION_INTERVAL_SECONDS`.
///
/// ```swift
/// var retention = RetentionConfiguration(naming: StreamNaming())
/// retention.eventRetention[.calls] = .maxLength(5_000_000)
/// retention.abandonAfter = .seconds(3 * 86_400)
/// ```
public struct RetentionConfiguration: Sendable {
    /// The streams to trim: every category, commands and events, every partition.
    public var naming: StreamNaming
    /// Retention of event streams per category (7 days by default).
    public var eventRetention: [StreamCategory: StreamRetention]
    /// Retention of command streams per category (24 hours by default).
    public var commandRetention: [StreamCategory: StreamRetention]
    /// A consumer group with no consumer seen for this long stops holding retention back (and is
    /// reported), so an abandoned group cannot grow Redis without bound.
    public var abandonAfter: Duration
    /// How often one pass runs (across all processes running a trimmer).
    public var interval: Duration
    /// Consumer groups whose Redis position is not their progress: readers with `NOACK` that keep
    /// checkpoints elsewhere (the projector's `projector:…` groups). A ``ReaderProgressSource``
    /// answers for them; a group named so that no source answers for holds retention at the start
    /// of its stream (nothing is known to be processed), so a trimmer run without the source can
    /// never trim what a projector still needs.
    public var checkpointedGroupPrefixes: [String]

    public init(
        naming: StreamNaming = StreamNaming(),
        eventRetention: [StreamCategory: StreamRetention] = Dictionary(uniqueKeysWithValues: StreamCategory.allCases.map { ($0, .maxAge(.seconds(7 * 86_400))) }),
        commandRetention: [StreamCategory: StreamRetention] = Dictionary(uniqueKeysWithValues: StreamCategory.allCases.map { ($0, .maxAge(.seconds(86_400))) }),
        abandonAfter: Duration = .seconds(7 * 86_400),
        interval: Duration = .seconds(60),
        checkpointedGroupPrefixes: [String] = ["projector:"]
    ) {
        self.naming = naming
        self.eventRetention = eventRetention
        self.commandRetention = commandRetention
        self.abandonAfter = abandonAfter
        self.interval = interval
        self.checkpointedGroupPrefixes = checkpointedGroupPrefixes
    }

    /// The defaults with `VOICECORE_RETENTION_ABANDON_AFTER_SECONDS` and
    /// `VOICECORE_RETENTION_INTERVAL_SECONDS` applied; a value that is not a positive whole number
    /// is an error naming the variable.
    public static func fromEnvironment(naming: StreamNaming, environment: [String: String] = ProcessInfo.processInfo.environment) throws -> RetentionConfiguration {
        var configuration = RetentionConfiguration(naming: naming)
        func seconds(_ name: String) throws -> Duration? {
            guard let text = environment[name] else { return nil }
            guard let value = Int(text), value > 0 else { throw RetentionConfigurationError(variable: name, value: text) }
            return .seconds(value)
        }
        if let abandon = try seconds("VOICECORE_RETENTION_ABANDON_AFTER_SECONDS") { configuration.abandonAfter = abandon }
        if let interval = try seconds("VOICECORE_RETENTION_INTERVAL_SECONDS") { configuration.interval = interval }
        return configuration
    }

    /// Every stream the trimmer looks after with its retention, commands first.
    public var streams: [(stream: String, retention: StreamRetention)] {
        var result: [(String, StreamRetention)] = []
        for kind in [MessageKind.command, .event] {
            for category in StreamCategory.allCases {
                let retention = (kind == .event ? eventRetention[category] : commandRetention[category]) ?? .unbounded
                for stream in naming.streams(category, kind: kind) { result.append((stream, retention)) }
            }
        }
        return result
    }

    /// Whether `group`'s progress is kept outside Redis (see ``checkpointedGroupPrefixes``).
    func isCheckpointed(_ group: String) -> Bool {
        checkpointedGroupPrefixes.contains { group.hasPrefix($0) }
    }
}

/// A retention setting in the environment that is not a positive whole number of seconds.
public struct RetentionConfigurationError: Error, Sendable, CustomStringConvertible {
    public var variable: String
    public var value: String

    public var description: String { "\(variable) must be a positive whole number of seconds (got \"\(value)\")" }
}
