import Foundation
import Testing
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCorePostgres
import VoiceCoreRedis
import VoiceCoreTenants
import VoiceCoreTestSupport

/// `voicecore tenants add` as a process, SIGKILLed after its transaction committed and while its
/// publish hangs (its Redis is stopped): the relay publishes TenantProvisioned afterwards, once.
@Suite("A tenants add killed between commit and publish", .serialized)
struct ProvisionCrashTests {
    static var binary: URL { VoiceCoreProcess.binary }

    /// What becomes of the hanging publish the killed process sent.
    enum AfterTheKill {
        /// Redis is SIGKILLed while stopped and started again from its AOF: the publish the dead
        /// process left in Redis' socket buffer is never run. Only the outbox has the event.
        case publishLost
        /// Redis continues (SIGCONT) and runs the dead process's publish: the event is on its
        /// stream while its outbox entry is still there, so the relay publishes it again.
        case publishLandsLate
    }

    @Test("the publish lost with the process: the relay publishes the event, once")
    func publishLost() async throws {
        try await killBetweenCommitAndPublish(.publishLost)
    }

    @Test("the publish run after the process died: the relay's publish of it is a duplicate, the event is there once")
    func publishLandsLate() async throws {
        try await killBetweenCommitAndPublish(.publishLandsLate)
    }

    func killBetweenCommitAndPublish(_ after: AfterTheKill) async throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.binary.path), "build voicecore first (tools/test does)")
        let fixture = try await TenantsFixture()
        defer { Task { try? await fixture.drop() } }
        let server = RestartableRedis()
        try await server.start()
        let serverPID = try await Self.processID(of: server)

        // Hold the directory so the process stops at its INSERT: connected to Redis, inside its transaction.
        let locker = try await fixture.connect()
        try await locker.query("BEGIN")
        try await locker.query("LOCK TABLE tenant_directory IN SHARE MODE")
        let tenant = Identifier.v7()
        let child = try Child(["tenants", "add", "--name", "Crash Dental", "--id", tenant.description, "--partitions", String(fixture.naming.partitions),
                               "--prefix", fixture.prefix],
                              environment: ["DATABASE_URL": fixture.databaseURL, "REDIS_URL": server.url,
                                            "VOICECORE_MASTER_KEY": Data(fixture.masterKey).base64EncodedString()])
        defer { child.kill() }
        try await fixture.eventually("tenants add waiting for the directory") {
            guard child.process.isRunning else { throw TestFailure("tenants add ended early:\n\(child.text)") }
            return try await fixture.count("SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'tenant_directory'::regclass") > 0
        }

        // Redis stops answering; the transaction goes on and commits; the publish after it hangs.
        #expect(Foundation.kill(serverPID, SIGSTOP) == 0)
        try await locker.query("COMMIT")
        try await fixture.eventually("the tenant committed") {
            try await fixture.count("SELECT count(*) FROM tenant_directory WHERE tenant_id = \(tenant.uuid)") == 1
        }
        // Let it reach its publish (nothing measured: whatever it does now, Redis cannot answer).
        try await Task.sleep(for: .milliseconds(300))
        #expect(child.process.isRunning, "tenants add still waits for Redis:\n\(child.text)")
        child.kill()
        #expect(try await fixture.directory.outbox.count() == 1, "the event waits in the outbox")

        switch after {
        case .publishLost:
            server.kill()
            try await server.start()
        case .publishLandsLate:
            #expect(Foundation.kill(serverPID, SIGCONT) == 0)
        }

        let redis = try await RedisClient.connect(try server.configuration)
        let relay = OutboxRelay(source: fixture.directory.outbox, publisher: fixture.publisher(redis))
        #expect(try await relay.relayPending() == 1)
        #expect(try await relay.relayPending() == 0)
        let events = try await fixture.tenantEvents(redis)
        #expect(events.count == 1, "TenantProvisioned once: \(events.map(\.id))")
        let event = try #require(events.first)
        #expect(event.type == TenantProvisioned.type && event.tenantID == tenant && event.source == "/cli/tenants")
        #expect(try MessageCodec.decode(TenantProvisioned.self, from: event.data).name == "Crash Dental")
        #expect(try await fixture.directory.outbox.count() == 0)
        await redis.close()
        await locker.close()
    }

    static func processID(of server: RestartableRedis) async throws -> pid_t {
        let connection = try await RedisClient.connect(try server.configuration)
        defer { Task { await connection.close() } }
        let info = try await connection.execute(.raw("INFO", "server")).string ?? ""
        guard let line = info.split(whereSeparator: \.isNewline).first(where: { $0.hasPrefix("process_id:") }),
              let pid = pid_t(line.dropFirst("process_id:".count).trimmingCharacters(in: .whitespaces)) else {
            throw TestFailure("no process_id in INFO server")
        }
        return pid
    }

    /// The CLI as a process, its output collected into a file.
    typealias Child = VoiceCoreProcess
}
