import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Synchronization
import Testing
import VoiceCoreEvents
import VoiceCorePostgres
import VoiceCoreProjections
import VoiceCoreQueries
import VoiceCoreRedis
import VoiceCoreTenants
import VoiceCoreTime
@testable import VoiceCoreEdge

/// The CRM's read routes against real Postgres: rows written by the CRM and calls projections
/// (the projectors' code, the owner role), read through the edge as the tenant role under
/// row-level security.
@Suite("CRM read routes")
struct CRMReadRoutesTests {
    /// Another tenant, with rows of its own in the same tables.
    static let otherTenant = Identifier.v7()
    /// 2026-12-01T09:00:00Z: the seeded rows' times count from it.
    static let base = Timestamp(year: 2026, month: 12, day: 1, hour: 9, minute: 0, second: 0) ?? .now

    // MARK: Leads

    @Test func leadsPageNewestFirstWithoutGapsOrDuplicatesEvenWhileLeadsArrive() async throws {
        let fixture = try await EdgeFixture()
        let seeder = Seeder(fixture)
        // Nine leads one minute apart, three of them at the very same instant (the id breaks the tie).
        var expected: [(id: Identifier, time: Timestamp)] = []
        for index in 0..<9 {
            let time = index >= 3 && index < 6 ? at(minutes: 3) : at(minutes: index)
            let lead = LeadCreated(leadID: .v7(), name: "Lead \(index)", intent: .sales, source: .api, createdAt: time)
            expected.append((lead.leadID, time))
            try await seeder.project([lead])
        }
        try await seeder.project([LeadCreated(leadID: .v7(), name: "Not yours", intent: .sales, source: .api, createdAt: at(minutes: 4))],
                                 tenant: Self.otherTenant)
        let newestFirst = expected.sorted { ($0.time, $0.id) > ($1.time, $1.id) }.map(\.id.description)

        try await fixture.test { client in
            var seen: [String] = []
            var cursor: String?
            var pages = 0
            repeat {
                let page = try await client.read(fixture, "/v1/leads?limit=2" + (cursor.map { "&cursor=\($0)" } ?? ""))
                seen += page.items.map { $0["lead_id"] as? String ?? "?" }
                cursor = page.nextCursor
                pages += 1
                if pages == 1 {
                    // A lead created after the first page was read: newer than everything, so it
                    // belongs before the cursor and never shifts the pages that follow.
                    try await seeder.project([LeadCreated(leadID: .v7(), name: "Late", intent: .other, source: .call, createdAt: at(minutes: 60))])
                }
            } while cursor != nil && pages < 20
            #expect(seen == newestFirst, "every lead once, newest first, ties by id")
            #expect(pages == 5)
            let all = try await client.read(fixture, "/v1/leads")
            #expect(all.items.count == 10)
            #expect(all.items.first?["name"] as? String == "Late")
            #expect(all.nextCursor == nil)
        }
        try await fixture.drop()
    }

    @Test func leadsFilterByTimeIntentSourceContactAndCall() async throws {
        let fixture = try await EdgeFixture()
        let seeder = Seeder(fixture)
        let call = Identifier.v7()
        let contact = Identifier.v7()
        let fromCall = LeadCreated(leadID: .v7(), callID: call, phone: "+14155550101", intent: .appointment, source: .call, createdAt: at(minutes: 1))
        let sales = LeadCreated(leadID: .v7(), email: "sam@example.com", intent: .sales, source: .api, createdAt: at(minutes: 2))
        let support = LeadCreated(leadID: .v7(), name: "Sue", intent: .support, source: .api, createdAt: at(minutes: 3))
        try await seeder.project([fromCall, sales, support])
        try await seeder.project([ContactUpserted(contactID: contact, phone: "+14155550101", leadID: fromCall.leadID, firstSeenAt: at(minutes: 1), lastSeenAt: at(minutes: 1))])

        try await fixture.test { client in
            func ids(_ query: String) async throws -> [Identifier] {
                try await client.read(fixture, "/v1/leads?\(query)").items.compactMap { ($0["lead_id"] as? String).flatMap(Identifier.init) }
            }
            do { let found = try await ids("intent=sales"); #expect(found == [sales.leadID]) }
            do { let found = try await ids("source=call"); #expect(found == [fromCall.leadID]) }
            do { let found = try await ids("source=api"); #expect(found == [support.leadID, sales.leadID]) }
            do { let found = try await ids("call_id=\(call)"); #expect(found == [fromCall.leadID]) }
            do { let found = try await ids("contact_id=\(contact)"); #expect(found == [fromCall.leadID]) }
            do { let found = try await ids("contact_id=\(Identifier.v7())"); #expect(found == []) }
            // from inclusive, to exclusive.
            do { let found = try await ids("from=\(at(minutes: 2).rfc3339)"); #expect(found == [support.leadID, sales.leadID]) }
            do { let found = try await ids("to=\(at(minutes: 2).rfc3339)"); #expect(found == [fromCall.leadID]) }
            do { let found = try await ids("from=2026-12-01T10:01:30%2B01:00&to=2026-12-01T09:03:00Z"); #expect(found == [sales.leadID], "any RFC 3339 offset") }
            do { let found = try await ids("intent=sales&source=call"); #expect(found == []) }
        }
        try await fixture.drop()
    }

    @Test func aLeadComesWithItsContactAndItsCall() async throws {
        let fixture = try await EdgeFixture()
        let seeder = Seeder(fixture)
        let call = Identifier.v7()
        let contact = Identifier.v7()
        try await seeder.project([CallStarted(callID: call, provider: .twilio, providerCallID: "CA1", direction: .inbound,
                                              from: "+14155550101", to: "+14155550199", startedAt: at(minutes: 0))], projection: CallsProjection())
        let lead = LeadCreated(leadID: .v7(), callID: call, name: "Maria Lopez", phone: "+14155550101", intent: .appointment, source: .call,
                               notes: "wants a cleaning", createdAt: at(minutes: 1))
        let bare = LeadCreated(leadID: .v7(), email: "api@example.com", intent: .other, source: .api, createdAt: at(minutes: 2))
        try await seeder.project([lead, bare,
                                  ContactUpserted(contactID: contact, name: "Maria Lopez", phone: "+14155550101", leadID: lead.leadID,
                                                  firstSeenAt: at(minutes: 1), lastSeenAt: at(minutes: 1))])

        try await fixture.test { client in
            let detail = try await client.object(fixture, "/v1/leads/\(lead.leadID)")
            #expect(detail["lead_id"] as? String == lead.leadID.description)
            #expect(detail["notes"] as? String == "wants a cleaning")
            #expect(detail["contact_id"] as? String == contact.description)
            let contactJSON = try #require(detail["contact"] as? [String: Any])
            #expect(contactJSON["name"] as? String == "Maria Lopez")
            #expect(contactJSON["phone"] as? String == "+14155550101")
            #expect(contactJSON["email"] is NSNull, "absent values are null, not left out")
            let callJSON = try #require(detail["call"] as? [String: Any])
            #expect(callJSON["call_id"] as? String == call.description)
            #expect(callJSON["from"] as? String == "+14155550101")
            #expect(callJSON["has_lead"] as? Bool == true)

            let bareDetail = try await client.object(fixture, "/v1/leads/\(bare.leadID)")
            #expect(bareDetail["contact"] is NSNull)
            #expect(bareDetail["call"] is NSNull)
            #expect(bareDetail["call_id"] is NSNull)
            #expect(bareDetail["email"] as? String == "api@example.com")
        }
        try await fixture.drop()
    }

    // MARK: Contacts

    @Test func contactsAreFoundByPhoneEmailOrPartOfTheirName() async throws {
        let fixture = try await EdgeFixture()
        let seeder = Seeder(fixture)
        let ada = contact("Ada Lovelace", phone: "+14155550001", email: "Ada.Lovelace@Example.com", seen: 5)
        let bob = contact("Bob Byron", phone: "+14155550002", email: "bob@example.com", seen: 4)
        let carol = contact(nil, phone: "+14155550003", email: nil, seen: 3)
        try await seeder.project([ada, bob, carol])
        // The same phone at another tenant is another tenant's contact.
        try await seeder.project([contact("Ada Elsewhere", phone: "+14155550001", email: "ada.lovelace@example.com", seen: 9)], tenant: Self.otherTenant)

        try await fixture.test { client in
            func names(_ query: String) async throws -> [String] {
                try await client.read(fixture, "/v1/contacts?\(query)").items.map { $0["contact_id"] as? String ?? "?" }
            }
            do { let found = try await names("phone=%2B14155550001"); #expect(found == [ada.contactID.description]) }
            do { let found = try await names("phone=+14155550002"); #expect(found == [bob.contactID.description], "a + sent unencoded reads as a space; it is taken as the +") }
            do { let found = try await names("phone=%2B14155550009"); #expect(found == []) }
            do { let found = try await names("email=ADA.LOVELACE%40example.COM"); #expect(found == [ada.contactID.description], "e-mail without regard to case") }
            do { let found = try await names("email=ada.lovelace"); #expect(found == [], "e-mail is matched whole") }
            do { let found = try await names("name=LOVE"); #expect(found == [ada.contactID.description], "a part of the name, without regard to case") }
            do { let found = try await names("name=by"); #expect(found == [bob.contactID.description]) }
            do { let found = try await names("name=o"); #expect(found == [ada.contactID.description, bob.contactID.description], "most recently seen first") }
            do { let found = try await names(""); #expect(found == [ada.contactID.description, bob.contactID.description, carol.contactID.description], "most recently seen first") }
            do { let found = try await names("name=ada&phone=%2B14155550002"); #expect(found == [], "every criterion given must match") }

            let item = try #require(try await client.read(fixture, "/v1/contacts?phone=%2B14155550003").items.first)
            #expect(item["name"] is NSNull)
            #expect(item["email"] is NSNull)
            #expect(item["last_seen_at"] as? String != nil)
        }
        try await fixture.drop()
    }

    @Test func percentAndUnderscoreInANameAreMatchedLiterally() async throws {
        let fixture = try await EdgeFixture()
        let seeder = Seeder(fixture)
        let percent = contact("Bob 100% Real", phone: "+14155550011", email: nil, seen: 1)
        let digits = contact("Bob 1000 Real", phone: "+14155550012", email: nil, seen: 2)
        let underscore = contact("cy_young", phone: "+14155550013", email: nil, seen: 3)
        let letter = contact("cyxyoung", phone: "+14155550014", email: nil, seen: 4)
        let backslash = contact("back\\slash", phone: "+14155550015", email: nil, seen: 5)
        let plain = contact("backslash", phone: "+14155550016", email: nil, seen: 6)
        try await seeder.project([percent, digits, underscore, letter, backslash, plain])

        try await fixture.test { client in
            func ids(_ name: String) async throws -> [Identifier] {
                let encoded = try #require(name.addingPercentEncoding(withAllowedCharacters: .alphanumerics))
                return try await client.read(fixture, "/v1/contacts?name=\(encoded)").items.compactMap { ($0["contact_id"] as? String).flatMap(Identifier.init) }
            }
            do { let found = try await ids("100%"); #expect(found == [percent.contactID], "% is a percent sign, not any text") }
            do { let found = try await ids("%"); #expect(found == [percent.contactID]) }
            do { let found = try await ids("Y_Y"); #expect(found == [underscore.contactID], "_ is an underscore, not any character") }
            do { let found = try await ids("_"); #expect(found == [underscore.contactID]) }
            do { let found = try await ids("k\\s"); #expect(found == [backslash.contactID], "a backslash is itself") }
            do { let found = try await ids("1000"); #expect(found == [digits.contactID]) }
        }
        try await fixture.drop()
    }

    @Test func contactsPageWithoutGapsOrDuplicates() async throws {
        let fixture = try await EdgeFixture()
        let seeder = Seeder(fixture)
        // Seven contacts, four of them last seen at the same instant.
        let contacts = (0..<7).map { index in contact("Pat \(index)", phone: "+1415555010\(index)", email: nil, seen: index < 4 ? 10 : index) }
        try await seeder.project(contacts)
        let expected = contacts.sorted { ($0.lastSeenAt, $0.contactID) > ($1.lastSeenAt, $1.contactID) }.map(\.contactID.description)

        try await fixture.test { client in
            var seen: [String] = []
            var cursor: String?
            var pages = 0
            repeat {
                let page = try await client.read(fixture, "/v1/contacts?name=pat&limit=3" + (cursor.map { "&cursor=\($0)" } ?? ""))
                seen += page.items.map { $0["contact_id"] as? String ?? "?" }
                cursor = page.nextCursor
                pages += 1
            } while cursor != nil && pages < 10
            #expect(seen == expected)
            #expect(pages == 3)
        }
        try await fixture.drop()
    }

    @Test func aContactComesWithItsNewestInteractionsAndLeadsAndTheWayToTheRest() async throws {
        let fixture = try await EdgeFixture()
        let seeder = Seeder(fixture)
        let person = contact("Maria Lopez", phone: "+14155550101", email: "maria@example.com", seen: 30)
        let interactions = (0..<25).map { index in
            InteractionLogged(interactionID: .v7(), contactID: person.contactID, callID: index == 0 ? .v7() : nil, channel: index.isMultiple(of: 2) ? .call : .api,
                              summary: "interaction \(index)", durationSeconds: index.isMultiple(of: 2) ? 60 : nil, occurredAt: at(minutes: index))
        }
        let leads = (0..<22).map { index in
            LeadCreated(leadID: .v7(), name: "Maria Lopez", phone: "+14155550101", intent: .sales, source: .api, createdAt: at(minutes: index))
        }
        let links = leads.map { lead in
            ContactUpserted(contactID: person.contactID, name: "Maria Lopez", phone: "+14155550101", email: "maria@example.com", leadID: lead.leadID,
                            firstSeenAt: at(minutes: 0), lastSeenAt: at(minutes: 30))
        }
        try await seeder.project([person] + interactions + leads + links)
        let loner = contact("No History", phone: "+14155550102", email: nil, seen: 1)
        try await seeder.project([loner])

        try await fixture.test { client in
            let detail = try await client.object(fixture, "/v1/contacts/\(person.contactID)")
            #expect(detail["name"] as? String == "Maria Lopez")
            #expect(detail["email"] as? String == "maria@example.com")
            let embedded = try #require(detail["interactions"] as? [String: Any])
            let firstInteractions = try #require(embedded["items"] as? [[String: Any]])
            #expect(firstInteractions.count == CRMQueries.embeddedLimit)
            #expect(firstInteractions.first?["summary"] as? String == "interaction 24", "newest first")
            let more = try #require(embedded["next_cursor"] as? String)
            let rest = try await client.read(fixture, "/v1/contacts/\(person.contactID)/interactions?cursor=\(more)")
            #expect(rest.nextCursor == nil)
            let allInteractions = (firstInteractions + rest.items).map { $0["summary"] as? String ?? "?" }
            #expect(allInteractions == (0..<25).reversed().map { "interaction \($0)" }, "the rest follows without a gap or a repeat")
            let oldest = try #require(rest.items.last)
            #expect(oldest["call_id"] as? String == interactions[0].callID?.description)
            #expect(oldest["duration_seconds"] as? Int == 60)
            #expect(rest.items[1]["duration_seconds"] is NSNull, "interaction 3 has no duration")

            let embeddedLeads = try #require(detail["leads"] as? [String: Any])
            let firstLeads = try #require(embeddedLeads["items"] as? [[String: Any]])
            #expect(firstLeads.count == CRMQueries.embeddedLimit)
            let moreLeads = try #require(embeddedLeads["next_cursor"] as? String)
            let restLeads = try await client.read(fixture, "/v1/leads?contact_id=\(person.contactID)&cursor=\(moreLeads)")
            #expect((firstLeads + restLeads.items).compactMap { $0["lead_id"] as? String } == leads.reversed().map(\.leadID.description))

            let lonely = try await client.object(fixture, "/v1/contacts/\(loner.contactID)")
            #expect((lonely["interactions"] as? [String: Any])?["items"] as? [Any] != nil)
            #expect(((lonely["interactions"] as? [String: Any])?["items"] as? [Any])?.isEmpty == true)
            #expect((lonely["interactions"] as? [String: Any])?["next_cursor"] is NSNull)
            #expect(((lonely["leads"] as? [String: Any])?["items"] as? [Any])?.isEmpty == true)
            #expect(try await client.read(fixture, "/v1/contacts/\(loner.contactID)/interactions").items.isEmpty)
        }
        try await fixture.drop()
    }

    // MARK: Isolation, refusals, the admin mirror

    @Test func anotherTenantsLeadOrContactIsNotFoundExactlyAsAMissingOne() async throws {
        let fixture = try await EdgeFixture()
        let seeder = Seeder(fixture)
        let theirs = contact("Their Contact", phone: "+14155550201", email: nil, seen: 1)
        let theirLead = LeadCreated(leadID: .v7(), name: "Their Lead", intent: .sales, source: .api, createdAt: at(minutes: 1))
        try await seeder.project([theirs, theirLead,
                                  InteractionLogged(interactionID: .v7(), contactID: theirs.contactID, channel: .call, occurredAt: at(minutes: 1))],
                                 tenant: Self.otherTenant)

        try await fixture.test { client in
            for (theirPath, missingPath) in [("/v1/leads/\(theirLead.leadID)", "/v1/leads/\(Identifier.v7())"),
                                             ("/v1/contacts/\(theirs.contactID)", "/v1/contacts/\(Identifier.v7())"),
                                             ("/v1/contacts/\(theirs.contactID)/interactions", "/v1/contacts/\(Identifier.v7())/interactions")] {
                let their = try await client.get(fixture, theirPath)
                let missing = try await client.get(fixture, missingPath)
                #expect(their.status == .notFound, "\(theirPath)")
                #expect(missing.status == .notFound)
                #expect(their.text == missing.text, "no hint that it exists: \(their.text)")
                #expect(their.headers[.contentType] == "application/problem+json")
            }
            #expect(try await client.get(fixture, "/v1/leads/not-a-uuid").status == .notFound)
            #expect(try await client.get(fixture, "/v1/contacts/12345").status == .notFound)
            #expect(try await client.read(fixture, "/v1/leads").items.isEmpty, "their leads are not listed")
            #expect(try await client.read(fixture, "/v1/contacts?phone=%2B14155550201").items.isEmpty)
            #expect(try await client.read(fixture, "/v1/leads?contact_id=\(theirs.contactID)").items.isEmpty)
        }
        try await fixture.drop()
    }

    @Test func malformedParametersAre400NamingTheParameter() async throws {
        let fixture = try await EdgeFixture()
        let contactID = Identifier.v7()
        let contactsCursor = CRMQueries.Position(time: .now, id: .v7()).cursor(of: CRMQueries.contactsList).encoded
        let tamperedCursor = PageCursor(list: CRMQueries.leadsList, values: ["yesterday", "me"]).encoded
        let farCursor = PageCursor(list: CRMQueries.leadsList, values: ["0000-01-01T00:00:00Z", Identifier.v7().description]).encoded
        let cases: [(String, String)] = [
            ("/v1/leads?from=yesterday", "from"),
            ("/v1/leads?to=2026-13-01T00:00:00Z", "to"),
            ("/v1/leads?from=2026-12-02T00:00:00Z&to=2026-12-01T00:00:00Z", "to"),
            ("/v1/leads?from=2026-12-02T00:00:00Z&to=2026-12-02T00:00:00Z", "to"),
            ("/v1/leads?intent=maybe", "intent"),
            ("/v1/leads?source=fax", "source"),
            ("/v1/leads?contact_id=42", "contact_id"),
            ("/v1/leads?call_id=", "call_id"),
            ("/v1/leads?limit=0", "limit"),
            ("/v1/leads?limit=201", "limit"),
            ("/v1/leads?limit=ten", "limit"),
            ("/v1/leads?cursor=garbage!", "cursor"),
            ("/v1/leads?cursor=\(contactsCursor)", "cursor"),
            ("/v1/leads?cursor=\(tamperedCursor)", "cursor"),
            ("/v1/leads?cursor=\(farCursor)", "cursor"),
            ("/v1/leads?sort=oldest", "sort"),
            ("/v1/leads?intent=sales&intent=support", "intent"),
            ("/v1/leads/\(Identifier.v7())?verbose=1", "verbose"),
            ("/v1/contacts?phone=4155550100", "phone"),
            ("/v1/contacts?phone=%2B0155", "phone"),
            ("/v1/contacts?email=", "email"),
            ("/v1/contacts?email=\(String(repeating: "e", count: 255))", "email"),
            ("/v1/contacts?name=\(String(repeating: "n", count: 201))", "name"),
            ("/v1/contacts?name=a%00b", "name"),
            ("/v1/contacts?limit=1000", "limit"),
            ("/v1/contacts?q=ada", "q"),
            ("/v1/contacts/\(contactID)/interactions?limit=-1", "limit"),
            ("/v1/contacts/\(contactID)/interactions?cursor=\(contactsCursor)", "cursor"),
        ]
        try await fixture.test { client in
            for (uri, parameter) in cases {
                let response = try await client.get(fixture, uri)
                #expect(response.status == .badRequest, "\(uri): \(response.status) \(response.text)")
                #expect(response.headers[.contentType] == "application/problem+json", "\(uri)")
                #expect(response.json["field"] as? String == parameter, "\(uri): \(response.text)")
            }
        }
        try await fixture.drop()
    }

    @Test func theAdminKeyReadsAnyTenantsLeadsAndContactsUnderAdmin() async throws {
        let fixture = try await EdgeFixture()
        let seeder = Seeder(fixture)
        let theirs = contact("Their Contact", phone: "+14155550301", email: "their@example.com", seen: 1)
        let theirLead = LeadCreated(leadID: .v7(), name: "Their Lead", intent: .complaint, source: .api, createdAt: at(minutes: 1))
        // The operator reads tenants the directory knows.
        _ = try await fixture.directory.provision(NewTenant(id: Self.otherTenant, name: "Other Dental"), publisher: fixture.publisher)
        try await seeder.project([theirs, theirLead], tenant: Self.otherTenant)
        try await seeder.project([LeadCreated(leadID: .v7(), name: "Our Lead", intent: .sales, source: .api, createdAt: at(minutes: 2))])
        let admin = EdgeFixture.adminKey
        let other = Self.otherTenant

        try await fixture.test { client in
            let leads = try await client.read(fixture, "/admin/tenants/\(other)/leads?intent=complaint", key: admin)
            #expect(leads.items.compactMap { $0["lead_id"] as? String } == [theirLead.leadID.description])
            let lead = try await client.object(fixture, "/admin/tenants/\(other)/leads/\(theirLead.leadID)", key: admin)
            #expect(lead["name"] as? String == "Their Lead")
            let contacts = try await client.read(fixture, "/admin/tenants/\(other)/contacts?email=THEIR%40example.com", key: admin)
            #expect(contacts.items.compactMap { $0["contact_id"] as? String } == [theirs.contactID.description])
            let detail = try await client.object(fixture, "/admin/tenants/\(other)/contacts/\(theirs.contactID)", key: admin)
            #expect(detail["phone"] as? String == "+14155550301")
            #expect(try await client.read(fixture, "/admin/tenants/\(other)/contacts/\(theirs.contactID)/interactions", key: admin).items.isEmpty)
            // The mirror is the admin's: each tenant still sees only its own rows.
            let ours = try await client.read(fixture, "/admin/tenants/\(fixture.tenant)/leads", key: admin)
            #expect(ours.items.compactMap { $0["name"] as? String } == ["Our Lead"])
            // A tenant's key does not open the admin mirror, and the admin mirror refuses bad input as /v1 does.
            #expect(try await client.get(fixture, "/admin/tenants/\(other)/leads").status == .unauthorized)
            #expect(try await client.execute(uri: "/admin/tenants/\(other)/contacts", method: .get).status == .unauthorized)
            let refused = try await client.get(fixture, "/admin/tenants/\(other)/leads?limit=500", key: admin)
            #expect(refused.status == .badRequest)
            #expect(refused.json["field"] as? String == "limit")
            #expect(try await client.get(fixture, "/admin/tenants/\(other)/leads/\(Identifier.v7())", key: admin).status == .notFound)
        }
        try await fixture.drop()
    }

    /// Every shape these routes answer validates against its schema in schemas/openapi.yaml (with
    /// formats checked), nulls included: what schemathesis checks on random ids, here on rows.
    @Test func everyAnswerMatchesItsSchemaInTheOpenAPIDocument() async throws {
        let fixture = try await EdgeFixture()
        let seeder = Seeder(fixture)
        let call = Identifier.v7()
        let person = contact("Maria Lopez", phone: "+14155550401", email: "maria@example.com", seen: 5)
        let stranger = contact(nil, phone: nil, email: "anon@example.com", seen: 6)
        let lead = LeadCreated(leadID: .v7(), callID: call, name: "Maria Lopez", phone: "+14155550401", intent: .appointment, source: .call,
                               notes: "line one\nline \"two\"", createdAt: at(minutes: 1))
        let bare = LeadCreated(leadID: .v7(), email: "api@example.com", intent: .other, source: .api, createdAt: at(minutes: 2))
        try await seeder.project([CallStarted(callID: call, provider: .twilio, providerCallID: "CA1", direction: .inbound,
                                              from: "+14155550401", to: "+14155550199", startedAt: at(minutes: 0)),
                                  CallEnded(callID: call, endedAt: at(minutes: 3), status: .completed, durationSeconds: 180, answered: true)],
                                 projection: CallsProjection())
        var linked = person
        linked.leadID = lead.leadID
        try await seeder.project([linked, stranger, lead, bare,
                                  InteractionLogged(interactionID: .v7(), contactID: person.contactID, callID: call, channel: .call,
                                                    summary: "booked a cleaning", durationSeconds: 180, occurredAt: at(minutes: 3)),
                                  InteractionLogged(interactionID: .v7(), contactID: person.contactID, channel: .email, occurredAt: at(minutes: 4))])

        let answers = Mutex<[(uri: String, schema: String, body: String)]>([])
        try await fixture.test { client in
            for (uri, schema) in [("/v1/leads", "LeadPage"), ("/v1/leads?limit=1", "LeadPage"), ("/v1/leads/\(lead.leadID)", "LeadDetail"),
                                  ("/v1/leads/\(bare.leadID)", "LeadDetail"), ("/v1/contacts", "ContactPage"),
                                  ("/v1/contacts/\(person.contactID)", "ContactDetail"), ("/v1/contacts/\(stranger.contactID)", "ContactDetail"),
                                  ("/v1/contacts/\(person.contactID)/interactions?limit=1", "InteractionPage"),
                                  ("/admin/tenants/\(fixture.tenant)/leads/\(lead.leadID)", "LeadDetail")] {
                let key = uri.hasPrefix("/admin") ? EdgeFixture.adminKey : nil
                let response = try await client.get(fixture, uri, key: key)
                #expect(response.status == .ok, "\(uri): \(response.text)")
                answers.withLock { $0.append((uri, schema, response.text)) }
            }
        }
        let cases: [[String: Any]] = try answers.withLock { $0 }.map { answer in
            ["uri": answer.uri, "schema": answer.schema, "body": try JSONSerialization.jsonObject(with: Data(answer.body.utf8))]
        }
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("crm-answers-\(UUID()).json")
        try JSONSerialization.data(withJSONObject: cases).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        let (status, output) = try await SchemaCheck.run(document: TestServers.root.appendingPathComponent("schemas/openapi.yaml"), cases: file)
        #expect(status == 0, "answers that schemas/openapi.yaml refuses:\n\(output)")
        #expect(output.contains("checked 9 answers"), "\(output)")
        try await fixture.drop()
    }
}

// MARK: Helpers

private func at(minutes: Int) -> Timestamp {
    CRMReadRoutesTests.base.adding(microseconds: Int64(minutes) * 60_000_000)
}

private func contact(_ name: String?, phone: String?, email: String?, seen minutes: Int) -> ContactUpserted {
    ContactUpserted(contactID: .v7(), name: name, phone: phone, email: email, firstSeenAt: at(minutes: 0), lastSeenAt: at(minutes: minutes))
}

/// Writes read-model rows the way the projectors do: events applied by a projection in a
/// transaction of the owner role.
private final class Seeder: @unchecked Sendable {
    let fixture: EdgeFixture
    var entry: UInt64 = 1

    init(_ fixture: EdgeFixture) { self.fixture = fixture }

    func project(_ messages: [any Message], tenant: Identifier? = nil, projection: some Projection = CRMProjection()) async throws {
        var events: [ProjectedEvent] = []
        for message in messages {
            events.append(ProjectedEvent(stream: "test", entryID: StreamEntryID(milliseconds: entry),
                                         envelope: Self.envelope(of: message, tenant: tenant ?? fixture.tenant), message: message))
            entry += 1
        }
        let batch = events
        try await fixture.db.withConnection { db in try db.withTransaction { db in try projection.apply(batch, in: db) } }
    }

    private static func envelope(of message: any Message, tenant: Identifier) -> EventEnvelope {
        func wrap<M: Message>(_ message: M) -> EventEnvelope { EventEnvelope(message, tenant: tenant, source: "/test") }
        return wrap(message)
    }
}

/// A page as the client sees it.
struct ReadPage {
    var items: [[String: Any]]
    var nextCursor: String?
}

extension TestClientProtocol {
    /// GET with the tenant's API key; records a failure unless the answer is 200.
    func get(_ fixture: EdgeFixture, _ uri: String, key: String? = nil) async throws -> TestResponse {
        try await execute(uri: uri, method: .get, headers: [.authorization: "Bearer \(key ?? fixture.apiKey)"])
    }

    func object(_ fixture: EdgeFixture, _ uri: String, key: String? = nil) async throws -> [String: Any] {
        let response = try await get(fixture, uri, key: key)
        #expect(response.status == .ok, "\(uri): \(response.status) \(response.text)")
        #expect(response.headers[.contentType] == "application/json", "\(uri)")
        return try #require(try JSONSerialization.jsonObject(with: Data(response.text.utf8)) as? [String: Any], "\(uri): \(response.text)")
    }

    func read(_ fixture: EdgeFixture, _ uri: String, key: String? = nil) async throws -> ReadPage {
        let page = try await object(fixture, uri, key: key)
        let items = try #require(page["items"] as? [[String: Any]], "\(uri)")
        #expect(page.keys.sorted() == ["items", "next_cursor"])
        return ReadPage(items: items, nextCursor: page["next_cursor"] as? String)
    }
}

/// Validates answers against the OpenAPI document's component schemas with `jsonschema` (in the
/// venv `tools/test` makes, beside openapi-spec-validator), formats included.
enum SchemaCheck {
    static let script = """
        import json, sys, yaml
        from jsonschema import Draft202012Validator
        from referencing import Registry, Resource
        from referencing.jsonschema import DRAFT202012
        document = yaml.safe_load(open(sys.argv[1]))
        registry = Registry().with_resource("urn:openapi", Resource.from_contents(document, default_specification=DRAFT202012))
        failures = 0
        cases = json.load(open(sys.argv[2]))
        for case in cases:
            schema = {"$ref": "urn:openapi#/components/schemas/" + case["schema"]}
            validator = Draft202012Validator(schema, registry=registry, format_checker=Draft202012Validator.FORMAT_CHECKER)
            for error in validator.iter_errors(case["body"]):
                failures += 1
                print(case["uri"], case["schema"], list(error.absolute_path), error.message)
        print("checked %d answers, %d failures" % (len(cases), failures))
        sys.exit(1 if failures else 0)
        """

    static func run(document: URL, cases: URL) async throws -> (Int32, String) {
        let python = ProcessInfo.processInfo.environment["VOICECORE_PYTHON"] ?? "python3"
        return try await runProcess([python, "-c", script, document.path, cases.path])
    }
}
