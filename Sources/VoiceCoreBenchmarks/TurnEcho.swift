import Synchronization
import VoiceCoreEvents
import VoiceCoreRedis
import VoiceCoreTime

/// The least a responder can do for a caller turn — `bench turn`'s reference for the bus round
/// trip itself: one Redis connection (one thread), a blocking `XREADGROUP` of the conversation
/// command streams, and for each `ReportCallerTurn` read a fixed `ReceptionistReplied` (the id and
/// `causationid` the edge waits for), the batch's replies written as one pipeline of plain `XADD`s
/// and acknowledged in the round trip of the next read. No dialogue state, no tenant settings, no
/// deduplication script, no thread hop: what it adds to a turn is what Redis, the edge's wait and
/// this machine's scheduling cost, and the receptionist's figure beside it tells what the
/// receptionist itself adds.
struct TurnEcho: Sendable {
    let naming: StreamNaming
    let group: String

    /// Set once to end ``run(redis:until:)`` (within its 100 ms read block).
    final class Stop: Sendable {
        private let flag = Atomic(false)
        func set() { flag.store(true, ordering: .relaxed) }
        var isSet: Bool { flag.load(ordering: .relaxed) }
    }

    /// Creates the group at the streams' ends (only turns sent from now on), then answers until
    /// `stop` is set; the group is deleted afterwards.
    func run(redis: RedisClient, until stop: Stop) async throws -> Int {
        let commands = naming.streams(.conversations, kind: .command)
        for stream in commands {
            _ = try await redis.execute(.xgroupCreate(stream, group: group, start: .end, makeStream: true))
        }
        var answered = 0
        var acknowledgements: [(stream: String, ids: [StreamEntryID])] = []
        while !stop.isSet {
            let read = try await redis.readGroup(group: group, consumer: "echo", streams: commands.map { ($0, .newEntries) }, count: 256,
                                                 block: .milliseconds(100), acknowledging: acknowledgements)
            acknowledgements = []
            var replies: [RedisCommand<StreamEntryID>] = []
            for batch in read {
                var ids: [StreamEntryID] = []
                for entry in batch.entries {
                    ids.append(entry.id)
                    guard let fields = entry.fields,
                          let command = try? EventEnvelope(fields: fields.map { EnvelopeField(name: $0.name, value: $0.value) }),
                          command.type == ReportCallerTurn.type,
                          let turn = try? MessageCodec.decode(ReportCallerTurn.self, from: command.data)
                    else { continue }
                    let reply = ReceptionistReplied(callID: turn.callID, provider: turn.provider, providerCallID: turn.providerCallID, turn: turn.turn,
                                                    channel: turn.channel, heard: turn.text, text: "Thank you. Anything else?", action: .continue,
                                                    decidedBy: .builtIn, repliedAt: .now)
                    let envelope = EventEnvelope(reply, tenant: command.tenantID, source: "/bench/echo", correlationID: command.correlationID,
                                                 causationID: command.id, id: ReceptionistReplied.replyID(commandID: command.id))
                    let stream = naming.stream(for: .conversations, kind: .event, tenant: command.tenantID, subject: reply.subject)
                    replies.append(.xadd(stream, fields: envelope.fields.map { StreamField(name: $0.name, value: $0.value) }))
                }
                if !ids.isEmpty { acknowledgements.append((batch.stream, ids)) }
            }
            if !replies.isEmpty {
                for result in try await redis.pipeline(replies) { _ = try result.get() }
                answered += replies.count
            }
        }
        for stream in commands { _ = try? await redis.execute(.xgroupDestroy(stream, group: group)) }
        return answered
    }
}
