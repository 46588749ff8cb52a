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
}
