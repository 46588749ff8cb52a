import VoiceCoreEvents
import VoiceCoreTenants

/// A tenant whose Twilio credentials the demo and the load generator sign with.
struct TwilioTenant {
    var id: Identifier
    var accountSID: String
    var authToken: String

    /// `tenant`, or the first tenant with Twilio credentials; an error says what to do without one.
    static func find(_ tenant: Identifier?, in directory: TenantDirectory) async throws -> TwilioTenant {
        let id: Identifier
        if let tenant {
            id = tenant
        } else {
            guard let first = try await directory.list().first(where: \.hasTwilioAuthToken) else {
                throw CommandFailure("no tenant with Twilio credentials: run `voicecore up` (it provisions a demo tenant) or `voicecore tenants add --twilio-account-sid … --twilio-auth-token -`")
            }
            id = first.id
        }
        guard let credentials = try await directory.credentials(of: id), let token = credentials.twilioAuthToken, let account = credentials.twilioAccountSID else {
            throw CommandFailure("tenant \(id) has no Twilio account SID and auth token: add them with `voicecore tenants rotate \(id) --twilio-account-sid … --twilio-auth-token -`")
        }
        return TwilioTenant(id: id, accountSID: account, authToken: String(decoding: token, as: UTF8.self))
    }
}
