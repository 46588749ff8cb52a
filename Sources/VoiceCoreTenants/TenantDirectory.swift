import Foundation
import Logging
import Synchronization
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCorePostgres
import VoiceCoreTime

/// A new tenant's details. Secrets are given in clear here and sealed before they are stored.
public struct NewTenant: Sendable {
    public var id: Identifier
    public var name: String
    public var plan: Plan
    public var timeZone: String
    public var twilioAccountSID: String?
    /// The Twilio account's auth token: the HMAC-SHA1 key of its webhook signatures.
    public var twilioAuthToken: String?
    /// The shared key of a Twilio Webhook Setting signing with HMAC-SHA256, when one is used.
    public var twilioSharedKey: String?
    /// The Telnyx account's Ed25519 public key, base64 (as the Telnyx portal shows it).
    public var telnyxPublicKey: String?
    /// The Telnyx API key (v2) the telephony service steers the tenant's Call Control calls with.
    public var telnyxAPIKey: String?
    /// The tenant command API's rate limit.
    public var requestsPerSecond: Int

    /// The provider credentials given (the rate limit left out: every tenant has one).
    var credentials: CredentialChange {
        CredentialChange(twilioAccountSID: twilioAccountSID, twilioAuthToken: twilioAuthToken, twilioSharedKey: twilioSharedKey, telnyxPublicKey: telnyxPublicKey,
                         telnyxAPIKey: telnyxAPIKey)
    }

    public init(id: Identifier = .v7(), name: String, plan: Plan = .starter, timeZone: String = "UTC", twilioAccountSID: String? = nil,
                twilioAuthToken: String? = nil, twilioSharedKey: String? = nil, telnyxPublicKey: String? = nil, telnyxAPIKey: String? = nil,
                requestsPerSecond: Int = 50) {
        self.id = id
        self.name = name
        self.plan = plan
        self.timeZone = timeZone
        self.twilioAccountSID = twilioAccountSID
        self.twilioAuthToken = twilioAuthToken
        self.twilioSharedKey = twilioSharedKey
        self.telnyxPublicKey = telnyxPublicKey
        self.telnyxAPIKey = telnyxAPIKey
        self.requestsPerSecond = requestsPerSecond
    }
}

/// What may be shown about a tenant: which credentials are set, never their values.
public struct TenantSummary: Sendable, Hashable {
    public var id: Identifier
    public var name: String
    public var plan: String
    public var timeZone: String
    public var twilioAccountSID: String?
    public var hasTwilioAuthToken: Bool
    public var hasTwilioSharedKey: Bool
    public var hasTelnyxPublicKey: Bool
    public var hasTelnyxAPIKey: Bool = false
    public var requestsPerSecond: Int
    public var activeAPIKeys: Int
    public var createdAt: Timestamp
}

/// A tenant just provisioned, with its first API key: the only time the key is shown.
public struct ProvisionedTenant: Sendable {
    public var tenant: TenantSummary
    public var apiKey: APIKey
    /// Whether `TenantProvisioned` was on its stream when provisioning returned. When not (Redis
    /// unreachable, or no publisher given) it waits in the outbox for a running ``OutboxRelay``.
    public var announced: Bool
}

/// What the edge needs to verify a tenant's requests, with secrets opened. Keep it in memory only.
public struct TenantCredentials: Sendable {
    public var tenantID: Identifier
    public var twilioAccountSID: String?
    public var twilioAuthToken: [UInt8]?
    public var twilioSharedKey: [UInt8]?
    /// 32 raw bytes.
    public var telnyxPublicKey: [UInt8]?
    public var requestsPerSecond: Int
    /// The receptionist's settings (greeting, conversation mode); nil: the built-in defaults.
    /// The edge greets callers with them.
    public var aiSettings: AISettings?

    public init(tenantID: Identifier, twilioAccountSID: String? = nil, twilioAuthToken: [UInt8]? = nil, twilioSharedKey: [UInt8]? = nil,
                telnyxPublicKey: [UInt8]? = nil, requestsPerSecond: Int, aiSettings: AISettings? = nil) {
        self.tenantID = tenantID
        self.twilioAccountSID = twilioAccountSID
        self.twilioAuthToken = twilioAuthToken
        self.twilioSharedKey = twilioSharedKey
        self.telnyxPublicKey = telnyxPublicKey
        self.requestsPerSecond = requestsPerSecond
        self.aiSettings = aiSettings
    }
}

/// Changes to a tenant's credentials; nil leaves a value as it is.
public struct CredentialChange: Sendable {
    public var twilioAccountSID: String?
    public var twilioAuthToken: String?
    public var twilioSharedKey: String?
    public var telnyxPublicKey: String?
    /// The Telnyx API key (v2): sealed at rest, never shown again.
    public var telnyxAPIKey: String?
    public var requestsPerSecond: Int?

    public init(twilioAccountSID: String? = nil, twilioAuthToken: String? = nil, twilioSharedKey: String? = nil, telnyxPublicKey: String? = nil,
                telnyxAPIKey: String? = nil, requestsPerSecond: Int? = nil) {
        self.twilioAccountSID = twilioAccountSID
        self.twilioAuthToken = twilioAuthToken
        self.twilioSharedKey = twilioSharedKey
        self.telnyxPublicKey = telnyxPublicKey
        self.telnyxAPIKey = telnyxAPIKey
        self.requestsPerSecond = requestsPerSecond
    }

    public var isEmpty: Bool {
        twilioAccountSID == nil && twilioAuthToken == nil && twilioSharedKey == nil && telnyxPublicKey == nil && telnyxAPIKey == nil && requestsPerSecond == nil
    }

    /// The names of the values given (for the audit trail: which ones, never what they are).
    var named: [String] {
        [("twilio_account_sid", twilioAccountSID != nil), ("twilio_auth_token", twilioAuthToken != nil), ("twilio_shared_key", twilioSharedKey != nil),
         ("telnyx_public_key", telnyxPublicKey != nil), ("telnyx_api_key", telnyxAPIKey != nil), ("requests_per_second", requestsPerSecond != nil)].filter(\.1).map(\.0)
    }
}

/// The tenant directory in Postgres (`tenant_directory`, `tenant_api_keys`; migration 0003): the
/// system of record for who may call the edge.
///
/// Provisioning announces `TenantProvisioned`, and a settings change `TenantSettingsChanged`, from
/// which the `tenants` read model is built. Each event is written to the directory's outbox
/// (``outbox``, migration 0008) in the same transaction as the change, never published beside it:
/// an ``OutboxRelay`` publishes it, right after the commit when a publisher is given, and otherwise
/// (a crash, Redis unreachable) from the relay service that `voicecore up`, `voicecore consume
/// tenants` and an edge with the admin API run. Nothing here logs or returns a secret: summaries
/// say which credentials are set, and an API key exists in clear only in the
/// ``ProvisionedTenant`` or rotation answer.
public final class TenantDirectory: Sendable {
    /// The zone names Postgres lists, read once per process: `pg_timezone_names` reads every zone
    /// file of the server on each query (half a second and more here), and the list only changes
    /// with a Postgres upgrade, which restarts this process's connections anyway.
    private static let knownTimeZones = Mutex<Set<String>?>(nil)

    static func postgresTimeZones(_ db: isolated PostgresConnection) throws -> Set<String> {
        if let known = knownTimeZones.withLock({ $0 }) { return known }
        let names = Set(try db.query("SELECT name FROM pg_timezone_names").map { try $0.decode(String.self, "name") })
        knownTimeZones.withLock { $0 = names }
        return names
    }

    let db: PostgresConnection
    let secrets: SecretBox
    let logger: Logger

    public init(connection: PostgresConnection, secrets: SecretBox, logger: Logger = Logger(label: "voicecore.tenants")) {
        self.db = connection
        self.secrets = secrets
        self.logger = logger
    }

    /// The events the directory announced that wait to be published (an ``OutboxRelay``'s source).
    public var outbox: TenantOutbox { TenantOutbox(connection: db) }

    /// The CloudEvents `source` of what the directory announces when no publisher names one.
    static let source = "/tenants"

    /// Checks that the directory's tables exist (migrations 0003, 0008 and the console's sessions,
    /// 0015), with an error saying what to do.
    public func checkSchema() async throws {
        do {
            _ = try await retryingOnce { db in
                try db.query("SELECT 1 FROM tenant_directory LIMIT 1")
                try db.query("SELECT 1 FROM tenant_outbox LIMIT 1")
                try db.query("SELECT 1 FROM console_sessions LIMIT 1")
            }
        } catch let error as PostgresError where error.sqlState == "42P01" {
            throw TenantError.configuration("the tenant directory's tables are missing: run `voicecore migrate up` first")
        }
    }

    // MARK: Provisioning

    /// Stores a tenant with a first API key and, in the same transaction, the `TenantProvisioned`
    /// that announces it (the outbox); then relays it with `publisher`, so it is normally on its
    /// stream before this returns. When that publish fails, or `publisher` is nil, the tenant is
    /// provisioned all the same and the event waits in the outbox for the relay service
    /// (``ProvisionedTenant/announced`` says which).
    ///
    /// The same transaction records the change in the audit trail under `request` (one row,
    /// ``AuditAction/tenantProvision``); a refused provisioning records nothing.
    public func provision(_ new: NewTenant, publisher: Publisher?, request: AuditedRequest = .platformOperator()) async throws -> ProvisionedTenant {
        let name = new.name.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !name.isEmpty else { throw TenantError.invalid(field: "name", reason: "must not be empty") }
        guard TimeZone(identifier: new.timeZone) != nil else { throw TenantError.invalid(field: "time_zone", reason: "is not an IANA time zone (e.g. Europe/Berlin)") }
        guard new.requestsPerSecond > 0 else { throw TenantError.invalid(field: "requests_per_second", reason: "must be positive") }
        let tenant = new.id.uuid
        let authToken = try new.twilioAuthToken.map { PostgresBytes(try secrets.seal(Array($0.utf8), tenant: tenant, field: "twilio_auth_token")) }
        let sharedKey = try new.twilioSharedKey.map { PostgresBytes(try secrets.seal(Array($0.utf8), tenant: tenant, field: "twilio_shared_key")) }
        let telnyxKey = try new.telnyxPublicKey.map { PostgresBytes(try Self.ed25519PublicKey($0)) }
        let telnyxAPIKey = try new.telnyxAPIKey.map { PostgresBytes(try secrets.seal(try Self.telnyxAPIKeyBytes($0), tenant: tenant, field: "telnyx_api_key")) }
        let key = APIKey.generate()
        let now = Timestamp.now
        let event = TenantProvisioned(tenantID: new.id, name: name, plan: new.plan, timeZone: new.timeZone, provisionedAt: now)
        let announcement = OutboxMessage(EventEnvelope(event, tenant: new.id, source: publisher?.configuration.source ?? Self.source, time: now),
                                         category: TenantProvisioned.category, kind: TenantProvisioned.kind)
        let audit = AuditEntry(request, tenant: new.id, action: .tenantProvision, target: "tenants/\(new.id)", at: now, details: JSONObjectWriter.object { json in
            json.field("plan", new.plan)
            json.field("time_zone", new.timeZone)
            json.field("requests_per_second", new.requestsPerSecond)
            json.field("credentials", new.credentials.named)
            json.field("api_key_id", key.keyID)
        })
        // Not retried after a lost connection: the insert may have committed. (A connection lost
        // earlier reconnects by itself first.)
        do {
            try await db.withConnection { db in
                try db.withTransaction { db in
                    // Postgres counts the tenant's business days in this zone (migration 0011): a
                    // name Foundation takes but Postgres does not list is refused here, e.g.
                    // `US/Pacific-New` (unknown to Postgres) or `GMT+5` (a POSIX offset to Postgres, UTC-5).
                    guard try Self.postgresTimeZones(db).contains(new.timeZone) else {
                        throw TenantError.invalid(field: "time_zone", reason: "is not an IANA time zone (e.g. Europe/Berlin)")
                    }
                    try db.query("""
                        INSERT INTO tenant_directory (tenant_id, name, plan, time_zone, twilio_account_sid, twilio_auth_token, twilio_shared_key,
                                                      telnyx_public_key, telnyx_api_key, requests_per_second, created_at, updated_at)
                        VALUES (\(tenant), \(name), \(new.plan.rawValue), \(new.timeZone), \(new.twilioAccountSID), \(authToken), \(sharedKey),
                                \(telnyxKey), \(telnyxAPIKey), \(new.requestsPerSecond), \(now), \(now))
                        """)
                    try db.query("INSERT INTO tenant_api_keys (key_id, tenant_id, secret_sha256) VALUES (\(key.keyID), \(tenant), \(PostgresBytes(key.secretDigest)))")
                    try TenantOutbox.write(announcement, in: db)
                    try AuditTrail.write([audit], in: db)
                }
            }
        } catch let error as PostgresError where error.isUniqueViolation {
            throw TenantError.conflict("a tenant with id \(new.id) exists already")
        }
        let announced = await relayAfterCommit(publisher)
        logger.info("tenant provisioned", metadata: ["tenant": "\(new.id)", "api_key": "\(key)", "announced": "\(announced)"])
        guard let summary = try await summary(of: new.id) else { throw TenantError.unknownTenant(new.id.description) }
        return ProvisionedTenant(tenant: summary, apiKey: key, announced: announced)
    }

    /// Publishes what the outbox holds right after a commit. A failure is no error of the write:
    /// the event is committed in the outbox, and the relay service publishes it later.
    func relayAfterCommit(_ publisher: Publisher?) async -> Bool {
        guard let publisher else { return false }
        do {
            try await OutboxRelay(source: outbox, publisher: publisher, logger: logger).relayPending()
            return true
        } catch {
            logger.info("event left in the outbox for the relay service", metadata: ["error": "\(error)"])
            return false
        }
    }

    // MARK: Reading

    public func list() async throws -> [TenantSummary] {
        try await summaries(where: nil)
    }

    public func summary(of tenant: Identifier) async throws -> TenantSummary? {
        try await summaries(where: tenant).first
    }

    private func summaries(where tenant: Identifier?) async throws -> [TenantSummary] {
        let id = tenant?.uuid
        let rows = try await retryingOnce { db in
            try db.query("""
                SELECT d.tenant_id, d.name, d.plan, d.time_zone, d.twilio_account_sid, d.twilio_auth_token IS NOT NULL AS has_token,
                       d.twilio_shared_key IS NOT NULL AS has_shared, d.telnyx_public_key IS NOT NULL AS has_telnyx,
                       d.telnyx_api_key IS NOT NULL AS has_telnyx_api_key, d.requests_per_second,
                       d.created_at, (SELECT count(*) FROM tenant_api_keys k WHERE k.tenant_id = d.tenant_id AND k.revoked_at IS NULL) AS keys
                FROM tenant_directory d WHERE \(id)::uuid IS NULL OR d.tenant_id = \(id) ORDER BY d.created_at, d.tenant_id
                """)
        }
        return try rows.map { row in
            TenantSummary(
                id: Identifier(try row.decode(UUID.self, "tenant_id")), name: try row.decode(String.self, "name"), plan: try row.decode(String.self, "plan"),
                timeZone: try row.decode(String.self, "time_zone"), twilioAccountSID: try row.decode(String?.self, "twilio_account_sid"),
                hasTwilioAuthToken: try row.decode(Bool.self, "has_token"), hasTwilioSharedKey: try row.decode(Bool.self, "has_shared"),
                hasTelnyxPublicKey: try row.decode(Bool.self, "has_telnyx"), hasTelnyxAPIKey: try row.decode(Bool.self, "has_telnyx_api_key"),
                requestsPerSecond: try row.decode(Int.self, "requests_per_second"),
                activeAPIKeys: try row.decode(Int.self, "keys"), createdAt: try row.decode(Timestamp.self, "created_at"))
        }
    }

    /// The tenant's credentials with secrets opened, or nil for an unknown tenant.
    public func credentials(of tenant: Identifier) async throws -> TenantCredentials? {
        let id = tenant.uuid
        let rows = try await retryingOnce { db in
            try db.query("""
                SELECT twilio_account_sid, twilio_auth_token, twilio_shared_key, telnyx_public_key, requests_per_second,
                       ai_settings::text AS settings
                FROM tenant_directory WHERE tenant_id = \(id)
                """)
        }
        guard let row = rows.first else { return nil }
        return TenantCredentials(
            tenantID: tenant, twilioAccountSID: try row.decode(String?.self, "twilio_account_sid"),
            twilioAuthToken: try row.decode(PostgresBytes?.self, "twilio_auth_token").map { try secrets.open($0.bytes, tenant: id, field: "twilio_auth_token") },
            twilioSharedKey: try row.decode(PostgresBytes?.self, "twilio_shared_key").map { try secrets.open($0.bytes, tenant: id, field: "twilio_shared_key") },
            telnyxPublicKey: try row.decode(PostgresBytes?.self, "telnyx_public_key")?.bytes,
            requestsPerSecond: try row.decode(Int.self, "requests_per_second"),
            aiSettings: try row.decode(String?.self, "settings").map { text in
                try AISettings(json: try JSONObject.parse(Array(text.utf8), path: "ai_settings"))
            })
    }

    /// The tenant a presented API key belongs to, or nil when the key is unknown or revoked.
    public func authenticate(_ key: APIKey) async throws -> Identifier? {
        let keyID = key.keyID
        let rows = try await retryingOnce { db in
            try db.query("SELECT tenant_id, secret_sha256 FROM tenant_api_keys WHERE key_id = \(keyID) AND revoked_at IS NULL")
        }
        guard let row = rows.first else { return nil }
        let stored = try row.decode(PostgresBytes.self, "secret_sha256").bytes
        guard constantTimeEquals(stored, key.secretDigest) else { return nil }
        return Identifier(try row.decode(UUID.self, "tenant_id"))
    }

    // MARK: Rotation

    /// Issues a new API key and revokes every other key of the tenant; records the rotation in
    /// the audit trail under `request`, in the same transaction (nothing for an unknown tenant).
    public func rotateAPIKey(of tenant: Identifier, request: AuditedRequest = .platformOperator()) async throws -> APIKey {
        let id = tenant.uuid
        let key = APIKey.generate()
        let found = try await retryingOnce { db in
            try db.withTransaction { db -> Bool in
                guard try db.query("SELECT 1 FROM tenant_directory WHERE tenant_id = \(id) FOR UPDATE").count == 1 else { return false }
                // Run again after a lost connection whose first run had committed: the rotation is
                // recorded under this request id, and `key` is the tenant's key already.
                if try db.query("SELECT 1 FROM audit_logs WHERE request_id = \(request.requestID.uuid)").count == 1 { return true }
                let revoked = try db.query("""
                    UPDATE tenant_api_keys SET revoked_at = now() WHERE tenant_id = \(id) AND revoked_at IS NULL RETURNING key_id
                    """).map { try $0.decode(String.self, "key_id") }.sorted()
                try db.query("INSERT INTO tenant_api_keys (key_id, tenant_id, secret_sha256) VALUES (\(key.keyID), \(id), \(PostgresBytes(key.secretDigest)))")
                try AuditTrail.write([AuditEntry(request, tenant: tenant, action: .apiKeyRotate, target: "api-keys/\(key.keyID)", details: JSONObjectWriter.object { json in
                    json.field("api_key_id", key.keyID)
                    json.field("revoked_api_key_ids", revoked)
                })], in: db)
                return true
            }
        }
        guard found else { throw TenantError.unknownTenant(tenant.description) }
        logger.info("API key rotated", metadata: ["tenant": "\(tenant)", "api_key": "\(key)"])
        return key
    }

    /// Replaces the given credentials; the others stay. Records the change (which credentials,
    /// never their values) in the audit trail under `request`, in the same transaction (nothing
    /// for an unknown tenant).
    public func update(_ tenant: Identifier, _ change: CredentialChange, request: AuditedRequest = .platformOperator()) async throws {
        let id = tenant.uuid
        if let rate = change.requestsPerSecond, rate <= 0 { throw TenantError.invalid(field: "requests_per_second", reason: "must be positive") }
        let authToken = try change.twilioAuthToken.map { PostgresBytes(try secrets.seal(Array($0.utf8), tenant: id, field: "twilio_auth_token")) }
        let sharedKey = try change.twilioSharedKey.map { PostgresBytes(try secrets.seal(Array($0.utf8), tenant: id, field: "twilio_shared_key")) }
        let telnyxKey = try change.telnyxPublicKey.map { PostgresBytes(try Self.ed25519PublicKey($0)) }
        let telnyxAPIKey = try change.telnyxAPIKey.map { PostgresBytes(try secrets.seal(try Self.telnyxAPIKeyBytes($0), tenant: id, field: "telnyx_api_key")) }
        let sid = change.twilioAccountSID
        let rate = change.requestsPerSecond
        let audit = AuditEntry(request, tenant: tenant, action: .credentialsChange, target: "tenants/\(tenant)", details: JSONObjectWriter.object { json in
            json.field("changed", change.named)
        })
        // Safe to run again after a lost connection: the same values, and the audit row once per request id.
        let updated = try await retryingOnce { db in
            try db.withTransaction { db -> Int in
                let updated = try db.query("""
                UPDATE tenant_directory SET
                  twilio_account_sid = COALESCE(\(sid), twilio_account_sid),
                  twilio_auth_token = COALESCE(\(authToken), twilio_auth_token),
                  twilio_shared_key = COALESCE(\(sharedKey), twilio_shared_key),
                  telnyx_public_key = COALESCE(\(telnyxKey), telnyx_public_key),
                  telnyx_api_key = COALESCE(\(telnyxAPIKey), telnyx_api_key),
                  requests_per_second = COALESCE(\(rate), requests_per_second),
                  updated_at = now()
                WHERE tenant_id = \(id)
                """).affectedRows
                if updated == 1 { try AuditTrail.write([audit], in: db) }
                return updated
            }
        }
        guard updated == 1 else { throw TenantError.unknownTenant(tenant.description) }
        logger.info("tenant credentials changed", metadata: ["tenant": "\(tenant)", "request": "\(request.requestID)"])
    }

    // MARK: Helpers

    /// A Telnyx API key as stored: its UTF-8 bytes, checked to be one token a `Bearer` header can carry.
    static func telnyxAPIKeyBytes(_ text: String) throws(TenantError) -> [UInt8] {
        let key = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !key.isEmpty, key.utf8.count <= 512, key.utf8.allSatisfy({ $0 > 32 && $0 < 127 }) else {
            throw TenantError.invalid(field: "telnyx_api_key", reason: "must be a Telnyx API key (v2, as the Telnyx portal shows it): printable ASCII without spaces")
        }
        return Array(key.utf8)
    }

    /// Decodes a Telnyx public key: base64 of the 32-byte Ed25519 key.
    static func ed25519PublicKey(_ text: String) throws(TenantError) -> [UInt8] {
        guard let data = Data(base64Encoded: text.trimmingCharacters(in: .whitespacesAndNewlines)), data.count == 32 else {
            throw TenantError.invalid(field: "telnyx_public_key", reason: "must be the base64 of a 32-byte Ed25519 public key (as the Telnyx portal shows it)")
        }
        return Array(data)
    }

    /// Runs `body`; once more when the connection was found lost at it (the second run
    /// reconnects by itself). For reads and idempotent writes only.
    func retryingOnce<T: Sendable>(_ body: @Sendable (isolated PostgresConnection) throws -> T) async throws -> T {
        do {
            return try await db.withConnection(body)
        } catch let error as PostgresError where error.code == .connection {
            return try await db.withConnection(body)
        }
    }
}
