import VoiceCoreEvents
import VoiceCoreTime

/// The summary as the admin API and `voicecore tenants list --json` show it: which credentials
/// are set, never their values. Fields in sorted order.
extension TenantSummary: JSONObjectCodable {
    public func writeJSON(to object: inout JSONObjectWriter) {
        object.field("active_api_keys", activeAPIKeys)
        object.field("created_at", createdAt)
        object.field("name", name)
        object.field("plan", plan)
        object.field("requests_per_second", requestsPerSecond)
        object.field("telnyx_api_key_set", hasTelnyxAPIKey)
        object.field("telnyx_public_key_set", hasTelnyxPublicKey)
        object.field("tenant_id", id)
        object.field("time_zone", timeZone)
        object.field("twilio_account_sid", twilioAccountSID)
        object.field("twilio_auth_token_set", hasTwilioAuthToken)
        object.field("twilio_shared_key_set", hasTwilioSharedKey)
    }

    public init(json object: JSONObject) throws(MessageDecodingError) {
        let activeAPIKeys = try object.int("active_api_keys")
        let createdAt = try object.timestamp("created_at")
        let name = try object.string("name")
        let plan = try object.string("plan")
        let requestsPerSecond = try object.int("requests_per_second")
        let hasTelnyxAPIKey = try object.bool("telnyx_api_key_set")
        let hasTelnyxPublicKey = try object.bool("telnyx_public_key_set")
        let id = try object.identifier("tenant_id")
        let timeZone = try object.string("time_zone")
        let twilioAccountSID = try object.optionalString("twilio_account_sid")
        let hasTwilioAuthToken = try object.bool("twilio_auth_token_set")
        let hasTwilioSharedKey = try object.bool("twilio_shared_key_set")
        self.init(id: id, name: name, plan: plan, timeZone: timeZone, twilioAccountSID: twilioAccountSID, hasTwilioAuthToken: hasTwilioAuthToken,
                  hasTwilioSharedKey: hasTwilioSharedKey, hasTelnyxPublicKey: hasTelnyxPublicKey,
                  hasTelnyxAPIKey: hasTelnyxAPIKey, requestsPerSecond: requestsPerSecond,
                  activeAPIKeys: activeAPIKeys, createdAt: createdAt)
    }
}
