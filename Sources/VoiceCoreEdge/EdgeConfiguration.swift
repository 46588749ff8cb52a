import NIOCore

/// How the edge listens, what it accepts and how it publishes.
///
/// Environment (read by `voicecore edge` / `voicecore up`; flags override):
/// `VOICECORE_EDGE_HOST`, `VOICECORE_EDGE_PORT`, `VOICECORE_PUBLIC_URL` (the URL providers call,
/// e.g. `https://voice.example.com`: Twilio signs the URL it requested, so behind a proxy or
/// tunnel set this), `VOICECORE_ADMIN_KEY` (enables the admin API), `VOICECORE_MASTER_KEY`
/// (decrypts stored provider secrets), `VOICECORE_TURN_DEADLINE_MS` (``turnDeadline``),
/// `VOICECORE_TRUSTED_PROXIES` (``trustedProxies``).
public struct EdgeConfiguration: Sendable {
    public var host: String
    public var port: Int
    /// The scheme, host and optional port providers use to reach this edge, without a trailing
    /// slash. Nil: `http://` plus the request's `Host` header (right when nothing rewrites it).
    public var publicBaseURL: String?
    /// The largest body accepted (413 above).
    public var maxBodyBytes: Int
    /// How long an idempotency key suppresses a repeated delivery. Providers retry for hours at
    /// most; a day is ample.
    public var deduplicationWindow: Duration
    /// How far a Telnyx `telnyx-timestamp` may be from this clock.
    public var telnyxTolerance: Duration
    /// How long looked-up tenants and API keys are kept in memory.
    public var tenantCacheTTL: Duration
    /// The admin API's bearer key; nil leaves the admin routes out (404).
    public var adminKey: String?
    /// What the receptionist says when it answers a Twilio call (TwiML `<Say>`).
    public var greeting: String
    /// Threads of the edge's own NIO event loops. Requests are parsed, handled and answered on
    /// them (no hop to Swift's cooperative pool); publishing and tenant look-ups go to the Redis
    /// and Postgres connections' threads. Default: one per core.
    public var eventLoopThreads: Int
    /// Publish from the event loops themselves: each loop has its own Redis connection, written
    /// and read by NIO (replies parsed by hiredis), so a handler is resumed on its loop with no
    /// thread in between. Only on a single Redis server and without replica acknowledgement; a
    /// cluster always publishes through the bus `Publisher`. `voicecore edge --publisher-thread`
    /// turns it off.
    public var publishOnEventLoops: Bool
    /// How long a caller's turn waits for the receptionist's reply before the caller hears a
    /// holding line (and the turn is waited for again; two misses: a message is taken).
    public var turnDeadline: Duration
    /// Addresses of the reverse proxies in front of the edge: a request from one of them is
    /// counted, for limits per client (failed console sign-ins), as coming from the last address
    /// its `X-Forwarded-For` names that is not itself a trusted proxy. Empty (the default): the
    /// connection's address, so behind a proxy every client shares the proxy's limit (never a
    /// looser one); a header from anyone else is never believed.
    public var trustedProxies: Set<String>

    public init(host: String = "127.0.0.1", port: Int = 8080, publicBaseURL: String? = nil, maxBodyBytes: Int = 64 * 1024,
                deduplicationWindow: Duration = .seconds(86_400), telnyxTolerance: Duration = .seconds(300),
                tenantCacheTTL: Duration = .seconds(30), adminKey: String? = nil,
                greeting: String = "Thank you for calling. How can we help you today?", eventLoopThreads: Int = System.coreCount,
                publishOnEventLoops: Bool = true, turnDeadline: Duration = .milliseconds(2500), trustedProxies: Set<String> = []) {
        self.host = host
        self.port = port
        self.publicBaseURL = publicBaseURL.map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 }
        self.maxBodyBytes = maxBodyBytes
        self.deduplicationWindow = deduplicationWindow
        self.telnyxTolerance = telnyxTolerance
        self.tenantCacheTTL = tenantCacheTTL
        self.adminKey = adminKey
        self.greeting = greeting
        self.eventLoopThreads = max(1, eventLoopThreads)
        self.publishOnEventLoops = publishOnEventLoops
        self.turnDeadline = max(.milliseconds(1), turnDeadline)
        self.trustedProxies = trustedProxies
    }
}
