import CHiredis

/// Reads a hiredis reply in place, for commands whose replies are large and hot (stream reads):
/// decoding straight into Swift types skips building a ``RESPValue`` tree first.
/// Valid only until the reply is freed; never stored or passed outside this module.
struct ReplyReader {
    let reply: UnsafeMutablePointer<redisReply>

    var isNil: Bool { reply.pointee.type == REDIS_REPLY_NIL }
    var isArray: Bool { reply.pointee.type == REDIS_REPLY_ARRAY }
    var isString: Bool { reply.pointee.type == REDIS_REPLY_STRING || reply.pointee.type == REDIS_REPLY_STATUS }
    var count: Int { reply.pointee.elements }

    subscript(index: Int) -> ReplyReader? {
        guard isArray, index < count, let element = reply.pointee.element[index] else { return nil }
        return ReplyReader(reply: element)
    }

    var bytes: [UInt8] {
        let length = reply.pointee.len
        guard isString, length > 0, let pointer = reply.pointee.str else { return [] }
        return pointer.withMemoryRebound(to: UInt8.self, capacity: length) { Array(UnsafeBufferPointer(start: $0, count: length)) }
    }

    var string: String {
        let length = reply.pointee.len
        guard isString, length > 0, let pointer = reply.pointee.str else { return "" }
        return pointer.withMemoryRebound(to: UInt8.self, capacity: length) { String(decoding: UnsafeBufferPointer(start: $0, count: length), as: UTF8.self) }
    }

    var entryID: StreamEntryID? {
        let length = reply.pointee.len
        guard isString, length > 0, let pointer = reply.pointee.str else { return nil }
        return pointer.withMemoryRebound(to: UInt8.self, capacity: length) { StreamEntryID(ascii: UnsafeBufferPointer(start: $0, count: length)) }
    }

    /// A `[id, [name, value, …] | nil]` stream entry.
    func streamEntry(_ what: String) throws -> StreamEntry {
        guard isArray, count == 2, let idReply = self[0], let id = idReply.entryID, let fieldsReply = self[1] else {
            throw RedisError(kind: .unexpectedReply, message: "unexpected entry in the \(what) reply")
        }
        if fieldsReply.isNil { return StreamEntry(id: id, fields: nil) }
        guard fieldsReply.isArray, fieldsReply.count % 2 == 0 else {
            throw RedisError(kind: .unexpectedReply, message: "unexpected field list in the \(what) reply")
        }
        var fields: [StreamField] = []
        fields.reserveCapacity(fieldsReply.count / 2)
        var i = 0
        while i < fieldsReply.count {
            guard let name = fieldsReply[i], let value = fieldsReply[i + 1] else {
                throw RedisError(kind: .unexpectedReply, message: "unexpected field in the \(what) reply")
            }
            fields.append(StreamField(name: name.string, value: value.bytes))
            i += 2
        }
        return StreamEntry(id: id, fields: fields)
    }

    /// A list of entries (XRANGE), nil as empty.
    func streamEntries(_ what: String) throws -> [StreamEntry] {
        if isNil { return [] }
        guard isArray else { throw RedisError(kind: .unexpectedReply, message: "unexpected \(what) reply") }
        var entries: [StreamEntry] = []
        entries.reserveCapacity(count)
        for index in 0..<count {
            guard let element = self[index] else { continue }
            if element.isNil { continue }
            entries.append(try element.streamEntry(what))
        }
        return entries
    }

    /// An XREAD / XREADGROUP reply: `[[key, entries], …]`, nil as empty.
    func streamRead(_ what: String) throws -> [StreamReadResult] {
        if isNil { return [] }
        guard isArray else { throw RedisError(kind: .unexpectedReply, message: "unexpected \(what) reply") }
        var results: [StreamReadResult] = []
        results.reserveCapacity(count)
        for index in 0..<count {
            guard let pair = self[index], pair.isArray, pair.count == 2, let key = pair[0], let entries = pair[1] else {
                throw RedisError(kind: .unexpectedReply, message: "unexpected stream in the \(what) reply")
            }
            results.append(StreamReadResult(stream: key.string, entries: try entries.streamEntries(what)))
        }
        return results
    }
}
