import Foundation
import Testing
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCorePostgres
import VoiceCoreProjections
import VoiceCoreTenants
import VoiceCoreTestSupport

/// `voicecore privacy` as an operator runs it: each subcommand's help, the usage errors that name
/// the option at fault, the clear answer (exit status 2) when nothing matches, and an erasure run
/// to completion from the command line against a migrated schema of its own.
@Suite("voicecore privacy", .serialized)
struct PrivacyCommandTests {
    static let phone = "+14155550177"

    /// Runs `voicecore` with `arguments` and returns its exit status and what it printed.
    static func run(_ arguments: [String], environment: [String: String] = [:], within limit: Duration = .seconds(60)) async throws -> (status: Int32?, text: String) {
        let process = try VoiceCoreProcess(arguments, environment: environment)
        let status = try await process.waitForExit(within: limit)
        return (status, process.text)
    }

    @Test("every subcommand explains itself with --help")
    func help() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: VoiceCoreProcess.binary.path), "build voicecore first (tools/test does)")
        let expected: [([String], [String])] = [
            (["privacy", "--help"], ["erase", "status", "retention", "serve"]),
            (["privacy", "erase", "--help"], ["--tenant", "--phone", "--email", "--contact", "--no-wait", "--json", "Exit status", "--prefix", "--partitions"]),
            (["privacy", "status", "--help"], ["--tenant", "<erasure>", "--json"]),
            (["privacy", "retention", "run", "--help"], ["--tenant", "365", "1095"]),
            (["privacy", "serve", "--help"], ["VOICECORE_RETENTION_INTERVAL"]),
        ]
        for (arguments, words) in expected {
            let (status, text) = try await Self.run(arguments)
            #expect(status == 0, "\(arguments): \(text)")
            for word in words { #expect(text.contains(word), "\(arguments.joined(separator: " ")) does not mention \(word):\n\(text)") }
        }
    }

    @Test("no identifier, two, or a malformed one: a usage error naming the option, before any connection")
    func usageErrors() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: VoiceCoreProcess.binary.path), "build voicecore first (tools/test does)")
        let tenant = Identifier.v7().description
        // Nothing listens here: a usage error must not need the servers.
        let nowhere = ["--database-url", "postgres://nobody@127.0.0.1:1/none", "--redis-url", "redis://127.0.0.1:1"]
        let cases: [([String], String)] = [
            (["--tenant", tenant], "exactly one of --phone, --email, --contact"),
            (["--tenant", tenant, "--phone", Self.phone, "--email", "a@example.com"], "--email is given with --phone"),
            (["--tenant", tenant, "--phone", "4155550177"], "--phone must be a phone number in E.164"),
            (["--tenant", tenant, "--email", "ana.example.com"], "--email must be an e-mail address"),
            (["--tenant", tenant, "--contact", "contact-7"], "--contact must be a contact id"),
            (["--tenant", "acme", "--phone", Self.phone], "--tenant must be a tenant id"),
        ]
        for (arguments, message) in cases {
            let (status, text) = try await Self.run(["privacy", "erase"] + arguments + nowhere)
            #expect(status == 64, "\(arguments): exit \(String(describing: status)): \(text)")
            #expect(text.contains(message), "\(arguments): \(text)")
        }
    }

    @Test("erase runs to completion and reports what it erased; asked again, nothing matches: exit 2 and why; status reports it")
    func eraseEndToEnd() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: VoiceCoreProcess.binary.path), "build voicecore first (tools/test does)")
        try await ScratchPlatform.with("pc") { databaseURL, prefix, _ in
            let masterKey = Data((0..<32).map { _ in UInt8.random(in: 0...255) })
            let db = try await PostgresConnection.connect(try PostgresConfiguration(url: databaseURL))
            defer { Task { await db.close() } }
            _ = try await Migrator(connection: db, directory: TestServers.root.appendingPathComponent("database/migrations")).up()
            let directory = TenantDirectory(connection: db, secrets: try SecretBox(masterKey: Array(masterKey)))
            let tenant = try await directory.provision(NewTenant(name: "Privacy Dental"), publisher: nil).tenant.id
            // A caller whose call ended an hour ago (nothing in progress to wait for), with a contact and a lead.
            let call = Identifier.v7(), contact = Identifier.v7()
            try await db.query("""
                INSERT INTO call_sessions (tenant_id, call_id, provider, provider_call_id, direction, from_number, to_number, status, started_at, ended_at)
                VALUES (\(tenant.uuid), \(call.uuid), 'twilio', 'CA-privacy-cli', 'inbound', \(Self.phone), '+14155550199', 'completed',
                        now() - interval '2 hours', now() - interval '1 hour')
                """)
            try await db.query("""
                INSERT INTO crm_contacts (tenant_id, contact_id, name, phone, email, first_seen_at, last_seen_at)
                VALUES (\(tenant.uuid), \(contact.uuid), 'Rui Costa', \(Self.phone), 'rui@example.com', now(), now())
                """)
            try await db.query("""
                INSERT INTO leads (tenant_id, lead_id, call_id, contact_id, name, phone, intent, source, notes, created_at)
                VALUES (\(tenant.uuid), \(Identifier.v7().uuid), \(call.uuid), \(contact.uuid), 'Rui Costa', \(Self.phone), 'appointment', 'call',
                        'wants a cleaning', now())
                """)
            let environment = ["VOICECORE_MASTER_KEY": masterKey.base64EncodedString(), "DATABASE_URL": databaseURL, "REDIS_URL": TestServers.redisURL,
                               "VOICECORE_LOG_LEVEL": "warning"]
            let deployment = ["--prefix", prefix, "--partitions", "4"]

            // Nothing of this tenant matches another number: exit 2, said plainly, nothing stored.
            let unknown = try await Self.run(["privacy", "erase", "--tenant", tenant.description, "--phone", "+14155550100"] + deployment,
                                             environment: environment)
            #expect(unknown.status == 2, "exit \(String(describing: unknown.status)): \(unknown.text)")
            #expect(unknown.text.contains("nothing of this tenant matches this phone number"), "\(unknown.text)")
            #expect(try await db.query("SELECT 1 FROM privacy_erasures").count == 0)

            // The caller: erased to the end here, with each state and the counts printed.
            let erased = try await Self.run(["privacy", "erase", "--tenant", tenant.description, "--phone", Self.phone, "--poll-ms", "200"] + deployment,
                                            environment: environment, within: .seconds(180))
            #expect(erased.status == 0, "exit \(String(describing: erased.status)): \(erased.text)")
            #expect(erased.text.contains("requested") && erased.text.contains("completed: calls 1"), "\(erased.text)")
            #expect(!erased.text.contains(Self.phone), "the output repeats the phone number:\n\(erased.text)")
            let row = try await db.query("SELECT erasure_id::text AS id, state, identifier_sealed IS NULL AS forgotten FROM privacy_erasures")
            try #require(row.count == 1)
            let state = try row[0].decode(String.self, "state"), forgotten = try row[0].decode(Bool.self, "forgotten")
            #expect(state == "completed" && forgotten, "\(state), sealed identifier dropped: \(forgotten)")
            let numbers = try await db.query("SELECT from_number FROM call_sessions WHERE call_id = \(call.uuid)")
            let number = try numbers[0].decode(String?.self, "from_number")
            #expect(number == Erased.phone, "the call keeps its number (the erased archive's placeholder, as a replay writes it)")

            // Asked again: the caller is gone, so nothing matches.
            let again = try await Self.run(["privacy", "erase", "--tenant", tenant.description, "--phone", Self.phone] + deployment, environment: environment)
            #expect(again.status == 2 && again.text.contains("nothing to erase"), "exit \(String(describing: again.status)): \(again.text)")

            // status: the completed erasure as the API shows it; another id is exit 2.
            let id = try row[0].decode(String.self, "id")
            let status = try await Self.run(["privacy", "status", "--tenant", tenant.description, id, "--json"], environment: environment)
            #expect(status.status == 0, "\(status.text)")
            let json = try JSONSerialization.jsonObject(with: Data(status.text.utf8)) as? [String: Any]
            #expect(json?["state"] as? String == "completed" && json?["id"] as? String == id, "\(status.text)")
            #expect((json?["counts"] as? [String: Int])?["calls"] == 1 && (json?["counts"] as? [String: Int])?["leads"] == 1, "\(status.text)")
            let missing = try await Self.run(["privacy", "status", "--tenant", tenant.description, Identifier.v7().description], environment: environment)
            #expect(missing.status == 2 && missing.text.contains("has no erasure"), "\(missing.text)")
        }
    }
}
