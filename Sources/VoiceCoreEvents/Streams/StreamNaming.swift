/// The category of a stream: everything about one kind of aggregate.
public enum StreamCategory: String, Sendable, Hashable, CaseIterable, Codable {
    case calls
    case crm
    case billing
    case tenants
    /// A call's dialogue with the receptionist: caller turns (commands) and replies (events).
    /// Its own category so that the edge, which waits for replies, reads nothing else.
    case conversations
}

/// Whether a message is a command (asked for) or an event (decided and happened).
public enum MessageKind: String, Sendable, Hashable, Codable {
    case event
    case command

    var folder: String { self == .event ? "events" : "commands" }
}

/// Stream names and the partition function of the wire contract.
///
/// A stream name is `vc:{pNN}:<category>` for events and `vc:{pNN}:<category>:commands` for
/// commands. The `{pNN}` part is a Redis Cluster hash tag: all streams of one partition live in one
/// slot, so one `XREADGROUP` reads a partition's commands and events together.
///
/// The partition of a message is `FNV-1a-32("<tenantid>/<subject>") mod P`, with FNV-1a over the
/// UTF-8 bytes (offset basis 2166136261, prime 16777619), tenant id in lowercase. `NN` is the
/// partition number in decimal, zero-padded to at least two digits. Everything about one call
/// (commands and events, whose subject is the call id) shares a partition and so one total order.
///
/// ```swift
/// let naming = StreamNaming(partitions: 16)
/// naming.stream(for: .calls, kind: .event, tenant: tenant, subject: callID.description) // "vc:{p07}:calls"
/// ```
public struct StreamNaming: Sendable, Hashable {
    /// How many partitions each category has (fixed for the life of the data).
    public let partitions: Int
    /// The key prefix, `vc` by default.
    public let prefix: String

    public init(partitions: Int = 16, prefix: String = "vc") {
        precondition(partitions > 0, "partitions must be positive")
        self.partitions = partitions
        self.prefix = prefix
    }

    /// FNV-1a, 32 bits, over the bytes.
    public static func fnv1a32(_ bytes: some Sequence<UInt8>) -> UInt32 {
        var hash: UInt32 = 2_166_136_261
        for byte in bytes {
            hash ^= UInt32(byte)
            hash = hash &* 16_777_619
        }
        return hash
    }

    /// The partition of a tenant's subject.
    public func partition(tenant: Identifier, subject: String) -> Int {
        var key: [UInt8] = []
        key.reserveCapacity(37 + subject.utf8.count)
        tenant.append(to: &key)
        key.append(UInt8(ascii: "/"))
        key.append(contentsOf: subject.utf8)
        return Int(Self.fnv1a32(key) % UInt32(partitions))
    }

    /// The stream of a category and kind in a partition.
    public func stream(_ category: StreamCategory, kind: MessageKind, partition: Int) -> String {
        let number = String(partition)
        let padded = number.count < 2 ? "0" + number : number
        return "\(prefix):{p\(padded)}:\(category.rawValue)" + (kind == .command ? ":commands" : "")
    }

    /// The stream a message about `subject` goes to.
    public func stream(for category: StreamCategory, kind: MessageKind, tenant: Identifier, subject: String) -> String {
        stream(category, kind: kind, partition: partition(tenant: tenant, subject: subject))
    }

    /// Every stream of a category and kind, partition 0 first.
    public func streams(_ category: StreamCategory, kind: MessageKind) -> [String] {
        (0..<partitions).map { stream(category, kind: kind, partition: $0) }
    }
}
