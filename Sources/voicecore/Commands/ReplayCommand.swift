import ArgumentParser
import Foundation
import Logging
import VoiceCoreEvents
import VoiceCorePostgres
import VoiceCoreProjections
import VoiceCoreTime

struct ReplayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replay",
        abstract: "Rebuild a projection from the event archive while everything keeps running.",
        discussion: """
            Replays every archived event of the projection's types (event_log, in stream order, \
            old versions upcast) through the projection's own code into shadow tables \
            (schema replay_<projection>_<hash of the live schema>), then swaps them in: in one transaction it pauses the \
            live projector at its next checkpoint, applies what was archived meanwhile, and \
            replaces the live rows. The checkpoints stay, so the live projector continues with no \
            gap and no double count. Webhooks, services and the other projections never stop.

            --tenant rebuilds one tenant's rows only; --verify rebuilds and prints the \
            differences from the live tables (row counts and checksums per tenant) without \
            swapping; --dry-run says what would be read. An interrupted replay (Ctrl-C, SIGKILL) \
            leaves the live tables untouched: run it again. A second replay of the same \
            projection is refused while one runs. Needs the archive projection in the same \
            projector as the one replayed (the default).

            Projections: \(StandardProjections.all.filter(\.isReplayable).map(\.name).joined(separator: ", ")).
            """
    )

    @OptionGroup var connections: ConnectionOptions

    @Argument(help: "The projection to rebuild.")
    var projection: String

    @Option(help: "Rebuild only this tenant's rows.")
    var tenant: String?

    @Option(help: "Only events at or after this time (RFC 3339; --verify and --dry-run only).")
    var from: String?

    @Option(help: "Only events before this time (RFC 3339; --verify and --dry-run only).")
    var to: String?

    @Flag(help: "Rebuild into shadow tables and print the differences from the live tables; do not swap.")
    var verify = false

    @Flag(help: "Print what would be read, and stop.")
    var dryRun = false

    @Option(help: "Events per batch.")
    var batchSize = 5_000

    @Option(help: "Connections applying each batch (each takes whole streams, so a stream's events stay in order).")
    var writers = 2

    func run() async throws {
        let projections: [any Projection]
        do {
            projections = try StandardProjections.named([projection])
        } catch let error as ProjectorError {
            throw ValidationError(error.message)
        }
        var options = ReplayOptions(mode: dryRun ? .dryRun : verify ? .verify : .rebuild, batchSize: batchSize, writers: writers)
        if let tenant {
            guard let id = Identifier(tenant) else { throw ValidationError("--tenant must be a tenant id (UUID)") }
            options.tenant = id
        }
        if let from {
            guard let time = Timestamp(rfc3339: from) else { throw ValidationError("--from must be an RFC 3339 time, e.g. 2026-11-24T00:00:00Z") }
            options.from = time
        }
        if let to {
            guard let time = Timestamp(rfc3339: to) else { throw ValidationError("--to must be an RFC 3339 time, e.g. 2026-11-25T00:00:00Z") }
            options.to = time
        }
        let replayer = Replayer(projection: projections[0], postgres: try connections.postgresConfiguration())
        let terminal = isatty(STDERR_FILENO) == 1
        let lastLine = LastProgress()
        let report: ReplayReport
        do {
            report = try await replayer.run(options) { progress in
                guard lastLine.due(terminal: terminal) else { return }
                let total = max(progress.eventsExpected, progress.eventsRead)
                let fraction = total == 0 ? 1 : Double(progress.eventsRead) / Double(total)
                let rate = progress.eventsPerSecond
                let eta = rate > 0 ? Double(total - progress.eventsRead) / rate : 0
                let counts = String(format: "%d/%d events  %.0f events/s  ETA %.0f s", progress.eventsRead, total, rate, eta)
                if terminal {
                    let width = 30
                    let done = Int(fraction * Double(width))
                    FileHandle.standardError.write(Data(("\r[" + String(repeating: "#", count: done) + String(repeating: ".", count: width - done) + "] " + counts + "   ").utf8))
                } else {
                    FileHandle.standardError.write(Data(("replay: " + counts + "\n").utf8))
                }
            }
        } catch let error as ReplayError {
            throw CommandFailure(error.description)
        }
        if terminal { FileHandle.standardError.write(Data("\n".utf8)) }
        let seconds = report.duration / .seconds(1)
        switch report.mode {
        case .dryRun:
            say("\(report.projection): would read \(report.eventsRead) archived events" + (report.earliest.map { " from \($0) to \(report.latest!)" } ?? ""))
        case .verify, .rebuild:
            say(String(format: "%@: read %d events in %.1f s (%.0f events/s)", report.projection, report.eventsRead, seconds, Double(report.eventsRead) / max(seconds, 0.001))
                + (report.caughtUp > 0 ? ", \(report.caughtUp) of them archived during the replay" : "")
                + (report.rejected > 0 ? "; \(report.rejected) refused by the database (see projection_failures)" : "")
                + (report.retried > 0 ? "; \(report.retried) writer transactions run again after a deadlock or serialization failure" : ""))
            say("rows: " + report.rows.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
            if report.mode == .rebuild {
                say("swapped in: the live tables now hold the rebuilt rows" + (options.tenant.map { " of tenant \($0)" } ?? ""))
            } else if report.differences.isEmpty {
                say("verify: the live tables equal the rebuild")
            } else {
                say("verify: \(report.differences.count) differences (table, tenant: live rows → rebuilt rows):")
                for difference in report.differences {
                    say("  \(difference.table), \(difference.tenant): \(difference.liveRows) → \(difference.rebuiltRows)\(difference.liveRows == difference.rebuiltRows ? " (same count, different content)" : "")")
                }
                throw ExitCode(2)
            }
        }
    }
}

/// Throttles progress output: a terminal line every 0.2 s, a log line every 5 s.
final class LastProgress: @unchecked Sendable {
    private var last = ContinuousClock.now - .seconds(60)
    private let lock = NSLock()

    func due(terminal: Bool) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        let now = ContinuousClock.now
        guard now - last >= (terminal ? .milliseconds(200) : .seconds(5)) else { return false }
        last = now
        return true
    }
}
