extension RedisClient: RedisTransport {
    /// The reply to one command, sent to the master of its keys; an error reply is a value.
    public func reply(to command: RESPCommand) async throws -> RESPValue {
        let replies = try await send([command])
        guard let reply = replies.first else {
            throw RedisError(kind: .unexpectedReply, message: "no reply to '\(command)'", endpoint: configuration.endpoint.description)
        }
        return reply
    }
}
