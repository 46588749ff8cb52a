import Foundation
import VoiceCoreEvents
import VoiceCoreTime

/// Realistic event traffic of a receptionist platform, for tests, benchmarks and load: each call
/// brings its call events, transcript chunks, intents, a summary, sometimes a conversation with
/// the receptionist (its replies and what came of it), sometimes a lead with its contact and
/// interaction, and its usage — in the order the services publish them. A share of events is
/// published twice the way real systems duplicate them (a redelivered CallEnded, a re-derived
/// UsageRecorded with the same usage id, the very same envelope republished after a timeout).
///
/// Deterministic for a seed (contents and order; event ids are fresh UUIDv7s).
public struct CallWorkload: Sendable {
    /// One event to publish and the category of stream it goes to.
    public struct Item: Sendable {
        public var envelope: EventEnvelope
        public var category: StreamCategory

        public init(envelope: EventEnvelope, category: StreamCategory) {
            self.envelope = envelope
            self.category = category
        }
    }

    public let tenants: [Identifier]
    private var random: SplitMix64
    private var callIndex = 0
    private let start: Timestamp
    /// Seconds between consecutive calls' start times (spreads calls over several days).
    public var secondsBetweenCalls: Int64 = 397
    /// Probability of each kind of duplicate.
    public var duplicateRate = 0.04
    /// Share of answered calls that hold a conversation with the receptionist.
    public var conversationRate = 0.4

    public init(seed: UInt64, tenants: Int = 3, start: Timestamp = Timestamp(microsecondsSinceEpoch: 1_790_000_000_000_000)) {
        var random = SplitMix64(seed: seed)
        self.tenants = (0..<max(1, tenants)).map { _ in
            Identifier.v5(namespace: Self.tenantNamespace, name: "tenant-\(random.next())")
        }
        self.random = random
        self.start = start
    }

    /// The namespace of the workload's tenant ids: RFC 4122's URL namespace
    /// (6ba7b811-9dad-11d1-80b4-00c04fd430c8), so a seed names the same tenants everywhere.
    static let tenantNamespace = Identifier(UUID(uuid: (0x6B, 0xA7, 0xB8, 0x11, 0x9D, 0xAD, 0x11, 0xD1, 0x80, 0xB4, 0x00, 0xC0, 0x4F, 0xD4, 0x30, 0xC8)))

    /// TenantProvisioned for every tenant: publish these first.
    public func provisioning() -> [Item] {
        tenants.enumerated().map { index, tenant in
            Item(envelope: EventEnvelope(TenantProvisioned(tenantID: tenant, name: "Tenant \(index)", plan: .growth, timeZone: "UTC", provisionedAt: start),
                                         tenant: tenant, source: "/samples", time: start),
                 category: .tenants)
        }
    }

    /// The events of the next `calls` calls.
    public mutating func calls(_ calls: Int) -> [Item] {
        var items: [Item] = []
        items.reserveCapacity(calls * 16)
        for _ in 0..<calls { items += nextCall() }
        return items
    }

    /// The events of one call, in publishing order.
    public mutating func nextCall() -> [Item] {
        let index = callIndex
        callIndex += 1
        let tenant = tenants[Int(random.next() % UInt64(tenants.count))]
        let callID = CallID.derive(tenant: tenant, provider: .twilio, providerCallID: "CA\(index)-\(random.next() % 1_000_000)")
        var time = start.adding(microseconds: Int64(index) * secondsBetweenCalls * 1_000_000)
        var items: [Item] = []
        func add<M: Message>(_ message: M, _ category: StreamCategory, at: Timestamp) {
            items.append(Item(envelope: EventEnvelope(message, tenant: tenant, source: "/samples", time: at), category: category))
            if chance(duplicateRate / 4) { items.append(items[items.count - 1]) }  // the same envelope again
        }
        func advance(_ seconds: Int64) -> Timestamp {
            time = time.adding(microseconds: seconds * 1_000_000)
            return time
        }
        /// Two or three turns, each reply published as the receptionist does (its id derived from
        /// the turn's command, which it names as its cause), then one outcome: an appointment
        /// request, a message, a transfer or a voicemail.
        func conversation() {
            let turns = 2 + Int(random.next() % 2)
            let outcome = Int(random.next() % 4)
            let actions: [ReceptionistAction] = [.hangup, .hangup, .transfer, .voicemail]
            for turn in 1...turns {
                let action: ReceptionistAction = turn < turns ? .continue : actions[outcome]
                let command = ReportCallerTurn.commandID(callID: callID, turn: turn)
                let reply = ReceptionistReplied(callID: callID, provider: .twilio, providerCallID: "CA\(index)", turn: turn, channel: .gather,
                                                heard: turn == 1 ? "I would like to book an appointment" : "Tuesday morning, my name is Caller \(index)",
                                                text: turn < turns ? "Which day suits you?" : "Thank you, goodbye.", action: action,
                                                transferTo: action == .transfer ? "+18005550100" : nil,
                                                slots: turn == 1 ? ["job": "appointment"] : ["job": "appointment", "preferred_time": "Tuesday morning"],
                                                intent: .appointment, decidedBy: .builtIn, repliedAt: advance(3))
                items.append(Item(envelope: EventEnvelope(reply, tenant: tenant, source: "/samples", causationID: command,
                                                          id: ReceptionistReplied.replyID(commandID: command), time: time),
                                  category: .conversations))
                if chance(duplicateRate) { items.append(items[items.count - 1]) }  // a turn answered again: the same reply
            }
            switch outcome {
            case 0:
                add(AppointmentRequested(callID: callID, name: "Caller \(index)", phone: "+1\(4_150_000_000 + index)", preferredTime: "Tuesday morning",
                                         turn: turns, requestedAt: time), .calls, at: time)
            case 1:
                add(MessageTaken(callID: callID, name: "Caller \(index)", phone: nil, message: "Please call me back", turn: turns, takenAt: time), .calls, at: time)
            case 2:
                add(CallTransferred(callID: callID, to: "+18005550100", reason: "caller asked for a person", turn: turns, transferredAt: time), .calls, at: time)
            default:
                add(VoicemailRecorded(callID: callID, recordingID: "RE\(index)", recordingURL: nil, durationSeconds: 12, recordedAt: advance(15)), .calls, at: time)
            }
        }

        add(CallStarted(callID: callID, provider: .twilio, providerCallID: "CA\(index)", direction: .inbound,
                        from: "+1\(4_150_000_000 + index)", to: "+18005551212", startedAt: time), .calls, at: time)
        let answered = chance(0.75)
        var duration = 0
        var intents = 0
        if answered {
            add(CallAnswered(callID: callID, answeredAt: advance(4), answeredBy: .human), .calls, at: time)
            let chunks = 4 + Int(random.next() % 7)
            for sequence in 0..<chunks {
                let track: TranscriptTrack = sequence % 2 == 0 ? .inbound : .outbound
                let offset = sequence * 5000
                if chance(0.3) {
                    add(TranscriptChunk(callID: callID, sequence: sequence, track: track, text: "I would like to", isFinal: false,
                                        confidence: 0.6, startOffsetMs: offset, endOffsetMs: offset + 2000), .calls, at: advance(2))
                }
                add(TranscriptChunk(callID: callID, sequence: sequence, track: track, text: "I would like to book an appointment \(sequence)", isFinal: true,
                                    confidence: 0.91, startOffsetMs: offset, endOffsetMs: offset + 4000, language: "en-US"), .calls, at: advance(3))
            }
            if chance(conversationRate) { conversation() }
            intents = 1 + Int(random.next() % 2)
            for n in 0..<intents {
                let intent = Intent.allCases[Int(random.next() % UInt64(Intent.allCases.count))]
                add(IntentDetected(callID: callID, intent: intent, confidence: Double(50 + random.next() % 50) / 100, sourceSequence: n, detectedAt: advance(1)), .calls, at: time)
            }
            duration = 30 + Int(random.next() % 570)
            add(CallSummarized(callID: callID, summary: "Caller asked about an appointment.", keySentences: ["I would like to book an appointment"],
                               sentiment: .positive, sentimentScore: 0.4, wordCount: 20 + Int(random.next() % 200), summarizedAt: advance(1)), .calls, at: time)
        }
        let status: CallEnded.FinalStatus = answered ? .completed : [.busy, .noAnswer, .failed, .canceled][Int(random.next() % 4)]
        let endedAt = advance(Int64(max(duration, 1)))
        let ended = CallEnded(callID: callID, endedAt: endedAt, status: status, durationSeconds: duration, answered: answered, hungUpBy: answered ? .caller : .system)
        let endedEnvelope = EventEnvelope(ended, tenant: tenant, source: "/samples", time: endedAt)
        items.append(Item(envelope: endedEnvelope, category: .calls))
        if chance(duplicateRate) {
            // A redelivered provider callback: the same facts under a new event id.
            items.append(Item(envelope: EventEnvelope(ended, tenant: tenant, source: "/samples", time: endedAt), category: .calls))
        }

        if answered && chance(0.3) {
            let leadID = Identifier.v5(namespace: callID, name: "lead")
            let contactID = Identifier.v5(namespace: tenant, name: "contact-\(index)")
            let phone = "+1\(4_150_000_000 + index)"
            add(LeadCreated(leadID: leadID, callID: callID, name: "Caller \(index)", phone: phone, intent: .appointment, source: .call, createdAt: endedAt), .crm, at: endedAt)
            add(ContactUpserted(contactID: contactID, name: "Caller \(index)", phone: phone, leadID: leadID, firstSeenAt: endedAt, lastSeenAt: endedAt), .crm, at: endedAt)
            add(InteractionLogged(interactionID: Identifier.v5(namespace: callID, name: "interaction"), contactID: contactID, callID: callID,
                                  channel: .call, summary: "Appointment request", durationSeconds: duration, occurredAt: endedAt), .crm, at: endedAt)
        }

        var usage: [UsageRecorded] = []
        if answered {
            usage.append(UsageRecorded(meter: .callMinutes, quantity: Double((duration + 59) / 60), callID: callID, sourceEventID: endedEnvelope.id, sourceEventType: CallEnded.type, occurredAt: endedAt))
            usage.append(UsageRecorded(meter: .transcriptionSeconds, quantity: Double(duration), callID: callID, sourceEventID: endedEnvelope.id, sourceEventType: CallEnded.type, occurredAt: endedAt))
            usage.append(UsageRecorded(meter: .aiRequests, quantity: Double(intents + 1), callID: callID, sourceEventID: endedEnvelope.id, sourceEventType: CallEnded.type, occurredAt: endedAt))
        }
        for record in usage {
            items.append(Item(envelope: EventEnvelope(record, tenant: tenant, source: "/samples", time: endedAt), category: .billing))
            if chance(duplicateRate) {
                // Billing derived the usage again (a redelivery): same usage id, new event id.
                items.append(Item(envelope: EventEnvelope(record, tenant: tenant, source: "/samples", time: endedAt), category: .billing))
            }
        }
        return items
    }

    private mutating func chance(_ probability: Double) -> Bool {
        Double(random.next() % 1_000_000) / 1_000_000 < probability
    }
}
