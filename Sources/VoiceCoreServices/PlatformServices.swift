import AsyncHTTPClient
import ServiceLifecycle
import VoiceCoreTenants

/// The platform's services by name, as `voicecore consume NAME` and `voicecore up` run them.
public enum PlatformServices {
    public struct Entry: Sendable {
        public var name: String
        public var summary: String
    }

    public static let all: [Entry] = [
        Entry(name: CallLifecycleService.group, summary: "call commands → CallStarted, CallAnswered, CallEnded, TranscriptChunk, VoicemailRecorded"),
        Entry(name: AIService.group, summary: "transcripts → IntentDetected, CallSummarized, CreateLead"),
        Entry(name: ReceptionistService.group, summary: "caller turns → ReceptionistReplied, AppointmentRequested, MessageTaken, CallTransferred, CreateLead"),
        Entry(name: CRMService.group, summary: "leads and calls → LeadCreated, ContactUpserted, InteractionLogged"),
        Entry(name: BillingService.group, summary: "ended calls → UsageRecorded"),
        Entry(name: TenantsService.group, summary: "ChangeSettings → TenantSettingsChanged"),
        Entry(name: IntegrationsService.group, summary: "LeadCreated, CallEnded, CallSummarized → tenants' outbound webhooks"),
        Entry(name: TelephonyService.group, summary: "Telnyx calls and receptionist replies → Telnyx Call Control (answer, gather, speak, transfer, record, hang up)"),
    ]

    public struct UnknownService: Error, CustomStringConvertible {
        public var name: String
        public init(name: String) { self.name = name }
        public var description: String { "no service named '\(name)'; the services are \(PlatformServices.all.map(\.name).joined(separator: ", "))" }
    }

    /// The named services (all when `names` is empty), ready to run in a ServiceGroup.
    public static func make(_ names: [String], dependencies: ServiceDependencies, directory: TenantDirectory,
                            detector: (any IntentDetector)? = nil, delivery: WebhookDelivery = WebhookDelivery(),
                            client: HTTPClient = .shared) async throws -> [any Service] {
        let chosen = names.isEmpty ? all.map(\.name) : names
        if let unknown = chosen.first(where: { name in !all.contains { $0.name == name } }) { throw UnknownService(name: unknown) }
        var services: [any Service] = []
        for name in chosen {
            switch name {
            case CallLifecycleService.group: services.append(try await CallLifecycleService.runner(dependencies))
            case AIService.group: services.append(try await AIService.runner(dependencies, detector: detector))
            case ReceptionistService.group: services.append(try await ReceptionistService.runner(dependencies))
            case CRMService.group: services.append(try await CRMService.runner(dependencies))
            case BillingService.group: services.append(try await BillingService.runner(dependencies))
            case TenantsService.group: services.append(contentsOf: try await TenantsService.services(dependencies, directory: directory))
            case TelephonyService.group: services.append(try await TelephonyService.runner(dependencies, directory: directory, client: client))
            default: services.append(contentsOf: try await IntegrationsService.services(dependencies, delivery: delivery, client: client))
            }
        }
        // Per-call memory must forget erased callers in every process that holds it.
        if !dependencies.callMemory.isEmpty { services.append(CallerErasedFollower(dependencies)) }
        return services
    }
}

/// Several services run as one: started together and, on graceful shutdown, stopped together
/// (a ServiceGroup stops its members one after another, and each consumer takes up to its read's
/// block time to stop).
public struct ServiceBundle: Service {
    public let services: [any Service]

    public init(_ services: [any Service]) {
        self.services = services
    }

    public func run() async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for service in services { group.addTask { try await service.run() } }
            // One that fails ends the bundle (the others are cancelled); one that returns outside a
            // graceful shutdown too, like a ServiceGroup member would. In a graceful shutdown all
            // finish their work.
            try await group.next()
            if !Task.isShuttingDownGracefully { group.cancelAll() }
            try await group.waitForAll()
        }
    }
}
