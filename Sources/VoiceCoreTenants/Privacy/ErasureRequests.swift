import Crypto
import Foundation
import Logging
import VoiceCoreEvents
import VoiceCorePostgres
import VoiceCoreTime

/// Who is to be erased: a caller named by one identifier of theirs.
///
/// Made with ``parse(kind:value:field:)``, which checks and normalises it: a phone number as given
/// (E.164 required), an e-mail address lower-cased, a contact id as a UUID.
public enum ErasureIdentifier: Sendable, Hashable {
    case phone(String)
    case email(String)
    case contact(Identifier)

    /// The kinds of identifier, as stored in `privacy_erasures.identifier_kind` and published in
    /// `CallerErased.identifier_kind`.
    public enum Kind: String, Sendable, Hashable, CaseIterable {
        case phone, email, contact
    }

    public var kind: Kind {
        switch self {
        case .phone: .phone
        case .email: .email
        case .contact: .contact
        }
    }

    /// The normalised text that is hashed and sealed.
    public var normalised: String {
        switch self {
        case .phone(let phone): phone
        case .email(let email): email
        case .contact(let id): id.description.lowercased()
        }
    }

    /// Checks and normalises `value` as an identifier of `kind`.
    /// - Parameter field: named in the error (`body.phone`, `--phone`).
    /// - Throws: ``PrivacyRequestError/invalid(field:reason:)``.
    public static func parse(kind: Kind, value: String, field: String) throws(PrivacyRequestError) -> ErasureIdentifier {
        switch kind {
        case .phone:
            let digits = value.utf8.dropFirst()
            guard value.utf8.first == UInt8(ascii: "+"), (2...15).contains(digits.count), digits.first != UInt8(ascii: "0"),
                  digits.allSatisfy({ (48...57).contains($0) }) else {
                throw .invalid(field: field, reason: "must be a phone number in E.164, such as +14155550123")
            }
            // Erased calls hold this placeholder (reserved country code 999): it names nobody.
            guard value != Erased.phone else {
                throw .invalid(field: field, reason: "is the placeholder erased numbers are replaced with (\(Erased.phone)), nobody's number")
            }
            return .phone(value)
        case .email:
            let parts = value.split(separator: "@", omittingEmptySubsequences: false)
            guard value.unicodeScalars.count <= Storable.emailLength, parts.count == 2, !parts[0].isEmpty, parts[1].contains("."),
                  !parts[1].hasPrefix("."), !parts[1].hasSuffix("."),
                  !value.unicodeScalars.contains(where: { $0.properties.isWhitespace || $0.properties.generalCategory == .control }) else {
                throw .invalid(field: field, reason: "must be an e-mail address (local@domain.tld, at most \(Storable.emailLength) characters)")
            }
            return .email(value.lowercased())
        case .contact:
            guard let id = Identifier(value) else { throw .invalid(field: field, reason: "must be a contact id (a UUID)") }
            return .contact(id)
        }
    }
}

/// Why an erasure was not asked for. Messages never contain the identifier.
public enum PrivacyRequestError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The identifier is malformed, or not exactly one was given (the edge answers 400 naming the field).
    case invalid(field: String, reason: String)
    /// Nothing of the tenant (no call, contact, lead or interaction) matches the identifier (404).
    case nothingMatches(ErasureIdentifier.Kind)
    /// No tenant with this id.
    case unknownTenant(Identifier)
    /// The privacy tables are missing (migration 0017 not applied).
    case notMigrated
    /// Postgres could not be asked (unreachable, or refused the statement); the reason is safe to show.
    case unavailable(String)

    public var description: String {
        switch self {
        case .invalid(let field, let reason): "\(field) \(reason)"
        case .nothingMatches(let kind):
            "nothing of this tenant matches this \(kind == .contact ? "contact id" : kind == .email ? "e-mail address" : "phone number") (no call, contact, lead or interaction): there is nothing to erase"
        case .unknownTenant(let tenant): "no tenant \(tenant) in the directory (list them with `voicecore tenants list`)"
        case .notMigrated: "the privacy tables are missing: run `voicecore migrate up` first"
        case .unavailable(let reason): "the database is unavailable: \(reason)"
        }
    }
}

/// What an erasure has done so far (a row of `privacy_erasures`, without the identifier).
public struct ErasureStatus: Sendable, Hashable {
    /// The states an erasure goes through, in order (see `CallerEraser` in VoiceCoreProjections).
    public enum State: String, Sendable, Hashable, CaseIterable {
        /// Asked for; the caller's calls, contacts and leads are not resolved yet.
        case pending
        /// Waits for a call in progress to end, or for a reader to process what was published (``ErasureStatus/waitingFor``).
        case waiting
        /// Redacting the read models and the archive.
        case erasing
        /// Deleting stream entries and Redis state, rewriting Redis's append-only file.
        case purging
        /// Done: `CallerErased` is published.
        case completed
    }

    /// The count keys every erasure reports (one spelling everywhere: status JSON, `CallerErased`,
    /// the audit trail).
    public static let countKeys = CallerErased.Count.allCases.map(\.rawValue)

    public var erasureID: Identifier
    public var tenantID: Identifier
    public var identifierKind: ErasureIdentifier.Kind
    /// ``ErasureRequests/hash(_:tenant:)`` of the identifier: 64 hex digits.
    public var identifierHash: String
    public var state: State
    /// Why it waits (a call in progress, a reader behind), while ``state`` is `waiting`.
    public var waitingFor: String?
    /// What was erased so far, by ``countKeys``.
    public var counts: [String: Int]
    public var requestedAt: Timestamp
    public var updatedAt: Timestamp
    public var completedAt: Timestamp?

    public init(erasureID: Identifier, tenantID: Identifier, identifierKind: ErasureIdentifier.Kind, identifierHash: String, state: State,
                waitingFor: String?, counts: [String: Int], requestedAt: Timestamp, updatedAt: Timestamp, completedAt: Timestamp?) {
        self.erasureID = erasureID
        self.tenantID = tenantID
        self.identifierKind = identifierKind
        self.identifierHash = identifierHash
        self.state = state
        self.waitingFor = waitingFor
        self.counts = counts
        self.requestedAt = requestedAt
        self.updatedAt = updatedAt
        self.completedAt = completedAt
    }

    /// The status JSON of the API and `voicecore privacy … --json`: `id`, `state`, `waiting_for`
    /// (absent unless waiting), `identifier_kind`, `identifier_hash`, `counts` (every key of
    /// ``countKeys``), `requested_at`, `updated_at`, `completed_at` (absent until completed).
    public var json: [UInt8] {
        JSONObjectWriter.object { json in
            json.field("id", erasureID)
            json.field("state", state)
            json.field("waiting_for", waitingFor)
            json.field("identifier_kind", identifierKind)
            json.field("identifier_hash", identifierHash)
            // Every key of `countKeys`, 0 where nothing is counted yet.
            json.field("counts", Dictionary(uniqueKeysWithValues: Self.countKeys.map { ($0, counts[$0] ?? 0) }))
            json.field("requested_at", requestedAt)
            json.field("updated_at", updatedAt)
            json.field("completed_at", completedAt)
        }
    }
}

/// Asks for caller erasures and reports their state (`privacy_erasures`, migration 0017); the
/// erasure itself is `CallerEraser`'s work (VoiceCoreProjections), run by the privacy service.
///
/// A request is checked before anything is stored: the identifier must be well formed (400) and
/// match something of the tenant in the read models (404 otherwise: an identifier that matches
/// nothing is refused, not silently accepted). An erasure still open for the same identifier is
/// answered as it is, so asking twice erases once. A new erasure is stored `pending` together with
/// its audit row (`privacy.erase`, outcome `accepted`) in one transaction.
///
/// The identifier is never stored, logged or returned in clear: the row keeps a keyed hash
/// (``hash(_:tenant:)``) and the identifier sealed under the master key for the eraser (cleared
/// when the erasure completes). Runs on the tenant directory's Postgres connection (its own
/// thread).
///
/// ```swift
/// let requests = ErasureRequests(directory: directory)
/// let (status, created) = try await requests.request(tenant: tenant, identifier: .phone("+14155550100"),
///                                                    actor: .platformOperator, requestID: .v7())
/// ```
public final class ErasureRequests: Sendable {
    let directory: TenantDirectory

    /// The sealed identifier's field name (its authenticated data binds it to the tenant and this name).
    public static let sealedField = "privacy.identifier"
    /// The HKDF info of the identifier hash's key.
    static let hashKeyPurpose = "voicecore.privacy.identifier-hash"

    public init(directory: TenantDirectory) {
        self.directory = directory
    }

    // MARK: Hash and seal

    /// `hex(HMAC-SHA256(HKDF-SHA256(master key, info "voicecore.privacy.identifier-hash"),
    /// "<tenant uuid>|<kind>|<normalised identifier>"))`: the same caller of the same tenant always
    /// hashes alike, and nobody without the master key can test a guess against it.
    public func hash(_ identifier: ErasureIdentifier, tenant: Identifier) -> String {
        let message = "\(tenant.description.lowercased())|\(identifier.kind.rawValue)|\(identifier.normalised)"
        let mac = HMAC<SHA256>.authenticationCode(for: Array(message.utf8), using: directory.secrets.derivedKey(purpose: Self.hashKeyPurpose))
        return mac.map { String(format: "%02x", $0) }.joined()
    }

    /// The identifier sealed for `privacy_erasures.identifier_sealed`.
    public func seal(_ identifier: ErasureIdentifier, tenant: Identifier) throws -> [UInt8] {
        try directory.secrets.seal(Array(identifier.normalised.utf8), tenant: tenant.uuid, field: Self.sealedField)
    }

    /// Opens `privacy_erasures.identifier_sealed` (the eraser resolves the caller with it).
    /// - Throws: `TenantError.undecryptable` (another master key, or an altered row);
    ///   ``PrivacyRequestError`` when what opens is not an identifier of `kind`.
    public func openIdentifier(_ sealed: [UInt8], kind: ErasureIdentifier.Kind, tenant: Identifier) throws -> ErasureIdentifier {
        let text = String(decoding: try directory.secrets.open(sealed, tenant: tenant.uuid, field: Self.sealedField), as: UTF8.self)
        return try ErasureIdentifier.parse(kind: kind, value: text, field: "identifier_sealed")
    }

    // MARK: Requests

    /// Asks for the erasure of `identifier`'s caller of `tenant` (see the type's summary).
    /// - Parameters:
    ///   - actor: who asks (the audit row's actor).
    ///   - requestID: the request's id (`X-Request-Id`): the audit row's key; the same request run
    ///     again after a lost connection finds its erasure.
    /// - Returns: the erasure, and whether this call created it (false: an open erasure of the same
    ///   identifier, answered as it is).
    public func request(tenant: Identifier, identifier: ErasureIdentifier, actor: AuditActor,
                        requestID: Identifier) async throws(PrivacyRequestError) -> (status: ErasureStatus, created: Bool) {
        let identifierHash = hash(identifier, tenant: tenant)
        let sealed: [UInt8]
        do {
            sealed = try seal(identifier, tenant: tenant)
        } catch {
            throw .unavailable("the identifier could not be sealed")
        }
        let erasure = Identifier.v7()
        let kind = identifier.kind
        let audit = AuditEntry(AuditedRequest(actor: actor, requestID: requestID), tenant: tenant, action: .privacyErase,
                               target: "privacy/erasures/\(erasure)", outcome: .accepted, details: JSONObjectWriter.object { json in
                                   json.field("erasure_id", erasure)
                                   json.field("identifier_kind", kind)
                                   json.field("identifier_hash", identifierHash)
                               })
        let outcome: Result<(ErasureStatus, Bool), PrivacyRequestError> = try await database { db in
            try db.withTransaction { db -> Result<(ErasureStatus, Bool), PrivacyRequestError> in
                // The same request again (its first run committed, then the connection was lost).
                if let again = try Self.statuses(db, tenant: tenant, where: .request(requestID)).first { return .success((again, true)) }
                if let open = try Self.statuses(db, tenant: tenant, where: .openWithHash(identifierHash)).first { return .success((open, false)) }
                guard try db.query("SELECT 1 FROM tenant_directory WHERE tenant_id = \(tenant.uuid)").count == 1 else {
                    return .failure(.unknownTenant(tenant))
                }
                guard try Self.matches(db, tenant: tenant, identifier: identifier) else { return .failure(.nothingMatches(kind)) }
                // A concurrent request for the same caller may have committed since: the partial
                // unique index keeps one open erasure, and the loser answers the winner's.
                let inserted = try db.query("""
                    INSERT INTO privacy_erasures (erasure_id, tenant_id, identifier_kind, identifier_hash, identifier_sealed, state, actor, api_key_id,
                                                  request_id, counts, requested_at, updated_at)
                    VALUES (\(erasure.uuid), \(tenant.uuid), \(kind.rawValue), \(identifierHash), \(PostgresBytes(sealed)), 'pending', \(actor.kind.rawValue),
                            \(actor.apiKeyID), \(requestID.uuid), '{}', now(), now())
                    ON CONFLICT (tenant_id, identifier_hash) WHERE state <> 'completed' DO NOTHING
                    """).affectedRows
                if inserted == 0, let open = try Self.statuses(db, tenant: tenant, where: .openWithHash(identifierHash)).first { return .success((open, false)) }
                try AuditTrail.write([audit], in: db)
                guard let created = try Self.statuses(db, tenant: tenant, where: .erasure(erasure)).first else {
                    return .failure(.unavailable("the erasure was not stored"))
                }
                return .success((created, true))
            }
        }
        let (status, created) = try outcome.get()
        if created {
            directory.logger.info("caller erasure requested", metadata: ["tenant": "\(tenant)", "erasure": "\(status.erasureID)",
                                                                         "identifier_hash": "\(identifierHash)", "actor": "\(actor)"])
        }
        return (status, created)
    }

    /// The erasure `erasure` of `tenant`; nil when there is none (also for another tenant's erasure).
    public func status(tenant: Identifier, erasure: Identifier) async throws(PrivacyRequestError) -> ErasureStatus? {
        try await database { db in try Self.statuses(db, tenant: tenant, where: .erasure(erasure)).first }
    }

    /// The tenant's erasures, newest first.
    public func list(tenant: Identifier, limit: Int = 50) async throws(PrivacyRequestError) -> [ErasureStatus] {
        try await database { db in try Self.statuses(db, tenant: tenant, where: .all(limit: limit)) }
    }

    // MARK: Postgres

    /// Runs `body` on the directory's connection (once more after a lost connection: every
    /// statement here is a read or keyed by the request id), with Postgres's failures as
    /// ``PrivacyRequestError``.
    private func database<T: Sendable>(_ body: @Sendable (isolated PostgresConnection) throws -> T) async throws(PrivacyRequestError) -> T {
        do {
            return try await directory.retryingOnce(body)
        } catch let error as PostgresError where error.sqlState == "42P01" {
            throw .notMigrated
        } catch let error as PostgresError {
            directory.logger.warning("privacy request failed in Postgres", metadata: ["error": "\(error)"])
            throw .unavailable(error.isOutage ? "Postgres is unreachable" : "Postgres refused the statement (SQLSTATE \(error.sqlState ?? "none"))")
        } catch {
            throw .unavailable("\(error)")
        }
    }

    private enum Selection {
        case erasure(Identifier)
        case request(Identifier)
        case openWithHash(String)
        case all(limit: Int)
    }

    private static func statuses(_ db: isolated PostgresConnection, tenant: Identifier, where selection: Selection) throws -> [ErasureStatus] {
        var erasure: UUID?, request: UUID?, hash: String?, limit = 1
        switch selection {
        case .erasure(let id): erasure = id.uuid
        case .request(let id): request = id.uuid
        case .openWithHash(let value): hash = value
        case .all(let count): limit = count
        }
        let rows = try db.query("""
            SELECT erasure_id, tenant_id, identifier_kind, identifier_hash, state, waiting_for, counts::text AS counts,
                   requested_at, updated_at, completed_at
            FROM privacy_erasures
            WHERE tenant_id = \(tenant.uuid)
              AND (\(erasure)::uuid IS NULL OR erasure_id = \(erasure))
              AND (\(request)::uuid IS NULL OR request_id = \(request))
              AND (\(hash)::text IS NULL OR (identifier_hash = \(hash) AND state <> 'completed'))
            ORDER BY requested_at DESC, erasure_id DESC
            LIMIT \(limit)
            """)
        return try rows.map { row in
            let kindText = try row.decode(String.self, "identifier_kind")
            let stateText = try row.decode(String.self, "state")
            guard let kind = ErasureIdentifier.Kind(rawValue: kindText), let state = ErasureStatus.State(rawValue: stateText) else {
                throw PostgresError(code: .decoding, message: "privacy_erasures holds an unknown identifier kind or state (\(kindText), \(stateText))")
            }
            var counts: [String: Int] = [:]
            let countsJSON = try JSONValue.object(parsing: Array(try row.decode(String.self, "counts").utf8), path: "counts")
            for (key, value) in countsJSON {
                if case .number(let text) = value, let number = Int(text) { counts[key] = number }
            }
            return ErasureStatus(
                erasureID: Identifier(try row.decode(UUID.self, "erasure_id")), tenantID: Identifier(try row.decode(UUID.self, "tenant_id")),
                identifierKind: kind, identifierHash: try row.decode(String.self, "identifier_hash"), state: state,
                waitingFor: try row.decode(String?.self, "waiting_for"), counts: counts,
                requestedAt: try row.decode(Timestamp.self, "requested_at"), updatedAt: try row.decode(Timestamp.self, "updated_at"),
                completedAt: try row.decode(Timestamp?.self, "completed_at"))
        }
    }

    /// Whether anything of the tenant in the read models matches: calls by their from or to
    /// number, contacts and leads by phone, e-mail (any case) or contact id, interactions by
    /// contact. A contact id matches only while something personal of it is left (an erased
    /// contact keeps its row, its id and nothing else): erased already is nothing to erase.
    static func matches(_ db: isolated PostgresConnection, tenant: Identifier, identifier: ErasureIdentifier) throws -> Bool {
        let id = tenant.uuid
        let rows: PostgresRows
        switch identifier {
        case .phone(let phone):
            rows = try db.query("""
                SELECT EXISTS (SELECT 1 FROM call_sessions WHERE tenant_id = \(id) AND from_number = \(phone))
                    OR EXISTS (SELECT 1 FROM call_sessions WHERE tenant_id = \(id) AND direction = 'outbound' AND to_number = \(phone))
                    OR EXISTS (SELECT 1 FROM crm_contacts WHERE tenant_id = \(id) AND phone = \(phone))
                    OR EXISTS (SELECT 1 FROM leads WHERE tenant_id = \(id) AND phone = \(phone)) AS found
                """)
        case .email(let email):
            rows = try db.query("""
                SELECT EXISTS (SELECT 1 FROM crm_contacts WHERE tenant_id = \(id) AND email_key = \(email))
                    OR EXISTS (SELECT 1 FROM leads WHERE tenant_id = \(id) AND lower(email) = \(email)) AS found
                """)
        case .contact(let contact):
            rows = try db.query("""
                SELECT EXISTS (SELECT 1 FROM crm_contacts WHERE tenant_id = \(id) AND contact_id = \(contact.uuid)
                                 AND (name IS NOT NULL OR phone IS NOT NULL OR email IS NOT NULL))
                    OR EXISTS (SELECT 1 FROM leads WHERE tenant_id = \(id) AND contact_id = \(contact.uuid)
                                 AND (name IS NOT NULL OR phone IS NOT NULL OR email IS NOT NULL OR notes IS NOT NULL))
                    OR EXISTS (SELECT 1 FROM interactions i WHERE i.tenant_id = \(id) AND i.contact_id = \(contact.uuid)
                                 AND (i.summary IS NOT NULL OR EXISTS (
                                   SELECT 1 FROM call_sessions s WHERE s.tenant_id = \(id) AND s.call_id = i.call_id
                                     AND (s.from_number IS NOT NULL OR s.to_number IS NOT NULL)))) AS found
                """)
        }
        return try rows[0].decode(Bool.self, "found")
    }
}
