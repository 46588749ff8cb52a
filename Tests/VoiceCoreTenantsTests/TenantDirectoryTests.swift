import Crypto
import Foundation
import Testing
import VoiceCoreEvents
import VoiceCorePostgres
import VoiceCoreTenants

@Suite("The tenant directory", .serialized)
struct TenantDirectoryTests {
    @Test func secretsAreSealedAtRestAndHiddenFromTenantSessions() async throws {
        let fixture = try await TenantsFixture()
        defer { Task { try? await fixture.drop() } }
        let twilioToken = "tok_\(UUID().uuidString)"
        let provisioned = try await fixture.directory.provision(
            NewTenant(name: "Acme Dental", twilioAccountSID: "AC00000000000000000000000000000001", twilioAuthToken: twilioToken), publisher: nil)
        let tenant = provisioned.tenant.id
        let apiKey = provisioned.apiKey.plaintext

        let row = try #require(try await fixture.db.query("SELECT twilio_auth_token FROM tenant_directory WHERE tenant_id = \(tenant.uuid)").first)
        let sealed = try row.decode(PostgresBytes.self, "twilio_auth_token").bytes
        #expect(sealed.count == 1 + 12 + twilioToken.utf8.count + 16)
        #expect(!String(decoding: sealed, as: UTF8.self).contains(twilioToken))
        // The right master key opens it; another one does not.
        #expect(try await fixture.directory.credentials(of: tenant)?.twilioAuthToken == Array(twilioToken.utf8))
        let other = TenantDirectory(connection: fixture.db, secrets: try SecretBox(masterKey: (0..<32).map { _ in UInt8.random(in: 0...255) }))
        await #expect(throws: TenantError.undecryptable("twilio_auth_token")) { _ = try await other.credentials(of: tenant) }
        // API keys are stored as hashes only.
        let keys = try await fixture.db.query("SELECT key_id, secret_sha256 FROM tenant_api_keys")
        let secretPart = String(apiKey.dropFirst("vck_".count + 16 + 1))
        #expect(keys.count == 1)
        #expect(try keys[0].decode(PostgresBytes.self, "secret_sha256").bytes == Array(SHA256.hash(data: Array(secretPart.utf8))))
        // A tenant-scoped session reads no credentials, not even its own (nor the outbox).
        for table in ["tenant_directory", "tenant_outbox"] {
            let denied = try await fixture.db.withConnection { db -> String? in
                try db.withTransaction { db -> String? in
                    try db.query("SET LOCAL ROLE voicecore_tenant")
                    try db.query("SELECT set_config('app.tenant_id', \(tenant.description), true)")
                    do {
                        _ = try db.query("SELECT count(*) FROM \(identifier: table)")
                        return nil
                    } catch let error as PostgresError {
                        return error.sqlState
                    }
                }
            }
            #expect(denied == "42501", "\(table)")
        }
    }
}
