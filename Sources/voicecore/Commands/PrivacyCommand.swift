import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCorePostgres
import VoiceCoreProjections
import VoiceCoreTenants
import VoiceCoreTime

struct PrivacyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "privacy",
        abstract: "Erase a caller everywhere, report an erasure, run the retention job, or run the privacy service alone.",
        discussion: """
            An erasure removes or redacts a caller's personal data in every read model, in the \
            archive (event_log, so a replay keeps it erased) and on the streams, has Redis rewrite \
            its append-only file, and publishes voicecore.privacy.caller-erased (ids and a keyed \
            hash of the identifier, never the identifier). `voicecore up` and `voicecore privacy \
            serve` advance open erasures every second and run retention hourly \
            (VOICECORE_RETENTION_INTERVAL, seconds). See docs/privacy.md. Needs \
            VOICECORE_MASTER_KEY (identifiers are hashed and sealed with it) and the migrations \
            applied.
            """,
        subcommands: [Erase.self, Status.self, Retention.self, Serve.self]
    )

    /// `--partitions` / `--prefix`: the deployment's stream layout (an erasure deletes the caller's entries).
    struct StreamOptions: ParsableArguments {
        @Option(help: "Partitions per category (must match the deployment).")
        var partitions = 16

        @Option(help: "Stream key prefix (must match the deployment).")
        var prefix = "vc"

        var naming: StreamNaming { StreamNaming(partitions: partitions, prefix: prefix) }
    }

    /// A tenant id given as `--tenant`.
    static func tenant(_ text: String) throws -> Identifier {
        guard let tenant = Identifier(text) else { throw ValidationError("--tenant must be a tenant id (a UUID; `voicecore tenants list` shows them)") }
        return tenant
    }

    /// The privacy service on connections of its own (the eraser, the retention job, the streams).
    static func service(_ connections: ConnectionOptions, naming: StreamNaming, logger: Logger) async throws -> PrivacyService {
        let secrets: SecretBox
        do {
            secrets = try SecretBox.fromEnvironment()
        } catch {
            throw CommandFailure(error.description)
        }
        let configuration: PrivacyServiceConfiguration
        do {
            configuration = try PrivacyServiceConfiguration.fromEnvironment()
        } catch {
            throw CommandFailure("\(error)")
        }
        return try await PrivacyService.connect(postgres: try connections.postgresConfiguration(), redis: try connections.redisConfiguration(),
                                                naming: naming, secrets: secrets, configuration: configuration, logger: logger)
    }

    /// Says `message` on stderr and exits with status 2: what was asked for does not exist
    /// (nothing matches, no such erasure), told apart from a failure (1) and a usage error (64).
    static func notFound(_ message: String) -> ExitCode {
        FileHandle.standardError.write(Data("error: \(message)\n".utf8))
        return ExitCode(2)
    }

    static func describe(_ counts: [String: Int]) -> String {
        ErasureStatus.countKeys.map { "\($0) \(counts[$0] ?? 0)" }.joined(separator: ", ")
    }

    static func printStatus(_ status: ErasureStatus, json: Bool) {
        if json {
            say(String(decoding: status.json, as: UTF8.self))
            return
        }
        var lines = [
            "erasure      \(status.erasureID)",
            "tenant       \(status.tenantID)",
            "state        \(status.state.rawValue)\(status.waitingFor.map { " (waiting for \($0))" } ?? "")",
            "identifier   \(status.identifierKind.rawValue), hash \(status.identifierHash)",
            "requested    \(status.requestedAt)",
            "updated      \(status.updatedAt)",
        ]
        if let completed = status.completedAt { lines.append("completed    \(completed)") }
        lines.append("counts       \(describe(status.counts))")
        say(lines.joined(separator: "\n"))
    }

    // MARK: erase

    struct Erase: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Erase a caller of a tenant everywhere, named by exactly one of --phone, --email, --contact.",
            discussion: """
                Records the erasure (actor operator, in the audit trail with the identifier's hash) \
                and, unless --no-wait, runs it to completion here, printing each state it reaches \
                (pending, waiting — for a call in progress or a reader behind —, erasing, purging, \
                completed) and what it erased. Killed midway, it is resumed by running the same \
                command again, or by a running `voicecore up` / `voicecore privacy serve`. An \
                erasure of the same caller still open is resumed, not started twice.

                Exit status: 0 when the erasure completed (or, with --no-wait, was recorded); 2 when \
                nothing of the tenant (no call, contact, lead or interaction) matches the \
                identifier: nothing is recorded; 1 on any other failure; 64 for a malformed \
                identifier.
                """)

        @OptionGroup var connections: ConnectionOptions
        @OptionGroup var streams: StreamOptions

        @Option(help: "The tenant whose caller is erased (its id).")
        var tenant: String

        @Option(help: "The caller's phone number in E.164 (+14155550123).")
        var phone: String?

        @Option(help: "The caller's e-mail address (matched in any case).")
        var email: String?

        @Option(help: "The caller's CRM contact id (a UUID).")
        var contact: String?

        @Flag(help: "Record the erasure and return; a running privacy service (voicecore up, voicecore privacy serve) does it.")
        var noWait = false

        @Flag(help: "Print the erasure's final status as JSON (the API's status object) instead of text.")
        var json = false

        @Option(name: .customLong("poll-ms"), help: "While it waits, how often to look again (milliseconds).")
        var pollMilliseconds = 1000

        /// The identifier given, checked (a usage error names the option at fault).
        func identifier() throws -> ErasureIdentifier {
            let given = [("--phone", ErasureIdentifier.Kind.phone, phone), ("--email", .email, email), ("--contact", .contact, contact)]
                .compactMap { option in option.2.map { (option.0, option.1, $0) } }
            guard let first = given.first else { throw ValidationError("name the caller by exactly one of --phone, --email, --contact") }
            guard given.count == 1 else { throw ValidationError("\(given[1].0) is given with \(first.0): name the caller by exactly one of --phone, --email, --contact") }
            do throws(PrivacyRequestError) {
                return try ErasureIdentifier.parse(kind: first.1, value: first.2, field: first.0)
            } catch {
                throw ValidationError(error.description)
            }
        }

        func validate() throws {
            _ = try PrivacyCommand.tenant(tenant)
            _ = try identifier()
            guard pollMilliseconds > 0 else { throw ValidationError("--poll-ms must be positive") }
        }

        func run() async throws {
            let tenant = try PrivacyCommand.tenant(tenant)
            let identifier = try identifier()
            let directory = try await TenantsCommand.directory(connections)
            let requests = ErasureRequests(directory: directory)
            let requested: (status: ErasureStatus, created: Bool)
            do throws(PrivacyRequestError) {
                requested = try await requests.request(tenant: tenant, identifier: identifier, actor: .platformOperator, requestID: .v7())
            } catch {
                switch error {
                case .nothingMatches: throw PrivacyCommand.notFound("\(error) (tenant \(tenant))")
                case .invalid: throw ValidationError(error.description)
                case .unknownTenant, .notMigrated, .unavailable: throw CommandFailure(error.description)
                }
            }
            let erasure = requested.status.erasureID
            if !json {
                say(requested.created ? "erasure \(erasure) requested (identifier hash \(requested.status.identifierHash))"
                                      : "erasure \(erasure) of this caller is open already (\(requested.status.state.rawValue)): resuming it")
            }
            if !noWait {
                let service = try await PrivacyCommand.service(connections, naming: streams.naming, logger: Logger(label: "voicecore.privacy"))
                let quiet = json
                try await service.eraser.complete(erasure, poll: .milliseconds(pollMilliseconds)) { progress in
                    guard !quiet else { return }
                    let waiting = progress.waitingFor.map { " — waiting for \($0)" } ?? ""
                    let elsewhere = progress.ranHere ? "" : " (another process runs it now)"
                    say("  \(progress.state.rawValue)\(waiting)\(elsewhere)")
                }
            }
            guard let status = try await requests.status(tenant: tenant, erasure: erasure) else {
                throw CommandFailure("erasure \(erasure) is gone from privacy_erasures")
            }
            if json {
                PrivacyCommand.printStatus(status, json: true)
            } else if status.state == .completed {
                say("completed: \(PrivacyCommand.describe(status.counts))")
            } else {
                say("recorded (\(status.state.rawValue)); `voicecore privacy status --tenant \(tenant) \(erasure)` reports it")
            }
        }
    }

    // MARK: status

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Report an erasure: its state, what it waits for, what it erased.",
            discussion: "Exit status 2 when the tenant has no erasure with this id.")

        @OptionGroup var connections: ConnectionOptions

        @Option(help: "The tenant the erasure belongs to (its id).")
        var tenant: String

        @Argument(help: "The erasure's id (as `erase` printed it, or the API's `id`).")
        var erasure: String

        @Flag(help: "Print the API's status object as JSON.")
        var json = false

        func validate() throws {
            _ = try PrivacyCommand.tenant(tenant)
            guard Identifier(erasure) != nil else { throw ValidationError("the erasure id must be a UUID") }
        }

        func run() async throws {
            let tenant = try PrivacyCommand.tenant(tenant)
            guard let erasure = Identifier(erasure) else { throw ValidationError("the erasure id must be a UUID") }
            let requests = ErasureRequests(directory: try await TenantsCommand.directory(connections))
            let status: ErasureStatus?
            do throws(PrivacyRequestError) {
                status = try await requests.status(tenant: tenant, erasure: erasure)
            } catch {
                throw CommandFailure(error.description)
            }
            guard let status else { throw PrivacyCommand.notFound("tenant \(tenant) has no erasure \(erasure)") }
            PrivacyCommand.printStatus(status, json: json)
        }
    }

    // MARK: retention

    struct Retention: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "The retention job: erase what tenants keep no longer (per their retention settings).",
            subcommands: [Run.self])

        struct Run: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Run the retention job once now, for one tenant or every tenant, and print what it erased.",
                discussion: """
                    Each tenant's retention.transcripts_days, retention.recordings_days and \
                    retention.calls_days (settings; defaults 365, 90 and 1095 days) decide what is \
                    older than its policy. Each run is recorded (privacy_retention_runs, and the \
                    audit trail with actor system). A second run at once erases nothing more.
                    """)

            @OptionGroup var connections: ConnectionOptions
            @OptionGroup var streams: StreamOptions

            @Option(help: "Only this tenant (default: every tenant of the directory).")
            var tenant: String?

            @Flag(help: "Print one JSON object per tenant run.")
            var json = false

            func validate() throws {
                if let tenant { _ = try PrivacyCommand.tenant(tenant) }
            }

            func run() async throws {
                let tenant = try self.tenant.map(PrivacyCommand.tenant)
                let service = try await PrivacyCommand.service(connections, naming: streams.naming, logger: Logger(label: "voicecore.privacy"))
                let runs: [RetentionJob.Run]
                do {
                    if let tenant {
                        runs = [try await service.retention.run(tenant: tenant)]
                    } else {
                        runs = try await service.retention.run()
                    }
                } catch let error as CallerEraser.EraserError {
                    throw CommandFailure(error.description)
                }
                for run in runs {
                    if json {
                        say(String(decoding: JSONObjectWriter.object { object in
                            object.field("run_id", run.runID)
                            object.field("tenant_id", run.tenantID)
                            object.field("transcripts_cutoff", run.transcriptsCutoff)
                            object.field("recordings_cutoff", run.recordingsCutoff)
                            object.field("calls_cutoff", run.callsCutoff)
                            object.field("counts", run.counts)
                            if let error = run.error { object.field("error", error) }
                        }, as: UTF8.self))
                    } else if let error = run.error {
                        say("""
                            tenant \(run.tenantID)  run \(run.runID)
                              failed: \(error)
                            """)
                    } else {
                        say("""
                            tenant \(run.tenantID)  run \(run.runID)
                              older than: transcripts \(run.transcriptsCutoff), recordings \(run.recordingsCutoff), calls \(run.callsCutoff)
                              erased: \(PrivacyCommand.describe(run.counts))
                            """)
                    }
                }
                if runs.isEmpty && !json { say("no tenants in the directory") }
                // Every tenant ran; those that failed make the command fail (their errors are above and in privacy_retention_runs).
                let failed = runs.filter { $0.error != nil }.count
                if failed > 0 { throw CommandFailure("the retention run failed for \(failed) of \(runs.count) tenants") }
            }
        }
    }

    // MARK: serve

    struct Serve: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run the privacy service alone: advance open erasures every second, run retention every interval.",
            discussion: """
                What `voicecore up` runs among its services; run it apart when the platform runs as \
                separate processes. Two processes never run one erasure at once (an advisory lock \
                per erasure). Retention runs every VOICECORE_RETENTION_INTERVAL seconds (default \
                3600), the first 5 minutes after start. Stops gracefully on SIGTERM or SIGINT.
                """)

        @OptionGroup var connections: ConnectionOptions
        @OptionGroup var streams: StreamOptions

        func run() async throws {
            let logger = Logger(label: "voicecore.privacy")
            let service = try await PrivacyCommand.service(connections, naming: streams.naming, logger: logger)
            logger.info("privacy service running", metadata: ["retention_interval": "\(service.configuration.retentionInterval)"])
            try await ServiceGroup(configuration: .stoppingWithinDrainBound([.init(service: service)], logger: logger)).run()
        }
    }
}
