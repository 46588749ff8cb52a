import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import Testing
import VoiceCorePostgres
import VoiceCoreRedis
import VoiceCoreTestSupport

/// The whole HTTP surface against its document: schemathesis (PyPI, installed into the project
/// venv by `tools/test`) generates requests from `schemas/openapi.yaml` — valid ones and invalid
/// ones, every operation — and sends them to a real `voicecore up` (Redis, Postgres, services,
/// projectors) holding a provisioned tenant with a played call, checking each answer: never a 5xx,
/// a status, content type, headers and body the document declares for the operation, invalid
/// input refused with a 4xx, a missing required header refused, auth not ignored.
///
/// What the generated requests reach:
/// - the tenant API (`/v1`, reads and commands) with the tenant's API key; path ids are half the
///   time the tenant's real call, lead and contact (so reads answer 200 with the played call's
///   rows and are checked against their schemas), half random (404);
/// - the admin API with the admin key; `{tenant}` is half the time a real tenant: the played one
///   for reads, the demo tenant `up` provisions for the routes that change a tenant (rotating the
///   played tenant's key or its rate limit would turn the rest of the run into 401s and 429s; the
///   hooks in Tests/Schemathesis/voicecore_hooks.py redirect such a request, whatever phase
///   learned the played tenant's id);
/// - Twilio webhooks: most of those to the played tenant are signed as Twilio signs them (the
///   same hooks), so their fields reach the parsing and validation behind the signature; unsigned
///   ones and Telnyx's (Ed25519, not signed here) stop at 403 — still checked never to 5xx and to
///   answer as documented;
/// - `/health`, `/ready`, `/metrics`.
/// An endless Server-Sent Events stream (`/v1/events`) is read for at most 1 s a request
/// (schemathesis reads an event stream until its request timeout, then checks what arrived).
///
/// A failure lists each failing case with a curl command that reproduces it against a running
/// `voicecore up` (swap in its keys and ids), and the run's seed: `VOICECORE_SCHEMATHESIS_SEED=…`
/// replays the same generation.
@Suite("schemathesis against voicecore up", .serialized)
struct SchemathesisTests {
    /// Examples per operation in the fuzzing phase (the coverage phase adds its own per operation).
    static let examplesPerOperation = 30
    /// The checks schemathesis applies to every answer (`st run --checks`). Left out:
    /// `positive_data_acceptance` (the document cannot say which strings are IANA time zones or
    /// Ed25519 keys, so generated "valid" bodies are refused for good reasons),
    /// `unsupported_method` and `allow_header_conformance` (the edge answers 404, not 405, to a
    /// method a path does not serve: Hummingbird's router), `object_level_authorization` (needs a
    /// second tenant's credentials per request; the read routes' tests check cross-tenant 404s).
    static let checks = [
        "not_a_server_error", "status_code_conformance", "content_type_conformance", "response_headers_conformance",
        "response_schema_conformance", "negative_data_rejection", "missing_required_header", "ignored_auth",
    ]

    @Test("generated requests to every documented operation: at least 1,000, never a 5xx, every answer as schemas/openapi.yaml says")
    func everyOperationAnswersAsDocumented() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: VoiceCoreProcess.binary.path), "build voicecore first (tools/test does)")
        let python = ProcessInfo.processInfo.environment["VOICECORE_PYTHON"] ?? "python3"

        try await ScratchPlatform.with("st") { databaseURL, prefix, work in
            try await Self.run(python: python, databaseURL: databaseURL, prefix: prefix, work: work)
        }
    }

    /// `voicecore up` on the prepared schema and prefix, the tenant and its calls, then schemathesis.
    static func run(python: String, databaseURL: String, prefix: String, work: URL) async throws {
        let port = try UpCommandTests.freePort()
        let base = "http://127.0.0.1:\(port)"
        let adminKey = "vca_" + Self.randomHex(32)
        let environment = [
            "VOICECORE_MASTER_KEY": Data((0..<32).map { _ in UInt8.random(in: 0...255) }).base64EncodedString(),
            "VOICECORE_ADMIN_KEY": adminKey, "REDIS_URL": TestServers.redisURL, "DATABASE_URL": databaseURL,
            "VOICECORE_PUBLIC_URL": base, "VOICECORE_LOG_LEVEL": "warning",
            // Neither `up` nor `demo` touches a developer's stored demo key or uses theirs.
            "VOICECORE_DEMO_API_KEY_FILE": "", "VOICECORE_API_KEY": "",
        ]
        let up = try VoiceCoreProcess(["up", "--port", String(port), "--prefix", prefix, "--partitions", "4", "--instance", "schemathesis",
                                       "--migrations", TestServers.root.appendingPathComponent("database/migrations").path], environment: environment)
        defer { up.kill() }
        try await Self.waitForHealth(base, of: up)
        // The tenant `up` provisions on an empty directory: the target of the admin routes that
        // change a tenant (its key revoked, its rate limit lowered) during the run.
        let spareTenant = try #require(up.text.firstMatch(of: /Demo tenant provisioned: .* \(([0-9a-f-]{36})\)/).map { String($0.1) },
                                       "up names the tenant it provisioned:\n\(up.text)")

        // The played tenant, provisioned through the admin API with Twilio credentials the test
        // knows (to sign webhooks) and a rate limit the run does not reach.
        let twilioToken = Self.randomHex(32)
        let provisioned = try await Self.send(.POST, base + "/admin/tenants", key: adminKey, json: """
            {"name":"Schemathesis Dental","time_zone":"America/New_York","twilio_account_sid":"AC\(Self.randomHex(32))",
             "twilio_auth_token":"\(twilioToken)","requests_per_second":1000000}
            """)
        #expect(provisioned.status == 201, "\(provisioned.body)")
        let answer = try JSONSerialization.jsonObject(with: Data(provisioned.body.utf8)) as? [String: Any]
        let tenant = try #require(answer?["tenant_id"] as? String, "\(provisioned.body)")
        let apiKey = try #require(answer?["api_key"] as? String, "\(provisioned.body)")

        // Calls played into it the way Twilio would (each demo run plays a conversation and two
        // calls, and waits until their rows are in
        // the read models and reads the call back with the key), so reads have rows to answer
        // and lists have a second page.
        for _ in 0..<2 {
            let demo = try VoiceCoreProcess(["demo", "--edge-url", base, "--tenant", tenant, "--api-key", apiKey], environment: environment)
            let status = try await demo.waitForExit(within: .seconds(90))
            #expect(status == 0 && !demo.text.contains("Not every row arrived"), "\(demo.text)")
        }
        let db = try await PostgresConnection.connect(try PostgresConfiguration(url: databaseURL))
        let calls = try await db.query("SELECT call_id::text AS id FROM call_sessions WHERE tenant_id = \(tenant)::uuid").map { try $0.decode(String.self, "id") }
        let leads = try await db.query("SELECT lead_id::text AS id FROM leads WHERE tenant_id = \(tenant)::uuid").map { try $0.decode(String.self, "id") }
        let contacts = try await db.query("SELECT contact_id::text AS id FROM crm_contacts WHERE tenant_id = \(tenant)::uuid").map { try $0.decode(String.self, "id") }
        await db.close()
        #expect(calls.count >= 2 && !leads.isEmpty && !contacts.isEmpty, "the played calls' rows: \(calls), \(leads), \(contacts)")

        let configuration = work.appendingPathComponent("schemathesis.toml")
        try Self.configuration(apiKey: apiKey, adminKey: adminKey, tenant: tenant, spareTenant: spareTenant,
                               calls: calls, leads: leads, contacts: contacts)
            .write(to: configuration, atomically: true, encoding: .utf8)
        var arguments = ["-m", "schemathesis.cli", "--config-file", configuration.path, "run", TestServers.root.appendingPathComponent("schemas/openapi.yaml").path,
                         "--url", base, "--checks", Self.checks.joined(separator: ","), "--no-color", "--output-sanitize", "false", "--output-truncate", "false",
                         "--generation-database", "none"]
        if let seed = ProcessInfo.processInfo.environment["VOICECORE_SCHEMATHESIS_SEED"] { arguments += ["--seed", seed] }
        let run = try ChildProcess(python, arguments, directory: work, environment: [
            "SCHEMATHESIS_HOOKS": "voicecore_hooks", "PYTHONPATH": TestServers.root.appendingPathComponent("Tests/Schemathesis").path,
            "VOICECORE_ST_PUBLIC_URL": base, "VOICECORE_ST_TENANT": tenant, "VOICECORE_ST_SPARE_TENANT": spareTenant,
            "VOICECORE_ST_TWILIO_TOKEN": twilioToken,
        ])
        let status = try await run.waitForExit(within: .seconds(600))
        let output = run.text
        if output.contains("No module named schemathesis") {
            Issue.record("schemathesis is not installed for \(python): run the tests with `tools/test` (it installs it into .local/venv)")
            return
        }
        let report = Self.report(output)
        #expect(up.process.isRunning, "voicecore up died during the run:\n\(up.text.suffix(3000))")
        // The played tenant's key still works: the tenant API was exercised with it to the end
        // (not answered 401 from the moment a generated request rotated it).
        let stillServed = try await Self.send(.GET, base + "/v1/calls?limit=1", key: apiKey, json: nil)
        #expect(stillServed.status == 200, "the played tenant's API key after the run: \(stillServed.status) \(stillServed.body)")
        #expect(status == 0, "schemathesis found failures (seed in the summary; reproduce each with its curl line):\n\(report)")
        let generated = output.firstMatch(of: /(\d+) generated/).flatMap { Int($0.1) }
        #expect((generated ?? 0) >= 1_000, "at least 1,000 generated cases per run, got \(generated.map(String.init) ?? "none"):\n\(report)")
        let operations = output.firstMatch(of: /Operations:\s+(\d+) selected \/ (\d+) total/).map { (Int($0.1) ?? -1, Int($0.2) ?? -2) }
        let tested = output.firstMatch(of: /Tested: (\d+)/).flatMap { Int($0.1) }
        #expect(operations != nil && operations?.0 == operations?.1 && tested == operations?.1,
                "every operation of the document tested (selected / total / tested: \(String(describing: operations)), \(String(describing: tested))):\n\(report)")
    }

    // MARK: The run's configuration

    /// schemathesis.toml: each security scheme's key, and real ids for path parameters half the
    /// time (dictionaries with a probability; the rest is generated).
    static func configuration(apiKey: String, adminKey: String, tenant: String, spareTenant: String,
                              calls: [String], leads: [String], contacts: [String]) -> String {
        func values(_ list: [String]) -> String { "[" + list.map { "\"\($0)\"" }.joined(separator: ", ") + "]" }
        return """
            # Written by Tests/VoiceCoreCLITests/SchemathesisTests.swift for one run.
            request-timeout = 10
            [generation]
            max-examples = \(examplesPerOperation)

            [auth.openapi.apiKey]
            bearer = "\(apiKey)"
            [auth.openapi.adminKey]
            bearer = "\(adminKey)"

            [dictionaries.played-tenant]
            values = ["\(tenant)"]
            [dictionaries.spare-tenant]
            values = ["\(spareTenant)"]
            [dictionaries.calls]
            values = \(values(calls))
            [dictionaries.leads]
            values = \(values(leads))
            [dictionaries.contacts]
            values = \(values(contacts))

            [parameters]
            "path.tenant" = { dictionary = "played-tenant", probability = 0.5 }
            "path.call" = { dictionary = "calls", probability = 0.5 }
            "path.call_id" = { dictionary = "calls", probability = 0.5 }
            "path.lead" = { dictionary = "leads", probability = 0.5 }
            "path.lead_id" = { dictionary = "leads", probability = 0.5 }
            "path.contact" = { dictionary = "contacts", probability = 0.5 }
            "path.contact_id" = { dictionary = "contacts", probability = 0.5 }

            # The routes that change a tenant change the spare one, never the played one.
            [[operations]]
            include-path-regex = '^/admin/tenants/\\{tenant\\}(/api-keys)?$'
            parameters = { "path.tenant" = { dictionary = "spare-tenant", probability = 0.5 } }

            # Server-Sent Events never end: read each for at most 1 s, then check what arrived;
            # fewer examples, each of those that is accepted takes that second.
            [[operations]]
            include-path-regex = "/events$"
            request-timeout = 1
            max-stream-events = 5
            generation = { max-examples = 10 }

            """
    }

    /// From the failures on: what failed, how to reproduce it, the warnings and the summary.
    static func report(_ output: String) -> String {
        let start = output.range(of: "= FAILURES =").map { output[$0.lowerBound...] } ?? output[...]
        let text = start.firstIndex(of: "\n").map { String(start[start.index(after: $0)...]) } ?? String(start)
        return text.count > 60_000 ? "…" + String(text.suffix(60_000)) : text
    }

    // MARK: Helpers

    static func randomHex(_ count: Int) -> String {
        (0..<count).map { _ in String(Int.random(in: 0..<16), radix: 16) }.joined()
    }

    static func waitForHealth(_ base: String, of up: VoiceCoreProcess) async throws {
        let deadline = ContinuousClock.now + .seconds(60)
        while true {
            if let response = try? await HTTPClient.shared.execute(HTTPClientRequest(url: base + "/health"), timeout: .seconds(2)),
               response.status.code == 200 { return }
            guard ContinuousClock.now < deadline, up.process.isRunning else { throw TestFailure("voicecore up did not start:\n\(up.text)") }
            try await Task.sleep(for: .milliseconds(200))
        }
    }

    static func send(_ method: HTTPMethod, _ url: String, key: String, json: String?) async throws -> (status: Int, body: String) {
        var request = HTTPClientRequest(url: url)
        request.method = method
        request.headers.add(name: "Authorization", value: "Bearer \(key)")
        if let json {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(string: json))
        }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
        let body = try await response.body.collect(upTo: 1 << 20)
        return (Int(response.status.code), String(buffer: body))
    }
}

/// A process other than `voicecore` (schemathesis under the venv's Python), its output collected
/// into a file; waited for by polling, off the cooperative pool's threads.
final class ChildProcess: @unchecked Sendable {
    let process = Process()
    let output: URL

    init(_ executable: String, _ arguments: [String], directory: URL, environment: [String: String]) throws {
        output = directory.appendingPathComponent("output-\(UUID().uuidString).log")
        _ = FileManager.default.createFile(atPath: output.path, contents: nil)
        let handle = try FileHandle(forWritingTo: output)
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [executable] + arguments
        process.currentDirectoryURL = directory
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        try process.run()
    }

    var text: String { (try? String(contentsOf: output, encoding: .utf8)) ?? "" }

    /// The exit status, or nil after a SIGKILL when it ran longer than `limit`.
    func waitForExit(within limit: Duration) async throws -> Int32? {
        let deadline = ContinuousClock.now + limit
        while process.isRunning {
            guard ContinuousClock.now < deadline else {
                kill(process.processIdentifier, SIGKILL)
                process.waitUntilExit()
                return nil
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        return process.terminationStatus
    }
}
