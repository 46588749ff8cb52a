import Hummingbird
import Metrics
import Synchronization
import VoiceCoreBus

/// The edge's metric names (Prometheus at `/metrics` when the process bootstraps the Prometheus
/// factory, as `voicecore edge` and `voicecore up` do).
public enum EdgeMetricNames {
    /// Counter, labels `route`, `method`, `status`.
    public static let requests = "voicecore_edge_requests_total"
    /// Timer (histogram), label `route`: request handling time.
    public static let duration = "voicecore_edge_request_duration_seconds"
    /// Counter, labels `provider`, `reason` (missing, mismatch, stale, …).
    public static let signatureFailures = "voicecore_edge_signature_failures_total"
    /// Timer (histogram): from handing a command to the publisher to Redis' acknowledgement.
    public static let publishLatency = "voicecore_edge_publish_duration_seconds"
    /// Counter, label `source`: deliveries answered as duplicates of an earlier one.
    public static let deduplicated = "voicecore_edge_dedup_hits_total"
    /// Counter, label `provider`: callbacks accepted without a command (e.g. transcription-started).
    public static let ignored = "voicecore_edge_callbacks_ignored_total"
}

struct EdgeMetrics: Sendable {
    let factory: any MetricsFactory
    private let publishLatency: Timer
    /// Requests and publishes counted since the edge was made, for the operator console's rates.
    let rates = EdgeRateCounters()

    init(factory: any MetricsFactory) {
        self.factory = factory
        publishLatency = Timer(label: EdgeMetricNames.publishLatency, factory: factory)
    }

    func signatureFailure(_ provider: String, _ reason: String) {
        Counter(label: EdgeMetricNames.signatureFailures, dimensions: [("provider", provider), ("reason", reason)], factory: factory).increment()
    }

    func deduplicated(_ source: String) {
        Counter(label: EdgeMetricNames.deduplicated, dimensions: [("source", source)], factory: factory).increment()
    }

    func ignored(_ provider: String) {
        Counter(label: EdgeMetricNames.ignored, dimensions: [("provider", provider)], factory: factory).increment()
    }

    func published(since start: ContinuousClock.Instant) {
        publishLatency.record(since: start)
        rates.published()
    }
}

/// The edge's requests and publishes since it started, as two relaxed atomic counters: the
/// operator console (`/app/operator/rates.json`) reads them with a monotonic time and computes
/// rates from two readings, so counting costs one atomic add per request or publish, with no
/// metrics backend needed (the Prometheus counters are per route and status, and may be off).
final class EdgeRateCounters: Sendable {
    private let requestCount = Atomic<Int>(0)
    private let publishCount = Atomic<Int>(0)
    private let started = ContinuousClock.now

    /// One reading: the counts and the milliseconds since the counters were made.
    struct Reading: Sendable, Equatable {
        var requests: Int
        var publishes: Int
        var monotonicMilliseconds: Int64
    }

    func requested() {
        requestCount.wrappingAdd(1, ordering: .relaxed)
    }

    func published() {
        publishCount.wrappingAdd(1, ordering: .relaxed)
    }

    func read() -> Reading {
        let elapsed = ContinuousClock.now - started
        let (seconds, attoseconds) = elapsed.components
        return Reading(requests: requestCount.load(ordering: .relaxed), publishes: publishCount.load(ordering: .relaxed),
                       monotonicMilliseconds: seconds * 1000 + attoseconds / 1_000_000_000_000_000)
    }
}

/// Counts every request by route and status, and times it.
struct RequestMetricsMiddleware<Context: RequestContext>: RouterMiddleware {
    let factory: any MetricsFactory
    /// Where every request is also counted for the operator console (nil: not counted there).
    var rates: EdgeRateCounters?
    let cache = RequestMetricHandles()

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = ContinuousClock.now
        do {
            let response = try await next(request, context)
            record(request, context, response.status.code, start)
            return response
        } catch let error as any HTTPResponseError {
            record(request, context, error.status.code, start)
            throw error
        } catch {
            record(request, context, 500, start)
            throw error
        }
    }

    private func record(_ request: Request, _ context: Context, _ status: Int, _ start: ContinuousClock.Instant) {
        let key = RequestMetricKey(route: context.endpointPath ?? "unmatched", method: request.method.rawValue, status: status)
        let handles = cache.handles(for: key, factory: factory)
        handles.requests.increment()
        rates?.requested()
        handles.duration.record(since: start)
    }
}

/// What one request's metrics are filed under.
struct RequestMetricKey: Hashable, Sendable {
    var route: String
    var method: String
    var status: Int
}

/// The counters and timers of the routes seen, made once each: asking the factory for them on
/// every request cost a locked lookup and label arrays per metric.
final class RequestMetricHandles: Sendable {
    struct Handles: Sendable {
        var requests: Counter
        var duration: Timer
    }

    private let handles = Mutex<[RequestMetricKey: Handles]>([:])
    static let limit = 1_000

    func handles(for key: RequestMetricKey, factory: any MetricsFactory) -> Handles {
        if let found = handles.withLock({ $0[key] }) { return found }
        let made = Handles(
            requests: Counter(label: EdgeMetricNames.requests, dimensions: [("route", key.route), ("method", key.method), ("status", String(key.status))], factory: factory),
            duration: Timer(label: EdgeMetricNames.duration, dimensions: [("route", key.route)], factory: factory))
        // Routes are a fixed set and statuses few; only a client sending made-up methods could
        // grow this, so past a bound handles are made per request as before instead of kept.
        handles.withLock { if $0.count < Self.limit { $0[key] = made } }
        return made
    }
}
