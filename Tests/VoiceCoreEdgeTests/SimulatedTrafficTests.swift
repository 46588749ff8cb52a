import Hummingbird
import HummingbirdTesting
import Testing
import VoiceCoreEvents
import VoiceCoreSimulation
@testable import VoiceCoreEdge

/// The load generator's traffic against the edge itself: what `voicecore loadgen` counts as
/// accepted must be what the edge answered, and its signatures must be the ones Twilio makes.
@Suite("The load generator's HTTP client against the edge", .serialized)
struct SimulatedTrafficTests {
    @Test func aCallsSignedWebhooksAreAcceptedAndAForgedOneRefusedOverTwoConnections() async throws {
        let fixture = try await EdgeFixture(requestsPerSecond: 10_000)
        let call = TwilioCallSimulation(tenant: fixture.tenant, accountSID: "AC00000000000000000000000000000001", authToken: fixture.twilioToken,
                                        publicBase: EdgeFixture.publicBase, from: "+14155550100", to: "+14155550199", ringSeconds: 1,
                                        utterances: (1...6).map { TwilioCallSimulation.Utterance(.inbound, "segment \($0)", at: $0) })
        let hooks = call.webhooks
        // The incoming-call webhook is answered with TwiML: a body the client must skip to read the next response.
        try #require(hooks.first?.kind == .voice)
        var unsigned = hooks[0]
        unsigned.signature = "AAAAAAAAAAAAAAAAAAAAAAAAAAA="
        let forged = unsigned
        let app = Application(router: fixture.edge.router())
        try await app.test(.live) { client in
            let port = try #require(client.port)
            let load = WebhookLoadClient(host: "localhost", port: port, maximumConnections: 2)
            let host = "localhost:\(port)"
            // All at once: more requests than connections, so they queue for and reuse the two.
            let statuses = try await withThrowingTaskGroup(of: (Int, Int).self) { group in
                for (index, hook) in hooks.enumerated() {
                    group.addTask { (index, try await load.send(WebhookLoadClient.Request(hook, host: host))) }
                }
                group.addTask { (-1, try await load.send(WebhookLoadClient.Request(forged, host: host))) }
                var statuses: [Int: Int] = [:]
                for try await (index, status) in group { statuses[index] = status }
                return statuses
            }
            #expect(statuses[-1] == 403)
            #expect(hooks.indices.allSatisfy { statuses[$0] == 200 }, "\(statuses)")
            await load.shutdown()
        }
        // One command per signed webhook; nothing for the forged one.
        #expect(try await fixture.commands().count == hooks.count)
        try await fixture.drop()
    }
}
