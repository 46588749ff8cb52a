import Crypto
import Foundation
import Hummingbird
import Synchronization
import Testing
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCoreRedis
import VoiceCoreServices
import VoiceCoreTenants
import VoiceCoreTime

@Suite("Outbound webhooks", .serialized)
struct IntegrationsTests {
    @Test("a failing receiver is retried and recorded as failed without delaying another tenant's deliveries")
    func failingReceiverIsIsolated() async throws {
        let fixture = try await PlatformFixture()
        defer { Task { try? await fixture.drop() } }
        let other = try await fixture.directory.provision(NewTenant(name: "Other Clinic"), publisher: fixture.publisher).tenant.id
        let receiver = Receiver { path in path.hasPrefix("/broken") ? .internalServerError : .noContent }
        try await receiver.serve { base in
            // Refused before anything is stored: a URL that is not http(s), an event type that is never delivered.
            await #expect(throws: TenantError.self) { try await fixture.directory.addWebhook(to: other, url: "ftp://example.com/hook") }
            await #expect(throws: TenantError.self) { try await fixture.directory.addWebhook(to: other, url: base + "/x", eventTypes: [TranscriptChunk.type]) }
            let broken = try await fixture.directory.addWebhook(to: fixture.tenant, url: base + "/broken", eventTypes: [LeadCreated.type])
            let working = try await fixture.directory.addWebhook(to: other, url: base + "/working", format: .json)
            let delivery = WebhookDelivery(maxAttempts: 3, initialDelay: .milliseconds(300), maxDelay: .seconds(1), timeout: .seconds(2),
                                           pollInterval: .milliseconds(20))
            try await fixture.run(services: ["integrations"], projectors: false, delivery: delivery) { _ in
                // Ten leads for the tenant whose receiver fails, then one for the other tenant.
                for index in 0..<10 {
                    try await fixture.publisher.publish(LeadCreated(leadID: .v7(), name: "Caller \(index)", phone: "+1415555\(String(format: "%04d", index))",
                                                                    intent: .sales, source: .api, createdAt: .now), tenant: fixture.tenant)
                }
                let lead = LeadCreated(leadID: .v7(), name: "Ada", email: "ada@example.com", intent: .appointment, source: .api, createdAt: .now)
                let envelope = EventEnvelope(lead, tenant: other, source: "/services/crm")
                let published = try await fixture.publisher.publish(envelope, category: .crm, kind: .event)
                let sent = ContinuousClock.now
                try await fixture.eventually("the working receiver's delivery", timeout: .seconds(10)) {
                    receiver.received.withLock { $0.contains { $0.path == "/working" } }
                }
                let delivered = receiver.received.withLock { $0.first { $0.path == "/working" }! }
                #expect(delivered.at - sent < .seconds(1), "not held up behind the failing receiver's retries")
                // Signed with the webhook's secret over "<t>.<body>".
                let signature = try #require(delivered.headers["x-voicecore-signature"])
                let parts = Dictionary(uniqueKeysWithValues: signature.split(separator: ",").map { part -> (String, String) in
                    let pair = part.split(separator: "=", maxSplits: 1)
                    return (String(pair[0]), String(pair[1]))
                })
                var message = Array(parts["t"]!.utf8)
                message.append(UInt8(ascii: "."))
                message.append(contentsOf: delivered.body)
                let mac = HMAC<SHA256>.authenticationCode(for: message, using: SymmetricKey(data: working.signingSecret))
                #expect(parts["v1"] == mac.map { String(format: "%02x", $0) }.joined())
                #expect(delivered.headers["x-voicecore-event"] == LeadCreated.type)
                let body = try #require(try JSONSerialization.jsonObject(with: Data(delivered.body)) as? [String: Any])
                #expect(body["id"] as? String == published.eventID.description)
                #expect((body["data"] as? [String: Any])?["email"] as? String == "ada@example.com")
                // The same event handled again (a redelivery): queued and delivered once only.
                try await fixture.publisher.publish(envelope, category: .crm, kind: .event)

                // The failing receiver: each lead attempted 3 times, then recorded as failed.
                let queue = WebhookQueue(connection: BusConnection(fixture.redis), prefix: fixture.prefix)
                try await fixture.eventually("the failed deliveries to be recorded", timeout: .seconds(20)) {
                    try await fixture.redis.execute(.xlen(queue.failuresStream)) == 10
                }
                let failures = try await fixture.redis.execute(.xrange(queue.failuresStream))
                for entry in failures {
                    let fields = Dictionary((entry.fields ?? []).map { ($0.name, String(decoding: $0.value, as: UTF8.self)) }, uniquingKeysWith: { a, _ in a })
                    #expect(fields["attempts"] == "3")
                    #expect(fields["last_error"] == "the receiver answered 500")
                    #expect(fields["webhook"] == broken.id.description)
                }
                #expect(receiver.received.withLock { $0.filter { $0.path == "/broken" }.count } == 30)
                #expect(receiver.received.withLock { $0.filter { $0.path == "/working" }.count } == 1, "delivered once")
                #expect(try await queue.pending() == 0)
            }
        }
    }

    @Test("CallSummarized reaches the webhooks subscribed to call.summarized (JSON and Slack), and no other")
    func callSummarizedIsDelivered() async throws {
        let fixture = try await PlatformFixture()
        defer { Task { try? await fixture.drop() } }
        let receiver = Receiver { _ in .noContent }
        try await receiver.serve { base in
            // Named as the docs name it (`call.summarized`) or by its full type: the same subscription.
            let summaries = try await fixture.directory.addWebhook(to: fixture.tenant, url: base + "/summaries", eventTypes: ["call.summarized"])
            #expect(summaries.eventTypes == [CallSummarized.type])
            _ = try await fixture.directory.addWebhook(to: fixture.tenant, url: base + "/slack", format: .slack, eventTypes: [CallSummarized.type])
            _ = try await fixture.directory.addWebhook(to: fixture.tenant, url: base + "/leads", eventTypes: [LeadCreated.type])
            let everything = try await fixture.directory.addWebhook(to: fixture.tenant, url: base + "/default")
            #expect(everything.eventTypes.contains(CallSummarized.type), "a webhook that names no types gets summaries too")
            await #expect(throws: TenantError.self) {
                try await fixture.directory.addWebhook(to: fixture.tenant, url: base + "/x", eventTypes: ["call.summarised"])
            }
            let delivery = WebhookDelivery(maxAttempts: 2, initialDelay: .milliseconds(100), maxDelay: .milliseconds(200), timeout: .seconds(2),
                                           pollInterval: .milliseconds(20))
            let callID = Identifier.v7()
            let summary = CallSummarized(callID: callID, summary: "Caller booked a cleaning for Tuesday.", keySentences: ["Tuesday at 3 pm"],
                                         sentiment: .positive, sentimentScore: 0.5, wordCount: 42, summarizedAt: .now)
            let envelope = EventEnvelope(summary, tenant: fixture.tenant, source: "/services/ai")
            try await fixture.run(services: ["integrations"], projectors: false, delivery: delivery) { _ in
                try await fixture.publisher.publish(envelope, category: .calls, kind: .event)
                try await fixture.eventually("the summary delivered", timeout: .seconds(10)) {
                    receiver.received.withLock { received in ["/summaries", "/slack", "/default"].allSatisfy { path in received.contains { $0.path == path } } }
                }
                // Then a lead: once the lead webhook has it, it would have had a summary too.
                try await fixture.publisher.publish(LeadCreated(leadID: .v7(), callID: callID, name: "Ada", phone: "+14155550111", intent: .appointment,
                                                                source: .call, createdAt: .now), tenant: fixture.tenant)
                try await fixture.eventually("the lead delivered", timeout: .seconds(10)) {
                    receiver.received.withLock { received in
                        received.contains { $0.path == "/leads" } && received.filter { $0.path == "/default" }.count == 2
                    }
                }
            }
            let received = receiver.received.withLock { $0 }
            let delivered = try #require(received.first { $0.path == "/summaries" })
            #expect(delivered.headers["x-voicecore-event"] == "voicecore.call.summarized")
            let body = try #require(try JSONSerialization.jsonObject(with: Data(delivered.body)) as? [String: Any])
            #expect(body["id"] as? String == envelope.id.description && body["type"] as? String == CallSummarized.type)
            let data = body["data"] as? [String: Any] ?? [:]
            #expect(data["summary"] as? String == "Caller booked a cleaning for Tuesday." && data["call_id"] as? String == callID.description)
            #expect(data["sentiment"] as? String == "positive")
            let slack = try #require(received.first { $0.path == "/slack" })
            let text = (try JSONSerialization.jsonObject(with: Data(slack.body)) as? [String: Any])?["text"] as? String
            #expect(text == "Call summarized (positive): Caller booked a cleaning for Tuesday.")
            #expect(received.filter { $0.path == "/leads" }.map { $0.headers["x-voicecore-event"] } == [LeadCreated.type], "the lead webhook gets leads only")
            #expect(received.filter { $0.path == "/summaries" }.count == 1)
            #expect(received.filter { $0.path == "/default" }.compactMap { $0.headers["x-voicecore-event"] }.sorted() == [CallSummarized.type, LeadCreated.type].sorted())
        }
    }
}
