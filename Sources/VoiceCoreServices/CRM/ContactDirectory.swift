import VoiceCoreBus
import VoiceCoreEvents
import VoiceCoreTime

/// Which contact a phone number or an e-mail address belongs to, per tenant: the one place the CRM
/// service decides contact identity, so a caller, a lead and a contact written through the tenant
/// API that share a phone (or an e-mail) are one contact, whichever arrives first. It is the bus's
/// ``ClaimIndex`` with two kinds, `p` (phone) and `e` (e-mail, lower-case), looked up in that order.
///
/// ## Why an index in Redis, and why one hash per tenant
/// A deterministic id (derived from the phone) cannot do it alone: `PUT /v1/contacts/{id}` names
/// its own id, and a contact found by e-mail has no phone to derive from. So the first writer of a
/// phone or e-mail claims it for its contact, and everyone after it reuses that contact. The crm
/// consumer handles partitions in parallel (and several instances may run), and a contact update
/// and a lead for the same phone usually sit in different partitions, so the claim must be atomic
/// across all of them: every resolution is one Lua script on one hash per tenant
/// (`<prefix>:{crm-contacts:<tenant>}`, its own hash tag, so the tenant's index lives in one Redis
/// Cluster slot). Two concurrent writers are serialised by Redis; the second finds the first's
/// claim. The script is idempotent for a redelivered message: it finds its own earlier claim.
///
/// Fields of the hash:
/// - `p:<phone>` / `e:<email>` (lower-case): the contact that claimed the phone / e-mail.
/// - `c:<contact>`: the contact's revision (µs, see below); its presence means the contact exists.
/// - `cp:<contact>` / `ce:<contact>`: the contact's current phone / e-mail.
/// - `a:<id>`: an id the tenant API used for a contact that already existed under another id (its
///   phone or e-mail was known): later updates through that id reach the same contact.
///
/// ## Changing a contact's phone or e-mail
/// An update may change a contact's phone or e-mail to one that no other contact has claimed: the
/// contact claims it and shows it from then on. The number it had stays claimed by it (a call from
/// the old number is still this contact's) and is never handed to another contact. That is what
/// keeps the read model free of clashes without any ordering between partitions: a phone appears
/// in the events of one contact id only, ever, so `crm_contacts`' unique indexes on phone and
/// e-mail can never refuse a row (SQLSTATE 23505). An update that asks for a phone or e-mail
/// another contact has claimed is refused for that field (contacts are not merged); the rest of
/// the update applies, and the refusal is logged as a warning.
///
/// ## Revisions
/// Each resolution returns the contact's full current phone and e-mail and a revision: Redis'
/// clock in µs, strictly increasing per contact. The service publishes the contact's event with
/// that time, and the projection applies a contact's phone and e-mail only from an event newer than
/// the row's, so events published out of order (different partitions of the service) cannot put an
/// old phone back.
final class ContactDirectory: Sendable {
    /// A contact and the details it has after the resolution.
    struct Contact: Sendable, Equatable {
        var id: Identifier
        var phone: String?
        var email: String?
        /// Strictly increasing per contact: the time of the event published for this resolution.
        var revision: Timestamp
        /// Phone or e-mail asked for by an update that belongs to another contact (`phone`, `email`).
        var refused: [String]
    }

    private let index: ClaimIndex
    private let prefix: String

    /// The claim kinds, in the order a contact is looked up by: phone first, else e-mail.
    private static let phone = ClaimIndex.Kind("p")
    private static let email = ClaimIndex.Kind("e")

    init(connection: BusConnection, prefix: String) {
        self.index = ClaimIndex(connection: connection)
        self.prefix = prefix
    }

    /// The key of a tenant's index.
    func key(tenant: Identifier) -> String { ClaimIndex.contactIndexKey(prefix: prefix, tenant: tenant) }

    /// The contact a caller's number or a lead's phone/e-mail belongs to (phone first, else
    /// e-mail), creating it as `proposed` when neither is known. A detail nobody has claimed is
    /// claimed for the contact when it has none of that kind yet; the contact's existing phone or
    /// e-mail is not replaced by a lead or a call.
    func resolve(tenant: Identifier, phone: String?, email: String?, proposed: Identifier, fallback: Identifier) async throws -> Contact {
        try contact(try await index.resolve(in: key(tenant: tenant), values: Self.values(phone: phone, email: email),
                                            proposed: proposed.description, fallback: fallback.description))
    }

    /// The contact the tenant API's update of `requested` applies to: `requested` itself when it
    /// exists (or when neither its new phone nor e-mail is known), else the contact that already
    /// has the phone (else the e-mail), remembered for `requested` from then on. The update's phone
    /// and e-mail become the contact's unless another contact has claimed them (see `refused`).
    func update(tenant: Identifier, requested: Identifier, phone: String?, email: String?) async throws -> Contact {
        try contact(try await index.update(in: key(tenant: tenant), owner: requested.description, values: Self.values(phone: phone, email: email)))
    }

    /// E-mail addresses are claimed lower-case; an empty detail is none.
    private static func values(phone: String?, email: String?) -> [ClaimIndex.Value] {
        [ClaimIndex.Value(Self.phone, phone.flatMap { $0.isEmpty ? nil : $0 }),
         ClaimIndex.Value(Self.email, email.flatMap { $0.isEmpty ? nil : $0.lowercased() })]
    }

    private func contact(_ resolution: ClaimIndex.Resolution) throws -> Contact {
        guard let id = Identifier(resolution.owner), resolution.values.count == 2 else {
            throw RedisError(kind: .unexpectedReply, message: "the contact directory answered an owner that is not a contact id: \(resolution.owner)")
        }
        return Contact(id: id, phone: resolution.values[0], email: resolution.values[1], revision: resolution.revision,
                       refused: resolution.refused.map { $0 == Self.phone ? "phone" : "email" })
    }
}
