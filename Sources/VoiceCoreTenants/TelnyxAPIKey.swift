import Foundation
import VoiceCoreEvents
import VoiceCorePostgres

/// A tenant's Telnyx API key (v2), opened from its sealed box: the `Bearer` token of the tenant's
/// Call Control requests. Held in memory only; it prints as `TelnyxAPIKey(redacted)`, so a log
/// line or an error that interpolates it shows nothing of it.
public struct TelnyxAPIKey: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible {
    /// The key itself: for the `Authorization` header and nothing else.
    public let bearerToken: String

    public init(bearerToken: String) {
        self.bearerToken = bearerToken
    }

    public var description: String { "TelnyxAPIKey(redacted)" }
    public var debugDescription: String { description }
}

extension TenantDirectory {
    /// Where a tenant stands for Telnyx Call Control.
    public enum TelnyxAccess: Sendable {
        /// The directory does not know the tenant.
        case unknownTenant
        /// The tenant has no Telnyx API key (`telnyx_api_key` not given).
        case noKey
        case key(TelnyxAPIKey)
    }

    /// The tenant's Telnyx API key, opened (migration 0014).
    public func telnyxAccess(of tenant: Identifier) async throws -> TelnyxAccess {
        let id = tenant.uuid
        let rows = try await retryingOnce { db in
            try db.query("SELECT telnyx_api_key FROM tenant_directory WHERE tenant_id = \(id)")
        }
        guard let row = rows.first else { return .unknownTenant }
        guard let sealed = try row.decode(PostgresBytes?.self, "telnyx_api_key") else { return .noKey }
        let bytes = try secrets.open(sealed.bytes, tenant: id, field: "telnyx_api_key")
        return .key(TelnyxAPIKey(bearerToken: String(decoding: bytes, as: UTF8.self)))
    }
}
