/// How the live event feed (`GET /v1/events`) treats its connections.
///
/// Environment (read by `voicecore edge` / `voicecore up`; flags override):
/// `VOICECORE_EVENTS_PER_TENANT` (``connectionsPerTenant``), `VOICECORE_EVENTS_QUEUE`
/// (``queueFrames``), `VOICECORE_EVENTS_HEARTBEAT` (``heartbeat``, seconds).
public struct EventFeedConfiguration: Sendable {
    /// Open feed connections one tenant may hold (its admin mirror's included); the next is
    /// answered 429 with `Retry-After`.
    public var connectionsPerTenant: Int
    /// Frames that may wait for one connection; a client that falls this far behind is
    /// disconnected (it resumes with `Last-Event-ID`).
    public var queueFrames: Int
    /// How often every connection gets a comment line (`:`), events or not: it keeps proxies from
    /// closing a quiet connection and shows the edge a client that is gone.
    public var heartbeat: Duration
    /// Entries per stream per catch-up read (a resume reads the streams page by page).
    public var catchUpPage: Int
    /// Seconds a refused client is told to wait (`Retry-After`).
    public var retryAfterSeconds: Int

    public init(connectionsPerTenant: Int = 100, queueFrames: Int = 1024, heartbeat: Duration = .seconds(15),
                catchUpPage: Int = 128, retryAfterSeconds: Int = 5) {
        self.connectionsPerTenant = max(1, connectionsPerTenant)
        self.queueFrames = max(1, queueFrames)
        self.heartbeat = heartbeat
        self.catchUpPage = max(1, catchUpPage)
        self.retryAfterSeconds = max(1, retryAfterSeconds)
    }
}
