import Foundation
import NIOCore
import Synchronization
import VoiceCoreEvents
import VoiceCoreTime

/// Concurrent simulated Twilio calls played into an edge, as `voicecore loadgen` offers them.
///
/// `calls` calls start at `rate` a second. Each is a ``TwilioCallSimulation`` with one final
/// caller transcript segment per second for `callSeconds` (the incoming-call webhook and the
/// in-progress callback first, the completed callback last), each request signed when it is sent.
/// What the edge answered, and when, goes into a ``LoadStatistics``.
///
/// ```swift
/// let load = CallLoad(tenant: id, accountSID: sid, authToken: token, publicBase: "http://127.0.0.1:8080",
///                     host: "127.0.0.1:8080", calls: 100, rate: 100, callSeconds: 60)
/// try await load.play(through: client, statistics: statistics, started: .now) { print($0) }
/// ```
public struct CallLoad: Sendable {
    public var tenant: Identifier
    public var accountSID: String
    public var authToken: String
    /// The URL the edge believes it is at (signatures cover it).
    public var publicBase: String
    /// The Host header's value.
    public var host: String
    /// The edge URL's path, without a trailing slash ("" for none).
    public var pathPrefix: String
    public var calls: Int
    /// Calls started per second.
    public var rate: Double
    /// Seconds each call lasts (one transcript segment per second).
    public var callSeconds: Int

    public init(tenant: Identifier, accountSID: String, authToken: String, publicBase: String, host: String, pathPrefix: String = "",
                calls: Int, rate: Double, callSeconds: Int) {
        self.tenant = tenant
        self.accountSID = accountSID
        self.authToken = authToken
        self.publicBase = publicBase
        self.host = host
        self.pathPrefix = pathPrefix
        self.calls = calls
        self.rate = rate
        self.callSeconds = callSeconds
    }

    /// What callers say, a line a second.
    static let lines = [
        "Hi, I'm calling about booking an appointment for next week.",
        "Could you tell me your pricing for a new customer?",
        "My invoice from last month looks wrong, I was charged twice.",
        "The app stopped working after the update, can you help with that?",
        "You can reach me at 415 555 0142 any time after noon.",
        "Thanks, that's great, I appreciate it.",
    ]

    /// Plays every call (the first at `started`) and returns when all have finished, telling
    /// `progress` the accepted rate, active calls and errors every 5 s.
    public func play(through client: WebhookLoadClient, statistics: LoadStatistics, started: ContinuousClock.Instant,
                     progress: @escaping @Sendable (String) -> Void) async throws {
        let calls = calls
        try await withThrowingDiscardingTaskGroup { group in
            for index in 0..<calls {
                let due = started + .seconds(Double(index) / rate)
                group.addTask {
                    try? await Task.sleep(until: due)
                    await playCall(index: index, client: client, statistics: statistics)
                }
            }
            group.addTask {
                // Looks every 100 ms whether all calls have finished, so that `play` returns then
                // (a step of `bench platform` is timed by it), and reports every 5 s.
                var last = statistics.snapshot
                var reported = ContinuousClock.now
                while statistics.snapshot.finishedCalls < calls {
                    try await Task.sleep(for: .milliseconds(100))
                    guard ContinuousClock.now - reported >= .seconds(5) else { continue }
                    let now = statistics.snapshot
                    progress(String(format: "  %5.0f s: %7.0f webhooks/s accepted, %d calls active, %d errors", (ContinuousClock.now - started) / .seconds(1),
                                    Double(now.accepted - last.accepted) / ((ContinuousClock.now - reported) / .seconds(1)), now.startedCalls - now.finishedCalls,
                                    now.errors))
                    last = now
                    reported = ContinuousClock.now
                }
            }
        }
    }

    func playCall(index: Int, client: WebhookLoadClient, statistics stats: LoadStatistics) async {
        let callStart = Timestamp.now
        let seconds = callSeconds
        let utterances = (0..<seconds).map { TwilioCallSimulation.Utterance(.inbound, Self.lines[($0 + index) % Self.lines.count], at: $0 + 1) }
        let call = TwilioCallSimulation(tenant: tenant, accountSID: accountSID, authToken: authToken, publicBase: publicBase,
                                        from: String(format: "+1415%07d", index % 10_000_000), to: "+14155559876", rangAt: callStart,
                                        ringSeconds: 0, utterances: utterances, durationSeconds: seconds + 1)
        // Signed one by one as they are sent (see `UnsignedWebhook`).
        let hooks = call.unsignedWebhooks.filter { !($0.kind == .transcription && $0["Final"] == "false") }
        stats.callStarted(call.callID)
        let clock = ContinuousClock.now
        var segment = 0
        for unsigned in hooks {
            if unsigned.kind == .transcription {
                segment += 1
                try? await Task.sleep(until: clock + .seconds(segment))
            } else if unsigned["CallStatus"] == "completed" {
                try? await Task.sleep(until: clock + .seconds(seconds + 1))
            }
            let hook = unsigned.signed()
            let sent = ContinuousClock.now
            do {
                let status = try await client.send(WebhookLoadClient.Request(hook, host: host, pathPrefix: pathPrefix), timeout: .seconds(30))
                guard (200..<300).contains(status) else { stats.failed(); continue }
                let accepted = ContinuousClock.now
                let acceptedWall = Timestamp.now.microsecondsSinceEpoch
                stats.accepted(hook.kind, latency: accepted - sent, completed: unsigned["CallStatus"] == "completed")
                switch hook.kind {
                case .voice: stats.callAccepted(call.callID, at: acceptedWall)
                case .transcription:
                    let sequence = unsigned["SequenceId"].flatMap(Int.init) ?? 0
                    stats.segmentAccepted(SegmentKey(call: call.callID, sequence: sequence), at: acceptedWall)
                case .status: break
                }
            } catch {
                stats.failed()
            }
        }
        stats.callFinished()
    }
}

/// A transcript segment of a simulated call: its call and its `SequenceId`.
public struct SegmentKey: Hashable, Sendable {
    public var call: Identifier
    public var sequence: Int

    public init(call: Identifier, sequence: Int) {
        self.call = call
        self.sequence = sequence
    }
}

/// Counters of a load run: what was sent and accepted, HTTP latencies, and when the edge accepted
/// each call and segment (to measure each one end to end against its row).
public final class LoadStatistics: Sendable {
    /// The counters at one moment.
    public struct Snapshot: Sendable {
        public var accepted = 0
        public var acceptedSegments = 0
        public var completedCalls = 0
        public var errors = 0
        public var startedCalls = 0
        public var finishedCalls = 0
    }

    private let state = Mutex((Snapshot(), [Duration]()))
    private let calls = Mutex<[Identifier]>([])
    private let segments = Mutex<[SegmentKey: Int64]>([:])
    private let callStarts = Mutex<[Identifier: Int64]>([:])

    public init() {}

    public var snapshot: Snapshot { state.withLock { $0.0 } }
    /// Each accepted request's time to its answer (at most two million kept).
    public var httpLatencies: [Duration] { state.withLock { $0.1 } }
    public var callIDs: [Identifier] { calls.withLock { $0 } }
    /// When the edge accepted each segment (Unix µs).
    public var segmentAcceptance: [SegmentKey: Int64] { segments.withLock { $0 } }
    /// When the edge accepted each call's incoming-call webhook (Unix µs).
    public var callAcceptance: [Identifier: Int64] { callStarts.withLock { $0 } }

    func segmentAccepted(_ key: SegmentKey, at micros: Int64) { segments.withLock { $0[key] = micros } }
    func callAccepted(_ call: Identifier, at micros: Int64) { callStarts.withLock { $0[call] = micros } }
    func callStarted(_ id: Identifier) {
        calls.withLock { $0.append(id) }
        state.withLock { $0.0.startedCalls += 1 }
    }
    func callFinished() { state.withLock { $0.0.finishedCalls += 1 } }
    func failed() { state.withLock { $0.0.errors += 1 } }
    func accepted(_ kind: SimulatedWebhook.Kind, latency: Duration, completed: Bool) {
        state.withLock {
            $0.0.accepted += 1
            if kind == .transcription { $0.0.acceptedSegments += 1 }
            if completed { $0.0.completedCalls += 1 }
            if $0.1.count < 2_000_000 { $0.1.append(latency) }
        }
    }

    /// "p50 1.2 ms  p99 4.5 ms  max 9.0 ms  (1000 samples)", or "no samples".
    public static func describe(_ samples: [Duration]) -> String {
        guard !samples.isEmpty else { return "no samples" }
        let sorted = samples.sorted()
        func ms(_ q: Double) -> String { String(format: "%.1f ms", sorted[min(sorted.count - 1, Int(Double(sorted.count) * q))] / .milliseconds(1)) }
        return "p50 \(ms(0.5))  p99 \(ms(0.99))  max \(ms(1.0))  (\(sorted.count) samples)"
    }
}
