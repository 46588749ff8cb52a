import ArgumentParser
import Foundation
import Logging
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCorePostgres
import VoiceCoreRedis
import VoiceCoreTenants
import VoiceCoreTime

struct TenantsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tenants",
        abstract: "Provision tenants, list them, rotate their API keys and provider credentials, add outbound webhooks.",
        discussion: """
            The tenant directory lives in Postgres (tenant_directory, tenant_api_keys). Provider \
            secrets are encrypted with $VOICECORE_MASTER_KEY; API keys are stored only as hashes \
            and shown once. Give a secret as `-` to read it from stdin (keeps it out of your shell \
            history and the process list).
            """,
        subcommands: [Add.self, List.self, Rotate.self, Webhook.self]
    )

    /// Reads `-` from stdin; anything else is the value itself.
    static func secret(_ value: String?) throws -> String? {
        guard value == "-" else { return value }
        guard let line = readLine(strippingNewline: true), !line.isEmpty else { throw ValidationError("expected the secret on stdin") }
        return line
    }

    static func directory(_ connections: ConnectionOptions) async throws -> TenantDirectory {
        let secrets: SecretBox
        do {
            secrets = try SecretBox.fromEnvironment()
        } catch {
            throw CommandFailure(error.description)
        }
        let directory = TenantDirectory(connection: try await PostgresConnection.connect(try connections.postgresConfiguration()), secrets: secrets)
        do {
            try await directory.checkSchema()
        } catch let error as TenantError {
            throw CommandFailure(error.description)
        }
        return directory
    }

    /// The tenant directory's outbox relay, on connections of its own: publishes the events the
    /// directory announced that are not on their streams yet (what a crashed writer left).
    static func outboxRelay(_ connections: ConnectionOptions, naming: StreamNaming, logger: Logger) async throws -> OutboxRelay {
        let outbox = TenantOutbox(connection: try await PostgresConnection.connect(try connections.postgresConfiguration()))
        let redis = try await RedisClient.connect(try connections.redisConfiguration())
        let publisher = Publisher(connection: redis, configuration: PublisherConfiguration(source: "/tenants", naming: naming))
        return OutboxRelay(source: outbox, publisher: publisher, logger: logger)
    }

    /// A tenant's provider credentials, as `add` takes them and `rotate` replaces them.
    struct CredentialOptions: ParsableArguments {
        @Option(help: "Twilio account SID (callbacks from other accounts are refused).")
        var twilioAccountSid: String?

        @Option(help: "Twilio auth token (signs Twilio's webhooks); `-` reads it from stdin.")
        var twilioAuthToken: String?

        @Option(help: "Shared key of a Twilio Webhook Setting that signs with HMAC-SHA256; `-` reads it from stdin.")
        var twilioSharedKey: String?

        @Option(help: "Telnyx public key (base64, from the Telnyx portal).")
        var telnyxPublicKey: String?

        @Option(name: .customLong("telnyx-api-key"), help: "Telnyx API key (v2): the telephony service answers the tenant's Call Control calls with it; `-` reads it from stdin.")
        var telnyxAPIKey: String?

        /// The credentials given, secrets given as `-` read from stdin.
        func change(requestsPerSecond: Int?) throws -> CredentialChange {
            CredentialChange(twilioAccountSID: twilioAccountSid, twilioAuthToken: try TenantsCommand.secret(twilioAuthToken),
                             twilioSharedKey: try TenantsCommand.secret(twilioSharedKey), telnyxPublicKey: telnyxPublicKey,
                             telnyxAPIKey: try TenantsCommand.secret(telnyxAPIKey),
                             requestsPerSecond: requestsPerSecond)
        }
    }

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Provision a tenant: store its credentials, publish TenantProvisioned, print its API key (once) and webhook URLs.")

        @OptionGroup var connections: ConnectionOptions

        @Option(help: "The business's name.")
        var name: String

        @Option(help: "Billing plan: \(Plan.allCases.map(\.rawValue).joined(separator: ", ")).")
        var plan: String = Plan.starter.rawValue

        @Option(help: "IANA time zone of the business (analytics days are UTC; this is for business hours).")
        var timeZone = "UTC"

        @OptionGroup var credentials: CredentialOptions

        @Option(help: "Tenant API rate limit.")
        var requestsPerSecond = 50

        @Option(help: "Tenant id (default: a new UUIDv7).")
        var id: String?

        @Option(name: .customLong("public-url"), help: "The edge's public URL, for the webhook URLs printed (default: $VOICECORE_PUBLIC_URL, else http://127.0.0.1:8080).")
        var publicURL: String?

        @Option(help: "Partitions per category (must match the deployment).")
        var partitions = 16

        @Option(help: "Stream key prefix (must match the deployment).")
        var prefix = "vc"

        func run() async throws {
            guard let plan = Plan(rawValue: plan) else { throw ValidationError("--plan must be one of \(Plan.allCases.map(\.rawValue).joined(separator: ", "))") }
            let id = try id.map { text in
                guard let id = Identifier(text) else { throw ValidationError("--id must be a UUID") }
                return id
            } ?? Identifier.v7()
            let directory = try await TenantsCommand.directory(connections)
            let redis = try await RedisClient.connect(try connections.redisConfiguration())
            let publisher = Publisher(connection: redis, configuration: PublisherConfiguration(source: "/cli/tenants", naming: StreamNaming(partitions: partitions, prefix: prefix)))
            let given = try credentials.change(requestsPerSecond: requestsPerSecond)
            let provisioned: ProvisionedTenant
            do {
                provisioned = try await directory.provision(
                    NewTenant(id: id, name: name, plan: plan, timeZone: timeZone, twilioAccountSID: given.twilioAccountSID,
                              twilioAuthToken: given.twilioAuthToken, twilioSharedKey: given.twilioSharedKey,
                              telnyxPublicKey: given.telnyxPublicKey, telnyxAPIKey: given.telnyxAPIKey, requestsPerSecond: requestsPerSecond),
                    publisher: publisher)
            } catch let error as TenantError {
                throw CommandFailure(error.description)
            }
            if !provisioned.announced {
                FileHandle.standardError.write(Data("note: TenantProvisioned is not published yet (Redis did not take it); it waits in the tenant outbox, and a running `voicecore up`, `voicecore consume tenants` or edge with the admin API publishes it\n".utf8))
            }
            let base = publicURL ?? EdgeOptions.publicURLFromEnvironment ?? "http://127.0.0.1:8080"
            let tenant = provisioned.tenant.id
            print("""
                tenant    \(tenant)  \(provisioned.tenant.name) (\(provisioned.tenant.plan))
                api key   \(provisioned.apiKey.plaintext)
                          (shown once: store it now; `voicecore tenants rotate \(tenant) --api-key` issues a new one)
                webhooks  Twilio "A call comes in":      \(base)/webhooks/twilio/\(tenant)/voice
                          Twilio status callback:        \(base)/webhooks/twilio/\(tenant)/status
                          Twilio transcription callback: \(base)/webhooks/twilio/\(tenant)/transcription (set by the voice answer)
                          Telnyx Call Control:           \(base)/webhooks/telnyx/\(tenant)
                """)
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List tenants and which credentials each has (never their values).")

        @OptionGroup var connections: ConnectionOptions

        @Flag(help: "Print JSON instead of a table.")
        var json = false

        func run() async throws {
            let tenants = try await TenantsCommand.directory(connections).list()
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
                print(String(decoding: try encoder.encode(tenants.map(TenantListing.init)), as: UTF8.self))
                return
            }
            func pad(_ text: String, _ width: Int) -> String { text.count >= width ? text + " " : text + String(repeating: " ", count: width - text.count) }
            print(pad("TENANT", 38) + pad("NAME", 24) + pad("PLAN", 11) + pad("TWILIO", 8) + pad("TELNYX", 8) + pad("KEYS", 6) + "RPS")
            for tenant in tenants {
                print(pad(tenant.id.description, 38) + pad(tenant.name, 24) + pad(tenant.plan, 11) + pad(tenant.hasTwilioAuthToken ? "yes" : "-", 8)
                      + pad(tenant.hasTelnyxPublicKey ? "yes" : "-", 8) + pad(String(tenant.activeAPIKeys), 6) + String(tenant.requestsPerSecond))
            }
        }
    }

    struct Rotate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Issue a new API key (revoking the others) and/or replace provider credentials.",
            discussion: "Running edges pick the change up within their tenant cache time (30 s).")

        @OptionGroup var connections: ConnectionOptions

        @Argument(help: "The tenant id.")
        var tenant: String

        @Flag(help: "Issue a new API key and revoke the tenant's other keys; prints the new key once.")
        var apiKey = false

        @OptionGroup var credentials: CredentialOptions

        @Option(help: "New tenant API rate limit.")
        var requestsPerSecond: Int?

        func run() async throws {
            guard let id = Identifier(tenant) else { throw ValidationError("TENANT must be a tenant id (UUID); see `voicecore tenants list`") }
            let change = try credentials.change(requestsPerSecond: requestsPerSecond)
            guard apiKey || !change.isEmpty else { throw ValidationError("say what to rotate: --api-key and/or a credential option") }
            let directory = try await TenantsCommand.directory(connections)
            do {
                if !change.isEmpty {
                    try await directory.update(id, change)
                    print("credentials updated for \(id)")
                }
                if apiKey {
                    let key = try await directory.rotateAPIKey(of: id)
                    print("api key   \(key.plaintext)\n          (shown once; the tenant's previous keys are revoked)")
                }
            } catch let error as TenantError {
                throw CommandFailure(error.description)
            }
        }
    }

    struct Webhook: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Add an outbound webhook: the integrations service POSTs the tenant's events to it, signed.",
            discussion: """
                Prints the webhook's signing secret once. Each delivery carries \
                X-VoiceCore-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" under \
                the secret>, X-VoiceCore-Event and X-VoiceCore-Delivery (dedupe on it). Failed \
                deliveries are retried with exponential backoff, then recorded in \
                <prefix>:{integrations}:webhook-failures.
                """)

        @OptionGroup var connections: ConnectionOptions

        @Argument(help: "The tenant id.")
        var tenant: String

        @Option(help: "The receiver's http:// or https:// URL.")
        var url: String

        @Option(help: "json (the event) or slack (a Slack incoming-webhook message).")
        var format = "json"

        @Option(parsing: .upToNextOption, help: "Event types to deliver (default: \(TenantDirectory.webhookEventTypes.joined(separator: " "))).")
        var events: [String] = []

        func run() async throws {
            guard let id = Identifier(tenant) else { throw ValidationError("TENANT must be a tenant id (UUID); see `voicecore tenants list`") }
            guard let format = OutboundWebhook.Format(rawValue: format) else { throw ValidationError("--format must be json or slack") }
            let directory = try await TenantsCommand.directory(connections)
            do {
                let webhook = try await directory.addWebhook(to: id, url: url, format: format, eventTypes: events.isEmpty ? TenantDirectory.webhookEventTypes : events)
                let secret = String(decoding: webhook.signingSecret, as: UTF8.self)
                print("webhook         \(webhook.id)\nevents          \(webhook.eventTypes.joined(separator: ", "))\nsigning secret  \(secret)\n                (shown once; the HMAC-SHA256 key is this text)")
            } catch let error as TenantError {
                throw CommandFailure(error.description)
            }
        }
    }
}

/// A tenant as `tenants list --json` prints it (and the admin API answers): which credentials are
/// set, never their values; `twilio_account_sid` only when there is one.
struct TenantListing: Encodable {
    var tenantID: String
    var name: String
    var plan: String
    var timeZone: String
    var twilioAccountSID: String?
    var twilioAuthTokenSet: Bool
    var twilioSharedKeySet: Bool
    var telnyxPublicKeySet: Bool
    var telnyxAPIKeySet: Bool
    var requestsPerSecond: Int
    var activeAPIKeys: Int
    var createdAt: String

    enum CodingKeys: String, CodingKey {
        case tenantID = "tenant_id", name, plan, timeZone = "time_zone", twilioAccountSID = "twilio_account_sid"
        case twilioAuthTokenSet = "twilio_auth_token_set", twilioSharedKeySet = "twilio_shared_key_set", telnyxPublicKeySet = "telnyx_public_key_set"
        case telnyxAPIKeySet = "telnyx_api_key_set"
        case requestsPerSecond = "requests_per_second", activeAPIKeys = "active_api_keys", createdAt = "created_at"
    }

    init(_ tenant: TenantSummary) {
        tenantID = tenant.id.description
        name = tenant.name
        plan = tenant.plan
        timeZone = tenant.timeZone
        twilioAccountSID = tenant.twilioAccountSID
        twilioAuthTokenSet = tenant.hasTwilioAuthToken
        twilioSharedKeySet = tenant.hasTwilioSharedKey
        telnyxPublicKeySet = tenant.hasTelnyxPublicKey
        telnyxAPIKeySet = tenant.hasTelnyxAPIKey
        requestsPerSecond = tenant.requestsPerSecond
        activeAPIKeys = tenant.activeAPIKeys
        createdAt = tenant.createdAt.rfc3339
    }
}
