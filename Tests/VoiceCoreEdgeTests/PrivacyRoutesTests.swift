import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Testing
import VoiceCoreEvents
import VoiceCorePostgres
import VoiceCoreTenants
import VoiceCoreTime
@testable import VoiceCoreEdge

/// `POST /v1/privacy/erasures`, `GET /v1/privacy/erasures/{id}` and their admin mirrors against
/// real Postgres: what is refused (and that nothing is stored then), what is accepted once, and
/// that the identifier never comes back out — not in an answer, not in the audit trail, not in the
/// erasure's row.
@Suite("Caller erasure requests", .serialized)
struct PrivacyRoutesTests {
    static let callerPhone = "+14155550142"
    static let callerEmail = "Ana.Lima@Example.com"

    /// The fixture's tenant with one caller in its read models: a call from ``callerPhone``, and a
    /// contact (with a lead and an interaction) holding that phone and ``callerEmail``.
    struct Caller {
        let contact: Identifier
    }

    static func seedCaller(_ fixture: EdgeFixture, tenant: Identifier, phone: String = callerPhone, email: String? = callerEmail) async throws -> Caller {
        let contact = Identifier.v7()
        let call = Identifier.v7()
        try await fixture.db.query("""
            INSERT INTO call_sessions (tenant_id, call_id, provider, provider_call_id, direction, from_number, to_number, status, started_at)
            VALUES (\(tenant.uuid), \(call.uuid), 'twilio', \("CA" + UUID().uuidString), 'inbound', \(phone), '+14155550199', 'completed', now())
            """)
        try await fixture.db.query("""
            INSERT INTO crm_contacts (tenant_id, contact_id, name, phone, email, first_seen_at, last_seen_at)
            VALUES (\(tenant.uuid), \(contact.uuid), 'Ana Lima', \(phone), \(email), now(), now())
            """)
        try await fixture.db.query("""
            INSERT INTO leads (tenant_id, lead_id, call_id, contact_id, name, phone, email, intent, source, created_at)
            VALUES (\(tenant.uuid), \(Identifier.v7().uuid), \(call.uuid), \(contact.uuid), 'Ana Lima', \(phone), \(email), 'appointment', 'call', now())
            """)
        try await fixture.db.query("""
            INSERT INTO interactions (tenant_id, interaction_id, contact_id, call_id, channel, occurred_at)
            VALUES (\(tenant.uuid), \(Identifier.v7().uuid), \(contact.uuid), \(call.uuid), 'call', now())
            """)
        return Caller(contact: contact)
    }

    /// Every erasure row of the fixture's schema as text, without the sealed identifier, and the sealed bytes apart.
    static func erasureRows(_ fixture: EdgeFixture) async throws -> [(text: String, sealed: [UInt8]?)] {
        try await fixture.db.query("""
            SELECT (to_jsonb(e) - 'identifier_sealed')::text AS text, identifier_sealed FROM privacy_erasures e ORDER BY requested_at
            """).map { (try $0.decode(String.self, "text"), try $0.decode(PostgresBytes?.self, "identifier_sealed")?.bytes) }
    }

    static func privacyAuditRows(_ fixture: EdgeFixture) async throws -> [AuditTrailTests.Row] {
        try await AuditTrailTests.rows(fixture).filter { $0.action == "privacy.erase" }
    }

    func key(_ fixture: EdgeFixture) -> HTTPFields {
        [.authorization: "Bearer \(fixture.apiKey)", .contentType: "application/json"]
    }

    func post(_ client: any TestClientProtocol, _ fixture: EdgeFixture, _ body: String, uri: String = "/v1/privacy/erasures",
              headers: HTTPFields? = nil) async throws -> TestResponse {
        try await client.execute(uri: uri, method: .post, headers: headers ?? key(fixture), body: ByteBuffer(string: body))
    }

    // MARK: Refusals

    @Test("no identifier, two, or a malformed phone, e-mail or contact id: 400 naming the field, nothing stored or audited")
    func malformedRequestsAreRefused() async throws {
        let fixture = try await EdgeFixture()
        defer { Task { try? await fixture.drop() } }
        _ = try await Self.seedCaller(fixture, tenant: fixture.tenant)
        let cases: [(body: String, field: String)] = [
            ("{}", "body"),
            (#"{"name":"Ana Lima"}"#, "body"),
            (#"{"phone":null,"email":null}"#, "body"),
            (#"{"phone":"\#(Self.callerPhone)","email":"\#(Self.callerEmail)"}"#, "body.email"),
            (#"{"email":"\#(Self.callerEmail)","contact_id":"\#(Identifier.v7())"}"#, "body.contact_id"),
            (#"{"phone":"4155550142"}"#, "body.phone"),
            (#"{"phone":"+0155550142"}"#, "body.phone"),
            (#"{"phone":"+1 415 555 0142"}"#, "body.phone"),
            (#"{"phone":14155550142}"#, "body.phone"),
            (#"{"email":"ana.lima"}"#, "body.email"),
            (#"{"email":"ana@localhost"}"#, "body.email"),
            (#"{"email":"ana @example.com"}"#, "body.email"),
            (#"{"contact_id":"contact-1"}"#, "body.contact_id"),
        ]
        try await fixture.test { client in
            for (body, field) in cases {
                let response = try await post(client, fixture, body)
                #expect(response.status == .badRequest, "\(body): \(response.status) \(response.text)")
                #expect(response.headers[.contentType] == "application/problem+json", "\(body)")
                #expect(response.json["field"] as? String == field, "\(body): \(response.text)")
                #expect(!response.text.contains("4155550142") && !response.text.lowercased().contains("ana.lima@"), "\(body): the answer repeats the identifier: \(response.text)")
            }
            // Not JSON at all.
            let malformed = try await post(client, fixture, "phone=+14155550142")
            #expect(malformed.status == .badRequest)
            // The operator's mirror refuses alike.
            let admin = try await post(client, fixture, #"{"phone":"4155550142"}"#, uri: "/admin/tenants/\(fixture.tenant)/privacy/erasures",
                                       headers: AuditTrailTests.admin)
            #expect(admin.status == .badRequest && admin.json["field"] as? String == "body.phone", "\(admin.text)")
        }
        #expect(try await Self.erasureRows(fixture).isEmpty)
        #expect(try await Self.privacyAuditRows(fixture).isEmpty)
    }

    @Test("an identifier that matches nothing of the tenant (even one of another tenant's callers): 404, nothing stored or audited")
    func nothingMatchingIs404() async throws {
        let fixture = try await EdgeFixture()
        defer { Task { try? await fixture.drop() } }
        let other = try await fixture.directory.provision(NewTenant(name: "Other Dental"), publisher: nil)
        // Another tenant's caller: not this tenant's to erase.
        let othersCaller = try await Self.seedCaller(fixture, tenant: other.tenant.id)
        try await fixture.test { client in
            for body in [#"{"phone":"\#(Self.callerPhone)"}"#, #"{"email":"\#(Self.callerEmail)"}"#, #"{"contact_id":"\#(othersCaller.contact)"}"#,
                         #"{"phone":"+442071838750"}"#, #"{"contact_id":"\#(Identifier.v7())"}"#] {
                let response = try await post(client, fixture, body)
                #expect(response.status == .notFound, "\(body): \(response.status) \(response.text)")
                #expect(response.headers[.contentType] == "application/problem+json")
                #expect((response.json["detail"] as? String ?? "").contains("nothing to erase"), "\(response.text)")
            }
            let admin = try await post(client, fixture, #"{"phone":"\#(Self.callerPhone)"}"#, uri: "/admin/tenants/\(fixture.tenant)/privacy/erasures",
                                       headers: AuditTrailTests.admin)
            #expect(admin.status == .notFound, "\(admin.text)")
            // An unknown tenant is a 404 of its own.
            let unknown = try await post(client, fixture, #"{"phone":"\#(Self.callerPhone)"}"#, uri: "/admin/tenants/\(Identifier.v7())/privacy/erasures",
                                         headers: AuditTrailTests.admin)
            #expect(unknown.status == .notFound && unknown.json["title"] as? String == "Unknown tenant", "\(unknown.text)")
        }
        #expect(try await Self.erasureRows(fixture).isEmpty)
        #expect(try await Self.privacyAuditRows(fixture).isEmpty)
    }

    // MARK: Accepted

    @Test("a matching caller: 202 with Location and the status; asked again (any e-mail case) the same open erasure with 200; one audit row; no identifier anywhere")
    func acceptedOnceWithoutTheIdentifier() async throws {
        let fixture = try await EdgeFixture()
        defer { Task { try? await fixture.drop() } }
        let caller = try await Self.seedCaller(fixture, tenant: fixture.tenant)
        try await fixture.test { client in
            let first = try await post(client, fixture, #"{"phone":"\#(Self.callerPhone)"}"#)
            #expect(first.status == .accepted, "\(first.text)")
            let erasureID = first.json["id"] as? String ?? ""
            let firstRequestID = AuditTrailTests.requestID(first)
            #expect(Identifier(erasureID) != nil, "\(first.text)")
            #expect(first.headers[.location] == "/v1/privacy/erasures/\(erasureID)")
            #expect(first.json["state"] as? String == "pending" && first.json["identifier_kind"] as? String == "phone")
            let hash = first.json["identifier_hash"] as? String ?? ""
            #expect(hash.count == 64 && hash.allSatisfy { $0.isHexDigit && !$0.isUppercase }, "\(hash)")
            #expect((first.json["counts"] as? [String: Int]) == Dictionary(uniqueKeysWithValues: ErasureStatus.countKeys.map { ($0, 0) }), "\(first.text)")
            #expect(!first.text.contains("4155550142"), "the answer holds the phone number: \(first.text)")

            // Asked again: the same open erasure, answered 200, nothing new.
            let again = try await post(client, fixture, #"{"phone":"\#(Self.callerPhone)"}"#)
            #expect(again.status == .ok, "\(again.text)")
            #expect(again.json["id"] as? String == erasureID && again.headers[.location] == "/v1/privacy/erasures/\(erasureID)")

            // Its state, at Location.
            let status = try await client.execute(uri: "/v1/privacy/erasures/\(erasureID)", method: .get, headers: key(fixture))
            #expect(status.status == .ok && status.json["id"] as? String == erasureID && status.json["identifier_hash"] as? String == hash, "\(status.text)")
            #expect(!status.json.keys.contains("completed_at") && !status.json.keys.contains("waiting_for"), "\(status.text)")

            // The e-mail in any case is one identifier: one erasure for both spellings.
            let email = try await post(client, fixture, #"{"email":"\#(Self.callerEmail)"}"#)
            #expect(email.status == .accepted, "\(email.text)")
            let emailAgain = try await post(client, fixture, #"{"email":"\#(Self.callerEmail.uppercased())"}"#)
            #expect(emailAgain.status == .ok && emailAgain.json["id"] as? String == email.json["id"] as? String, "\(emailAgain.text)")
            #expect(!email.text.lowercased().contains("ana.lima"))

            // The contact id.
            let contact = try await post(client, fixture, #"{"contact_id":"\#(caller.contact)"}"#)
            #expect(contact.status == .accepted && contact.json["identifier_kind"] as? String == "contact", "\(contact.text)")
            try await Self.expectStoredWithoutIdentifier(fixture, phoneErasure: erasureID, requestID: firstRequestID)
        }
    }

    /// Three erasures (phone, e-mail, contact), each with one audit row; the phone's under `requestID`.
    static func expectStoredWithoutIdentifier(_ fixture: EdgeFixture, phoneErasure erasureID: String, requestID firstRequestID: String) async throws {
        let erasures = try await Self.erasureRows(fixture)
        #expect(erasures.count == 3, "phone, e-mail, contact: \(erasures.map(\.text))")
        for erasure in erasures {
            #expect(!erasure.text.contains("4155550142") && !erasure.text.lowercased().contains("ana.lima"), "the row holds the identifier: \(erasure.text)")
            let sealed = try #require(erasure.sealed, "the eraser needs the identifier sealed")
            #expect(sealed.count > 28)
            #expect(!String(decoding: sealed, as: UTF8.self).contains("4155550142") && !String(decoding: sealed, as: UTF8.self).lowercased().contains("ana.lima"))
        }
        let audit = try await Self.privacyAuditRows(fixture)
        #expect(audit.count == 3, "one row per erasure asked for, none for the repeats: \(audit.map(\.details))")
        let phoneRow = try #require(audit.first { $0.target == "privacy/erasures/\(erasureID)" })
        #expect(phoneRow.requestID == firstRequestID && phoneRow.actor == "api_key" && phoneRow.outcome == "accepted")
        #expect(phoneRow.apiKeyID == APIKey(fixture.apiKey[...])?.keyID)
        #expect(phoneRow.details.contains(#""identifier_kind": "phone""#), "\(phoneRow.details)")
        for row in audit {
            #expect(!row.text.contains("4155550142") && !row.text.lowercased().contains("ana.lima"), "the audit row holds the identifier: \(row.text)")
        }
    }

    @Test("a completed erasure leaves room for a new one of the same caller; the admin mirror is audited as admin")
    func completedErasureAllowsANewOne() async throws {
        let fixture = try await EdgeFixture()
        defer { Task { try? await fixture.drop() } }
        _ = try await Self.seedCaller(fixture, tenant: fixture.tenant)
        try await fixture.test { client in
            let uri = "/admin/tenants/\(fixture.tenant)/privacy/erasures"
            let first = try await post(client, fixture, #"{"phone":"\#(Self.callerPhone)"}"#, uri: uri, headers: AuditTrailTests.admin)
            #expect(first.status == .accepted, "\(first.text)")
            let id = first.json["id"] as? String ?? ""
            #expect(first.headers[.location] == "\(uri)/\(id)")
            try await fixture.db.query("UPDATE privacy_erasures SET state = 'completed', completed_at = now(), identifier_sealed = NULL")
            let status = try await client.execute(uri: "\(uri)/\(id)", method: .get, headers: AuditTrailTests.admin)
            #expect(status.status == .ok && status.json["state"] as? String == "completed" && status.json["completed_at"] is String, "\(status.text)")
            // The caller is still in the read models here (nothing erased them): a new erasure.
            let second = try await post(client, fixture, #"{"phone":"\#(Self.callerPhone)"}"#, uri: uri, headers: AuditTrailTests.admin)
            #expect(second.status == .accepted && second.json["id"] as? String != id, "\(second.text)")
        }
        let audit = try await Self.privacyAuditRows(fixture)
        #expect(audit.count == 2 && audit.allSatisfy { $0.actor == "admin" && $0.apiKeyID == nil }, "\(audit)")
    }

    @Test("another tenant's erasure id, an unknown id, a malformed id: 404")
    func anotherTenantsErasureIs404() async throws {
        let fixture = try await EdgeFixture()
        defer { Task { try? await fixture.drop() } }
        let other = try await fixture.directory.provision(NewTenant(name: "Other Dental"), publisher: nil)
        _ = try await Self.seedCaller(fixture, tenant: other.tenant.id)
        let (theirs, created) = try await ErasureRequests(directory: fixture.directory).request(
            tenant: other.tenant.id, identifier: .phone(Self.callerPhone), actor: .platformOperator, requestID: .v7())
        #expect(created)
        try await fixture.test { client in
            for id in [theirs.erasureID.description, Identifier.v7().description, "not-an-id"] {
                let response = try await client.execute(uri: "/v1/privacy/erasures/\(id)", method: .get, headers: key(fixture))
                #expect(response.status == .notFound, "\(id): \(response.status) \(response.text)")
                let admin = try await client.execute(uri: "/admin/tenants/\(fixture.tenant)/privacy/erasures/\(id)", method: .get, headers: AuditTrailTests.admin)
                #expect(admin.status == .notFound, "\(id): \(admin.status) \(admin.text)")
            }
            // Its own tenant (and the operator under it) sees it.
            let owner = try await client.execute(uri: "/v1/privacy/erasures/\(theirs.erasureID)", method: .get,
                                                 headers: [.authorization: "Bearer \(other.apiKey.plaintext)"])
            #expect(owner.status == .ok && owner.json["id"] as? String == theirs.erasureID.description, "\(owner.text)")
            let admin = try await client.execute(uri: "/admin/tenants/\(other.tenant.id)/privacy/erasures/\(theirs.erasureID)", method: .get,
                                                 headers: AuditTrailTests.admin)
            #expect(admin.status == .ok, "\(admin.text)")
            // Without a key: 401, not a hint.
            let anonymous = try await client.execute(uri: "/v1/privacy/erasures/\(theirs.erasureID)", method: .get)
            #expect(anonymous.status == .unauthorized)
        }
    }

    // MARK: The hash

    @Test("identifier_hash is HMAC-SHA256 under HKDF(master key, voicecore.privacy.identifier-hash) of tenant|kind|normalised identifier")
    func hashIsKeyedByTheMasterKey() async throws {
        let fixture = try await EdgeFixture()
        defer { Task { try? await fixture.drop() } }
        let masterKey = (0..<32).map { UInt8($0 &* 7 &+ 3) }
        let requests = ErasureRequests(directory: TenantDirectory(connection: fixture.db, secrets: try SecretBox(masterKey: masterKey)))
        func expected(_ message: String, key: [UInt8] = masterKey) -> String {
            let derived = HKDF<SHA256>.deriveKey(inputKeyMaterial: SymmetricKey(data: key), info: Array("voicecore.privacy.identifier-hash".utf8),
                                                 outputByteCount: 32)
            return HMAC<SHA256>.authenticationCode(for: Array(message.utf8), using: derived).map { String(format: "%02x", $0) }.joined()
        }
        let tenant = fixture.tenant
        let email = try ErasureIdentifier.parse(kind: .email, value: "Ana.Lima@Example.COM", field: "email")
        #expect(requests.hash(email, tenant: tenant) == expected("\(tenant.description.lowercased())|email|ana.lima@example.com"))
        #expect(requests.hash(.phone(Self.callerPhone), tenant: tenant) == expected("\(tenant.description.lowercased())|phone|\(Self.callerPhone)"))
        // Another tenant, another kind, another master key: another hash.
        #expect(requests.hash(.phone(Self.callerPhone), tenant: .v7()) != requests.hash(.phone(Self.callerPhone), tenant: tenant))
        #expect(requests.hash(.phone(Self.callerPhone), tenant: tenant) != expected("\(tenant.description.lowercased())|phone|\(Self.callerPhone)",
                                                                                     key: Array(repeating: 1, count: 32)))
        // The sealed identifier opens to the normalised identifier, for this tenant only.
        let sealed = try requests.seal(email, tenant: tenant)
        #expect(try requests.openIdentifier(sealed, kind: .email, tenant: tenant) == email)
        #expect(throws: (any Error).self) { try requests.openIdentifier(sealed, kind: .email, tenant: .v7()) }
    }
}
