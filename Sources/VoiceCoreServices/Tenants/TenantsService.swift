import Logging
import ServiceLifecycle
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCoreTenants
import VoiceCoreTime

/// The tenants service (group `tenants`): accepts ``ChangeSettings`` (tenant API) by storing the
/// settings in the tenant directory, where the AI service reads them, together with the
/// ``TenantSettingsChanged`` that announces them (the directory's outbox, one transaction). It
/// also runs the directory's ``OutboxRelay``, which publishes that event and any other the
/// directory wrote (a tenant provisioned by a CLI or edge that crashed before publishing). A
/// command for a tenant the directory does not know fails and, after its retries, goes to the
/// dead-letter stream.
public struct TenantsService: Sendable {
    public static let group = "tenants"

    let directory: TenantDirectory
    let emitter: Emitter
    let tenants: TenantProfiles

    /// The consumer group and the outbox relay, to run together.
    public static func services(_ dependencies: ServiceDependencies, directory: TenantDirectory) async throws -> [any Service] {
        let service = TenantsService(directory: directory, emitter: try await dependencies.emitter(group), tenants: dependencies.tenants)
        return [service.runner(dependencies),
                OutboxRelay(source: directory.outbox, publisher: service.emitter.publisher, logger: dependencies.logger)]
    }

    /// The consumer group alone (its announcements are relayed right after each change; what that
    /// leaves behind waits for a relay).
    public static func runner(_ dependencies: ServiceDependencies, directory: TenantDirectory) async throws -> ConsumerGroupRunner {
        TenantsService(directory: directory, emitter: try await dependencies.emitter(group), tenants: dependencies.tenants).runner(dependencies)
    }

    func runner(_ dependencies: ServiceDependencies) -> ConsumerGroupRunner {
        var handlers = MessageHandlers()
        handlers.on(ChangeSettings.self) { message, change in
            guard change.tenantID == message.envelope.tenantID else {
                throw TenantError.invalid(field: "tenant_id", reason: "names another tenant than the command's")
            }
            let event = TenantSettingsChanged(tenantID: change.tenantID, settings: change.settings, changedAt: message.envelope.time)
            // An invalid event would be dead-lettered by every consumer: refuse it here instead.
            try event.validate()
            let context = MessageContext.current
            let envelope = EventEnvelope(event, tenant: change.tenantID, source: emitter.publisher.configuration.source,
                                         correlationID: context?.correlationID, causationID: context?.causationID)
            // Keyed by the command: handled again after a crash, it is announced once.
            let announcement = OutboxMessage(envelope, category: TenantSettingsChanged.category, kind: TenantSettingsChanged.kind,
                                             deduplicationKey: "settings:\(message.envelope.id)")
            try await directory.setAISettings(change.settings, of: change.tenantID, announcing: announcement, publisher: emitter.publisher)
            tenants.invalidate(change.tenantID)
        }
        return ConsumerGroupRunner(redis: dependencies.redis,
                                   configuration: dependencies.consumer(Self.group, streams: dependencies.naming.streams(.tenants, kind: .command)),
                                   handlers: handlers, logger: dependencies.logger)
    }
}
