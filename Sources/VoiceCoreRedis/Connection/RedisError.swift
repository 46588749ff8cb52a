import VoiceCoreExecutors

/// An error from the Redis client or from the Redis server.
///
/// Client errors (``Kind/connection``, ``Kind/connectionClosed``, ``Kind/timeout``,
/// ``Kind/unexpectedReply``, ``Kind/invalidConfiguration``) are kept apart from the server's own
/// error replies (``Kind/server``), whose first word is in ``serverCode`` (`NOGROUP`, `BUSYGROUP`,
/// `WRONGTYPE`, `NOSCRIPT`, `ERR`, …). No password ever appears in a message.
public struct RedisError: Error, Sendable, CustomStringConvertible {
    /// What kind of failure this is. New kinds may be added.
    public struct Kind: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case connection, connectionClosed, timeout, server, unexpectedReply, invalidConfiguration, crossSlot, replication, clusterUnavailable
        }
        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// Connecting failed, or the socket failed during a command.
        public static let connection = Kind(.connection)
        /// The connection was closed or broken earlier; call `reconnect()`.
        public static let connectionClosed = Kind(.connectionClosed)
        /// No reply arrived within the command timeout; the connection is closed.
        public static let timeout = Kind(.timeout)
        /// Redis answered with an error reply.
        public static let server = Kind(.server)
        /// The reply did not have the shape the command expects.
        public static let unexpectedReply = Kind(.unexpectedReply)
        /// A URL or option is invalid.
        public static let invalidConfiguration = Kind(.invalidConfiguration)
        /// The keys of one command hash to different Redis Cluster slots; nothing was sent.
        public static let crossSlot = Kind(.crossSlot)
        /// The write was applied by the master but fewer replicas than asked acknowledged it within
        /// the `WAIT` timeout: a failover now could lose it. Treat it as not published.
        public static let replication = Kind(.replication)
        /// No node of the cluster serves the key's slot within the retry window (a failover that
        /// did not complete, or every node unreachable).
        public static let clusterUnavailable = Kind(.clusterUnavailable)

        public var description: String { base.rawValue }
    }

    public let kind: Kind
    /// A message a person can act on.
    public let message: String
    /// For ``Kind/server``: the error code, the first word of the reply (`NOGROUP`, `ERR`, …).
    public let serverCode: String?
    /// `host:port` or the socket path; never credentials.
    public let endpoint: String?

    public init(kind: Kind, message: String, serverCode: String? = nil, endpoint: String? = nil) {
        self.kind = kind
        self.message = message
        self.serverCode = serverCode
        self.endpoint = endpoint
    }

    /// An error for a server error reply such as `NOGROUP No such key …`.
    public static func server(_ reply: String, endpoint: String? = nil) -> RedisError {
        let code = reply.prefix { $0 != " " }
        let isCode = !code.isEmpty && code.allSatisfy { $0.isUppercase || $0 == "_" }
        return RedisError(kind: .server, message: reply, serverCode: isCode ? String(code) : nil, endpoint: endpoint)
    }

    static func unexpected(_ what: String, _ value: RESPValue) -> RedisError {
        RedisError(kind: .unexpectedReply, message: "unexpected reply for \(what): \(value.debugSummary)")
    }

    public var description: String {
        var text = "Redis \(kind)"
        if let endpoint { text += " (\(endpoint))" }
        return text + ": " + message
    }
}

extension RedisError: DependencyFailure {
    /// Server error codes that say Redis cannot serve right now, whatever the command: loading its
    /// data after a restart, a replica or a failover in progress, a cluster without a master for
    /// the slot, a script or persistence failure that blocks writes, memory full (`maxmemory`).
    static let outageCodes: Set<String> = ["LOADING", "READONLY", "CLUSTERDOWN", "TRYAGAIN", "MASTERDOWN", "BUSY", "MISCONF", "OOM", "NOREPLICAS"]

    /// True when Redis was unreachable or not serving (see ``DependencyFailure``): connecting
    /// failed, the connection broke or timed out, the cluster had no master for the slot, fewer
    /// replicas acknowledged a write than asked, or a server error in ``outageCodes``.
    public var isOutage: Bool {
        switch kind {
        case .connection, .connectionClosed, .timeout, .clusterUnavailable, .replication: return true
        case .server: return serverCode.map { Self.outageCodes.contains($0) } ?? false
        default: return false
        }
    }
}

extension RedisError {
    /// A handshake command (``RedisConfiguration/handshake``) answered with an error. AUTH's
    /// arguments are never echoed; the server's message does not contain them.
    static func handshake(_ command: RESPCommand, failedWith message: String, endpoint: String) -> RedisError {
        let what = command.arguments.first == .string("AUTH") ? "authentication" : "\(command)"
        return RedisError(kind: .server, message: "\(what) failed: \(message)", serverCode: RedisError.server(message).serverCode, endpoint: endpoint)
    }
}
