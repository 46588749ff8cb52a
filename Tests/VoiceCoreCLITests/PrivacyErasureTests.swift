import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import Testing
import VoiceCoreEvents
import VoiceCorePostgres
import VoiceCoreProjections
import VoiceCoreRedis
import VoiceCoreSimulation
import VoiceCoreTenants
import VoiceCoreTestSupport
import VoiceCoreTime

/// Issue 33's proof, as an operator would check it: calls from two callers of one tenant and one
/// of another through `voicecore up`, one caller erased with `voicecore privacy erase`, every
/// projection rebuilt with `voicecore replay`; then the whole database (`pg_dump`), the Redis AOF on
/// disk and every stream entry hold nothing of the erased caller, the others' data is intact, and
/// the day's metrics and the usage are what they were. The tenant has an outbound webhook whose
/// receiver is down, so deliveries of the caller's data wait in Redis (queued for a retry, and
/// failed for good in the failures stream) when the erasure runs: they go, the others' stay.
/// Then an erasure SIGKILLed at several points and run again completes.
@Suite("Privacy: a caller erased everywhere, through replay", .serialized)
struct PrivacyErasureTests {
    typealias Child = VoiceCoreProcess

    /// The erased caller: a number, a name, an e-mail and a phrase nobody else says.
    static let erased = Caller(phone: "+14155550111", spoken: "415 555 0111", name: "Zebulon Quartermaine", email: "zebulon.q@example.org",
                               phrase: "purple hippopotamus lasagna")
    /// Another caller of the same tenant, and a caller of another tenant: both must stay.
    static let neighbour = Caller(phone: "+14155550122", spoken: "415 555 0122", name: "Maribel Fontaine", email: "maribel.f@example.org",
                                  phrase: "orange kangaroo pancakes")
    static let stranger = Caller(phone: "+14155550133", spoken: "415 555 0133", name: "Ophelia Brightwater", email: "ophelia.b@example.org",
                                 phrase: "silver canoe marmalade")

    struct Caller {
        var phone: String
        var spoken: String
        var name: String
        var email: String
        var phrase: String

        /// What must not be readable anywhere once the caller is erased.
        var traces: [String] {
            [phone, String(phone.dropFirst()), spoken, name, String(name.split(separator: " ")[1]), email, phrase]
        }

        func utterances() -> [TwilioCallSimulation.Utterance] {
            [
                .init(.outbound, "Thanks for calling. How can I help you today?", at: 3),
                .init(.inbound, "Hi, this is \(name). I'd like to book an appointment for a cleaning next week.", at: 8),
                .init(.outbound, "Of course. What is the best number to reach you?", at: 11),
                .init(.inbound, "You can reach me at \(spoken), and my e-mail is \(email). Also, \(phrase).", at: 16),
            ]
        }
    }

    @Test("an erased caller leaves nothing readable in Postgres, the AOF or the streams, through a replay of every projection; others stay; aggregates stay")
    func callerErasedEverywhereThroughReplay() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: Child.binary.path), "build voicecore first (tools/test does)")
        // A Redis of the test's own, with the AOF as deployed; its base file written without
        // compression so that a search of the files finds any string still in them.
        let redisServer = RestartableRedis(arguments: ["--rdbcompression", "no"])
        try await redisServer.start()
        defer { redisServer.kill() }
        let schema = "privacy_\(UUID().uuidString.prefix(8).lowercased())"
        let prefix = "pv\(UUID().uuidString.prefix(6).lowercased())"
        let separator = TestServers.databaseURL.contains("?") ? "&" : "?"
        let databaseURL = TestServers.databaseURL + separator + "options=-c%20search_path%3D\(schema)"
        let admin = try await PostgresConnection.connect(try PostgresConfiguration(url: TestServers.databaseURL))
        try await admin.query("CREATE SCHEMA \(identifier: schema)")
        defer { Task { _ = try? await admin.query("DROP SCHEMA \(identifier: schema) CASCADE") } }
        let db = try await PostgresConnection.connect(try PostgresConfiguration(url: databaseURL))
        _ = try await Migrator(connection: db, directory: TestServers.root.appendingPathComponent("database/migrations")).up()

        // Two tenants with Twilio credentials, and an API key for the first.
        let masterKey = (0..<32).map { _ in UInt8.random(in: 0...255) }
        let directory = TenantDirectory(connection: db, secrets: try SecretBox(masterKey: masterKey))
        let token1 = "tok_\(UUID().uuidString)", token2 = "tok_\(UUID().uuidString)"
        let sid1 = "AC" + String(repeating: "7", count: 32), sid2 = "AC" + String(repeating: "8", count: 32)
        let tenant1 = try await directory.provision(NewTenant(name: "Erasure Dental", plan: .starter, twilioAccountSID: sid1, twilioAuthToken: token1),
                                                    publisher: nil).tenant.id
        let tenant2 = try await directory.provision(NewTenant(name: "Bystander Clinic", plan: .starter, twilioAccountSID: sid2, twilioAuthToken: token2),
                                                    publisher: nil).tenant.id
        let apiKey = try await directory.rotateAPIKey(of: tenant1)
        // Tenant 1's own systems take every webhook event type, at a receiver that is down: each
        // delivery fails, is retried once 40 s later (±20 %) and then recorded as failed.
        let webhook = try await directory.addWebhook(to: tenant1, url: "http://127.0.0.1:\(try UpCommandTests.freePort())/voicecore")
        #expect(webhook.eventTypes.contains("voicecore.privacy.caller-erased"), "a new webhook is told of erasures too")

        let port = try UpCommandTests.freePort()
        let base = "http://127.0.0.1:\(port)"
        let environment = [
            "VOICECORE_MASTER_KEY": Data(masterKey).base64EncodedString(), "REDIS_URL": redisServer.url, "DATABASE_URL": databaseURL,
            "VOICECORE_PUBLIC_URL": "", "VOICECORE_LOG_LEVEL": "warning", "VOICECORE_API_KEY": "",
            "VOICECORE_DEMO_API_KEY_FILE": FileManager.default.temporaryDirectory.appendingPathComponent("vc-privacy-key-\(schema)").path,
            "VOICECORE_WEBHOOK_ATTEMPTS": "2", "VOICECORE_WEBHOOK_RETRY_DELAY": "40",
        ]
        let deployment = ["--prefix", prefix, "--partitions", "4"]
        var up: Child? = try Child(["up", "--port", String(port), "--instance", "privacy",
                                  "--migrations", TestServers.root.appendingPathComponent("database/migrations").path] + deployment, environment: environment)
        defer { if let up, up.process.isRunning { kill(up.process.processIdentifier, SIGKILL) } }
        try await waitUntil("the edge serves", within: .seconds(60), output: up?.text ?? "") {
            let response = try? await HTTPClient.shared.execute(HTTPClientRequest(url: "\(base)/health"), timeout: .seconds(2))
            return response?.status.code == 200
        }

        // Two calls from the erased caller and one from the neighbour (tenant 1), one from the
        // stranger (tenant 2); and a lead the tenant's app creates for the erased caller.
        let rang = Timestamp.now.adding(microseconds: -600_000_000)
        var calls: [(Identifier, TwilioCallSimulation)] = []
        for (tenant, sid, token, caller, offset) in [(tenant1, sid1, token1, Self.erased, 0), (tenant1, sid1, token1, Self.erased, 60),
                                                     (tenant1, sid1, token1, Self.neighbour, 120), (tenant2, sid2, token2, Self.stranger, 180)] {
            let call = TwilioCallSimulation(tenant: tenant, accountSID: sid, authToken: token, publicBase: base, from: caller.phone, to: "+14155559876",
                                            rangAt: rang.adding(microseconds: Int64(offset) * 1_000_000), utterances: caller.utterances())
            calls.append((tenant, call))
            for webhook in call.webhooks {
                let response = try await HTTPClient.shared.execute(webhook.request(to: base), timeout: .seconds(10))
                #expect(response.status.code == 200, "\(webhook.path) answered \(response.status.code)")
            }
        }
        func postLead(_ caller: Caller, notes: String) async throws {
            var lead = HTTPClientRequest(url: "\(base)/v1/leads")
            lead.method = .POST
            lead.headers.add(name: "Authorization", value: "Bearer \(apiKey.plaintext)")
            lead.headers.add(name: "Content-Type", value: "application/json")
            lead.body = .bytes(ByteBuffer(string: #"{"name":"\#(caller.name)","phone":"\#(caller.phone)","email":"\#(caller.email)","intent":"appointment","notes":"\#(notes)"}"#))
            let leadResponse = try await HTTPClient.shared.execute(lead, timeout: .seconds(10))
            #expect(leadResponse.status.code == 202, "POST /v1/leads answered \(leadResponse.status.code)")
        }
        try await postLead(Self.erased, notes: "Wants the \(Self.erased.phrase) slot")

        // Everything projected: each call ended, summarised and rated; the lead and its contact.
        try await waitUntil("every call ended, summarised and billed, and the lead's contact has its e-mail", within: .seconds(90), output: up?.text ?? "") {
            let ended = try await db.query("SELECT count(*) AS n FROM call_sessions WHERE end_status IS NOT NULL")[0].decode(Int.self, "n")
            let summarised = try await db.query("SELECT count(*) AS n FROM call_analytics WHERE sentiment IS NOT NULL")[0].decode(Int.self, "n")
            let billed = try await db.query("SELECT count(DISTINCT call_id) AS n FROM billing_usage_items WHERE meter = 'call_minutes'")[0].decode(Int.self, "n")
            let contact = try await db.query("SELECT count(*) AS n FROM crm_contacts WHERE email = \(Self.erased.email)")[0].decode(Int.self, "n")
            return ended == 4 && summarised == 4 && billed == 4 && contact == 1
        }

        // Webhook deliveries in Redis when the erasure runs: the calls' first deliveries failed for
        // good (in the failures stream), and a lead of each caller of tenant 1, created now, waits
        // for its retry (queued), each with the caller's data.
        let naming = StreamNaming(partitions: 4, prefix: prefix)
        let failuresStream = "\(prefix):{integrations}:webhook-failures", jobsKey = "\(prefix):{integrations}:jobs"
        try await waitUntil("deliveries about both callers of tenant 1 failed for good", within: .seconds(120), output: up?.text ?? "") {
            let failures = try redisText(redisServer, ["XRANGE", failuresStream, "-", "+"])
            return Self.erased.traces.contains { failures.contains($0) } && Self.neighbour.traces.contains { failures.contains($0) }
        }
        try await postLead(Self.erased, notes: "Call back about the \(Self.erased.phrase)")
        try await postLead(Self.neighbour, notes: "Call back about the \(Self.neighbour.phrase)")
        try await waitUntil("both new leads projected and their deliveries queued", within: .seconds(30), output: up?.text ?? "") {
            let leads = try await db.query("SELECT count(*) AS n FROM leads WHERE notes LIKE 'Call back about%'")[0].decode(Int.self, "n")
            let jobs = try redisText(redisServer, ["HGETALL", jobsKey])
            return leads == 2 && jobs.contains(Self.erased.email) && jobs.contains(Self.neighbour.email)
        }

        let aggregatesBefore = try await aggregates(db)
        let dumpBefore = try pgDump(schema: schema)
        for trace in Self.erased.traces + Self.neighbour.traces + Self.stranger.traces {
            let found = dumpBefore.contains(trace)
            #expect(found, "before the erasure the database holds \(trace) (the search can find it)")
        }

        // The business's own number is the callee of every inbound call, not a caller: it matches nothing.
        let business = try Child(["privacy", "erase", "--tenant", tenant1.description, "--phone", "+14155559876"] + deployment, environment: environment)
        let businessStatus = try await business.waitForExit(within: .seconds(60))
        #expect(businessStatus == 2, "erasing the tenant's own number (the callee of inbound calls) matches nothing:\n\(business.text)")

        // The erasure, as an operator runs it.
        let erase = try Child(["privacy", "erase", "--tenant", tenant1.description, "--phone", Self.erased.phone] + deployment, environment: environment)
        let erasedStatus = try await erase.waitForExit(within: .seconds(120))
        #expect(erasedStatus == 0, "voicecore privacy erase completes:\n\(erase.text)")
        let state = try await db.query("SELECT state, identifier_sealed IS NULL AS forgotten FROM privacy_erasures WHERE tenant_id = \(tenant1.uuid)")
        let states = try state.map { "\(try $0.decode(String.self, "state")) \(try $0.decode(Bool.self, "forgotten"))" }
        #expect(states == ["completed true"], "one erasure, completed, its identifier no longer held:\n\(erase.text)")

        // Every projection rebuilt from the archive.
        for projection in StandardProjections.all.filter(\.isReplayable).map(\.name) {
            let replay = try Child(["replay", projection], environment: environment)
            let status = try await replay.waitForExit(within: .seconds(120))
            #expect(status == 0, "voicecore replay \(projection):\n\(replay.text)")
        }

        // Postgres: nothing of the erased caller in any table; the others intact.
        let dump = try pgDump(schema: schema)
        for trace in Self.erased.traces {
            let found = dump.contains(trace)
            #expect(!found, "the database still holds \"\(trace)\" of the erased caller:\n\(context(of: trace, in: dump))")
        }
        for trace in Self.neighbour.traces + Self.stranger.traces {
            let found = dump.contains(trace)
            #expect(found, "the database lost \"\(trace)\" of a caller nobody erased")
        }
        // Aggregates: the same calls counted, the same usage billed, before and after the replay.
        let aggregatesAfter = try await aggregates(db)
        #expect(aggregatesAfter == aggregatesBefore, "business_metrics, billing_usage and the call count are unchanged")
        let tenant1Calls = try await db.query("SELECT count(*) AS n FROM call_sessions WHERE tenant_id = \(tenant1.uuid)")[0].decode(Int.self, "n")
        #expect(tenant1Calls == 3, "the erased caller's calls still count (only who and what was said is gone)")

        // Redis: no stream entry, no key, and no AOF file on disk holds anything of the caller.
        let streams = try await RedisClient.connect(try redisServer.configuration).scanAll(match: "*", type: "stream")
        #expect(!streams.isEmpty, "the platform's streams are there")
        var entries = ""
        for stream in streams { entries += try redisText(redisServer, ["XRANGE", stream, "-", "+"]) }
        let keys = try redisText(redisServer, ["--scan"])
        for trace in Self.erased.traces {
            let inEntries = entries.contains(trace), inKeys = keys.contains(trace)
            #expect(!inEntries, "a stream entry still holds \"\(trace)\":\n\(context(of: trace, in: entries))")
            #expect(!inKeys, "a Redis key still names \"\(trace)\"")
        }
        let othersInEntries = entries.contains(Self.neighbour.phrase) || entries.contains(Self.stranger.phrase)
        #expect(othersInEntries, "the others' stream entries stay (the search can find them)")
        // Webhook deliveries: none of the erased caller's is queued or recorded as failed; the
        // neighbour's queued one and failed ones stay; the tenant's systems are told of the erasure.
        let jobs = try redisText(redisServer, ["HGETALL", jobsKey])
        let failures = try redisText(redisServer, ["XRANGE", failuresStream, "-", "+"])
        for trace in Self.erased.traces {
            let queued = jobs.contains(trace), failed = failures.contains(trace)
            #expect(!queued, "a queued webhook delivery still holds \"\(trace)\":\n\(context(of: trace, in: jobs))")
            #expect(!failed, "a failed webhook delivery still holds \"\(trace)\":\n\(context(of: trace, in: failures))")
        }
        let neighbourQueued = jobs.contains(Self.neighbour.email), neighbourFailed = Self.neighbour.traces.contains { failures.contains($0) }
        #expect(neighbourQueued, "the neighbour's queued delivery stays:\n\(jobs.suffix(2000))")
        #expect(neighbourFailed, "the neighbour's failed deliveries stay")
        try await waitUntil("the erasure queued for the tenant's webhook", within: .seconds(30), output: up?.text ?? "") {
            try redisText(redisServer, ["HGETALL", jobsKey]).contains("voicecore.privacy.caller-erased")
        }
        let aof = try aofText(redisServer)
        let neighbourInAOF = aof.contains(Self.neighbour.phrase)
        #expect(neighbourInAOF, "the AOF holds the neighbour's words (the search can find them)")
        for trace in Self.erased.traces {
            let inAOF = aof.contains(trace)
            #expect(!inAOF, "the AOF on disk still holds \"\(trace)\" of the erased caller")
        }

        // The event team consumers erase their own copies by: ids, counts, a hash; no identifier.
        let tenantsStream = naming.stream(for: .tenants, kind: .event, tenant: tenant1, subject: tenant1.description)
        let erasedEvents = try redisText(redisServer, ["XRANGE", tenantsStream, "-", "+"])
        let published = erasedEvents.contains("voicecore.privacy.caller-erased")
        #expect(published, "CallerErased published:\n\(erasedEvents.suffix(2000))")
        for (tenant, call) in calls where tenant == tenant1 && call.from == Self.erased.phone {
            let named = erasedEvents.contains(call.callID.description)
            #expect(named, "CallerErased names the erased call \(call.callID)")
        }

        // Erasure is resumable: the stranger erased by a process SIGKILLed at several points, then
        // run to its end. With `up` stopped, nothing else advances it.
        if let running = up {
            kill(running.process.processIdentifier, SIGTERM)
            _ = try await running.waitForExit(within: .seconds(30))
            up = nil
        }
        let arguments = ["privacy", "erase", "--tenant", tenant2.description, "--email", Self.stranger.email] + deployment
        for delay in [150, 400, 800, 1500] {
            let victim = try Child(arguments, environment: environment)
            try await Task.sleep(for: .milliseconds(delay))
            if victim.process.isRunning { kill(victim.process.processIdentifier, SIGKILL) }
            _ = try await victim.waitForExit(within: .seconds(10))
        }
        let finish = try Child(arguments, environment: environment)
        let finishStatus = try await finish.waitForExit(within: .seconds(120))
        let strangerState = try await db.query("SELECT state FROM privacy_erasures WHERE tenant_id = \(tenant2.uuid)")
        let strangerStates = try strangerState.map { try $0.decode(String.self, "state") }
        #expect(strangerStates == ["completed"],
                "the killed erasure was resumed and completed (\(finishStatus.map(String.init) ?? "no exit")):\n\(finish.text)")
        let after = try pgDump(schema: schema)
        for trace in Self.stranger.traces {
            let found = after.contains(trace)
            #expect(!found, "the resumed erasure left \"\(trace)\":\n\(context(of: trace, in: after))")
        }
        for trace in Self.neighbour.traces {
            let found = after.contains(trace)
            #expect(found, "the neighbour's \"\(trace)\" stays")
        }
        let aggregatesLast = try await aggregates(db)
        #expect(aggregatesLast == aggregatesBefore, "aggregates unchanged after the second erasure too")
    }

    // MARK: Helpers

    /// Calls, answered, missed, handle time and leads per tenant and day; usage per tenant, day and meter.
    private func aggregates(_ db: PostgresConnection) async throws -> [String] {
        let metrics = try await db.query("""
            SELECT tenant_id::text || ' ' || day::text || ' ' || calls || ' ' || answered || ' ' || missed || ' ' || handle_seconds || ' ' || leads AS line
            FROM business_metrics ORDER BY tenant_id, day
            """).map { try $0.decode(String.self, "line") }
        let usage = try await db.query("""
            SELECT tenant_id::text || ' ' || day::text || ' ' || meter || ' ' || quantity::text AS line FROM billing_usage ORDER BY tenant_id, day, meter
            """).map { try $0.decode(String.self, "line") }
        let calls = try await db.query("SELECT tenant_id::text || ' ' || count(*) AS line FROM call_sessions GROUP BY tenant_id ORDER BY tenant_id")
            .map { try $0.decode(String.self, "line") }
        return metrics + usage + calls
    }

    /// Every table of the schema as `pg_dump` prints it.
    private func pgDump(schema: String) throws -> String {
        let url = TestServers.databaseURL.split(separator: "?")[0]
        return try runToEnd("/usr/bin/pg_dump", ["--dbname", String(url), "--schema", schema, "--no-owner"])
    }

    private func redisText(_ server: RestartableRedis, _ arguments: [String]) throws -> String {
        try runToEnd("/usr/bin/redis-cli", ["-p", String(server.port), "--no-raw"] + arguments)
    }

    /// Every file of the server's data directory (the AOF's base and increments), as text.
    private func aofText(_ server: RestartableRedis) throws -> String {
        var text = ""
        let files = FileManager.default.enumerator(at: server.directory, includingPropertiesForKeys: nil)
        while let file = files?.nextObject() as? URL {
            if let data = try? Data(contentsOf: file) { text += String(decoding: data, as: UTF8.self) }
        }
        return text
    }

    private func context(of trace: String, in text: String) -> String {
        text.split(separator: "\n").filter { $0.contains(trace) }.prefix(5).map { String($0.prefix(400)) }.joined(separator: "\n")
    }

    private func waitUntil(_ what: String, within limit: Duration, output: @autoclosure () -> String, _ condition: () async throws -> Bool) async throws {
        let deadline = ContinuousClock.now + limit
        while try await !condition() {
            guard ContinuousClock.now < deadline else { throw TestFailure("timed out waiting until \(what):\n\(output().suffix(3000))") }
            try await Task.sleep(for: .milliseconds(250))
        }
    }
}
