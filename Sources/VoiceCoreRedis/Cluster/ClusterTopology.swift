/// Which master serves each of the 16,384 hash slots, as `CLUSTER SLOTS` reports it.
struct ClusterTopology: Sendable {
    typealias Endpoint = RedisConfiguration.Endpoint

    /// For each slot, an index into `masters`; -1 when no node serves it.
    var owners: [Int16]
    var masters: [Endpoint]
    /// Replicas per master, in the order `CLUSTER SLOTS` lists them.
    var replicas: [Endpoint: [Endpoint]]

    /// Parses a `CLUSTER SLOTS` reply: `[[start, end, [host, port, id, …], [replica…]…]…]`. A node
    /// announced without a host (an empty string or `?`) is the host that was asked.
    init(slotsReply reply: RESPValue, askedAt asked: Endpoint) throws {
        guard case .array(let ranges) = reply else { throw RedisError.unexpected("CLUSTER SLOTS", reply) }
        owners = Array(repeating: -1, count: HashSlot.count)
        masters = []
        replicas = [:]
        for range in ranges {
            guard case .array(let parts) = range, parts.count >= 3, let start = parts[0].int, let end = parts[1].int,
                  start >= 0, end < HashSlot.count, start <= end, let master = Self.endpoint(parts[2], asked: asked) else {
                throw RedisError.unexpected("CLUSTER SLOTS", reply)
            }
            let index = self.index(of: master)
            replicas[master] = parts.dropFirst(3).compactMap { Self.endpoint($0, asked: asked) }
            for slot in start...end { owners[slot] = Int16(index) }
        }
    }

    private static func endpoint(_ node: RESPValue, asked: Endpoint) -> Endpoint? {
        guard case .array(let fields) = node, fields.count >= 2, let host = fields[0].string, let port = fields[1].int else { return nil }
        if host.isEmpty || host == "?" {
            guard case .tcp(let askedHost, _) = asked else { return nil }
            return .tcp(host: askedHost, port: port)
        }
        return .tcp(host: host, port: port)
    }

    var coveredSlots: Int { owners.reduce(0) { $0 + ($1 >= 0 ? 1 : 0) } }

    func master(of slot: Int) -> Endpoint? {
        let index = owners[slot]
        return index >= 0 ? masters[Int(index)] : nil
    }

    /// After `MOVED slot endpoint`: that slot is served there now.
    mutating func move(slot: Int, to endpoint: Endpoint) {
        owners[slot] = Int16(index(of: endpoint))
    }

    /// The master's index in `masters`, added when new.
    private mutating func index(of master: Endpoint) -> Int {
        if let known = masters.firstIndex(of: master) { return known }
        masters.append(master)
        return masters.count - 1
    }
}

/// A cluster's answer that the command must go elsewhere or be tried again.
enum ClusterRedirect: Equatable {
    /// `MOVED slot host:port`: the slot belongs to that node now (update the map).
    case moved(slot: Int, to: RedisConfiguration.Endpoint)
    /// `ASK slot host:port`: the slot is migrating; ask that node once, after `ASKING`.
    case ask(slot: Int, to: RedisConfiguration.Endpoint)
    /// `TRYAGAIN` (a multi-key command during a migration), `CLUSTERDOWN` (slots not served, e.g.
    /// during a failover), `LOADING`: try again shortly.
    case retry

    init?(_ message: String, current: RedisConfiguration.Endpoint) {
        let words = message.split(separator: " ")
        guard let code = words.first else { return nil }
        switch code {
        case "MOVED", "ASK":
            guard words.count >= 3, let slot = Int(words[1]), let colon = words[2].lastIndex(of: ":"),
                  let port = Int(words[2][words[2].index(after: colon)...]) else { return nil }
            var host = String(words[2][..<colon])
            if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
            if host.isEmpty, case .tcp(let currentHost, _) = current { host = currentHost }
            let endpoint = RedisConfiguration.Endpoint.tcp(host: host, port: port)
            self = code == "MOVED" ? .moved(slot: slot, to: endpoint) : .ask(slot: slot, to: endpoint)
        case "TRYAGAIN", "CLUSTERDOWN", "LOADING", "MASTERDOWN":
            self = .retry
        default:
            return nil
        }
    }
}
