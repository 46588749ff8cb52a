import Hummingbird
import Metrics
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
        Timer(label: EdgeMetricNames.publishLatency, factory: factory).record(since: start)
    }
}

/// Counts every request by route and status, and times it.
struct RequestMetricsMiddleware<Context: RequestContext>: RouterMiddleware {
    let factory: any MetricsFactory

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
        let route = context.endpointPath ?? "unmatched"
        Counter(label: EdgeMetricNames.requests, dimensions: [("route", route), ("method", request.method.rawValue), ("status", String(status))], factory: factory)
            .increment()
        Timer(label: EdgeMetricNames.duration, dimensions: [("route", route)], factory: factory).record(since: start)
    }
}
