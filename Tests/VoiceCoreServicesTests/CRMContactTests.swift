import AsyncHTTPClient
import Foundation
import NIOCore
import NIOFoundationEssentialsCompat
import NIOHTTP1
import Testing
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCorePostgres
import VoiceCoreServices
import VoiceCoreTenants
import VoiceCoreTestSupport
import VoiceCoreTime

/// One contact per phone and per e-mail, whichever path names it first (a contact written through
/// the tenant API, a lead, a caller), through the real edge, crm service and projector on real
/// Redis and Postgres.
@Suite("CRM contacts, end to end", .serialized)
struct CRMContactTests {
    /// The platform with the crm service and the projectors, an API key, and the edge's base URL.
    struct Session: Sendable {
        let fixture: PlatformFixture
        let base: String
        let apiKey: String

        /// Sends a JSON request to the tenant API and returns the status and the decoded body.
        @discardableResult
        func send(_ method: HTTPMethod, _ path: String, _ body: [String: String]) async throws -> (status: Int, body: [String: Any]) {
            var request = HTTPClientRequest(url: base + path)
            request.method = method
            request.headers.add(name: "Authorization", value: "Bearer \(apiKey)")
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: body)))
            for _ in 0..<20 {
                let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
                let bytes = try await response.body.collect(upTo: 1 << 20)
                // The tenant's rate limit (a burst of concurrent requests): wait and send again.
                if response.status.code == 429 { try await Task.sleep(for: .milliseconds(200)); continue }
                let decoded = (try? JSONSerialization.jsonObject(with: Data(buffer: bytes))) as? [String: Any] ?? [:]
                return (Int(response.status.code), decoded)
            }
            throw TestFailure("\(path) stayed rate-limited")
        }

        /// `PUT /v1/contacts/{id}`, expecting 202.
        func putContact(_ id: Identifier, _ body: [String: String]) async throws {
            let (status, answer) = try await send(.PUT, "/v1/contacts/\(id)", body)
            #expect(status == 202, "PUT /v1/contacts answered \(status): \(answer)")
        }

        /// `POST /v1/leads`, expecting 202; returns the lead's id.
        func postLead(_ body: [String: String]) async throws -> Identifier {
            let (status, answer) = try await send(.POST, "/v1/leads", body.merging(["intent": "sales"]) { mine, _ in mine })
            #expect(status == 202, "POST /v1/leads answered \(status): \(answer)")
            return try #require((answer["lead_id"] as? String).flatMap(Identifier.init))
        }

        var tenant: UUID { fixture.tenant.uuid }

        func failures() async throws -> [String] {
            try await fixture.db.query("SELECT coalesce(type, '?') || ': ' || error AS failure FROM projection_failures ORDER BY failed_at")
                .map { try $0.decode(String.self, "failure") }
        }

        /// The tenant's contacts as `id phone email name`, ordered by id.
        func contacts() async throws -> [(id: Identifier, phone: String?, email: String?, name: String?)] {
            try await fixture.db.query("SELECT contact_id, phone, email, name FROM crm_contacts WHERE tenant_id = \(tenant) ORDER BY contact_id").map {
                (try $0.decode(Identifier.self, "contact_id"), try $0.decode(String?.self, "phone"), try $0.decode(String?.self, "email"),
                 try $0.decode(String?.self, "name"))
            }
        }

        /// The contact of a lead once both the lead and its contact are projected; nil when the
        /// projection refused something first (the old behaviour: the lead's contact never comes).
        func contact(ofLead lead: Identifier) async throws -> Identifier? {
            try await fixture.eventually("lead \(lead) with its contact, or a projection failure") {
                let linked = try await fixture.count("SELECT count(*) FROM leads WHERE lead_id = \(lead.uuid) AND contact_id IS NOT NULL")
                let failed = try await fixture.count("SELECT count(*) FROM projection_failures")
                return linked == 1 || failed > 0
            }
            return try await fixture.db.query("SELECT contact_id FROM leads WHERE lead_id = \(lead.uuid)").first?.decode(Identifier?.self, "contact_id")
        }

        /// Waits until the tenant has a contact that `matches`, or the projection refused something.
        func waitForContact(_ what: String, _ matches: @escaping @Sendable ((id: Identifier, phone: String?, email: String?, name: String?)) -> Bool) async throws {
            try await fixture.eventually(what) {
                let found = try await contacts().contains(where: matches)
                let failed = try await !failures().isEmpty
                return found || failed
            }
        }
    }

    func withSession(_ body: @Sendable (Session) async throws -> Void) async throws {
        let fixture = try await PlatformFixture()
        do {
            let key = try await fixture.directory.rotateAPIKey(of: fixture.tenant).plaintext
            try await fixture.run(services: [CRMService.group]) { base in
                try await body(Session(fixture: fixture, base: base, apiKey: key))
            }
            try await fixture.drop()
        } catch {
            try? await fixture.drop()
            throw error
        }
    }

    @Test("a contact written through the API, then a lead and a call with its phone: one contact, the lead's and the call's")
    func contactThenLeadByPhone() async throws {
        try await withSession { session in
            let phone = "+14155550142"
            let contact = Identifier.v7()
            try await session.putContact(contact, ["name": "Ada Park", "phone": phone])
            try await session.waitForContact("the contact") { $0.id == contact }

            let lead = try await session.postLead(["name": "Ada Park", "phone": phone, "notes": "wants a quote"])
            let leadContact = try await session.contact(ofLead: lead)

            // A call from the same number ends: its interaction is with the same contact.
            let call = Identifier.v7()
            let started = Timestamp.now
            let ended = Timestamp(microsecondsSinceEpoch: started.microsecondsSinceEpoch + 30_000_000)
            let publisher = session.fixture.publisher, tenant = session.fixture.tenant
            try await publisher.publish(EventEnvelope(CallStarted(callID: call, provider: .twilio, providerCallID: "CA-\(call)", direction: .inbound,
                                                                  from: phone, to: "+14155559876", startedAt: started), tenant: tenant, source: "/test"),
                                        category: .calls, kind: .event)
            try await publisher.publish(EventEnvelope(CallEnded(callID: call, endedAt: ended, status: .completed, durationSeconds: 30, answered: true),
                                                      tenant: tenant, source: "/test"),
                                        category: .calls, kind: .event)
            try await session.fixture.eventually("the call's interaction") {
                try await session.fixture.count("SELECT count(*) FROM interactions WHERE call_id = \(call.uuid)") == 1
            }
            try await Task.sleep(for: .milliseconds(500))  // anything still in flight lands, so a second contact would show

            #expect(try await session.failures() == [])
            let contacts = try await session.contacts()
            #expect(contacts.map(\.id) == [contact], "one contact: \(contacts)")
            #expect(contacts.first?.phone == phone && contacts.first?.name == "Ada Park")
            #expect(leadContact == contact)
            let interaction = try await session.fixture.db.query("SELECT contact_id FROM interactions WHERE call_id = \(call.uuid)")
            #expect(try interaction.first?.decode(Identifier.self, "contact_id") == contact)
        }
    }

    @Test("a contact written through the API, then a lead with its e-mail in other letter case: one contact, the lead's")
    func contactThenLeadByEmail() async throws {
        try await withSession { session in
            let contact = Identifier.v7()
            try await session.putContact(contact, ["name": "Bo Chen", "email": "Bo.Chen@Example.com"])
            try await session.waitForContact("the contact") { $0.id == contact }

            let lead = try await session.postLead(["email": "bo.chen@example.COM", "phone": "+14155550177"])
            let leadContact = try await session.contact(ofLead: lead)
            try await session.waitForContact("the lead's phone on the contact") { $0.phone == "+14155550177" }

            #expect(try await session.failures() == [])
            let contacts = try await session.contacts()
            #expect(contacts.map(\.id) == [contact], "one contact: \(contacts)")
            #expect(leadContact == contact)
            // The lead's phone was new and the contact had none: it is the contact's now.
            #expect(contacts.first?.email == "bo.chen@example.com" && contacts.first?.phone == "+14155550177" && contacts.first?.name == "Bo Chen")
        }
    }

    @Test("a lead first, then a contact written through the API with the same phone: the lead's contact is updated, under either id")
    func leadThenContact() async throws {
        try await withSession { session in
            let phone = "+14155550155"
            let lead = try await session.postLead(["name": "Cy Diaz", "phone": phone])
            try await session.waitForContact("the lead's contact") { $0.phone == phone }

            // The tenant's app names the contact by an id of its own.
            let appID = Identifier.v7()
            try await session.putContact(appID, ["name": "Cy Díaz", "phone": phone, "email": "cy@example.org"])
            try await session.waitForContact("the update") { $0.name == "Cy Díaz" }
            // Later updates through the app's id reach the same contact.
            try await session.putContact(appID, ["name": "Cyrus Díaz"])
            try await session.waitForContact("the second update") { $0.name == "Cyrus Díaz" }
            try await Task.sleep(for: .milliseconds(500))

            #expect(try await session.failures() == [])
            let contacts = try await session.contacts()
            #expect(contacts.count == 1, "one contact: \(contacts)")
            #expect(contacts.first?.phone == phone && contacts.first?.email == "cy@example.org" && contacts.first?.name == "Cyrus Díaz")
            #expect(try await session.contact(ofLead: lead) == contacts.first?.id)
        }
    }

    @Test("a contact's phone changes: the new number is its own, the old one stays its own, another contact's number is refused")
    func phoneChanges() async throws {
        try await withSession { session in
            let (old, new, other) = ("+14155550160", "+14155550161", "+14155550162")
            let ada = Identifier.v7(), bo = Identifier.v7()
            try await session.putContact(ada, ["name": "Ada", "phone": old])
            try await session.putContact(bo, ["name": "Bo", "phone": other])
            try await session.waitForContact("Bo") { $0.id == bo }
            try await session.waitForContact("Ada") { $0.id == ada }

            try await session.putContact(ada, ["phone": new])
            try await session.waitForContact("Ada's new number") { $0.id == ada && $0.phone == new }
            // Bo asks for Ada's number: refused (contacts are not merged); his name still changes.
            try await session.putContact(bo, ["name": "Bo B.", "phone": new])
            try await session.waitForContact("Bo's new name") { $0.id == bo && $0.name == "Bo B." }

            // A lead from each of Ada's numbers is Ada's.
            let fromOld = try await session.postLead(["name": "Ada", "phone": old])
            let fromNew = try await session.postLead(["name": "Ada", "phone": new])
            #expect(try await session.contact(ofLead: fromOld) == ada)
            #expect(try await session.contact(ofLead: fromNew) == ada)
            try await Task.sleep(for: .milliseconds(500))

            #expect(try await session.failures() == [])
            let contacts = try await session.contacts()
            #expect(Set(contacts.map(\.id)) == [ada, bo], "\(contacts)")
            #expect(contacts.first { $0.id == ada }?.phone == new)
            #expect(contacts.first { $0.id == bo }?.phone == other)
        }
    }

    @Test("contact updates under many ids and leads with one phone, all at once: one contact, every lead's")
    func concurrentWriters() async throws {
        try await withSession { session in
            let phone = "+14155550188"
            let leads = try await withThrowingTaskGroup(of: Identifier?.self) { group in
                for index in 0..<24 {
                    group.addTask {
                        if index.isMultiple(of: 2) {
                            try await session.putContact(.v7(), ["name": "Writer \(index)", "phone": phone])
                            return nil
                        }
                        return try await session.postLead(["name": "Lead \(index)", "phone": phone])
                    }
                }
                var leads: [Identifier] = []
                for try await lead in group { if let lead { leads.append(lead) } }
                return leads
            }
            var linked: Set<Identifier?> = []
            for lead in leads { linked.insert(try await session.contact(ofLead: lead)) }
            try await Task.sleep(for: .milliseconds(500))

            #expect(try await session.failures() == [])
            let contacts = try await session.contacts()
            #expect(contacts.count == 1 && contacts.first?.phone == phone, "one contact: \(contacts)")
            #expect(linked == [contacts.first?.id], "every lead's contact is that contact")
        }
    }

    @Test("a contact's events projected out of the order the crm service decided them: the newest phone and e-mail stay")
    func outOfOrderEvents() async throws {
        try await withSession { session in
            let contact = Identifier.v7()
            let publisher = session.fixture.publisher, tenant = session.fixture.tenant
            let t0 = Timestamp.now
            func publish(_ phone: String, _ email: String?, at offset: Int64) async throws {
                let time = Timestamp(microsecondsSinceEpoch: t0.microsecondsSinceEpoch + offset)
                let upsert = ContactUpserted(contactID: contact, phone: phone, email: email, firstSeenAt: t0, lastSeenAt: t0)
                try await publisher.publish(EventEnvelope(upsert, tenant: tenant, source: "/services/crm", time: time), category: .crm, kind: .event)
            }
            try await publish("+14155550170", "old@example.com", at: 0)
            try await session.waitForContact("the first revision") { $0.id == contact }
            // The change, then a resolution made before it but published after it (another partition's batch).
            try await publish("+14155550171", "new@example.com", at: 2_000)
            try await publish("+14155550170", "old@example.com", at: 1_000)
            try await session.fixture.eventually("both projected") {
                try await session.fixture.count("SELECT count(*) FROM event_log WHERE tenant_id = \(tenant.uuid) AND type = \(ContactUpserted.type)") == 3
            }
            try await Task.sleep(for: .milliseconds(300))
            let contacts = try await session.contacts()
            #expect(contacts.count == 1 && contacts.first?.phone == "+14155550171" && contacts.first?.email == "new@example.com", "\(contacts)")
        }
    }
}
