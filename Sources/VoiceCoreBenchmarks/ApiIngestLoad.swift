import Foundation
import Synchronization
import VoiceCoreEvents
import VoiceCoreSimulation
import VoiceCoreTime

/// loadgen's workload played into an edge at a steady webhook rate until stopped, for
/// `voicecore bench api --with-ingest`: signed Twilio calls (incoming call, in-progress, one final
/// caller segment a second for ``callSeconds`` s, completed), each request signed as it is sent,
/// over the same lean keep-alive client loadgen uses. Unlike loadgen's fixed number of calls it
/// runs until ``stop()``, which ends every call at its next webhook.
final class ApiIngestLoad: Sendable {
    /// Seconds each call lasts.
    static let callSeconds = 20

    struct Counters: Sendable {
        var accepted = 0
        var failed = 0
    }

    private struct State {
        var counters = Counters()
        var latencies: [Duration] = []
        var stopped = false
    }

    private let state = Mutex(State())
    private let runner = Mutex<Task<Void, Never>?>(nil)
    private let client: WebhookLoadClient
    private let host: String
    private let publicBase: String
    private let tenant: Identifier
    private let accountSID: String
    private let authToken: String
    private let webhooksPerSecond: Int

    init(port: Int, publicBase: String, tenant: Identifier, accountSID: String, authToken: String, webhooksPerSecond: Int) {
        client = WebhookLoadClient(host: "127.0.0.1", port: port, maximumConnections: 64)
        host = "127.0.0.1:\(port)"
        self.publicBase = publicBase
        self.tenant = tenant
        self.accountSID = accountSID
        self.authToken = authToken
        self.webhooksPerSecond = webhooksPerSecond
    }

    var counters: Counters { state.withLock { $0.counters } }

    /// "p50 … p99 … max …" of every accepted webhook so far.
    var latencySummary: String {
        let sorted = state.withLock { $0.latencies }.sorted()
        guard !sorted.isEmpty else { return "no samples" }
        func ms(_ q: Double) -> String { String(format: "%.1f ms", sorted[min(sorted.count - 1, Int(Double(sorted.count) * q))] / .milliseconds(1)) }
        return "p50 \(ms(0.5))  p99 \(ms(0.99))  max \(ms(1.0))  (\(sorted.count) webhooks)"
    }

    private var stopped: Bool { state.withLock { $0.stopped } }

    func start() {
        let task = Task { await self.play() }
        runner.withLock { $0 = task }
    }

    /// Stops starting calls, ends every call at its next webhook, and closes the connections.
    func stop() async {
        state.withLock { $0.stopped = true }
        await runner.withLock { $0 }?.value
        await client.shutdown()
    }

    private func play() async {
        // A call sends its segments, two status callbacks and the incoming call: callSeconds + 3
        // webhooks over about callSeconds seconds, so this many calls a second keep the rate.
        let callsPerSecond = Double(webhooksPerSecond) / Double(Self.callSeconds + 3)
        let started = ContinuousClock.now
        await withDiscardingTaskGroup { group in
            var index = 0
            while !stopped {
                try? await Task.sleep(until: started + .seconds(Double(index) / callsPerSecond))
                guard !stopped else { break }
                let number = index
                group.addTask { await self.playCall(number) }
                index += 1
            }
        }
    }

    private func playCall(_ index: Int) async {
        let seconds = Self.callSeconds
        let lines = ApiBenchmarkData.lines
        let utterances = (0..<seconds).map { TwilioCallSimulation.Utterance(.inbound, lines[($0 + index) % lines.count], at: $0 + 1) }
        let call = TwilioCallSimulation(tenant: tenant, accountSID: accountSID, authToken: authToken, publicBase: publicBase,
                                        from: String(format: "+1415%07d", index % 10_000_000), to: "+14155559876", rangAt: .now,
                                        ringSeconds: 0, utterances: utterances, durationSeconds: seconds + 1)
        let hooks = call.unsignedWebhooks.filter { !($0.kind == .transcription && $0["Final"] == "false") }
        let clock = ContinuousClock.now
        var segment = 0
        for unsigned in hooks {
            if unsigned.kind == .transcription {
                segment += 1
                try? await Task.sleep(until: clock + .seconds(segment))
            } else if unsigned["CallStatus"] == "completed" {
                try? await Task.sleep(until: clock + .seconds(seconds + 1))
            }
            guard !stopped else { return }
            let hook = unsigned.signed()
            let sent = ContinuousClock.now
            do {
                let status = try await client.send(WebhookLoadClient.Request(hook, host: host))
                let latency = ContinuousClock.now - sent
                state.withLock { state in
                    if (200..<300).contains(status) {
                        state.counters.accepted += 1
                        if state.latencies.count < 2_000_000 { state.latencies.append(latency) }
                    } else {
                        state.counters.failed += 1
                    }
                }
            } catch {
                state.withLock { $0.counters.failed += 1 }
            }
        }
    }
}
