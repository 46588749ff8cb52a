import CHiredis

/// Turns bytes read from a Redis socket into replies, with hiredis' reply reader.
///
/// For connections whose I/O is not hiredis' own (the edge's event-loop connections): feed what
/// the socket delivered, then take replies until `next()` returns nil (a reply still incomplete
/// waits for more bytes). Not thread-safe: one parser per connection, used on its thread.
final class RESPReplyParser {
    private let reader: UnsafeMutablePointer<redisReader>

    init() {
        guard let reader = redisReaderCreate() else { fatalError("hiredis could not allocate a reply reader") }
        self.reader = reader
    }

    deinit { redisReaderFree(reader) }

    /// Adds bytes read from the socket.
    func feed(_ bytes: UnsafeRawBufferPointer) throws(RedisError) {
        guard !bytes.isEmpty else { return }
        let fed = bytes.withMemoryRebound(to: CChar.self) { redisReaderFeed(reader, $0.baseAddress, $0.count) }
        guard fed == REDIS_OK else { throw RedisError(kind: .unexpectedReply, message: "hiredis could not take the bytes read: \(errorText)") }
    }

    /// The next complete reply, or nil until more bytes arrive.
    /// - Throws: ``RedisError`` of kind `unexpectedReply` when the bytes are not RESP (the
    ///   connection must be closed: its stream can no longer be trusted).
    func next() throws(RedisError) -> RESPValue? {
        var raw: UnsafeMutableRawPointer?
        guard redisReaderGetReply(reader, &raw) == REDIS_OK else {
            throw RedisError(kind: .unexpectedReply, message: "malformed reply from Redis: \(errorText)")
        }
        guard let raw else { return nil }
        defer { freeReplyObject(raw) }
        return RedisConnection.value(of: raw.assumingMemoryBound(to: redisReply.self))
    }

    private var errorText: String {
        withUnsafeBytes(of: reader.pointee.errstr) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
    }
}
