import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import ServiceLifecycle
import Synchronization
import Testing
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCorePostgres
import VoiceCoreProjections
import VoiceCoreQueries
import VoiceCoreRedis
import VoiceCoreTenants
import VoiceCoreTime
@testable import VoiceCoreEdge

/// The audit trail against real Redis and Postgres: the admin API records its changes in their own
/// transactions, the tenant API's commands are recorded by the audit projection, and `GET
/// /v1/audit` reads a tenant's trail under row-level security.
@Suite("The audit trail", .serialized)
struct AuditTrailTests {
    /// One row of `audit_logs`, as the owning role sees it (every tenant).
    struct Row: Equatable {
        var tenant: Identifier
        var requestID: String
        var actor: String
        var apiKeyID: String?
        var action: String
        var target: String
        var outcome: String
        var details: String
        /// The whole row as text (to check no secret is in it).
        var text: String
    }

    static func rows(_ fixture: EdgeFixture, tenant: Identifier? = nil) async throws -> [Row] {
        try await fixture.db.query("""
            SELECT tenant_id, request_id::text AS request_id, actor, api_key_id, action, target, outcome, details::text AS details, a::text AS text
            FROM audit_logs a WHERE \(tenant?.uuid)::uuid IS NULL OR tenant_id = \(tenant?.uuid) ORDER BY at, request_id
            """).map { row in
            Row(tenant: Identifier(try row.decode(UUID.self, "tenant_id")), requestID: try row.decode(String.self, "request_id"),
                actor: try row.decode(String.self, "actor"), apiKeyID: try row.decode(String?.self, "api_key_id"),
                action: try row.decode(String.self, "action"), target: try row.decode(String.self, "target"),
                outcome: try row.decode(String.self, "outcome"), details: try row.decode(String.self, "details"), text: try row.decode(String.self, "text"))
        }
    }

    static let admin: HTTPFields = [.authorization: "Bearer \(EdgeFixture.adminKey)", .contentType: "application/json"]

    static func requestID(_ response: TestResponse) -> String {
        response.headers[.requestID] ?? "(no X-Request-Id)"
    }

    /// The fixture's schema as a URL (for the projector and the read pool).
    static func schemaURL(_ fixture: EdgeFixture) -> String {
        let separator = TestServers.databaseURL.contains("?") ? "&" : "?"
        return TestServers.databaseURL + separator + "options=-c%20search_path%3D\(fixture.schemaName)"
    }

    /// The fixture's edge with the read API on (reads over a pool of its own).
    static func readingEdge(_ fixture: EdgeFixture) throws -> (Edge, TenantReads) {
        let reads = TenantReads(pool: PostgresPool(configuration: try PostgresConfiguration(url: schemaURL(fixture)), size: 2))
        let edge = Edge(configuration: EdgeConfiguration(publicBaseURL: EdgeFixture.publicBase, tenantCacheTTL: .zero, adminKey: EdgeFixture.adminKey),
                        publisher: fixture.publisher, lookup: fixture.directory, directory: fixture.directory, reads: reads)
        return (edge, reads)
    }

    static func test(_ edge: Edge, _ body: @Sendable (any TestClientProtocol) async throws -> Void) async throws {
        try await Application(router: edge.router()).test(.router) { client in try await body(client) }
    }

    // MARK: The admin API

    @Test("each admin change leaves one row under the X-Request-Id it answered; a refused one leaves none")
    func adminChangesAreRecordedInTheirTransaction() async throws {
        let fixture = try await EdgeFixture()
        defer { Task { try? await fixture.drop() } }
        // The fixture provisioned its tenant with the directory directly: an operator's change.
        let provisionedByOperator = try await Self.rows(fixture)
        try #require(provisionedByOperator.count == 1)
        #expect(provisionedByOperator[0].actor == "operator" && provisionedByOperator[0].action == "tenant.provision")
        #expect(provisionedByOperator[0].tenant == fixture.tenant)

        let token = "tok_\(UUID().uuidString)"
        try await fixture.test { client in
            // Provisioning.
            let created = try await client.execute(uri: "/admin/tenants", method: .post, headers: Self.admin,
                                                   body: ByteBuffer(string: #"{"name":"Audit Co","twilio_auth_token":"\#(token)"}"#))
            #expect(created.status == .created)
            let tenant = try #require(Identifier(created.json["tenant_id"] as? String ?? ""))
            let firstKey = try #require(APIKey((created.json["api_key"] as? String ?? "")[...]))
            var rows = try await Self.rows(fixture, tenant: tenant)
            try #require(rows.count == 1)
            #expect(rows[0].requestID == Self.requestID(created))
            #expect(rows[0].actor == "admin" && rows[0].apiKeyID == nil)
            #expect(rows[0].action == "tenant.provision" && rows[0].target == "tenants/\(tenant)" && rows[0].outcome == "succeeded")
            #expect(rows[0].details.contains(#""credentials": ["twilio_auth_token"]"#), "\(rows[0].details)")
            #expect(rows[0].details.contains(firstKey.keyID))
            #expect(!rows[0].text.contains(token) && !rows[0].text.contains(firstKey.plaintext))

            // Rotating the API key.
            let rotated = try await client.execute(uri: "/admin/tenants/\(tenant)/api-keys", method: .post, headers: Self.admin)
            #expect(rotated.status == .created)
            let newKey = try #require(APIKey((rotated.json["api_key"] as? String ?? "")[...]))
            rows = try await Self.rows(fixture, tenant: tenant)
            try #require(rows.count == 2)
            #expect(rows[1].requestID == Self.requestID(rotated))
            #expect(rows[1].actor == "admin" && rows[1].action == "api_key.rotate" && rows[1].target == "api-keys/\(newKey.keyID)")
            #expect(rows[1].details.contains(#""revoked_api_key_ids": ["\#(firstKey.keyID)"]"#), "\(rows[1].details)")
            #expect(!rows[1].text.contains(newKey.plaintext))

            // Changing credentials.
            let changed = try await client.execute(uri: "/admin/tenants/\(tenant)", method: .patch, headers: Self.admin,
                                                   body: ByteBuffer(string: #"{"twilio_auth_token":"tok_rotated","requests_per_second":7}"#))
            #expect(changed.status == .noContent)
            rows = try await Self.rows(fixture, tenant: tenant)
            try #require(rows.count == 3)
            #expect(rows[2].requestID == Self.requestID(changed))
            #expect(rows[2].actor == "admin" && rows[2].action == "tenant.credentials.change" && rows[2].target == "tenants/\(tenant)")
            #expect(rows[2].details.contains(#""changed": ["twilio_auth_token", "requests_per_second"]"#), "\(rows[2].details)")
            #expect(!rows[2].text.contains("tok_rotated"))
            #expect(Set(rows.map(\.requestID)).count == 3, "one request id per request")

            // Refused changes: answered 4xx (with a request id of their own), nothing recorded.
            let before = try await Self.rows(fixture)
            let unknown = Identifier.v7()
            let refused = [
                try await client.execute(uri: "/admin/tenants", method: .post, headers: Self.admin,
                                         body: ByteBuffer(string: #"{"tenant_id":"\#(tenant)","name":"Twice"}"#)),
                try await client.execute(uri: "/admin/tenants", method: .post, headers: Self.admin,
                                         body: ByteBuffer(string: #"{"name":"Nowhere","time_zone":"Mars/Base"}"#)),
                try await client.execute(uri: "/admin/tenants/\(unknown)/api-keys", method: .post, headers: Self.admin),
                try await client.execute(uri: "/admin/tenants/\(unknown)", method: .patch, headers: Self.admin,
                                         body: ByteBuffer(string: #"{"twilio_auth_token":"tok_x"}"#)),
                try await client.execute(uri: "/admin/tenants/\(tenant)", method: .patch, headers: Self.admin,
                                         body: ByteBuffer(string: #"{"telnyx_public_key":"not base64"}"#)),
                try await client.execute(uri: "/admin/tenants/\(tenant)/api-keys", method: .post, headers: [.authorization: "Bearer wrong"]),
            ]
            #expect(refused.map(\.status) == [.conflict, .unprocessableContent, .notFound, .notFound, .unprocessableContent, .unauthorized])
            for response in refused { #expect(Identifier(Self.requestID(response)) != nil, "every answer carries its request id") }
            #expect(try await Self.rows(fixture) == before)
            // The refused credential change left the credentials as they were, too.
            #expect(try await fixture.directory.credentials(of: tenant)?.requestsPerSecond == 7)
        }
    }

    // MARK: The tenant API

    @Test("a tenant API command is recorded once by the audit projection, under its key id, even when delivered twice")
    func tenantCommandsAreRecordedOnceByTheProjection() async throws {
        let fixture = try await EdgeFixture()
        defer { Task { try? await fixture.drop() } }
        let key = try #require(APIKey(fixture.apiKey[...]))
        let api: HTTPFields = [.authorization: "Bearer \(fixture.apiKey)", .contentType: "application/json"]
        let contact = Identifier.v7()
        let answers = Mutex<[(requestID: String, commandID: String)]>([])
        try await fixture.test { client in
            let lead = try await client.execute(uri: "/v1/leads", method: .post, headers: api,
                                                body: ByteBuffer(string: #"{"intent":"sales","name":"Jane Caller","phone":"+14155550142"}"#))
            #expect(lead.status == .accepted)
            let update = try await client.execute(uri: "/v1/contacts/\(contact)", method: .put, headers: api,
                                                  body: ByteBuffer(string: #"{"email":"jane@example.com"}"#))
            #expect(update.status == .accepted)
            for response in [lead, update] {
                let answer = (Self.requestID(response), response.json["command_id"] as? String ?? "")
                answers.withLock { $0.append(answer) }
            }
        }
        let answered = answers.withLock { $0 }
        // The command's id is the request id; its source names the key by its id, never the key.
        for (requestID, commandID) in answered { #expect(requestID == commandID) }
        let commands = try await fixture.commands()
        #expect(commands.count == 2)
        for command in commands {
            #expect(command.source == "/edge/api/keys/\(key.keyID)")
            #expect(!command.fields.contains { String(decoding: $0.value, as: UTF8.self).contains(fixture.apiKey) })
        }
        // A CreateLead of a service (not an API request) is no audit row.
        let serviceLead = EventEnvelope(CreateLead(leadID: .v7(), name: "From a call", intent: .sales), tenant: fixture.tenant, source: "/services/ai")
        _ = try await fixture.publisher.publish(serviceLead, category: CreateLead.category, kind: .command)

        let projector = ProjectorRunner(
            projections: [AuditProjection()], redis: try RedisConfiguration(url: TestServers.redisURL),
            postgres: try PostgresConfiguration(url: Self.schemaURL(fixture)),
            configuration: ProjectorConfiguration(naming: fixture.naming, instance: "audit-test", batchSize: 50, block: .milliseconds(100),
                                                  rebalanceInterval: .milliseconds(300)))
        let group = ServiceGroup(services: [projector], logger: Logger(label: "test"))
        let running = Task { try await group.run() }
        defer { Task { await group.triggerGracefulShutdown(); _ = try? await running.value } }

        try await Self.eventually("the three commands are projected") { projector.statistics["audit"]?.applied == 3 }
        #expect(projector.statistics["audit"]?.failed == 0)
        var rows = try await Self.rows(fixture, tenant: fixture.tenant).filter { $0.actor == "api_key" }
        try #require(rows.count == 2)
        #expect(Set(rows.map(\.requestID)) == Set(answered.map(\.requestID)))
        for row in rows {
            #expect(row.apiKeyID == key.keyID && row.outcome == "accepted")
            #expect(!row.text.contains(fixture.apiKey), "never the key")
            #expect(!row.text.contains("Jane") && !row.text.contains("+14155550142") && !row.text.contains("jane@example.com"), "no caller data: \(row.text)")
        }
        let leadRow = try #require(rows.first { $0.action == "lead.create" })
        #expect(leadRow.target.hasPrefix("leads/"))
        #expect(leadRow.details.contains(#""fields": ["name", "phone"]"#), "\(leadRow.details)")
        let contactRow = try #require(rows.first { $0.action == "contact.update" })
        #expect(contactRow.target == "contacts/\(contact)")

        // The lead's command delivered again (published twice, as after a lost acknowledgement).
        let leadCommand = try #require(commands.first { $0.type == CreateLead.type })
        let stream = fixture.naming.stream(for: .crm, kind: .command, tenant: fixture.tenant, subject: leadCommand.subject)
        _ = try await fixture.redis.execute(.xadd(stream, fields: leadCommand.fields.map { StreamField(name: $0.name, value: $0.value) }))
        try await Self.eventually("the duplicate is projected") { projector.statistics["audit"]?.applied == 4 }
        rows = try await Self.rows(fixture, tenant: fixture.tenant).filter { $0.actor == "api_key" }
        #expect(rows.count == 2, "a command delivered twice is recorded once")
    }

    // MARK: Reading the trail

    @Test("GET /v1/audit shows the tenant's own trail, newest first, page by page and filtered; the admin mirror any tenant's")
    func readingTheTrail() async throws {
        let fixture = try await EdgeFixture()
        defer { Task { try? await fixture.drop() } }
        let (edge, reads) = try Self.readingEdge(fixture)
        defer { Task { await reads.pool.close() } }
        try await Self.test(edge) { client in
            // Another tenant with changes of its own.
            let other = try await client.execute(uri: "/admin/tenants", method: .post, headers: Self.admin, body: ByteBuffer(string: #"{"name":"Other Co"}"#))
            let otherTenant = try #require(Identifier(other.json["tenant_id"] as? String ?? ""))
            let otherKey = other.json["api_key"] as? String ?? ""
            _ = try await client.execute(uri: "/admin/tenants/\(otherTenant)", method: .patch, headers: Self.admin, body: ByteBuffer(string: #"{"requests_per_second":9}"#))
            // Four credential changes of the fixture's tenant.
            for rate in 20..<24 {
                let response = try await client.execute(uri: "/admin/tenants/\(fixture.tenant)", method: .patch, headers: Self.admin,
                                                        body: ByteBuffer(string: #"{"requests_per_second":\#(rate)}"#))
                #expect(response.status == .noContent)
            }
            let own = try await Self.rows(fixture, tenant: fixture.tenant)
            try #require(own.count == 5)
            let others = Set(try await Self.rows(fixture, tenant: otherTenant).map(\.requestID))
            try #require(others.count == 2)

            let api: HTTPFields = [.authorization: "Bearer \(fixture.apiKey)"]
            // Page by page, two at a time: every own row once, newest first, none of the other's.
            var seen: [[String: Any]] = []
            var uri = "/v1/audit?limit=2"
            while true {
                let page = try await client.execute(uri: uri, method: .get, headers: api)
                try #require(page.status == .ok, "\(page.text)")
                #expect(Identifier(Self.requestID(page)) != nil)
                let items = page.json["items"] as? [[String: Any]] ?? []
                #expect(items.count <= 2)
                seen += items
                guard let next = page.json["next_cursor"] as? String else { break }
                uri = "/v1/audit?limit=2&cursor=\(next)"
            }
            let ids = seen.compactMap { $0["request_id"] as? String }
            #expect(ids == own.reversed().map(\.requestID), "newest first, each once")
            #expect(ids.allSatisfy { !others.contains($0) })
            for item in seen {
                #expect(Set(item.keys) == ["request_id", "at", "actor", "api_key_id", "action", "target", "outcome", "details"])
            }
            let newest = try #require(seen.first)
            #expect(newest["actor"] as? String == "admin" && newest["api_key_id"] is NSNull && newest["outcome"] as? String == "succeeded")
            #expect((newest["details"] as? [String: Any])?["changed"] as? [String] == ["requests_per_second"])

            // Filters.
            let changes = try await client.execute(uri: "/v1/audit?action=tenant.credentials.change", method: .get, headers: api)
            #expect((changes.json["items"] as? [[String: Any]])?.count == 4)
            let byOperator = try await client.execute(uri: "/v1/audit?actor=operator", method: .get, headers: api)
            #expect((byOperator.json["items"] as? [[String: Any]])?.compactMap { $0["action"] as? String } == ["tenant.provision"])
            let one = try await client.execute(uri: "/v1/audit?request_id=\(own[2].requestID)", method: .get, headers: api)
            #expect((one.json["items"] as? [[String: Any]])?.compactMap { $0["request_id"] as? String } == [own[2].requestID])
            let othersRequest = try await client.execute(uri: "/v1/audit?request_id=\(others.first ?? "")", method: .get, headers: api)
            #expect((othersRequest.json["items"] as? [[String: Any]])?.isEmpty == true, "another tenant's row is invisible")
            let future = try await client.execute(uri: "/v1/audit?from=2999-01-01T00:00:00Z", method: .get, headers: api)
            #expect(future.text == #"{"items":[],"next_cursor":null}"#)

            // Bad input: 400 naming the parameter.
            for (query, parameter) in [("action=tenant.delete", "action"), ("actor=root", "actor"), ("limit=201", "limit"), ("cursor=abc", "cursor"),
                                       ("from=yesterday", "from"), ("request_id=42", "request_id"), ("tenant=x", "tenant"),
                                       ("from=2026-12-02T00:00:00Z&to=2026-12-01T00:00:00Z", "from"),
                                       ("cursor=\(PageCursor(list: "audit", values: ["soon", own[0].requestID]).encoded)", "cursor"),
                                       ("cursor=\(PageCursor(list: "calls", values: ["1", own[0].requestID]).encoded)", "cursor")] {
                let response = try await client.execute(uri: "/v1/audit?\(query)", method: .get, headers: api)
                #expect(response.status == .badRequest, "\(query): \(response.text)")
                #expect(response.json["field"] as? String == parameter, "\(query): \(response.text)")
            }
            #expect(try await client.execute(uri: "/v1/audit", method: .get, headers: [.authorization: "Bearer vck_nope"]).status == .unauthorized)

            // The other tenant's key sees its own rows only; the admin mirror any tenant's.
            let theirs = try await client.execute(uri: "/v1/audit", method: .get, headers: [.authorization: "Bearer \(otherKey)"])
            #expect(Set((theirs.json["items"] as? [[String: Any]] ?? []).compactMap { $0["request_id"] as? String }) == others)
            let mirrored = try await client.execute(uri: "/admin/tenants/\(otherTenant)/audit", method: .get, headers: Self.admin)
            #expect(Set((mirrored.json["items"] as? [[String: Any]] ?? []).compactMap { $0["request_id"] as? String }) == others)
        }
    }

    @Test("a tenant-scoped session cannot insert, change or delete audit rows (42501)")
    func tenantRoleCannotRewriteTheTrail() async throws {
        let fixture = try await EdgeFixture()
        defer { Task { try? await fixture.drop() } }
        let tenant = fixture.tenant.description
        for statement: PostgresQuery in [
            "DELETE FROM audit_logs",
            "UPDATE audit_logs SET outcome = 'accepted'",
            "INSERT INTO audit_logs (tenant_id, actor, action, target, request_id, outcome) VALUES (\(fixture.tenant.uuid), 'admin', 'tenant.provision', 'x', \(UUID()), 'succeeded')",
            "TRUNCATE audit_logs",
        ] {
            let error = await #expect(throws: PostgresError.self) {
                try await fixture.db.withTransaction { db in
                    try db.query("SET LOCAL ROLE voicecore_tenant")
                    try db.query("SELECT set_config('app.tenant_id', \(tenant), true)")
                    try db.query(statement)
                }
            }
            #expect(error?.sqlState == "42501", "\(statement.sql): \(String(describing: error))")
        }
        #expect(try await Self.rows(fixture).count == 1)
    }

    @Test("every answer carries an X-Request-Id the edge made, never the client's")
    func everyAnswerCarriesItsRequestID() async throws {
        let fixture = try await EdgeFixture()
        defer { Task { try? await fixture.drop() } }
        try await fixture.test { client in
            var ids = Set<String>()
            for (uri, method) in [("/health", HTTPRequest.Method.get), ("/v1/leads", .post), ("/nowhere", .get)] {
                let response = try await client.execute(uri: uri, method: method, headers: [.requestID: "client-chosen"])
                let id = Self.requestID(response)
                #expect(Identifier(id) != nil && id != "client-chosen", "\(uri): \(id)")
                ids.insert(id)
            }
            #expect(ids.count == 3)
        }
    }

    static func eventually(_ what: String, within limit: Duration = .seconds(30), _ condition: () async throws -> Bool) async throws {
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline {
            if try await condition() { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        Issue.record("timed out waiting until \(what)")
    }
}
