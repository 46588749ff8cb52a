import Crypto
import Foundation
import Logging
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCorePostgres
import VoiceCoreTime

/// What the platform's services need to know about a tenant (migration 0004).
public struct TenantProfile: Sendable {
    public var tenantID: Identifier
    public var plan: Plan
    public var timeZone: String
    /// `nil`: the tenant has not changed the built-in defaults.
    public var aiSettings: AISettings?
    public var webhooks: [OutboundWebhook]
}

/// A tenant's outbound webhook, delivered by the integrations service.
public struct OutboundWebhook: Sendable, Hashable {
    public enum Format: String, Sendable, Hashable, CaseIterable {
        /// The event as JSON: `{"id", "type", "tenant_id", "time", "data"}`.
        case json
        /// A Slack-compatible incoming-webhook message: `{"text": "…"}`.
        case slack
    }

    public var id: Identifier
    public var tenantID: Identifier
    public var url: String
    public var format: Format
    /// Event types delivered (e.g. `voicecore.crm.lead-created`).
    public var eventTypes: [String]
    /// The HMAC-SHA256 key of `X-VoiceCore-Signature`: the UTF-8 bytes of `whsec_` and 64 hex digits.
    public var signingSecret: [UInt8]
}

extension TenantDirectory {
    /// The event types a webhook may subscribe to (and a new webhook's, unless it names others):
    /// each by its CloudEvents type, so `call.summarized` is `voicecore.call.summarized`.
    /// `privacy.caller-erased` tells the tenant's own systems which calls, contacts and leads to
    /// erase from their copies (it carries ids, counts and a hash, no personal data).
    public static let webhookEventTypes = [LeadCreated.type, CallEnded.type, CallSummarized.type, CallerErased.type]

    /// An event type as a webhook names it: its CloudEvents type, or that type without the
    /// `voicecore.` prefix (`call.summarized`), which is taken with it.
    public static func webhookEventType(_ name: String) -> String {
        name.hasPrefix("voicecore.") ? name : "voicecore." + name
    }

    /// The tenant's plan, time zone, AI settings and active webhooks; nil for an unknown tenant.
    public func profile(of tenant: Identifier) async throws -> TenantProfile? {
        let id = tenant.uuid
        let (rows, hooks) = try await retryingOnce { db in
            (try db.query("SELECT plan, time_zone, ai_settings::text AS settings FROM tenant_directory WHERE tenant_id = \(id)"),
             try db.query("""
                SELECT webhook_id, url, format, array_to_string(event_types, ',') AS types, signing_secret
                FROM tenant_webhooks WHERE tenant_id = \(id) AND disabled_at IS NULL ORDER BY created_at, webhook_id
                """))
        }
        guard let row = rows.first else { return nil }
        let settings = try row.decode(String?.self, "settings").map { text -> AISettings in
            try AISettings(json: try JSONObject.parse(Array(text.utf8), path: "ai_settings"))
        }
        let webhooks = try hooks.map { hook in
            let webhookID = try hook.decode(UUID.self, "webhook_id")
            return OutboundWebhook(
                id: Identifier(webhookID), tenantID: tenant, url: try hook.decode(String.self, "url"),
                format: OutboundWebhook.Format(rawValue: try hook.decode(String.self, "format")) ?? .json,
                eventTypes: try hook.decode(String.self, "types").split(separator: ",").map(String.init),
                signingSecret: try secrets.open(try hook.decode(PostgresBytes.self, "signing_secret").bytes, tenant: id, field: "webhook_secret:\(webhookID)"))
        }
        return TenantProfile(tenantID: tenant, plan: Plan(rawValue: try row.decode(String.self, "plan")) ?? .starter,
                             timeZone: try row.decode(String.self, "time_zone"), aiSettings: settings, webhooks: webhooks)
    }

    /// Stores the tenant's AI settings and, in the same transaction, the `TenantSettingsChanged`
    /// that announces them (the outbox); then relays it with `publisher` (the tenants service, on
    /// a ChangeSettings command). Safe to repeat: a command handled again stores the same
    /// settings, and its announcement, written again under the same deduplication key, reaches
    /// the stream once. Returns whether the announcement was on its stream when this returned.
    @discardableResult
    public func setAISettings(_ settings: AISettings, of tenant: Identifier, announcing announcement: OutboxMessage,
                              publisher: Publisher?) async throws -> Bool {
        let id = tenant.uuid
        let json = PostgresJSON(rawJSON: JSONObjectWriter.object { settings.writeJSON(to: &$0) })
        let updated = try await retryingOnce { db in
            try db.withTransaction { db -> Int in
                // The UPDATE locks the tenant's row before the outbox entry is added, so this
                // tenant's announcements are relayed in the order their changes committed.
                let updated = try db.query("UPDATE tenant_directory SET ai_settings = \(json)::jsonb, updated_at = now() WHERE tenant_id = \(id)").affectedRows
                if updated == 1 { try TenantOutbox.write(announcement, in: db) }
                return updated
            }
        }
        guard updated == 1 else { throw TenantError.unknownTenant(tenant.description) }
        return await relayAfterCommit(publisher)
    }

    /// Adds an outbound webhook and returns it with its new signing secret (shown once).
    public func addWebhook(to tenant: Identifier, url: String, format: OutboundWebhook.Format = .json,
                           eventTypes: [String] = TenantDirectory.webhookEventTypes) async throws -> OutboundWebhook {
        guard let parsed = URL(string: url), let scheme = parsed.scheme?.lowercased(), scheme == "http" || scheme == "https", parsed.host != nil else {
            throw TenantError.invalid(field: "url", reason: "must be an http:// or https:// URL")
        }
        guard !eventTypes.isEmpty else { throw TenantError.invalid(field: "events", reason: "name at least one event type") }
        let eventTypes = eventTypes.map(Self.webhookEventType)
        if let unknown = eventTypes.first(where: { !Self.webhookEventTypes.contains($0) }) {
            throw TenantError.invalid(field: "events", reason: "\(unknown) is not deliverable; use \(Self.webhookEventTypes.joined(separator: ", "))")
        }
        let webhook = OutboundWebhook(id: .v7(), tenantID: tenant, url: url, format: format, eventTypes: eventTypes,
                                      signingSecret: Array(("whsec_" + SymmetricKey(size: .bits256).withUnsafeBytes { $0.map { String(format: "%02x", $0) }.joined() }).utf8))
        let id = tenant.uuid
        let sealed = PostgresBytes(try secrets.seal(webhook.signingSecret, tenant: id, field: "webhook_secret:\(webhook.id.uuid)"))
        let webhookID = webhook.id.uuid
        let format = format.rawValue
        do {
            _ = try await retryingOnce { db in
                try db.query("""
                    INSERT INTO tenant_webhooks (webhook_id, tenant_id, url, format, event_types, signing_secret)
                    VALUES (\(webhookID), \(id), \(url), \(format), \(eventTypes)::text[], \(sealed))
                    """)
            }
        } catch let error as PostgresError where error.sqlState == "23503" {
            throw TenantError.unknownTenant(tenant.description)
        }
        // The URL's path may be a credential (Slack's are): log the host only.
        logger.info("webhook added", metadata: ["tenant": "\(tenant)", "webhook": "\(webhook.id)", "host": "\(parsed.host ?? "")"])
        return webhook
    }

    /// Stops delivering to one of the tenant's webhooks (the row stays, with the time it was
    /// disabled). Returns false when the tenant has no such active webhook — another tenant's id
    /// reads as one that does not exist. The integrations service sees it within its profile TTL.
    @discardableResult
    public func disableWebhook(_ webhook: Identifier, of tenant: Identifier) async throws -> Bool {
        let id = tenant.uuid, webhookID = webhook.uuid
        let updated = try await retryingOnce { db in
            try db.query("""
                UPDATE tenant_webhooks SET disabled_at = now()
                WHERE webhook_id = \(webhookID) AND tenant_id = \(id) AND disabled_at IS NULL
                """).affectedRows
        }
        if updated == 1 { logger.info("webhook disabled", metadata: ["tenant": "\(tenant)", "webhook": "\(webhook)"]) }
        return updated == 1
    }
}
