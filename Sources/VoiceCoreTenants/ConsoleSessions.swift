import Crypto
import Foundation
import VoiceCoreEvents
import VoiceCorePostgres
import VoiceCoreTime

/// A console session as the store knows it (never its token).
public struct ConsoleSessionRecord: Sendable, Hashable {
    /// The tenant signed in; nil for the operator.
    public var tenant: Identifier?
    /// The public id of the API key the tenant signed in with; nil for the operator.
    public var keyID: String?
    /// The token the session's forms carry.
    public var csrfToken: String
    public var expiresAt: Timestamp
}

/// A session just opened: the token for the cookie (shown once, stored only as its SHA-256) and
/// the session.
public struct OpenedConsoleSession: Sendable {
    public var token: String
    public var session: ConsoleSessionRecord
}

/// The console's sign-in sessions in Postgres (`console_sessions`, migration 0015), so that any
/// edge process knows them and a sign-out revokes everywhere.
///
/// The browser's cookie holds a 256-bit random token; the table holds only its SHA-256, so a copy
/// of the table signs nobody in. A tenant session is bound to the API key it was opened with and
/// ends when that key is revoked (or rotated). An operator session is bound to the admin key by a
/// keyed fingerprint (HMAC-SHA256 under the admin key of the session's digest: nothing in the
/// table helps guess the admin key) and ends when the admin key changes. Sessions last
/// ``lifetime``.
///
/// ```swift
/// let opened = try await sessions.openTenantSession(tenant: tenant, keyID: key.keyID)
/// // Set-Cookie: vc_session=\(opened.token)
/// let session = try await sessions.session(token: cookie, adminKey: configuration.adminKey)
/// ```
public struct ConsoleSessions: Sendable {
    /// How long a session lasts after sign-in (the cookie's `Max-Age` too).
    public static let lifetime: Duration = .seconds(12 * 3600)

    private let connection: PostgresConnection

    public init(connection: PostgresConnection) {
        self.connection = connection
    }

    /// Opens a session for `tenant`, signed in with its API key `keyID`.
    public func openTenantSession(tenant: Identifier, keyID: String) async throws -> OpenedConsoleSession {
        try await open(tenant: tenant, keyID: keyID, adminKey: nil)
    }

    /// Opens an operator session, bound to `adminKey` (the key that signed in).
    public func openOperatorSession(adminKey: String) async throws -> OpenedConsoleSession {
        try await open(tenant: nil, keyID: nil, adminKey: adminKey)
    }

    /// The live session of a presented token: nil when the token is unknown, expired, revoked,
    /// its API key revoked, or (an operator's) `adminKey` is no longer the key it was opened with
    /// (or there is none).
    public func session(token: String, adminKey: String?) async throws -> ConsoleSessionRecord? {
        guard let digest = Self.digest(ofToken: token) else { return nil }
        let sha = PostgresBytes(digest)
        let rows = try await retryingOnce { db in
            try db.query("""
                SELECT s.tenant_id, s.key_id, s.csrf_token, s.admin_key_mac, s.expires_at
                FROM console_sessions s
                WHERE s.session_sha256 = \(sha) AND s.revoked_at IS NULL AND s.expires_at > now()
                  AND (s.tenant_id IS NULL OR EXISTS (SELECT 1 FROM tenant_api_keys k
                                                      WHERE k.key_id = s.key_id AND k.tenant_id = s.tenant_id AND k.revoked_at IS NULL))
                """)
        }
        guard let row = rows.first else { return nil }
        let tenant = try row.decode(UUID?.self, "tenant_id").map(Identifier.init)
        if tenant == nil {
            guard let adminKey, let stored = try row.decode(PostgresBytes?.self, "admin_key_mac")?.bytes,
                  constantTimeEquals(stored, Self.adminKeyMAC(adminKey, sessionDigest: digest))
            else { return nil }
        }
        return ConsoleSessionRecord(tenant: tenant, keyID: try row.decode(String?.self, "key_id"), csrfToken: try row.decode(String.self, "csrf_token"),
                                    expiresAt: try row.decode(Timestamp.self, "expires_at"))
    }

    /// Revokes the session of `token` (sign-out); nothing for an unknown token.
    public func revoke(token: String) async throws {
        guard let digest = Self.digest(ofToken: token) else { return }
        let sha = PostgresBytes(digest)
        // Idempotent: safe to run again after a lost connection.
        _ = try await retryingOnce { db in
            try db.query("UPDATE console_sessions SET revoked_at = now() WHERE session_sha256 = \(sha) AND revoked_at IS NULL")
        }
    }

    // MARK: Parts

    private func open(tenant: Identifier?, keyID: String?, adminKey: String?) async throws -> OpenedConsoleSession {
        let token = Self.randomToken()
        let csrf = Self.randomToken()
        let digest = Array(SHA256.hash(data: Array(token.utf8)))
        let mac = adminKey.map { PostgresBytes(Self.adminKeyMAC($0, sessionDigest: digest)) }
        let now = Timestamp.now
        let expires = now.adding(microseconds: Self.lifetime.components.seconds * 1_000_000)
        let sha = PostgresBytes(digest)
        let tenantID = tenant?.uuid
        // A fresh random digest: a run again after a lost connection inserts nothing twice.
        _ = try await retryingOnce { db in
            // Expired sessions are of no use to anyone: each sign-in sweeps them (indexed).
            try db.query("DELETE FROM console_sessions WHERE expires_at < now() - interval '1 day'")
            try db.query("""
                INSERT INTO console_sessions (session_sha256, tenant_id, key_id, admin_key_mac, csrf_token, created_at, expires_at)
                VALUES (\(sha), \(tenantID), \(keyID), \(mac), \(csrf), \(now), \(expires))
                ON CONFLICT (session_sha256) DO NOTHING
                """)
        }
        return OpenedConsoleSession(token: token, session: ConsoleSessionRecord(tenant: tenant, keyID: keyID, csrfToken: csrf, expiresAt: expires))
    }

    /// 32 random bytes, base64url without padding (43 characters).
    static func randomToken() -> String {
        var generator = SystemRandomNumberGenerator()
        return APIKey.base64url((0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) })
    }

    /// The SHA-256 of a token of the generated shape; nil for anything else (not worth a query).
    static func digest(ofToken token: String) -> [UInt8]? {
        guard token.utf8.count == 43, token.utf8.allSatisfy({ byte in
            (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte) || (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte)
                || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_")
        }) else { return nil }
        return Array(SHA256.hash(data: Array(token.utf8)))
    }

    static func adminKeyMAC(_ adminKey: String, sessionDigest: [UInt8]) -> [UInt8] {
        Array(HMAC<SHA256>.authenticationCode(for: sessionDigest, using: SymmetricKey(data: Array(adminKey.utf8))))
    }

    private func retryingOnce<T: Sendable>(_ body: @Sendable (isolated PostgresConnection) throws -> T) async throws -> T {
        do {
            return try await connection.withConnection(body)
        } catch let error as PostgresError where error.code == .connection {
            return try await connection.withConnection(body)
        }
    }
}

extension TenantDirectory {
    /// The console's sessions, on the directory's connection (they join its API keys).
    public var consoleSessions: ConsoleSessions { ConsoleSessions(connection: db) }
}
