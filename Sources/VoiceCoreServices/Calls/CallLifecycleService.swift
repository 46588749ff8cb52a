import Logging
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCoreTime

/// The call lifecycle service (group `calls`): turns the edge's provider-neutral call commands
/// into call events.
///
/// - ``ReportCallProgress`` → ``CallStarted``, ``CallAnswered``, ``CallEnded`` through
///   ``CallStateMachine``, with the call's progress kept in Redis.
/// - ``ReportTranscriptSegment`` → ``TranscriptChunk``: every segment is published (partials
///   serve live views), and a segment's final replaces its partials downstream (the transcripts
///   projection keeps finals only). Offsets are measured from the call's start (the voice webhook,
///   which providers always send first: the call waits for its answer); a segment of a call not
///   yet started has offset 0.
/// - ``ReportRecording`` → ``VoicemailRecorded`` when the provider kept the recording (status
///   `completed`), once per recording (a retried callback publishes nothing new). A `failed` or
///   `absent` recording (the caller hung up without speaking, or the provider lost it) leaves no
///   voicemail: nothing is published, and it is logged. A recording of a call this service has
///   not seen start (its voice webhook lost) is still a voicemail: the caller spoke, the provider
///   holds the audio, and dropping it would lose the message; the read models keep it by call id
///   and show it with the call once the call is known.
public struct CallLifecycleService: Sendable {
    public static let group = "calls"

    let state: StateStore
    let emitter: Emitter
    let logger: Logger

    public static func runner(_ dependencies: ServiceDependencies) async throws -> ConsumerGroupRunner {
        let connection = try await dependencies.connect(group)
        let service = CallLifecycleService(
            state: dependencies.stateStore(connection),
            emitter: try await dependencies.emitter(group),
            logger: dependencies.logger)
        var handlers = MessageHandlers()
        handlers.aroundPartitionBatch(EffectBatch.scope(publisher: service.emitter.publisher))
        handlers.onPartitionAcquired { stream in service.state.invalidate(stream: stream) }
        handlers.on(ReportCallProgress.self) { message, report in try await service.handle(report, message) }
        handlers.on(ReportTranscriptSegment.self) { message, segment in try await service.handle(segment, message) }
        handlers.on(ReportRecording.self) { message, recording in try await service.handle(recording, message) }
        return ConsumerGroupRunner(redis: dependencies.redis,
                                   configuration: dependencies.consumer(group, streams: dependencies.naming.streams(.calls, kind: .command)),
                                   handlers: handlers, logger: dependencies.logger)
    }

    func handle(_ report: ReportCallProgress, _ message: ConsumedMessage) async throws {
        let tenant = message.envelope.tenantID
        let key = StateStore.key(stream: message.stream, service: Self.group, entity: report.callID.description)
        var progress = CallProgress(fields: try await state.read(key))
        let before = progress
        let outputs = CallStateMachine.apply(report, to: &progress)
        for output in outputs {
            switch output {
            case .started(let started):
                try await emitter.emit(started, tenant: tenant, key: "call:\(report.callID):started", time: started.startedAt)
            case .answered(let answered):
                try await emitter.emit(answered, tenant: tenant, key: "call:\(report.callID):answered", time: answered.answeredAt)
            case .ended(let ended):
                try await emitter.emit(ended, tenant: tenant, key: "call:\(report.callID):ended", time: ended.endedAt)
            }
        }
        if progress != before { try await state.write(key, progress.fields) }
        if outputs.isEmpty {
            logger.debug("call report changes nothing", metadata: ["call": "\(report.callID)", "status": "\(report.status.rawValue)", "sequence": "\(report.sequence)"])
        }
    }

    func handle(_ segment: ReportTranscriptSegment, _ message: ConsumedMessage) async throws {
        let key = StateStore.key(stream: message.stream, service: Self.group, entity: segment.callID.description)
        let progress = CallProgress(fields: try await state.read(key))
        let origin = progress.startedAt ?? segment.occurredAt
        let end = max(0, Int((segment.occurredAt.microsecondsSinceEpoch - origin.microsecondsSinceEpoch) / 1000))
        // Providers time a segment by its delivery; its start is estimated from its length
        // (about 150 words a minute).
        let words = ASCIIText.wordCount(segment.text)
        let start = max(0, end - words * 400)
        let chunk = TranscriptChunk(callID: segment.callID, sequence: segment.sequence, track: segment.track, text: segment.text,
                                    isFinal: segment.isFinal, confidence: segment.confidence ?? (segment.isFinal ? 0.9 : 0.5),
                                    startOffsetMs: start, endOffsetMs: max(start, end))
        try await emitter.emit(chunk, tenant: message.envelope.tenantID, key: "transcript:\(message.envelope.id)", time: segment.occurredAt)
    }

    func handle(_ recording: ReportRecording, _ message: ConsumedMessage) async throws {
        guard recording.status == .completed else {
            logger.info("recording not kept; no voicemail", metadata: ["call": "\(recording.callID)", "recording": "\(recording.recordingID)",
                                                                     "status": "\(recording.status.rawValue)"])
            return
        }
        // A completed recording without a length (the provider did not say) is still a voicemail.
        let voicemail = VoicemailRecorded(callID: recording.callID, recordingID: recording.recordingID, recordingURL: recording.recordingURL,
                                          durationSeconds: recording.durationSeconds ?? 0, recordedAt: recording.occurredAt)
        try await emitter.emit(voicemail, tenant: message.envelope.tenantID, key: "voicemail:\(recording.callID):\(recording.recordingID)",
                               time: recording.occurredAt)
    }
}
