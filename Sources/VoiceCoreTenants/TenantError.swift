/// What went wrong in the tenant directory. Messages never contain a secret.
public enum TenantError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The deployment is misconfigured (master key missing or malformed).
    case configuration(String)
    /// A stored secret does not open under this master key (wrong key, or a tampered row).
    case undecryptable(String)
    /// No tenant with this id.
    case unknownTenant(String)
    /// The tenant exists already.
    case conflict(String)
    /// A value given for a tenant is not acceptable.
    case invalid(field: String, reason: String)

    public var description: String {
        switch self {
        case .configuration(let message): message
        case .undecryptable(let field): "the stored \(field) does not decrypt with this VOICECORE_MASTER_KEY (wrong master key, or the row was altered); re-enter it with `voicecore tenants rotate`"
        case .unknownTenant(let id): "no tenant \(id) in the directory (list them with `voicecore tenants list`)"
        case .conflict(let message): message
        case .invalid(let field, let reason): "\(field) \(reason)"
        }
    }
}
