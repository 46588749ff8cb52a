/// One entry of a stream: its id and its field list in the order it was written.
///
/// `fields` is `nil` for an entry that was deleted (`XDEL`, trimming) while it was still pending
/// in a consumer group: Redis still reports its id, so the consumer can acknowledge it.
public struct StreamEntry: Sendable, Hashable {
    public var id: StreamEntryID
    public var fields: [StreamField]?

    public init(id: StreamEntryID, fields: [StreamField]?) {
        self.id = id
        self.fields = fields
    }

    /// `true` when the entry was deleted from the stream.
    public var isDeleted: Bool { fields == nil }

    /// The value of the first field with this name, as UTF-8 text.
    public subscript(name: String) -> String? {
        fields?.first { $0.name == name }.map { String(decoding: $0.value, as: UTF8.self) }
    }

    /// The raw bytes of the first field with this name.
    public func bytes(_ name: String) -> [UInt8]? {
        fields?.first { $0.name == name }?.value
    }

    static func decode(_ value: RESPValue, _ what: String) throws -> StreamEntry {
        guard case .array(let pair) = value, pair.count == 2 else { throw RedisError.unexpected(what, value) }
        let id = try StreamEntryID.decode(pair[0], what)
        switch pair[1] {
        case .null:
            return StreamEntry(id: id, fields: nil)
        case .array(let flat):
            guard flat.count % 2 == 0 else { throw RedisError.unexpected("\(what) (odd field list)", pair[1]) }
            var fields: [StreamField] = []
            fields.reserveCapacity(flat.count / 2)
            var i = 0
            while i < flat.count {
                guard let name = flat[i].string, let value = flat[i + 1].bytes else { throw RedisError.unexpected("\(what) (field)", pair[1]) }
                fields.append(StreamField(name: name, value: value))
                i += 2
            }
            return StreamEntry(id: id, fields: fields)
        default:
            throw RedisError.unexpected(what, value)
        }
    }

    static func decodeList(_ value: RESPValue, _ what: String) throws -> [StreamEntry] {
        switch value {
        case .null: return []
        case .array(let items): return try items.map { try decode($0, what) }
        default: throw RedisError.unexpected(what, value)
        }
    }
}

/// One field of a stream entry. Values are bytes: Redis streams are binary-safe.
public struct StreamField: Sendable, Hashable {
    public var name: String
    public var value: [UInt8]

    public init(name: String, value: [UInt8]) {
        self.name = name
        self.value = value
    }

    public init(_ name: String, _ value: String) {
        self.name = name
        self.value = Array(value.utf8)
    }

    /// The value as UTF-8 text.
    public var string: String { String(decoding: value, as: UTF8.self) }
}
