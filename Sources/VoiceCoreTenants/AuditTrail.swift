import VoiceCoreEvents
import VoiceCorePostgres
import VoiceCoreTime

/// Who made a change recorded in the audit trail (`audit_logs`, migration 0010): the admin key,
/// an operator using the tenant directory directly, or a tenant API key named by its public key
/// id — never by the key.
public struct AuditActor: Sendable, Hashable, CustomStringConvertible {
    /// The kinds of actor, as stored in `audit_logs.actor`.
    public enum Kind: String, Sendable, Hashable, CaseIterable {
        /// The admin API (`Authorization: Bearer $VOICECORE_ADMIN_KEY`); that key has no id.
        case admin
        /// The directory used directly: `voicecore tenants`, `voicecore up`'s demo tenant.
        case platformOperator = "operator"
        /// A tenant API key (``APIKey/keyID``).
        case apiKey = "api_key"
        /// The platform itself, unasked: a retention run (migration 0017).
        case system
    }

    public let kind: Kind
    /// The public id of the tenant API key (16 hex digits) for ``Kind/apiKey``; nil otherwise, and
    /// nil for a command from an edge that did not name its key yet (`source` `/edge/api`).
    public let apiKeyID: String?

    public static let admin = AuditActor(kind: .admin, apiKeyID: nil)
    public static let platformOperator = AuditActor(kind: .platformOperator, apiKeyID: nil)
    public static let system = AuditActor(kind: .system, apiKeyID: nil)

    /// A tenant API key by its id (``APIKey/keyID``).
    public static func apiKey(_ keyID: String) -> AuditActor { AuditActor(kind: .apiKey, apiKeyID: keyID) }

    private init(kind: Kind, apiKeyID: String?) {
        self.kind = kind
        self.apiKeyID = apiKeyID
    }

    public var description: String { apiKeyID.map { "\(kind.rawValue):\($0)" } ?? kind.rawValue }

    // MARK: Commands of the tenant API

    /// The CloudEvents `source` of every command the tenant API publishes: `/edge/api`, and, since
    /// the audit trail, `/edge/api/keys/<key id>` naming the API key that asked for it.
    public static let tenantAPISource = "/edge/api"

    /// The `source` of a command asked for with the API key `keyID`: `/edge/api/keys/<key id>`.
    public static func tenantAPISource(keyID: String) -> String { "\(tenantAPISource)/keys/\(keyID)" }

    /// The actor named by a command's `source`; nil when the command did not come from the tenant
    /// API (a service's own command, e.g. the AI service's CreateLead), or names something that is
    /// not a key id.
    public init?(commandSource source: String) {
        if source == Self.tenantAPISource {
            self.init(kind: .apiKey, apiKeyID: nil)
            return
        }
        let prefix = Self.tenantAPISource + "/keys/"
        guard source.hasPrefix(prefix) else { return nil }
        let keyID = source.dropFirst(prefix.count)
        guard keyID.utf8.count == 16, keyID.utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }) else { return nil }
        self.init(kind: .apiKey, apiKeyID: String(keyID))
    }
}

/// What a recorded change asked for, as stored in `audit_logs.action`.
public enum AuditAction: String, Sendable, Hashable, CaseIterable {
    /// `POST /admin/tenants`.
    case tenantProvision = "tenant.provision"
    /// `POST /admin/tenants/{id}/api-keys`.
    case apiKeyRotate = "api_key.rotate"
    /// `PATCH /admin/tenants/{id}`.
    case credentialsChange = "tenant.credentials.change"
    /// `POST /v1/leads`.
    case leadCreate = "lead.create"
    /// `PUT /v1/contacts/{id}`.
    case contactUpdate = "contact.update"
    /// `PUT /v1/settings`.
    case settingsChange = "settings.change"
    /// `POST /v1/privacy/erasures`, `voicecore privacy erase`: a caller's erasure asked for
    /// (outcome `accepted`) and, under a request id derived from the erasure's, completed.
    case privacyErase = "privacy.erase"
    /// A retention run erased what a tenant keeps no longer (actor `system`).
    case privacyRetention = "privacy.retention"
}

/// How a recorded change ended, as stored in `audit_logs.outcome`. A change that is refused or
/// rolled back is not recorded: the row is written with the change or not at all.
public enum AuditOutcome: String, Sendable, Hashable, CaseIterable {
    /// The change is committed (in the row's own transaction).
    case succeeded
    /// A command was taken onto its stream; its service applies it.
    case accepted
}

/// The request a change belongs to: who asked, and the id the edge gave the request (answered in
/// `X-Request-Id`; the trail has one row per request id).
public struct AuditedRequest: Sendable, Hashable {
    public var actor: AuditActor
    public var requestID: Identifier

    public init(actor: AuditActor, requestID: Identifier = .v7()) {
        self.actor = actor
        self.requestID = requestID
    }

    /// A change made with the directory directly (the CLI), under a request id of its own.
    public static func platformOperator() -> AuditedRequest { AuditedRequest(actor: .platformOperator) }
}

/// One row of the audit trail.
public struct AuditEntry: Sendable, Hashable {
    public var tenant: Identifier
    public var actor: AuditActor
    public var action: AuditAction
    /// What it changed, path-like: `tenants/<id>`, `api-keys/<key id>`, `leads/<id>`,
    /// `contacts/<id>`, `settings`, `privacy/erasures/<id>`.
    public var target: String
    public var requestID: Identifier
    public var at: Timestamp
    public var outcome: AuditOutcome
    /// A JSON object naming what changed: field names and public ids, never a secret or a
    /// caller's personal data (the trail is kept whole; an erasure does not rewrite it).
    public var details: [UInt8]

    public init(tenant: Identifier, actor: AuditActor, action: AuditAction, target: String, requestID: Identifier, at: Timestamp,
                outcome: AuditOutcome, details: [UInt8]) {
        self.tenant = tenant
        self.actor = actor
        self.action = action
        self.target = target
        self.requestID = requestID
        self.at = at
        self.outcome = outcome
        self.details = details
    }

    /// An entry of `request`.
    public init(_ request: AuditedRequest, tenant: Identifier, action: AuditAction, target: String, at: Timestamp = .now,
                outcome: AuditOutcome = .succeeded, details: [UInt8]) {
        self.init(tenant: tenant, actor: request.actor, action: action, target: target, requestID: request.requestID, at: at,
                  outcome: outcome, details: details)
    }
}

/// Writes the audit trail (`audit_logs`), always inside the caller's transaction: the transaction
/// of the change itself (the directory), or of the checkpoint of the commands it records (the
/// `audit` projection).
public enum AuditTrail {
    /// Adds `entries` in one statement. Idempotent: an entry whose request id is recorded already
    /// (a transaction run again, a command delivered twice) adds nothing.
    public static func write(_ entries: [AuditEntry], in db: isolated PostgresConnection) throws {
        guard !entries.isEmpty else { return }
        try db.write("""
            INSERT INTO audit_logs (tenant_id, actor, api_key_id, action, target, request_id, at, outcome, details)
            SELECT * FROM unnest(\(entries.map(\.tenant.uuid))::uuid[], \(entries.map(\.actor.kind.rawValue))::text[],
                                 \(entries.map(\.actor.apiKeyID))::text[], \(entries.map(\.action.rawValue))::text[],
                                 \(entries.map(\.target))::text[], \(entries.map(\.requestID.uuid))::uuid[], \(entries.map(\.at))::timestamptz[],
                                 \(entries.map(\.outcome.rawValue))::text[], \(entries.map { PostgresJSON(rawJSON: $0.details) })::jsonb[])
            ON CONFLICT (request_id) DO NOTHING
            """)
    }
}
