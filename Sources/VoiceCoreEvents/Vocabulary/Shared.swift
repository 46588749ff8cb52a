/// The telephony provider a call came through.
public enum TelephonyProvider: String, Sendable, Hashable, Codable, CaseIterable {
    case twilio
    case telnyx
}

/// Which way a call goes, from the tenant's point of view.
public enum CallDirection: String, Sendable, Hashable, Codable, CaseIterable {
    case inbound
    case outbound
}

/// What a caller wants, as the AI detects it.
public enum Intent: String, Sendable, Hashable, Codable, CaseIterable {
    case sales
    case support
    case billing
    case appointment
    case complaint
    case other
}

/// Who spoke a transcript segment: the caller (`inbound` track) or the tenant's side (`outbound`).
public enum TranscriptTrack: String, Sendable, Hashable, Codable, CaseIterable {
    case inbound
    case outbound
}

public enum CallID {
    /// The namespace of call ids (a fixed UUID; part of the contract).
    public static let namespace = Identifier(literal: "7c4a7f3e-2b1d-4e55-9f0a-5b6c1d2e3f40")

    /// A call's id, derived from the provider's call id so the edge (publishing commands) and the
    /// call service (publishing events) agree without a lookup, and both land in one partition:
    /// `UUIDv5(namespace, "<tenantid>/<provider>/<provider call id>")`.
    public static func derive(tenant: Identifier, provider: TelephonyProvider, providerCallID: String) -> Identifier {
        Identifier.v5(namespace: namespace, name: "\(tenant)/\(provider.rawValue)/\(providerCallID)")
    }
}
