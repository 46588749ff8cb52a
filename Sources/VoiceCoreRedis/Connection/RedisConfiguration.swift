/// Where and how to connect to Redis.
///
/// Built from a URL, usually `REDIS_URL`:
/// - `redis://[[user]:password@]host[:port][/db]` (port defaults to 6379, db to 0)
/// - `unix:///path/to/redis.sock[?db=N&password=P&user=U]`
/// - `redis-cluster://[[user]:password@]host:port[,host:port…]`: seed nodes of a Redis Cluster
///   (any reachable one tells the client the rest); the nodes must be in cluster mode.
/// - `redis://host:port,host:port…`: several seeds of what may be a cluster or a single server;
///   ``RedisClient`` asks the first reachable one and uses the mode it reports.
///
/// ```swift
/// let configuration = try RedisConfiguration(url: "redis://127.0.0.1:16379/0")
/// let connection = try await RedisConnection.connect(configuration)
/// ```
///
/// `description` never shows the password.
public struct RedisConfiguration: Sendable, Hashable, CustomStringConvertible {
    /// A TCP host and port, or a unix socket path.
    public enum Endpoint: Sendable, Hashable, CustomStringConvertible {
        case tcp(host: String, port: Int)
        case unix(path: String)

        public var description: String {
            switch self {
            case .tcp(let host, let port): return host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
            case .unix(let path): return "unix:\(path)"
            }
        }
    }

    /// Whether the deployment is a Redis Cluster.
    public enum ClusterMode: Sendable, Hashable {
        /// Ask the server (`CLUSTER SLOTS`): cluster when it is in cluster mode, else one server.
        case automatic
        /// A cluster is required (`redis-cluster://`); a server not in cluster mode is an error.
        case required
    }

    /// The first seed: the server itself, or where cluster discovery starts.
    public var endpoint: Endpoint {
        get { seeds[0] }
        set { seeds[0] = newValue }
    }
    /// Every seed node given (at least one). A single server has one.
    public var seeds: [Endpoint]
    public var clusterMode: ClusterMode
    /// How long a cluster client keeps retrying a command whose slot has no reachable master
    /// (a failover in progress: the replica needs about two node timeouts to take over), or that
    /// gets `TRYAGAIN`/`CLUSTERDOWN`, before failing it with ``RedisError/Kind/clusterUnavailable``.
    public var clusterRetryTimeout: Duration
    /// ACL user name for `AUTH user password`; `nil` sends `AUTH password` (the default user).
    public var username: String?
    public var password: String?
    /// Database number sent with `SELECT` after connecting (0 is not sent).
    public var database: Int
    /// How long establishing the TCP or unix connection may take.
    public var connectTimeout: Duration
    /// How long one command (or one pipeline) may wait for its reply. Blocking reads
    /// (`XREADGROUP BLOCK`) extend this by their block time.
    public var commandTimeout: Duration
    /// Enables TCP keepalive so a silently dead peer is noticed.
    public var keepAlive: Bool
    /// Sent with `CLIENT SETNAME` after connecting, so `CLIENT LIST` shows who is who.
    /// No spaces (Redis refuses them).
    public var clientName: String?

    public init(
        endpoint: Endpoint = .tcp(host: "127.0.0.1", port: 6379),
        username: String? = nil,
        password: String? = nil,
        database: Int = 0,
        connectTimeout: Duration = .seconds(5),
        commandTimeout: Duration = .seconds(10),
        keepAlive: Bool = true
    ) {
        self.seeds = [endpoint]
        self.clusterMode = .automatic
        self.clusterRetryTimeout = .seconds(15)
        self.username = username
        self.password = password
        self.database = database
        self.connectTimeout = connectTimeout
        self.commandTimeout = commandTimeout
        self.keepAlive = keepAlive
        self.clientName = nil
    }

    /// Parses `redis://…` or `unix://…`. Throws ``RedisError/Kind/invalidConfiguration`` naming
    /// what is wrong (the password is never repeated in the message).
    public init(url: String) throws {
        self.init()
        let invalid = { (why: String) in
            RedisError(kind: .invalidConfiguration, message: "invalid Redis URL: \(why). Expected redis://[user:password@]host:port[/db], redis-cluster://host:port,host:port… or unix:///path/to/socket")
        }
        if url.hasPrefix("unix://") {
            var rest = String(url.dropFirst("unix://".count))
            var query = ""
            if let q = rest.firstIndex(of: "?") {
                query = String(rest[rest.index(after: q)...])
                rest = String(rest[..<q])
            }
            guard rest.hasPrefix("/") else { throw invalid("a unix socket path must be absolute") }
            endpoint = .unix(path: rest)
            for pair in query.split(separator: "&") {
                let parts = pair.split(separator: "=", maxSplits: 1).map(String.init)
                guard parts.count == 2 else { throw invalid("query parameters are name=value") }
                let value = Self.percentDecoded(parts[1])
                switch parts[0] {
                case "db":
                    guard let db = Int(value), db >= 0 else { throw invalid("db must be a non-negative number") }
                    database = db
                case "password": password = value
                case "user": username = value
                default: throw invalid("unknown parameter '\(parts[0])'")
                }
            }
            return
        }
        let scheme: String
        if url.hasPrefix("redis-cluster://") {
            scheme = "redis-cluster://"
            clusterMode = .required
        } else if url.hasPrefix("redis://") {
            scheme = "redis://"
        } else {
            throw invalid(url.hasPrefix("rediss://") ? "TLS (rediss://) is not supported by hiredis 0.14" : "unknown scheme")
        }
        var rest = Substring(url.dropFirst(scheme.count))
        if let at = rest.lastIndex(of: "@") {
            let userInfo = rest[..<at]
            rest = rest[rest.index(after: at)...]
            if let colon = userInfo.firstIndex(of: ":") {
                let user = Self.percentDecoded(String(userInfo[..<colon]))
                username = user.isEmpty ? nil : user
                password = Self.percentDecoded(String(userInfo[userInfo.index(after: colon)...]))
            } else if !userInfo.isEmpty {
                // redis://password@host is a common shorthand for the default user.
                password = Self.percentDecoded(String(userInfo))
            }
        }
        var hostPort = rest
        if let slash = rest.firstIndex(of: "/") {
            hostPort = rest[..<slash]
            let dbText = rest[rest.index(after: slash)...]
            if !dbText.isEmpty {
                guard let db = Int(dbText), db >= 0 else { throw invalid("the database after '/' must be a non-negative number") }
                database = db
            }
        }
        var parsed: [Endpoint] = []
        for seed in hostPort.split(separator: ",", omittingEmptySubsequences: false) {
            parsed.append(try Self.endpoint(seed, invalid: invalid))
        }
        seeds = parsed
        if (clusterMode == .required || seeds.count > 1) && database != 0 {
            throw invalid("a Redis Cluster has only database 0")
        }
    }

    private static func endpoint(_ hostPort: Substring, invalid: (String) -> RedisError) throws -> Endpoint {
        var host = String(hostPort)
        var port = 6379
        if hostPort.hasPrefix("[") {
            guard let close = hostPort.firstIndex(of: "]") else { throw invalid("unclosed '[' in an IPv6 host") }
            host = String(hostPort[hostPort.index(after: hostPort.startIndex)..<close])
            let after = hostPort[hostPort.index(after: close)...]
            if after.hasPrefix(":") {
                guard let p = Int(after.dropFirst()), (1...65535).contains(p) else { throw invalid("the port must be 1-65535") }
                port = p
            }
        } else if let colon = hostPort.lastIndex(of: ":") {
            host = String(hostPort[..<colon])
            guard let p = Int(hostPort[hostPort.index(after: colon)...]), (1...65535).contains(p) else {
                throw invalid("the port must be 1-65535")
            }
            port = p
        }
        guard !host.isEmpty else { throw invalid("the host is missing") }
        return .tcp(host: host, port: port)
    }

    public var description: String {
        var text = ""
        switch endpoint {
        case .tcp:
            text = clusterMode == .required ? "redis-cluster://" : "redis://"
            if username != nil || password != nil {
                text += "\(username ?? "")\(password == nil ? "" : ":***")@"
            }
            text += seeds.map(\.description).joined(separator: ",")
            if database != 0 { text += "/\(database)" }
        case .unix(let path):
            text = "unix://\(path)"
            if database != 0 { text += "?db=\(database)" }
        }
        return text
    }

    private static func percentDecoded(_ text: String) -> String {
        guard text.contains("%") else { return text }
        var bytes: [UInt8] = []
        var iterator = Array(text.utf8).makeIterator()
        while let byte = iterator.next() {
            if byte == UInt8(ascii: "%"), let h = iterator.next(), let l = iterator.next(),
               let value = UInt8(String(decoding: [h, l], as: UTF8.self), radix: 16) {
                bytes.append(value)
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

extension RedisConfiguration {
    /// What a new connection sends before anything else: `AUTH`, `SELECT` and `CLIENT SETNAME`,
    /// as configured (none by default).
    var handshake: [RESPCommand] {
        var commands: [RESPCommand] = []
        if let password {
            if let username {
                commands.append(RESPCommand(.string("AUTH"), .string(username), .string(password)))
            } else {
                commands.append(RESPCommand(.string("AUTH"), .string(password)))
            }
        }
        if database != 0 { commands.append(RESPCommand("SELECT", .integer(database))) }
        if let clientName { commands.append(RESPCommand("CLIENT", "SETNAME", .string(clientName))) }
        return commands
    }
}
