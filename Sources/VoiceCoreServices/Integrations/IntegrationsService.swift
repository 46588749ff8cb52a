import AsyncHTTPClient
import Crypto
import Foundation
import Logging
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import ServiceLifecycle
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCoreTenants
import VoiceCoreTime

/// The integrations service (group `integrations`): delivers ``LeadCreated``, ``CallEnded``,
/// ``CallSummarized`` (`voicecore.call.summarized`: the AI's summary of a finished call, again
/// when a late transcript makes a newer one) and ``CallerErased`` (`voicecore.privacy.caller-erased`,
/// on the tenants stream: the tenant's systems erase the calls, contacts and leads it names) to the
/// tenants' outbound webhooks subscribed to them (`voicecore tenants webhook add`,
/// ``TenantDirectory/webhookEventTypes``).
///
/// The consumer only queues a delivery per subscribed webhook (``WebhookQueue``) and moves on; a
/// separate ``WebhookDeliverer`` makes the HTTP requests, many at once, each with a timeout, and
/// schedules a failed one again with exponential backoff. So a slow or failing receiver delays
/// only its own deliveries, never another tenant's, and never the stream.
///
/// Each request is a POST with `Content-Type: application/json`, `X-VoiceCore-Event` (the type),
/// `X-VoiceCore-Delivery` (unique per webhook and event: dedupe on it) and
/// `X-VoiceCore-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" under the
/// webhook's signing secret>`. The body is `{"id", "type", "tenant_id", "time", "data"}`, or for a
/// webhook in Slack format `{"text": "…"}`. A 2xx answer delivers; anything else, a timeout or a
/// refused connection is a failed attempt; after ``WebhookDelivery/maxAttempts`` the job goes to
/// `<prefix>:{integrations}:webhook-failures` with its last error.
public struct IntegrationsService: Sendable {
    public static let group = "integrations"

    let queue: WebhookQueue
    let tenants: TenantProfiles

    public static func services(_ dependencies: ServiceDependencies, delivery: WebhookDelivery = WebhookDelivery(),
                                client: HTTPClient = .shared) async throws -> [any Service] {
        let queue = WebhookQueue(connection: try await dependencies.connect(group), prefix: dependencies.naming.prefix)
        let service = IntegrationsService(queue: queue, tenants: dependencies.tenants)
        var handlers = MessageHandlers()
        handlers.on(LeadCreated.self) { message, _ in try await service.handle(message) }
        handlers.on(CallEnded.self) { message, _ in try await service.handle(message) }
        handlers.on(CallSummarized.self) { message, _ in try await service.handle(message) }
        handlers.on(CallerErased.self) { message, _ in try await service.handle(message) }
        let streams = dependencies.naming.streams(.crm, kind: .event) + dependencies.naming.streams(.calls, kind: .event)
            + dependencies.naming.streams(.tenants, kind: .event)
        let runner = ConsumerGroupRunner(redis: dependencies.redis, configuration: dependencies.consumer(group, streams: streams, readInterval: ServiceDependencies.backgroundReadInterval),
                                         handlers: handlers, logger: dependencies.logger)
        let deliverer = WebhookDeliverer(
            queue: WebhookQueue(connection: try await dependencies.connect("\(group)-deliverer"), prefix: dependencies.naming.prefix),
            tenants: dependencies.tenants, delivery: delivery, client: client, logger: dependencies.logger)
        return [runner, deliverer]
    }

    func handle(_ message: ConsumedMessage) async throws {
        let envelope = message.envelope
        guard let profile = try await tenants.profile(of: envelope.tenantID) else { return }
        for webhook in profile.webhooks where webhook.eventTypes.contains(envelope.type) {
            try await queue.enqueue(WebhookJob(id: Identifier.v5(namespace: webhook.id, name: envelope.id.description), tenantID: envelope.tenantID,
                                               webhookID: webhook.id, eventID: envelope.id, eventType: envelope.type, eventTime: envelope.time,
                                               data: envelope.data))
        }
    }
}

/// How webhooks are delivered.
public struct WebhookDelivery: Sendable {
    /// Attempts before a delivery goes to the failures stream.
    public var maxAttempts: Int
    /// Delay after the first failure; doubles per failure (±20 % jitter) up to `maxDelay`.
    public var initialDelay: Duration
    public var maxDelay: Duration
    /// One request's time limit.
    public var timeout: Duration
    /// Requests in flight at once.
    public var concurrency: Int
    /// How often the queue is polled when it is idle.
    public var pollInterval: Duration

    public init(maxAttempts: Int = 8, initialDelay: Duration = .seconds(2), maxDelay: Duration = .seconds(600), timeout: Duration = .seconds(5),
                concurrency: Int = 32, pollInterval: Duration = .milliseconds(200)) {
        self.maxAttempts = max(1, maxAttempts)
        self.initialDelay = initialDelay
        self.maxDelay = maxDelay
        self.timeout = timeout
        self.concurrency = max(1, concurrency)
        self.pollInterval = pollInterval
    }

    func delay(afterFailures failures: Int) -> Duration {
        RetryBackoff(initial: initialDelay, maximum: maxDelay).delay(afterFailures: failures)
    }
}

/// Makes the HTTP requests of ``WebhookQueue``'s due jobs.
public final class WebhookDeliverer: Service, Sendable {
    let queue: WebhookQueue
    let tenants: TenantProfiles
    let delivery: WebhookDelivery
    let client: HTTPClient
    let logger: Logger

    init(queue: WebhookQueue, tenants: TenantProfiles, delivery: WebhookDelivery, client: HTTPClient, logger: Logger) {
        self.queue = queue
        self.tenants = tenants
        self.delivery = delivery
        self.client = client
        self.logger = logger
    }

    public func run() async throws {
        try await withGracefulShutdownHandler {
            try await withThrowingDiscardingTaskGroup { group in
                let slots = AsyncSlots(delivery.concurrency)
                while !Task.isShuttingDownGracefully && !Task.isCancelled {
                    let free = await slots.free
                    let jobs: [WebhookJob]
                    do {
                        jobs = free == 0 ? [] : try await queue.claim(limit: free, lease: delivery.timeout * 3)
                    } catch {
                        logger.warning("webhook queue unreachable; retrying", metadata: ["error": "\(error)"])
                        try? await Task.sleep(for: .seconds(1))
                        continue
                    }
                    for job in jobs {
                        await slots.take()
                        group.addTask {
                            await self.attempt(job)
                            await slots.give()
                        }
                    }
                    if jobs.isEmpty { try? await Task.sleep(for: delivery.pollInterval) }
                }
            }
        } onGracefulShutdown: {}
    }

    func attempt(_ job: WebhookJob) async {
        var failure: String
        do {
            if let webhook = try await tenants.profile(of: job.tenantID)?.webhooks.first(where: { $0.id == job.webhookID }) {
                let status = try await post(job, to: webhook)
                if (200..<300).contains(status) {
                    try await queue.complete(job)
                    return
                }
                failure = "the receiver answered \(status)"
            } else {
                // Removed or disabled since: nothing to deliver to.
                try await queue.complete(job)
                return
            }
        } catch {
            failure = Self.describe(error)
        }
        let attempts = job.attempts + 1
        let retryAt: Timestamp? = attempts >= delivery.maxAttempts ? nil
            : Timestamp.now.adding(microseconds: Int64(delivery.delay(afterFailures: attempts) / .microseconds(1)))
        logger.warning(retryAt == nil ? "webhook delivery failed for good" : "webhook delivery failed; will retry",
                       metadata: ["tenant": "\(job.tenantID)", "webhook": "\(job.webhookID)", "delivery": "\(job.id)", "attempts": "\(attempts)", "error": "\(failure)"])
        do {
            try await queue.fail(job, error: failure, retryAt: retryAt)
        } catch {
            logger.warning("webhook failure not recorded; the lease will bring the job back", metadata: ["delivery": "\(job.id)", "error": "\(error)"])
        }
    }

    /// The error without the URL (which may carry a secret, e.g. a Slack webhook's path).
    static func describe(_ error: any Error) -> String {
        if let error = error as? HTTPClientError {
            if error == .deadlineExceeded || error == .readTimeout || error == .connectTimeout { return "timed out" }
            return "request failed (\(String(describing: error).prefix(120)))"
        }
        return "request failed (\(String(describing: type(of: error))))"
    }

    func post(_ job: WebhookJob, to webhook: OutboundWebhook) async throws -> Int {
        let body = Self.body(job, format: webhook.format)
        let timestamp = String(Timestamp.now.millisecondsSinceEpoch / 1000)
        var request = HTTPClientRequest(url: webhook.url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "User-Agent", value: "VoiceCore-Webhooks/1")
        request.headers.add(name: "X-VoiceCore-Event", value: job.eventType)
        request.headers.add(name: "X-VoiceCore-Delivery", value: job.id.description)
        request.headers.add(name: "X-VoiceCore-Signature", value: "t=\(timestamp),v1=\(Self.signature(body: body, timestamp: timestamp, secret: webhook.signingSecret))")
        request.body = .bytes(ByteBuffer(bytes: body))
        let response = try await client.execute(request, timeout: .milliseconds(Int64(delivery.timeout / .milliseconds(1))))
        _ = try? await response.body.collect(upTo: 64 * 1024)
        return Int(response.status.code)
    }

    /// Hex HMAC-SHA256 of `"<timestamp>.<body>"`.
    public static func signature(body: [UInt8], timestamp: String, secret: [UInt8]) -> String {
        var message = Array(timestamp.utf8)
        message.append(UInt8(ascii: "."))
        message.append(contentsOf: body)
        let mac = HMAC<SHA256>.authenticationCode(for: message, using: SymmetricKey(data: secret))
        return mac.map { String(format: "%02x", $0) }.joined()
    }

    /// The body posted to a webhook (compact JSON, keys sorted): the event with its `data`, or
    /// Slack's `text`. An event whose data is not a JSON object is sent with an empty one.
    static func body(_ job: WebhookJob, format: OutboundWebhook.Format) -> [UInt8] {
        let data = (try? JSONValue.object(parsing: job.data)) ?? [:]
        switch format {
        case .json:
            return JSONValue.object([
                "id": .string(job.eventID.description), "type": .string(job.eventType), "tenant_id": .string(job.tenantID.description),
                "time": .string(job.eventTime.rfc3339), "data": .object(data),
            ]).jsonText
        case .slack:
            return JSONValue.object(["text": .string(slackText(job.eventType, data))]).jsonText
        }
    }

    static func slackText(_ type: String, _ data: [String: JSONValue]) -> String {
        switch type {
        case LeadCreated.type:
            let who = [data["name"], data["phone"], data["email"]].compactMap { $0?.string }.joined(separator: ", ")
            return "New lead (\(data["intent"]?.string ?? "other")): \(who.isEmpty ? "no contact details" : who)"
        case CallEnded.type:
            var seconds = 0
            if case .number(let literal)? = data["duration_seconds"], let value = Int(literal) { seconds = value }
            return "Call ended: \(data["status"]?.string ?? "?"), \(seconds) s"
        case CallSummarized.type:
            return "Call summarized (\(data["sentiment"]?.string ?? "neutral")): \(data["summary"]?.string ?? "")"
        case CallerErased.type:
            let calls: Int, contacts: Int, leads: Int
            if case .array(let items)? = data["call_ids"] { calls = items.count } else { calls = 0 }
            if case .array(let items)? = data["contact_ids"] { contacts = items.count } else { contacts = 0 }
            if case .array(let items)? = data["lead_ids"] { leads = items.count } else { leads = 0 }
            return "A caller was erased (erasure \(data["erasure_id"]?.string ?? "?")): erase your copies of its \(calls) calls, \(contacts) contacts and \(leads) leads"
        default:
            return type
        }
    }
}

/// A counting semaphore for tasks.
actor AsyncSlots {
    private var available: Int
    private var waiters: [CheckedContinuation<Void, Never>] = []

    init(_ count: Int) { available = count }

    var free: Int { available }

    func take() async {
        if available > 0 { available -= 1; return }
        await withCheckedContinuation { waiters.append($0) }
    }

    func give() {
        if waiters.isEmpty { available += 1 } else { waiters.removeFirst().resume() }
    }
}
