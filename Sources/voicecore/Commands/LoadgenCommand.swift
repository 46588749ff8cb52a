import ArgumentParser
import Foundation
import VoiceCoreEvents
import VoiceCoreExecutors
import VoiceCorePostgres
import VoiceCoreRedis
import VoiceCoreSimulation
import VoiceCoreTenants
import VoiceCoreTime

struct LoadgenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "loadgen",
        abstract: "Simulate concurrent calls with transcription against an edge; report rate, loss and end-to-end latency.",
        discussion: """
            Starts --calls calls at --rate calls per second. Each is a Twilio call as the demo \
            plays it (signed incoming-call webhook, in-progress callback), then one final caller \
            transcript segment per second for --call-seconds, then the completed callback. So \
            --calls concurrent calls make about --calls webhooks per second once all have started.

            Reports the webhooks accepted per second, HTTP latency, and the end-to-end latency \
            from a webhook's 2xx to its row being visible in Postgres: for every transcript \
            segment, the commit time of its transcripts row (Postgres' track_commit_timestamp, on \
            in tools/dev-env) minus the time the edge accepted it; for every call start, the \
            commit time of its CallStarted event in the archive (event_log, which `voicecore up` \
            commits in the same transaction as the call's call_sessions row). Nothing is polled \
            while load runs. At the end it waits for the backlog and checks that every \
            accepted segment and call is in the read models (loss). It also prints where the \
            machine's CPU went per accepted webhook (itself, Redis, the local Postgres, the rest: \
            what is measured) and how many cores the offered rate would need at that cost. Each \
            request is signed when it is sent. Needs a running `voicecore \
            up` (or edge, services and projectors), and VOICECORE_MASTER_KEY to read the \
            tenant's Twilio auth token.
            """
    )

    @OptionGroup var connections: ConnectionOptions

    @Option(help: "Calls to simulate (all concurrent once started).")
    var calls = 100

    @Option(help: "Calls started per second.")
    var rate = 100.0

    @Option(help: "Seconds each call lasts (one transcript segment per second).")
    var callSeconds = 60

    @Option(help: "The edge to call (plain http://).")
    var edgeURL = "http://127.0.0.1:8080"

    @Option(name: .customLong("public-url"), help: "The edge's --public-url (signatures cover it). Default: $VOICECORE_PUBLIC_URL, else --edge-url.")
    var publicURL: String?

    @Option(help: "The tenant (default: the first with Twilio credentials).")
    var tenant: String?

    @Option(help: "HTTP connections to the edge.")
    var connectionsToEdge = 64

    @Option(help: "Seconds to wait for the read models to catch up at the end.")
    var drainSeconds = 120

    func validate() throws {
        guard calls > 0, rate > 0, callSeconds > 0 else { throw ValidationError("--calls, --rate and --call-seconds must be positive") }
    }

    func run() async throws {
        var tenantID: Identifier?
        if let tenant {
            guard let parsed = Identifier(tenant) else { throw ValidationError("--tenant must be a tenant id (UUID)") }
            tenantID = parsed
        }
        let twilio = try await TwilioTenant.find(tenantID, in: try await TenantsCommand.directory(connections))
        let base = publicURL ?? EdgeOptions.publicURLFromEnvironment ?? edgeURL
        let edge = edgeURL.hasSuffix("/") ? String(edgeURL.dropLast()) : edgeURL

        let target = try EdgeTarget(edge)
        let client = WebhookLoadClient(host: target.host, port: target.port, maximumConnections: connectionsToEdge)
        do {
            try await generate(client: client, target: target, tenantID: twilio.id, account: twilio.accountSID, authToken: twilio.authToken, base: base, edge: edge)
        } catch {
            await client.shutdown()
            throw error
        }
        await client.shutdown()
    }

    /// A query of the results, tried again once Postgres answers: the load may have run through
    /// an outage (a restart under test), and the connection's first statement after it fails
    /// before the next reconnects.
    static func query(_ db: PostgresConnection, _ query: PostgresQuery) async throws -> PostgresRows {
        let deadline = ContinuousClock.now + .seconds(30)
        while true {
            do {
                return try await db.query(query)
            } catch where error.isDependencyOutage && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(250))
            }
        }
    }

    func generate(client: WebhookLoadClient, target: EdgeTarget, tenantID: Identifier, account: String, authToken: String, base: String,
                  edge: String) async throws {
        let db = try await PostgresConnection.connect(try connections.postgresConfiguration())
        let stats = LoadStatistics()
        let load = CallLoad(tenant: tenantID, accountSID: account, authToken: authToken, publicBase: base, host: target.authority, pathPrefix: target.pathPrefix,
                            calls: calls, rate: rate, callSeconds: callSeconds)
        say("loadgen: \(calls) calls at \(rate)/s, \(callSeconds) s each, one segment per second, against \(edge) (tenant \(tenantID))")
        let started = ContinuousClock.now
        let startedWall = Timestamp.now
        let cpu = MachineCPU.now()
        // For the CPU account; without Redis (another machine, refused) the account leaves it out.
        let redis = try? await RedisClient.connect(try connections.redisConfiguration())
        let account = CPUAccount.now(redisInfo: try? await redis?.execute(.info()))
        try await load.play(through: client, statistics: stats, started: started) { say($0) }
        let elapsed = (ContinuousClock.now - started) / .seconds(1)
        let totals = stats.snapshot
        say("loadgen: sent \(totals.accepted + totals.errors) webhooks in \(String(format: "%.1f", elapsed)) s: \(totals.accepted) accepted (\(String(format: "%.0f", Double(totals.accepted) / elapsed))/s), \(totals.errors) failed")
        if let share = MachineCPU.share(since: cpu) { say("  " + share) }
        // Steady state: every call active at once (or as many as the start rate keeps alive), one segment a second each.
        let offered = min(Double(calls), rate * Double(callSeconds))
        if let lines = CPUAccount.report(from: account, to: CPUAccount.now(redisInfo: try? await redis?.execute(.info())),
                                         units: totals.accepted, unit: "webhook", offeredRate: offered) {
            for line in lines { say("  " + line) }
        }
        await redis?.close()
        say("  HTTP latency         \(LoadStatistics.describe(stats.httpLatencies))")

        // Drain: every accepted segment and call of this run must reach the read models.
        let drainDeadline = ContinuousClock.now + .seconds(drainSeconds)
        let id = tenantID.uuid
        let callIDs = stats.callIDs.map(\.uuid)
        var transcripts = 0
        var ended = 0
        while ContinuousClock.now < drainDeadline {
            transcripts = 0
            ended = 0
            for chunk in stride(from: 0, to: callIDs.count, by: 2000) {
                let ids = Array(callIDs[chunk..<min(callIDs.count, chunk + 2000)])
                let rows = try await Self.query(db, """
                    SELECT (SELECT count(*) FROM transcripts WHERE tenant_id = \(id) AND call_id = ANY(\(ids)::uuid[]) AND track = 'inbound') AS transcripts,
                           (SELECT count(*) FROM call_sessions WHERE tenant_id = \(id) AND call_id = ANY(\(ids)::uuid[]) AND end_status IS NOT NULL) AS ended
                    """)
                transcripts += try rows[0].decode(Int.self, "transcripts")
                ended += try rows[0].decode(Int.self, "ended")
            }
            if transcripts >= totals.acceptedSegments && ended >= totals.completedCalls { break }
            try await Task.sleep(for: .milliseconds(500))
        }
        // Each segment's row became visible when its transaction committed.
        var segmentLatencies: [Duration] = []
        var missingCommitTimes = false
        let accepted = stats.segmentAcceptance
        for chunk in stride(from: 0, to: callIDs.count, by: 2000) {
            let ids = Array(callIDs[chunk..<min(callIDs.count, chunk + 2000)])
            let rows = try await Self.query(db, """
                SELECT call_id, sequence, (extract(epoch FROM pg_xact_commit_timestamp(xmin)) * 1000000)::int8 AS committed
                FROM transcripts WHERE tenant_id = \(id) AND call_id = ANY(\(ids)::uuid[]) AND track = 'inbound'
                """)
            for row in rows {
                guard let committed = try row.decode(Int64?.self, "committed") else { missingCommitTimes = true; continue }
                let key = SegmentKey(call: Identifier(try row.decode(UUID.self, "call_id")), sequence: try row.decode(Int.self, "sequence"))
                if let at = accepted[key] { segmentLatencies.append(.microseconds(max(0, committed - at))) }
            }
        }
        // Each call start's CallStarted event, archived when its call_sessions row was written.
        var callLatencies: [Duration] = []
        let callAcceptance = stats.callAcceptance
        let callSubjects = callAcceptance.keys.map(\.description)
        // Bounds the archive's (tenant_id, time) index scan to this run; an event's time is its
        // call's start as the webhook's second-precision Timestamp gave it, hence the margin.
        let since = startedWall.adding(microseconds: -300_000_000).date
        for chunk in stride(from: 0, to: callSubjects.count, by: 2000) {
            let subjects = Array(callSubjects[chunk..<min(callSubjects.count, chunk + 2000)])
            let rows = try await Self.query(db, """
                SELECT subject, (extract(epoch FROM pg_xact_commit_timestamp(xmin)) * 1000000)::int8 AS committed
                FROM event_log WHERE tenant_id = \(id) AND time >= \(since) AND type = \(CallStarted.type) AND subject = ANY(\(subjects)::text[])
                """)
            for row in rows {
                guard let committed = try row.decode(Int64?.self, "committed") else { missingCommitTimes = true; continue }
                if let call = Identifier(try row.decode(String.self, "subject")), let at = callAcceptance[call] {
                    callLatencies.append(.microseconds(max(0, committed - at)))
                }
            }
        }
        if missingCommitTimes {
            say("  (no commit times: start Postgres with track_commit_timestamp=on, as tools/dev-env does, to measure segments and call starts end to end)")
        }
        say("  end to end (segment) \(LoadStatistics.describe(segmentLatencies))")
        say("  end to end (call)    \(LoadStatistics.describe(callLatencies))")
        let lostSegments = max(0, totals.acceptedSegments - transcripts)
        let lostCalls = max(0, totals.completedCalls - ended)
        say("  read models: \(transcripts) of \(totals.acceptedSegments) accepted segments, \(ended) of \(totals.completedCalls) completed calls; lost: \(lostSegments + lostCalls)")
        await db.close()
        if lostSegments + lostCalls > 0 { throw CommandFailure("\(lostSegments) segments and \(lostCalls) calls did not reach the read models within \(drainSeconds) s") }
    }
}
