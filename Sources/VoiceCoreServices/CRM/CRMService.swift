import Logging
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCoreTime

/// The CRM service (group `crm`): leads, contacts and the interactions with them.
///
/// - ``CreateLead`` (from the tenant API or the AI service) → ``LeadCreated`` and the lead's
///   ``ContactUpserted``.
/// - ``UpdateContact`` → ``ContactUpserted``.
/// - Every call is an interaction with its caller: ``CallStarted`` remembers the caller's number,
///   ``CallEnded`` → the caller's ``ContactUpserted`` and an ``InteractionLogged``.
///
/// Contacts are one per phone, and one per e-mail, within a tenant, whichever path names them
/// first: the caller of two calls, a lead giving the number the caller called from, and a contact
/// written through the tenant API with that number are one contact. ``ContactDirectory`` decides
/// (atomically across partitions and instances); a new contact found by a call or a lead gets the
/// id derived from its phone, else its e-mail (``contactID(tenant:phone:email:)``).
public struct CRMService: Sendable {
    public static let group = "crm"

    let state: StateStore
    let contacts: ContactDirectory
    let emitter: Emitter
    let logger: Logger

    public static func runner(_ dependencies: ServiceDependencies) async throws -> ConsumerGroupRunner {
        let connection = try await dependencies.connect(group)
        let service = CRMService(
            state: dependencies.stateStore(connection),
            contacts: ContactDirectory(connection: connection, prefix: dependencies.naming.prefix),
            emitter: try await dependencies.emitter(group),
            logger: dependencies.logger)
        var handlers = MessageHandlers()
        handlers.aroundPartitionBatch(EffectBatch.scope(publisher: service.emitter.publisher))
        handlers.onPartitionAcquired { stream in service.state.invalidate(stream: stream) }
        handlers.on(CreateLead.self) { message, lead in try await service.handle(lead, message) }
        handlers.on(UpdateContact.self) { message, update in try await service.handle(update, message) }
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

    /// The id a new contact found by a call or a lead gets: derived from its phone number (else its
    /// e-mail address) within the tenant, so the contacts of a CRM whose directory was built before
    /// keep their ids. ``ContactDirectory`` decides whether the contact is new.
    public static func contactID(tenant: Identifier, phone: String?, email: String?) -> Identifier? {
        if let phone { return Identifier.v5(namespace: tenant, name: "contact/phone/\(phone)") }
        if let email { return Identifier.v5(namespace: tenant, name: "contact/email/\(email.lowercased())") }
        return nil
    }

    /// The contact of a call's caller or a lead's details, found or created in the directory. The
    /// message's own id is the fallback for the (theoretical) case where the derived id already
    /// names another contact; it is the same on a redelivery, so a retry finds its first claim.
    func resolveContact(tenant: Identifier, phone: String?, email: String?, cause: Identifier) async throws -> ContactDirectory.Contact? {
        guard let derived = Self.contactID(tenant: tenant, phone: phone, email: email) else { return nil }
        return try await contacts.resolve(tenant: tenant, phone: phone, email: email, proposed: derived,
                                          fallback: Identifier.v5(namespace: cause, name: "contact"))
    }

    func handle(_ update: UpdateContact, _ message: ConsumedMessage) async throws {
        let tenant = message.envelope.tenantID
        let time = message.envelope.time
        // Checked before the directory claims anything for it: an invalid phone or e-mail is never claimed.
        try ContactUpserted(contactID: update.contactID, name: update.name, phone: update.phone, email: update.email,
                            firstSeenAt: time, lastSeenAt: time).validate()
        let contact = try await contacts.update(tenant: tenant, requested: update.contactID, phone: update.phone, email: update.email)
        if !contact.refused.isEmpty {
            logger.warning("a contact update asked for a phone or e-mail another contact has; that part was not applied",
                           metadata: ["tenant": "\(tenant)", "contact": "\(contact.id)", "requested_contact": "\(update.contactID)",
                                      "refused": "\(contact.refused.joined(separator: ","))", "command": "\(message.envelope.id)"])
        }
        try await emitter.emit(ContactUpserted(contactID: contact.id, name: update.name, phone: contact.phone, email: contact.email,
                                               firstSeenAt: time, lastSeenAt: time),
                               tenant: tenant, key: "contact-update:\(message.envelope.id)", time: contact.revision)
    }

    func handle(_ lead: CreateLead, _ message: ConsumedMessage) async throws {
        let tenant = message.envelope.tenantID
        let time = message.envelope.time
        let created = LeadCreated(leadID: lead.leadID, callID: lead.callID, name: lead.name, phone: lead.phone, email: lead.email,
                                  intent: lead.intent, source: lead.callID == nil ? .api : .call, notes: lead.notes, createdAt: time)
        try created.validate()
        let contact = try await resolveContact(tenant: tenant, phone: lead.phone, email: lead.email, cause: message.envelope.id)
        try await emitter.emit(created, tenant: tenant, key: "lead:\(lead.leadID):created")
        if let contact {
            try await emitter.emit(ContactUpserted(contactID: contact.id, name: lead.name, phone: contact.phone, email: contact.email,
                                                   leadID: lead.leadID, firstSeenAt: time, lastSeenAt: time),
                                   tenant: tenant, key: "lead:\(lead.leadID):contact", time: contact.revision)
        }
    }

    func handle(_ ended: CallEnded, _ message: ConsumedMessage) async throws {
        let tenant = message.envelope.tenantID
        let key = StateStore.key(stream: message.stream, service: Self.group, entity: ended.callID.description)
        let call = try await state.read(key)
        // The caller is the other party: From of an inbound call, To of an outbound one.
        let outbound = call["direction"] == CallDirection.outbound.rawValue
        guard let party = outbound ? call["to"] : call["from"],
              let contact = try await resolveContact(tenant: tenant, phone: party, email: nil, cause: message.envelope.id) else { return }
        let startedAt = call["started_at"].flatMap(Timestamp.init(rfc3339:)) ?? ended.endedAt
        try await emitter.emit(ContactUpserted(contactID: contact.id, phone: contact.phone, email: contact.email,
                                               firstSeenAt: min(startedAt, ended.endedAt), lastSeenAt: ended.endedAt),
                               tenant: tenant, key: "call:\(ended.callID):contact", time: contact.revision)
        let summary = "\(outbound ? "Outbound" : "Inbound") call, \(ended.status.rawValue), \(ended.durationSeconds) s"
        try await emitter.emit(InteractionLogged(interactionID: Identifier.v5(namespace: ended.callID, name: "interaction"), contactID: contact.id,
                                                 callID: ended.callID, channel: .call, summary: summary, durationSeconds: ended.durationSeconds,
                                                 occurredAt: ended.endedAt),
                               tenant: tenant, key: "call:\(ended.callID):interaction")
    }
}
