import Logging
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCoreRedis
import VoiceCoreTime

/// The CRM service (group `crm`): leads, contacts and the interactions with them.
///
/// - ``CreateLead`` (from the tenant API or the AI service) → ``LeadCreated`` and the lead's
///   ``ContactUpserted``.
/// - ``UpdateContact`` → ``ContactUpserted``.
/// - Every call is an interaction with its caller: ``CallStarted`` remembers the caller's number,
///   ``CallEnded`` → the caller's ``ContactUpserted`` and an ``InteractionLogged``.
///
/// Contacts are deduplicated per tenant by phone, else by e-mail: the contact id is derived from
/// it (``contactID(tenant:phone:email:)``), so the caller of two calls, and a lead giving the
/// number the caller called from, are one contact.
public struct CRMService: Sendable {
    public static let group = "crm"

    let state: StateStore
    let emitter: Emitter

    public static func runner(_ dependencies: ServiceDependencies) async throws -> ConsumerGroupRunner {
        let service = CRMService(
            state: StateStore(connection: try await dependencies.connect(group)),
            emitter: try await dependencies.emitter(group))
        var handlers = MessageHandlers()
        handlers.aroundPartitionBatch(EffectBatch.scope(publisher: service.emitter.publisher))
        handlers.onPartitionAcquired { stream in service.state.invalidate(stream: stream) }
        handlers.on(CreateLead.self) { message, lead in try await service.handle(lead, message) }
        handlers.on(UpdateContact.self) { message, update in
            let time = message.envelope.time
            try await service.emitter.emit(ContactUpserted(contactID: update.contactID, name: update.name, phone: update.phone, email: update.email,
                                                           firstSeenAt: time, lastSeenAt: time),
                                           tenant: message.envelope.tenantID, key: "contact-update:\(message.envelope.id)")
        }
        handlers.on(CallStarted.self) { message, started in
            let key = StateStore.key(stream: message.stream, service: group, entity: started.callID.description)
            try await service.state.write(key, ["from": started.from, "to": started.to, "started_at": started.startedAt.rfc3339,
                                                "direction": started.direction.rawValue])
        }
        handlers.on(CallEnded.self) { message, ended in try await service.handle(ended, message) }
        let streams = dependencies.naming.streams(.crm, kind: .command) + dependencies.naming.streams(.calls, kind: .event)
        return ConsumerGroupRunner(redis: dependencies.redis, configuration: dependencies.consumer(group, streams: streams, readInterval: ServiceDependencies.backgroundReadInterval),
                                   handlers: handlers, logger: dependencies.logger)
    }

    /// The contact a phone number (else an e-mail address) belongs to within a tenant.
    public static func contactID(tenant: Identifier, phone: String?, email: String?) -> Identifier? {
        if let phone { return Identifier.v5(namespace: tenant, name: "contact/phone/\(phone)") }
        if let email { return Identifier.v5(namespace: tenant, name: "contact/email/\(email.lowercased())") }
        return nil
    }

    func handle(_ lead: CreateLead, _ message: ConsumedMessage) async throws {
        let tenant = message.envelope.tenantID
        let time = message.envelope.time
        try await emitter.emit(LeadCreated(leadID: lead.leadID, callID: lead.callID, name: lead.name, phone: lead.phone, email: lead.email,
                                           intent: lead.intent, source: lead.callID == nil ? .api : .call, notes: lead.notes, createdAt: time),
                               tenant: tenant, key: "lead:\(lead.leadID):created")
        if let contact = Self.contactID(tenant: tenant, phone: lead.phone, email: lead.email) {
            try await emitter.emit(ContactUpserted(contactID: contact, name: lead.name, phone: lead.phone, email: lead.email?.lowercased(),
                                                   leadID: lead.leadID, firstSeenAt: time, lastSeenAt: time),
                                   tenant: tenant, key: "lead:\(lead.leadID):contact")
        }
    }

    func handle(_ ended: CallEnded, _ message: ConsumedMessage) async throws {
        let tenant = message.envelope.tenantID
        let key = StateStore.key(stream: message.stream, service: Self.group, entity: ended.callID.description)
        let call = try await state.read(key)
        // The caller is the other party: From of an inbound call, To of an outbound one.
        let outbound = call["direction"] == CallDirection.outbound.rawValue
        guard let party = outbound ? call["to"] : call["from"], let contact = Self.contactID(tenant: tenant, phone: party, email: nil) else { return }
        let startedAt = call["started_at"].flatMap(Timestamp.init(rfc3339:)) ?? ended.endedAt
        try await emitter.emit(ContactUpserted(contactID: contact, phone: party, firstSeenAt: min(startedAt, ended.endedAt), lastSeenAt: ended.endedAt),
                               tenant: tenant, key: "call:\(ended.callID):contact")
        let summary = "\(outbound ? "Outbound" : "Inbound") call, \(ended.status.rawValue), \(ended.durationSeconds) s"
        try await emitter.emit(InteractionLogged(interactionID: Identifier.v5(namespace: ended.callID, name: "interaction"), contactID: contact,
                                                 callID: ended.callID, channel: .call, summary: summary, durationSeconds: ended.durationSeconds,
                                                 occurredAt: ended.endedAt),
                               tenant: tenant, key: "call:\(ended.callID):interaction")
    }
}
