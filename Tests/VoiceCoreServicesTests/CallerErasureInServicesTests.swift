import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import Testing
@testable import VoiceCoreServices
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCoreRedis
import VoiceCoreTestSupport
import VoiceCoreTime

/// Issue 33 in the services: what an erasure must reach beyond the streams and the read models —
/// the outbound webhook deliveries queued in Redis, and the per-call state services keep in memory.
@Suite("Privacy: erasure reaches webhook deliveries and services' memory", .serialized)
struct CallerErasureInServicesTests {
    static let erasedPhone = "+14155550111"
    static let otherPhone = "+14155550122"

    // MARK: Outbound webhook deliveries

    /// A delivery job of `tenant` for an event about `call`, with the caller's phone in its data.
    private func job(tenant: Identifier, webhook: Identifier, event: Identifier, call: Identifier, phone: String, type: String = CallEnded.type) -> WebhookJob {
        let data = #"{"call_id":"\#(call)","phone":"\#(phone)","summary":"called from \#(phone)"}"#
        return WebhookJob(id: Identifier.v5(namespace: webhook, name: event.description), tenantID: tenant, webhookID: webhook, eventID: event,
                          eventType: type, eventTime: .now, data: Array(data.utf8))
    }

    @Test("an erased caller's queued and failed deliveries go; one being attempted cannot come back; others stay")
    func webhookDeliveriesOfAnErasedCallerGo() async throws {
        let redis = try await RedisClient.connect(try RedisConfiguration(url: TestServers.redisURL))
        let connection = BusConnection(redis)
        let prefix = "w\(UUID().uuidString.prefix(8).lowercased())"
        let naming = StreamNaming(partitions: 4, prefix: prefix)
        let queue = WebhookQueue(connection: connection, prefix: prefix)
        let erasure = StreamErasure(connection: connection, naming: naming)
        let tenant = Identifier.v7(), otherTenant = Identifier.v7(), webhook = Identifier.v7()
        let erasedCall = Identifier.v7(), otherCall = Identifier.v7()
        // The erased caller: an event the archive knows (matched by its id), one matched by the
        // call its data names, one being attempted now, and one that failed for good.
        let archived = job(tenant: tenant, webhook: webhook, event: .v7(), call: erasedCall, phone: Self.erasedPhone)
        let byData = job(tenant: tenant, webhook: webhook, event: .v7(), call: erasedCall, phone: Self.erasedPhone, type: CallSummarized.type)
        let inFlight = job(tenant: tenant, webhook: webhook, event: .v7(), call: erasedCall, phone: Self.erasedPhone, type: LeadCreated.type)
        let failed = job(tenant: tenant, webhook: webhook, event: .v7(), call: erasedCall, phone: Self.erasedPhone)
        // Others: another caller of the tenant, and another tenant's job naming the same event id.
        let neighbour = job(tenant: tenant, webhook: webhook, event: .v7(), call: otherCall, phone: Self.otherPhone)
        let neighbourFailed = job(tenant: tenant, webhook: webhook, event: .v7(), call: otherCall, phone: Self.otherPhone, type: CallSummarized.type)
        let stranger = job(tenant: otherTenant, webhook: .v7(), event: archived.eventID, call: .v7(), phone: "+14155550133")
        let past = Timestamp.now.adding(microseconds: -1_000_000)
        for job in [archived, byData, inFlight, failed, neighbour, neighbourFailed, stranger] { try await queue.enqueue(job, at: past) }
        // Claimed in this order, all at once; the two failures are given up on.
        let claimed = try await queue.claim(limit: 10, lease: .seconds(60))
        #expect(Set(claimed.map(\.id)) == Set([archived, byData, inFlight, failed, neighbour, neighbourFailed, stranger].map(\.id)))
        try await queue.fail(failed, error: "the receiver answered 500", retryAt: nil)
        try await queue.fail(neighbourFailed, error: "the receiver answered 500", retryAt: nil)
        for job in [archived, byData, neighbour, stranger] { try await queue.fail(job, error: "refused", retryAt: .now.adding(microseconds: 60_000_000)) }
        // `inFlight` stays claimed: its request is on its way while the erasure runs.

        let finished = Mutex(false)
        let deleting = Task {
            defer { finished.withLock { $0 = true } }
            return try await erasure.deleteWebhookDeliveries(tenant: tenant, events: [archived.eventID, failed.eventID, inFlight.eventID],
                                                             subjects: [erasedCall.description])
        }
        let jobsKey = "\(prefix):{integrations}:jobs"
        let deadline = ContinuousClock.now + .seconds(10)
        while try await redis.send("HEXISTS", .string(jobsKey), .string(inFlight.id.description)).int == 1 {
            guard ContinuousClock.now < deadline else { throw TestFailure("the job being attempted was not removed") }
            try await Task.sleep(for: .milliseconds(20))
        }
        // The erasure waits for the attempt in flight before it goes on (its lease is 60 s).
        try await Task.sleep(for: .milliseconds(500))
        #expect(!finished.withLock { $0 }, "the erasure went on while a delivery of the caller's data was still being attempted")
        // The attempt fails after the job was removed: retried, it would write the job back.
        try await queue.fail(inFlight, error: "timed out", retryAt: .now)
        let removed = try await deleting.value
        #expect(removed.jobs == 3 && removed.failures == 1, "\(removed)")
        // Its last attempt failing for good would record it among the failures: it does not either.
        try await queue.fail(inFlight, error: "timed out", retryAt: nil)

        let jobs = try await redis.send("HGETALL", .string(jobsKey)).array?.compactMap(\.string) ?? []
        let failures = try await redis.execute(.xrange(queue.failuresStream))
        let failureText = failures.flatMap { $0.fields ?? [] }.map(\.string).joined(separator: " ")
        #expect(!jobs.joined().contains(Self.erasedPhone), "a queued job still holds the erased caller's number")
        #expect(!failureText.contains(Self.erasedPhone), "a failure entry still holds the erased caller's number")
        #expect(Set(jobs.filter { Identifier($0) != nil }) == Set([neighbour.id, stranger.id].map(\.description)), "the others' jobs stay")
        #expect(failures.count == 1 && failureText.contains(Self.otherPhone), "the neighbour's failure stays")
        #expect(try await queue.pending() == 2)
        // Nothing of the erased caller is due again either: a claim far in the future finds only the others.
        let later = try await queue.claim(limit: 10, lease: .seconds(1), now: .now.adding(microseconds: 3_600_000_000))
        #expect(Set(later.map(\.id)) == Set([neighbour.id, stranger.id]))

        // Run again (a crash after the deletion): nothing more to delete.
        let again = try await erasure.deleteWebhookDeliveries(tenant: tenant, events: [archived.eventID], subjects: [erasedCall.description])
        #expect(again.jobs == 0 && again.failures == 0, "\(again)")

        // A run killed right after removing a job being attempted: the next run finds nothing to
        // remove, and still waits for that attempt to end before it goes on.
        let late = job(tenant: tenant, webhook: webhook, event: .v7(), call: erasedCall, phone: Self.erasedPhone, type: CallSummarized.type)
        try await queue.enqueue(late, at: past)
        #expect(try await queue.claim(limit: 10, lease: .seconds(60)).map(\.id) == [late.id])
        let queue2 = ScheduledJobQueue.webhooks(connection: connection, prefix: prefix)
        #expect(try await queue2.remove { $0.id == late.id.description } == [late.id.description])
        let resumedDone = Mutex(false)
        let resumed = Task {
            defer { resumedDone.withLock { $0 = true } }
            return try await erasure.deleteWebhookDeliveries(tenant: tenant, events: [late.eventID], subjects: [erasedCall.description])
        }
        try await Task.sleep(for: .milliseconds(500))
        #expect(!resumedDone.withLock { $0 }, "a resumed erasure went on while an attempt of a job removed before the crash was in flight")
        try await queue.fail(late, error: "timed out", retryAt: nil)
        let resumedResult = try await resumed.value
        #expect(resumedResult.jobs == 0 && resumedResult.failures == 0, "\(resumedResult)")
        #expect(try await redis.execute(.xrange(queue.failuresStream)).count == 1, "the attempt ending after the removal recorded nothing")
        let keys = try await redis.scanAll(match: "\(prefix):*")
        if !keys.isEmpty { _ = try await redis.execute(.del(keys)) }
        await redis.close()
    }

    // MARK: Memory

    @Test("CallerErased makes the services forget the erased calls they keep in memory; a late CallEnded finds nothing to bring back")
    func servicesForgetErasedCallsInMemory() async throws {
        let fixture = try await PlatformFixture()
        do {
            let dependencies = fixture.dependencies
            let services = try await PlatformServices.make(["crm", "calls"], dependencies: dependencies, directory: fixture.directory)
            #expect(services.contains { $0 is CallerErasedFollower }, "the services that keep per-call memory follow erasures")
            let group = ServiceGroup(services: services, logger: Logger(label: "test.erasure-memory"))
            let running = Task { try await group.run() }
            defer { Task { await group.triggerGracefulShutdown(); _ = await running.result } }
            try await exercise(fixture, memory: dependencies.callMemory)
            await group.triggerGracefulShutdown()
            try await running.value
            try await fixture.drop()
        } catch {
            try? await fixture.drop()
            throw error
        }
    }

    private func exercise(_ fixture: PlatformFixture, memory: InMemoryCallState) async throws {
        let (publisher, tenant) = (fixture.publisher, fixture.tenant)
        let erasedCall = Identifier.v7(), otherCall = Identifier.v7()
        let started = Timestamp.now.adding(microseconds: -120_000_000)
        for (call, phone) in [(erasedCall, Self.erasedPhone), (otherCall, Self.otherPhone)] {
            try await publisher.publish(EventEnvelope(CallStarted(callID: call, provider: .twilio, providerCallID: "CA-\(call)", direction: .inbound,
                                                                  from: phone, to: "+14155559876", startedAt: started), tenant: tenant, source: "/test"),
                                        category: .calls, kind: .event)
        }
        try await fixture.eventually("the CRM remembers both calls") { memory.remembers(call: erasedCall) && memory.remembers(call: otherCall) }

        // What the erasure does: the calls' state in Redis goes, then CallerErased is published.
        let erasure = StreamErasure(connection: BusConnection(fixture.redis), naming: fixture.naming)
        let deleted = try await erasure.deleteEntityState(tenant: tenant, calls: [erasedCall])
        #expect(deleted >= 1, "the CRM's state of the call was in Redis")
        let event = CallerErased(erasureID: .v7(), tenantID: tenant, identifierKind: .phone, identifierHash: String(repeating: "a", count: 64),
                                 callIDs: [erasedCall], contactIDs: [], leadIDs: [], counts: [:], erasedAt: .now)
        try await publisher.publish(EventEnvelope(event, tenant: tenant, source: "/test"), category: .tenants, kind: .event)
        try await fixture.eventually("the erased call is forgotten from memory", timeout: .seconds(15)) { !memory.remembers(call: erasedCall) }
        #expect(memory.remembers(call: otherCall), "another caller's call stays in memory")

        // A late CallEnded of the erased call: the CRM has no number to make a contact of.
        let ended = started.adding(microseconds: 60_000_000)
        var entries: [PublishedEntry] = []
        for call in [erasedCall, otherCall] {
            entries.append(try await publisher.publish(EventEnvelope(CallEnded(callID: call, endedAt: ended, status: .completed, durationSeconds: 60, answered: true),
                                                                     tenant: tenant, source: "/test"), category: .calls, kind: .event))
        }
        let published = entries
        try await fixture.eventually("the CRM handled both CallEnded") {
            for entry in published {
                let groups = try await fixture.redis.execute(.raw(["XINFO", "GROUPS", .string(entry.stream)]))
                let crm = groups.array?.compactMap(\.array).first { info in
                    stride(from: 0, to: info.count - 1, by: 2).contains { info[$0].string == "name" && info[$0 + 1].string == CRMService.group }
                } ?? []
                func field(_ name: String) -> RESPValue? {
                    stride(from: 0, to: crm.count - 1, by: 2).first { crm[$0].string == name }.map { crm[$0 + 1] }
                }
                guard let delivered = field("last-delivered-id")?.string.flatMap(StreamEntryID.init), delivered >= entry.entryID,
                      field("pending")?.int == 0 else { return false }
            }
            return true
        }
        var crmText = ""
        for stream in fixture.naming.streams(.crm, kind: .event) {
            for entry in try await fixture.redis.execute(.xrange(stream)) { crmText += (entry.fields ?? []).map(\.string).joined(separator: " ") }
        }
        #expect(crmText.contains(Self.otherPhone), "the other caller's contact is made (the search can find it)")
        #expect(!crmText.contains(Self.erasedPhone), "the CRM made a contact of the erased caller from what it remembered")
    }
}
